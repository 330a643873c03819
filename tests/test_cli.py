"""The echokdm command: help, demo, manifest, info, preview — run in-process through main()."""

import subprocess
import sys

import numpy as np
import pytest

from echokdm.cli import build_parser, main
from echokdm.io import write_video


def test_help_lists_every_subcommand_and_each_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    commands = [a for a in build_parser()._subparsers._group_actions[0].choices]
    assert {"demo", "manifest", "info", "preview"} <= set(commands)
    for cmd in commands:
        assert cmd in out
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "echokdm", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("echokdm ")


@pytest.mark.slow
def test_demo_quick_generates_evaluates_and_refuses_to_overwrite(tmp_path, capsys):
    """``echokdm demo --quick`` with the packaged checkpoints: every output exists and says what it should."""
    import pandas as pd

    from echokdm.data.manifest import load_manifest
    from echokdm.io import read_dicom, read_video
    from echokdm.io.dicom_write import validate_dicom

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # 1: the real DICOM cine read, scanned and previewed
    real = load_manifest(out / "real_manifest.csv")
    assert len(real) == 1 and int(real.n_frames[0]) == 30 and real.fps[0] == pytest.approx(30, rel=0.01)
    assert read_video(out / "real_preview" / "us_cine.mp4").n_frames == 30
    # 2-6: the real cine and one held-out patient, two loops each, written, scored and summarised
    full = pd.read_csv(out / "report.csv")
    assert list(full["source"]) == ["real", "real", "phantom", "phantom"]
    assert list(full["loop"]) == ["own", "new_ef"] * 2 and full["patient_id"].nunique() == 2
    # which motion drove each own beat: the real cine's is tracked (its keypoints come from the segmentation)
    assert full["motion"].iloc[0] == "tracking" and full["motion"].iloc[1] == "keypoints at the EF target"
    assert full["motion"].iloc[2] in ("tracking", "segmentation (tracking lost the wall)")
    real_rows = full[full["source"] == "real"]
    assert real_rows["patient_id"].iloc[0] == real["patient_id"][0]  # one pseudonym through the run
    assert 5 < real_rows["ef_clip_keypoints"].iloc[0] < 95, "the real cine's EF from its keypoints"
    # which frames each EF comes from: the clip's (1 s of pydicom's cine, no complete beat) and the own beat's
    assert "no complete beat" in real_rows["ef_clip_basis"].iloc[0]
    first, last = (int(x) for x in real_rows["beat_frames"].iloc[0].split("-"))
    assert last - first + 1 == real_rows["frames"].iloc[0]
    volumes = pd.read_csv(out / "real_echo_volumes.csv")
    assert len(volumes) == 30 and {"ED", "ES"} <= set(volumes["phase"].dropna())
    assert (out / "real_echo.png").stat().st_size > 20_000
    side = read_video(next((out / "loops" / real_rows["patient_id"].iloc[0]).glob("*_own_side_by_side.mp4")))
    assert side.width > 1.5 * side.height  # labelled real | generated
    for column in ("mse_repeat_source", "ssim_repeat_source"):
        assert full.loc[full["loop"] == "own", column].notna().all(), column
    report = full[full["source"] == "phantom"].reset_index(drop=True)
    assert report["ef_achieved"].notna().all(), "the packaged segmentation model re-measures EF"
    own, new = report.iloc[0], report.iloc[1]
    shifted = abs(new["ef_target"] - own["ef_clip_keypoints"]) == pytest.approx(25, abs=1.0)
    assert shifted or new["ef_target"] in (15, 75)
    # the new-EF loop comes from the closed-loop EF control: its attempts and keypoint EF are reported
    assert 1 <= new["ef_attempts"] <= 3 and own["ef_attempts"] == 1
    assert own["ef_trajectory"] == pytest.approx(own["ef_target"]) and np.isfinite(new["ef_trajectory"])
    assert 0 < own["mse"] < 0.1 and 0 < own["ssim"] <= 1
    for r in full.itertuples():
        assert read_video(r.mp4).n_frames == r.frames
        assert read_dicom(r.dicom).n_frames == r.frames
        assert validate_dicom(r.dicom, external=False) == []
    assert (out / "summary.png").stat().st_size > 10_000
    assert "EF target" in printed and "Done in" in printed
    before = (out / "report.csv").read_bytes()
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "report.csv").read_bytes() == before


