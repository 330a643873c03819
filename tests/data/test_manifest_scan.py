"""Building manifests by scanning folders of every format, with some bad files among the good."""

import numpy as np
import pandas as pd
import pytest

from echokdm.data.manifest import check_manifest, load_manifest, read_clip, scan_folder, write_manifest
from echokdm.io import write_camus_patient, write_dicom, write_nifti, write_video
from echokdm.io.echonet import write_echonet_dataset


def _frames(n=6, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((h, w)).astype(np.float32)
    return np.stack([np.roll(base, t, axis=1) for t in range(n)])


def test_scan_video_folder_finishes_good_files_and_lists_bad(tmp_path):
    for p in ("p1", "p2", "p3"):
        for k in range(2):
            write_video(tmp_path / p / f"loop{k}.avi", _frames(seed=k), fps=25)
    (tmp_path / "p3" / "broken.avi").write_bytes(b"RIFF....not a video")
    (tmp_path / "notes.txt").write_text("ignored")
    scan = scan_folder(tmp_path, "video", patient_from="folder", progress=False, seed=1)
    m = scan.manifest
    assert len(m) == 6 and set(m["patient_id"]) == {"p1", "p2", "p3"}
    assert sorted(m["clip_id"])[:2] == ["p1/loop0", "p1/loop1"]
    assert (m["n_frames"] == 6).all() and (m["fps"] == 25).all() and (m["height"] == 24).all()
    assert [p for p, _ in scan.skipped] == [str(tmp_path / "p3" / "broken.avi")]
    assert "broken.avi" in scan.skipped[0][0] and scan.skipped[0][1]
    # patient-level splits, deterministic
    assert (m.groupby("patient_id")["split"].nunique() == 1).all()
    again = scan_folder(tmp_path, "video", patient_from="folder", progress=False, seed=1).manifest
    assert again["split"].tolist() == m["split"].tolist()
    assert check_manifest(m) == []


def test_scan_dicom_folder_round_trips_through_manifest(tmp_path):
    data = tmp_path / "data"
    for i in range(3):
        write_dicom(data / f"study{i}" / "IM_0001", _frames(seed=i), fps=30, spacing_mm=(0.25, 0.25),
                    patient_id=f"HOSPITAL-ID-{i}")
    (data / "study2" / "IM_0002").write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    scan = scan_folder(data, "dicom", progress=False, reader_kwargs={"salt": "s3cret"})
    m = scan.manifest
    assert len(m) == 3 and len(scan.skipped) == 1 and "IM_0002" in scan.skipped[0][0]
    assert not m["patient_id"].str.contains("HOSPITAL").any()  # pseudonymised
    assert m["patient_id"].str.match(r"^P[0-9a-f]{12}$").all()
    np.testing.assert_allclose(m["spacing_mm"], 0.25)
    np.testing.assert_allclose(m["fps"], 30, rtol=1e-3)
    path = write_manifest(m, tmp_path / "manifest.csv")
    loaded = load_manifest(path)
    cine = read_clip(loaded.iloc[0])
    assert cine.frames.shape == (6, 24, 32) and cine.patient_id.startswith("P")


def test_scan_nifti_finds_mask_siblings(tmp_path):
    frames = _frames()
    write_nifti(tmp_path / "a.nii.gz", frames, spacing_mm=(0.3, 0.3), fps=20)
    labels = np.zeros(frames.shape, np.uint8)
    labels[:, 5:10, 5:10] = 1
    from echokdm.io import write_label_nifti

    write_label_nifti(tmp_path / "a_gt.nii.gz", labels, spacing_mm=(0.3, 0.3))
    write_nifti(tmp_path / "b.nii.gz", frames[:1])
    scan = scan_folder(tmp_path, "nifti", progress=False)
    m = scan.manifest.set_index("clip_id")
    assert sorted(m.index) == ["a", "b"]
    assert m.loc["a", "mask_path"].endswith("a_gt.nii.gz") and m.loc["b", "mask_path"] == ""
    assert m.loc["a", "fps"] == pytest.approx(20)
    cine = read_clip(scan.manifest.iloc[0])
    assert cine.masks is not None and cine.masks.sum() == 25 * 6


def test_scan_camus_keeps_sequences_and_references(tmp_path):
    frames = _frames(n=5)
    labels = np.zeros(frames.shape, np.uint8)
    labels[:, 4:12, 8:20] = 1
    labels[:, 12:14, 8:20] = 2
    for p in ("patient0001", "patient0002"):
        for view in ("2CH", "4CH"):
            write_camus_patient(tmp_path, p, view, frames, labels, spacing_mm=(0.31, 0.31), ed_frame=0, es_frame=3,
                                ef=55.0, edv=100.0, esv=45.0)
    scan = scan_folder(tmp_path, "camus", progress=False)
    m = scan.manifest
    assert len(m) == 4 and scan.skipped == []
    assert set(m["view"]) == {"A2C", "A4C"}
    assert (m["ef_reference"] == 55.0).all() and (m["edv_reference"] == 100.0).all()
    assert m["mask_path"].str.endswith("_gt.nii.gz").all()
    assert m.groupby("patient_id")["split"].nunique().max() == 1


def test_scan_echonet_keeps_its_split_and_flags_unlisted(tmp_path):
    items = [dict(file_name=f"0X{i:04d}", frames=_frames(n=8, h=16, w=16, seed=i), fps=50.0, ef=60.0 - i,
                  edv=100.0, esv=40.0 + i, split=s) for i, s in enumerate(["TRAIN", "VAL", "TEST"])]
    write_echonet_dataset(tmp_path, items)
    write_video(tmp_path / "Videos" / "0XEXTRA.avi", _frames(n=4, h=16, w=16), fps=50)
    scan = scan_folder(tmp_path, "echonet", progress=False)
    m = scan.manifest.set_index("clip_id")
    assert m.loc["0X0000", "split"] == "train" and m.loc["0X0002", "split"] == "test"
    assert m.loc["0X0001", "ef_reference"] == pytest.approx(59.0)
    assert any("0XEXTRA.avi" in p and "not listed" in r for p, r in scan.skipped)


def test_scan_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_folder(tmp_path / "nowhere", "video", progress=False)
    with pytest.raises(ValueError, match="format"):
        scan_folder(tmp_path, "jpeg", progress=False)
    scan = scan_folder(tmp_path, "video", progress=False)
    assert len(scan.manifest) == 0 and "no video files found" in scan.skipped[0][1]
    assert isinstance(scan.manifest, pd.DataFrame)


# ------------------------------------------------------------------ values the files lack (--fps, --clinical-csv)


def _camus_without_fps_or_ef(root, patients=("patient0001", "patient0002")):
    frames = _frames(n=5)
    labels = np.zeros(frames.shape, np.uint8)
    labels[:, 4:12, 8:20] = 1
    for p in patients:
        write_camus_patient(root, p, "4CH", frames, labels, spacing_mm=(0.3, 0.3), ed_frame=0, es_frame=3)
    return root


def _by_clip(scan):
    return scan.manifest.set_index("clip_id")


def test_camus_scan_leaves_fps_and_ef_empty_without_options(tmp_path):
    m = _by_clip(scan_folder(_camus_without_fps_or_ef(tmp_path), "camus", progress=False))
    assert m["fps"].isna().all() and m["ef_reference"].isna().all()


def test_fps_option_fills_only_clips_whose_files_state_none(tmp_path):
    write_nifti(tmp_path / "with_fps.nii.gz", _frames(), fps=20.0)
    write_nifti(tmp_path / "without.nii.gz", _frames())
    m = _by_clip(scan_folder(tmp_path, "nifti", progress=False, fps=30.0))
    assert m.loc["with_fps", "fps"] == pytest.approx(20.0)
    assert m.loc["without", "fps"] == pytest.approx(30.0)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        scan_folder(tmp_path, "nifti", progress=False, fps=0)


def test_clinical_csv_fills_fps_and_ef_by_patient_clip_and_file(tmp_path):
    root = _camus_without_fps_or_ef(tmp_path / "camus", ("patient0001", "patient0002", "patient0003"))
    table = tmp_path / "clinical.csv"
    table.write_text(
        "Patient_ID,clip_id,file,FPS,EF,edv,esv,age\n"
        "patient0001,,,25,55,,,61\n"                                    # the source's own ID (pseudonymised here)
        ",patient0002_4CH_half_sequence,,40,48.5,90,46.35,70\n"        # a clip
        ",,patient0003/patient0003_4CH_half_sequence.nii.gz,,33,,,52\n"  # a file, EF only
        "patient0009,,,30,60,,,40\n",                                  # matches nothing
        encoding="utf-8",
    )
    scan = scan_folder(root, "camus", progress=False, clinical=table, fps=50.0)
    m = _by_clip(scan)
    p1, p2, p3 = (f"patient000{i}_4CH_half_sequence" for i in (1, 2, 3))
    assert (m.loc[p1, "fps"], m.loc[p1, "ef_reference"]) == (25.0, 55.0)
    assert (m.loc[p2, "fps"], m.loc[p2, "ef_reference"], m.loc[p2, "edv_reference"]) == (40.0, 48.5, 90.0)
    assert (m.loc[p3, "fps"], m.loc[p3, "ef_reference"]) == (50.0, 33.0)  # --fps where the CSV gives none
    unused = [r for p, r in scan.skipped if p == str(table)]
    assert unused == ["line 5: patient_id (value not shown) matches no clip; row unused"]  # may be a real ID
    assert "patient0009" not in "".join(r for _, r in scan.skipped)
    assert check_manifest(scan.manifest) == []


def test_clinical_csv_with_the_manifest_pseudonym_and_a_clip_row_overriding_it(tmp_path):
    root = _camus_without_fps_or_ef(tmp_path / "camus", ("patient0001",))
    first = scan_folder(root, "camus", progress=False)
    pid = first.manifest["patient_id"].iloc[0]
    table = tmp_path / "clinical.csv"
    table.write_text(f"patient_id,clip_id,fps\n{pid},,30\n,patient0001_4CH_half_sequence,60\n", encoding="utf-8")
    scan = scan_folder(root, "camus", progress=False, clinical=table)
    assert scan.manifest["fps"].iloc[0] == 60.0
    assert any("fps 60 from clinical.csv line 3 replaces clinical.csv line 2 30" in r for _, r in scan.skipped)


def test_clinical_value_that_differs_from_the_file_replaces_it_with_a_note(tmp_path):
    write_nifti(tmp_path / "data" / "a.nii.gz", _frames(), fps=20.0)
    table = tmp_path / "clinical.csv"
    table.write_text("file,fps\na.nii.gz,25\n", encoding="utf-8")
    scan = scan_folder(tmp_path / "data", "nifti", progress=False, clinical=table)
    assert scan.manifest["fps"].iloc[0] == 25.0
    assert any("fps 25 from clinical.csv line 2 replaces the file's 20" in r for _, r in scan.skipped)


@pytest.mark.parametrize("text, match", [
    ("patient,score\np1,3\n", "needs a column naming the clip or patient"),
    ("clip_id,age\na,3\n", "at least one of fps, ef_reference"),
    ("clip_id,ef_reference\na,150\nb,-2\n", "line 2 .*ef_reference must be <= 100.*line 3 .*must be >= 0"),
    ("clip_id,fps\na,0\n", r"line 2 .*fps must be > 0"),
    ("clip_id,fps\na,fast\n", "fps is not a number: 'fast'"),
    ("clip_id,fps\na,30\na,25\n", "line 3: clip_id 'a' already given on line 2"),
    ("clip_id,fps\n,30\n", "line 2: no clip_id given"),
    ("clip_id,edv,esv\na,40,60\n", "esv_reference 60 exceeds edv_reference 40"),
])
def test_bad_clinical_csv_is_refused_before_any_clip_is_read(tmp_path, text, match):
    from echokdm.errors import ReadError

    write_nifti(tmp_path / "data" / "a.nii.gz", _frames())
    table = tmp_path / "clinical.csv"
    table.write_text(text, encoding="utf-8")
    read = []
    with pytest.raises(ReadError, match=match) as info:
        scan_folder(tmp_path / "data", "nifti", progress=False, clinical=table, on_item=read.append)
    assert str(table) in str(info.value) and read == []


def test_clinical_csv_in_latin1_names_the_line(tmp_path):
    from echokdm.errors import ReadError

    table = tmp_path / "clinical.csv"
    table.write_bytes("clip_id,fps,comment\na,30,ok\nb,30,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(ReadError, match="line 3, column 9: byte 0xe9.*re-save the file as UTF-8"):
        scan_folder(tmp_path, "nifti", progress=False, clinical=table)
    with pytest.raises(FileNotFoundError, match="no such clinical CSV"):
        scan_folder(tmp_path, "nifti", progress=False, clinical=tmp_path / "missing.csv")


def test_cli_manifest_with_fps_and_clinical_csv(tmp_path, capsys):
    from echokdm.cli import main

    root = _camus_without_fps_or_ef(tmp_path / "camus")
    table = tmp_path / "clinical.csv"
    table.write_text("patient_id,ef_reference\npatient0001,58\npatient0002,35\n", encoding="utf-8")
    out = tmp_path / "camus.csv"
    assert main(["manifest", str(root), "--format", "camus", "-o", str(out), "--fps", "30",
                 "--clinical-csv", str(table), "--no-progress"]) == 0
    m = load_manifest(out).set_index("clip_id")
    assert (m["fps"] == 30.0).all()
    assert m.loc["patient0001_4CH_half_sequence", "ef_reference"] == 58.0
    assert m.loc["patient0002_4CH_half_sequence", "ef_reference"] == 35.0


def test_files_that_are_not_of_the_heart_are_flagged_or_left_out(tmp_path):
    """A folder as a PACS export gives it: pydicom's real cardiac cine beside its lymph-node and obstetric frames. By
    default all three are listed, the two with why their header says they are not echocardiograms; with
    skip_non_cardiac only the heart is, the others listed as left out."""
    import shutil
    import warnings
    from pathlib import Path

    import pydicom.data
    import pydicom.examples

    from echokdm.data.manifest import scan_folder

    (tmp_path / "scans").mkdir()
    shutil.copy(pydicom.examples.get_path("ybr_color"), tmp_path / "scans" / "heart.dcm")
    shutil.copy(pydicom.data.get_testdata_file("examples_jpeg2k.dcm"), tmp_path / "scans" / "node.dcm")
    shutil.copy(pydicom.data.get_testdata_file("examples_palette.dcm"), tmp_path / "scans" / "ob.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = scan_folder(tmp_path / "scans", "dicom", progress=False)
        cardiac = scan_folder(tmp_path / "scans", "dicom", progress=False, skip_non_cardiac=True)
    assert len(kept.manifest) == 3
    flagged = {Path(p).name: r for p, r in kept.skipped}
    assert "warning (clip kept)" in flagged["node.dcm"] and "SMALL PARTS" in flagged["node.dcm"]
    assert "OBSTETRICAL" in flagged["ob.dcm"] and "heart.dcm" not in flagged
    assert [Path(p).name for p in cardiac.manifest["path"]] == ["heart.dcm"]
    left_out = {Path(p).name: r for p, r in cardiac.skipped}
    assert left_out["node.dcm"].endswith("clip left out") and "warning" not in left_out["ob.dcm"]
