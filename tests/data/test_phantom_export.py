"""Phantom cohorts written in every format and read back through the package's readers."""

import numpy as np
import pandas as pd
import pytest

from echokdm.cli import main
from echokdm.data.manifest import load_manifest, read_clip
from echokdm.data.phantom import load_npz
from echokdm.data.phantom.export import PHANTOM_FORMATS, write_cohort

SMALL = dict(n_patients=2, seed=3, size=64, fps=25.0, n_beats=0.8, progress=False)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohorts")
    return {fmt: write_cohort(root / fmt, format=fmt, **SMALL) for fmt in PHANTOM_FORMATS}


@pytest.mark.parametrize("fmt", PHANTOM_FORMATS)
def test_cohort_reads_back_as_written(cohorts, fmt):
    result = cohorts[fmt]
    assert result.skipped == []
    manifest = load_manifest(result.out / "manifest.csv")
    truth = pd.read_csv(result.out / "ground_truth.csv")
    assert len(manifest) == len(truth) == 2
    for _, row in manifest.iterrows():
        t = truth.set_index("clip_id").loc[row.clip_id]
        gt = load_npz(result.out / t.npz)
        cine = read_clip(row)
        assert cine.frames.shape == gt.frames.shape
        # 8-bit storage everywhere; MJPEG in the EchoNet AVIs adds a little more
        tol = 0.05 if fmt == "echonet" else 0.5 / 255 + 1e-6
        assert np.abs(cine.frames - gt.frames).mean() < (0.01 if fmt == "echonet" else tol)
        assert cine.fps == pytest.approx(gt.fps, rel=1e-3)
        assert row.ef_reference == pytest.approx(t.ef_percent, rel=1e-6)
        assert row.ef_reference == pytest.approx(100 * (t.edv_ml - t.esv_ml) / t.edv_ml, rel=1e-9)
        if fmt != "echonet":
            assert cine.spacing_mm == pytest.approx(gt.spacing_mm, rel=1e-4)
        if fmt in ("camus", "nifti"):
            np.testing.assert_array_equal(cine.masks, gt.masks)
        if fmt == "echonet":
            for frame in (int(gt.es_frames[0]), int(gt.ed_frames[0])):
                np.testing.assert_allclose(cine.tracings[frame], gt.tracings(frame), atol=1e-4)
            assert set(cine.tracings) == {int(gt.es_frames[0]), int(gt.ed_frames[0])}


def test_cohort_is_deterministic_and_refuses_to_overwrite(cohorts, tmp_path):
    again = write_cohort(tmp_path / "again", format="nifti", **SMALL)
    a = load_npz(again.out / "ground_truth" / "phantom0000.npz")
    b = load_npz(cohorts["nifti"].out / "ground_truth" / "phantom0000.npz")
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    with pytest.raises(FileExistsError, match="manifest.csv"):
        write_cohort(tmp_path / "again", format="nifti", **SMALL)
    splits = pd.read_csv(again.out / "ground_truth.csv")["split"]
    assert set(splits) <= {"train", "val", "test"}


def test_phantom_command(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", "--patients", "2", "--out", str(out), "--format", "dicom", "--size", "64",
                 "--beats", "0.6", "--fps", "25", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 synthetic dicom clip(s)" in printed and "manifest.csv" in printed
    assert len(list((out / "dicom").glob("*.dcm"))) == 2
    assert main(["manifest", "--check", str(out / "manifest.csv")]) == 0
