"""Hostile inputs to the manifest scan (issue 17, items 7, 8, 9 and the --fractions part of 11).

* EF 150 / -5 or ESV > EDV in FileList.csv: flagged at scan time, the row left out and listed,
  the good rows kept, so the manifest written is one that every later command accepts.
* Tracings of a clip that FileList.csv does not list: listed, not ignored silently.
* A latin-1 byte in FileList.csv or a manifest: the error names the file, line and byte, and
  says to re-save as UTF-8.
* ``--fractions 0.5,0.5,0.5`` and other invalid options of ``echokdm manifest``: refused with
  one clear line before any clip is read.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pandas as pd
import pytest

from echokdm.cli import main
from echokdm.data.manifest import check_manifest, load_manifest, scan_folder, validate_fractions
from echokdm.errors import ManifestError, ReadError
from echokdm.io.echonet import filelist_reference_problems, read_echonet_filelist, write_echonet_dataset

sys.path.insert(0, str(Path(__file__).parents[1] / "io"))
import echonet_factory as factory


def _echonet(root: Path, overrides: dict[int, dict] | None = None, ghost: bool = False) -> Path:
    """Five small clips 0X0000…0X0004 (EF 60, EDV 100, ESV 40) with ``overrides`` per clip index,
    and, with ``ghost``, tracings of a clip 0XGHOST that FileList.csv does not list."""
    items = [factory.make_clip(f"0X{i:04d}", n_frames=16, height=16, width=20, seed=i) for i in range(5)]
    for index, fields in (overrides or {}).items():
        items[index].update(fields)
    write_echonet_dataset(root, items)
    if ghost:
        path = root / "VolumeTracings.csv"
        rows = list(csv.reader(path.open()))
        with path.open("a", newline="") as f:
            csv.writer(f).writerows([["0XGHOST.avi", *row[1:]] for row in rows[1:22]])  # one traced frame
    return root


BAD_ROWS = {1: {"ef": 150.0}, 2: {"ef": -5.0}, 3: {"esv": 120.0, "ef": 10.0}}


# ------------------------------------------------------------------------------ item 7


def test_scan_leaves_out_impossible_filelist_rows_and_keeps_the_good_ones(tmp_path):
    root = _echonet(tmp_path / "ds", BAD_ROWS)
    scan = scan_folder(root, "echonet", progress=False)
    assert sorted(scan.manifest["clip_id"]) == ["0X0000", "0X0004"]
    reasons = {Path(p).name: r for p, r in scan.skipped}
    assert "line 3: EF 150 is outside [0, 100]" in reasons["0X0001.avi"] and "left out" in reasons["0X0001.avi"]
    assert "line 4: EF -5 is outside [0, 100]" in reasons["0X0002.avi"]
    assert "ESV 120 exceeds EDV 100" in reasons["0X0003.avi"]
    assert check_manifest(scan.manifest, check_files=True) == []  # what is written loads


def test_cli_manifest_of_a_filelist_with_bad_ef_is_accepted_by_later_loads(tmp_path, capsys):
    root = _echonet(tmp_path / "ds", BAD_ROWS)
    out = tmp_path / "m.csv"
    assert main(["manifest", str(root), "--format", "echonet", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2 clip(s)" in printed and "EF 150 is outside [0, 100]" in printed
    report = pd.read_csv(tmp_path / "m_skipped.csv")
    assert report["reason"].str.contains("EF -5 is outside").any()
    assert list(load_manifest(out)["clip_id"]) == ["0X0000", "0X0004"]
    assert main(["manifest", "--check", str(out)]) == 0


def test_ef_that_disagrees_with_the_volumes_is_kept_with_a_note(tmp_path):
    root = _echonet(tmp_path / "ds", {1: {"ef": 30.0}})  # EDV 100, ESV 40 give 60
    flagged = filelist_reference_problems(read_echonet_filelist(root))
    assert set(flagged) == {"0X0001.avi"} and flagged["0X0001.avi"][1] is False
    scan = scan_folder(root, "echonet", progress=False)
    assert "0X0001" in set(scan.manifest["clip_id"]) and len(scan.manifest) == 5
    assert any("warning (clip kept)" in r and "disagrees with EDV 100 and ESV 40, which give EF 60.0" in r
               for _, r in scan.skipped)


# ------------------------------------------------------------------------------ item 8


def test_tracings_of_a_clip_missing_from_the_filelist_are_listed(tmp_path):
    root = _echonet(tmp_path / "ds", ghost=True)
    scan = scan_folder(root, "echonet", progress=False)
    ghost = [(p, r) for p, r in scan.skipped if "0XGHOST" in r]
    assert len(ghost) == 1
    path, reason = ghost[0]
    assert path.endswith("VolumeTracings.csv")
    assert "1 traced frame(s)" in reason and "not listed in FileList.csv" in reason
    assert len(scan.manifest) == 5  # the listed clips are unaffected


# ------------------------------------------------------------------------------ item 9


def test_latin1_byte_in_filelist_names_file_line_and_fix(tmp_path):
    root = _echonet(tmp_path / "ds")
    filelist = root / "FileList.csv"
    filelist.write_bytes(filelist.read_bytes().replace(b"0X0003", b"0X\xe9003"))  # line 5
    with pytest.raises(ReadError) as info:
        scan_folder(root, "echonet", progress=False)
    message = str(info.value)
    assert str(filelist) in message and "line 5, column 3" in message and "0xe9" in message
    assert "'é'" in message and "re-save the file as UTF-8" in message
    assert "position" not in message


def test_latin1_byte_in_a_manifest_names_file_and_line(tmp_path, capsys):
    root = _echonet(tmp_path / "ds")
    out = tmp_path / "m.csv"
    assert main(["manifest", str(root), "--format", "echonet", "-o", str(out), "--no-progress"]) == 0
    out.write_bytes(out.read_bytes().replace(b"0X0002", b"0X\xe9002", 1))
    problems = check_manifest(out)
    assert len(problems) == 1 and problems[0].startswith("line 4, column") and "UTF-8" in problems[0]
    with pytest.raises(ManifestError, match="line 4, column .*re-save the file as UTF-8") as info:
        load_manifest(out)
    assert str(out) in str(info.value)
    capsys.readouterr()
    assert main(["manifest", "--check", str(out)]) == 1
    assert "line 4" in capsys.readouterr().out


def test_latin1_byte_in_tracings_names_the_line(tmp_path):
    root = _echonet(tmp_path / "ds")
    tracings = root / "VolumeTracings.csv"
    data = tracings.read_bytes()
    tracings.write_bytes(data.replace(b"0X0001.avi", b"0X\xe9001.avi", 1))
    with pytest.raises(ReadError, match=r"VolumeTracings.csv: line \d+, column 3: byte 0xe9"):
        scan_folder(root, "echonet", progress=False)


# ------------------------------------------------------------------------------ item 11 (--fractions)


@pytest.mark.parametrize("fractions, expected", [
    ("0.5,0.5,0.5", "must sum to 1"),
    ("0.7,0.3", "three numbers"),
    ("1.2,-0.1,-0.1", "non-negative"),
    ("a,b,c", "three numbers"),
    ("nan,0.5,0.5", "non-negative"),
])
def test_cli_refuses_invalid_fractions(tmp_path, capsys, fractions, expected):
    root = _echonet(tmp_path / "ds")
    with pytest.raises(SystemExit) as info:
        main(["manifest", str(root), "--format", "video", "-o", str(tmp_path / "m.csv"), f"--fractions={fractions}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--fractions" in err and expected in err
    assert not (tmp_path / "m.csv").exists()


def test_valid_fractions_pass_and_library_refuses_bad_ones(tmp_path):
    assert validate_fractions((0.7, 0.15, 0.15)) == (0.7, 0.15, 0.15)
    assert validate_fractions((1, 0, 0)) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="sum to 1"):
        scan_folder(tmp_path, "video", fractions=(0.5, 0.5, 0.5), progress=False)


@pytest.mark.parametrize("extra, expected", [
    (["--salt", "s3cret"], "--salt applies to --format dicom and camus only"),
    (["--salt", " "], "--salt is empty"),
    (["--patient-from", "folder"], "--patient-from applies to --format video and nifti only"),
    (["--dataset", ""], "--dataset is empty"),
])
def test_cli_refuses_options_that_do_not_apply(tmp_path, capsys, extra, expected):
    root = _echonet(tmp_path / "ds")
    assert main(["manifest", str(root), "--format", "echonet", "-o", str(tmp_path / "m.csv"), *extra]) == 1
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_cli_refuses_an_output_folder_and_check_with_build_options(tmp_path, capsys):
    root = _echonet(tmp_path / "ds")
    assert main(["manifest", str(root), "--format", "echonet", "-o", str(tmp_path), "--no-progress"]) == 1
    assert "is a folder" in capsys.readouterr().err
    out = tmp_path / "m.csv"
    assert main(["manifest", str(root), "--format", "echonet", "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["manifest", "--check", str(out), "--format", "video"]) == 1
    assert "drop --format" in capsys.readouterr().err


@pytest.mark.parametrize("fps", ["0", "-30", "inf", "abc"])
def test_cli_refuses_a_bad_fps(tmp_path, capsys, fps):
    with pytest.raises(SystemExit):
        main(["manifest", str(tmp_path), "--format", "camus", "-o", str(tmp_path / "m.csv"), f"--fps={fps}"])
    assert "--fps" in capsys.readouterr().err