def test_manifest_build_check_and_skipped_report(tmp_path, capsys):
    data = tmp_path / "data"
    frames = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    write_video(data / "a.avi", frames, fps=25)
    write_video(data / "b.avi", frames, fps=25)
    (data / "c.avi").write_bytes(b"junk")
    out = tmp_path / "m.csv"
    assert main(["manifest", str(data), "--format", "video", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2 clip(s)" in printed and "c.avi" in printed
    skipped = (tmp_path / "m_skipped.csv").read_text().splitlines()
    assert len(skipped) == 2 and skipped[1].split(",")[0].endswith("c.avi")
    assert main(["manifest", "--check", str(out)]) == 0
    assert "OK, 2 clip(s)" in capsys.readouterr().out
    # a broken manifest: one line per problem, exit 1
    text = out.read_text().replace(",train", ",training").replace(",val", ",training").replace(",test", ",training")
    out.write_text(text)
    assert main(["manifest", "--check", str(out)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2 and all("split 'training'" in line for line in lines)
    assert main(["manifest", str(data), "--format", "video", "-o", str(out), "--no-progress"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_manifest_detects_the_format_of_a_folder_or_asks_for_one(tmp_path, capsys):
    import shutil

    import pydicom.examples

    from echokdm.io.dispatch import guess_folder_format

    scans = tmp_path / "scans"
    (scans / "day1").mkdir(parents=True)
    shutil.copy(pydicom.examples.get_path("ybr_color"), scans / "day1" / "IM0001")  # no suffix: DICM preamble
    (scans / "notes.txt").write_text("not a clip")
    out = tmp_path / "m.csv"
    assert main(["manifest", str(scans), "-o", str(out), "--no-progress"]) == 0
    assert "format: dicom (detected from 1 dicom file(s)" in capsys.readouterr().out
    assert ",dicom," in out.read_text()
    write_video(scans / "clip.avi", np.zeros((3, 8, 8), np.float32), fps=10)
    assert main(["manifest", str(scans), "-o", str(tmp_path / "mixed.csv"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "several formats (1 dicom, 1 video)" in err and "--format" in err and not (tmp_path / "mixed.csv").exists()
    assert main(["manifest", str(tmp_path / "empty_dir_absent"), "-o", str(tmp_path / "x.csv")]) == 1
    (tmp_path / "echonet" / "Videos").mkdir(parents=True)
    (tmp_path / "echonet" / "FileList.csv").write_text("FileName,EF\n")
    assert guess_folder_format(tmp_path / "echonet")[0] == "echonet"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no DICOM, EchoNet, CAMUS, NIfTI or video file"):
        guess_folder_format(tmp_path / "nothing")


def test_info_says_what_the_commands_will_measure_with(capsys):
    import warnings

    import pydicom.examples

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", str(pydicom.examples.get_path("ybr_color"))]) == 0
    printed = capsys.readouterr().out
    assert "labels: none (segment, ef, generate and the app find the LV with the packaged seg_phantom_112)" in printed
    assert "fan: found by motion" in printed and "apex of the sector: up" in printed


def test_info_and_preview(tmp_path, capsys):
    frames = np.random.default_rng(0).random((7, 20, 30)).astype(np.float32)
    clip = write_video(tmp_path / "x.mp4", frames, fps=10)
    assert main(["info", str(clip)]) == 0
    assert "7x20x30" in capsys.readouterr().out
    assert main(["preview", str(clip), "-o", str(tmp_path / "prev")]) == 0
    assert (tmp_path / "prev" / "x_middle.png").exists() and (tmp_path / "prev" / "x.mp4").exists()
    assert main(["info", str(tmp_path / "missing.avi")]) == 1
    assert "missing.avi" in capsys.readouterr().err


def test_demo_passes_fit_region_to_its_sampling(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr("echokdm.demo.run_demo", lambda out, **kwargs: calls.append(kwargs))
    assert main(["demo", "--quick", "--fit-region"]) == 0
    assert main(["demo", "--quick"]) == 0
    assert main(["demo", "--quick", "--paper-sampler", "--fit-region"]) == 0
    assert calls[0]["settings"].sampling.fit_region is True
    assert calls[1]["settings"].sampling.fit_region is False  # the default
    assert calls[2]["settings"].sampling.fit_region is True  # given over the paper's sampler
