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
