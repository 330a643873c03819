"""Tests of echokdm.generation.echonet_cohort: generated loops written in the EchoNet-Dynamic layout.

The EchoNet AVIs (MJPEG) are lossy: PSNR > 30 dB against the input frames.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.errors import EchoKDMWarning
from echokdm.generation.echonet_cohort import COHORT_CSV_NAME, write_echonet_cohort
from echokdm.geometry.keypoints import tracing_keypoints
from echokdm.geometry.volumes import simpson_volume
from echokdm.io.anonymise import pseudonymise
from echokdm.io.echonet import read_echonet_clip, read_echonet_filelist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _generated_loops import FPS, SPACING, lv_keypoints, make_loop, psnr


def test_echonet_cohort_round_trip(tmp_path):
    loops = {"synA": make_loop(), "synB": make_loop(spacing_mm=None, ef_achieved=None, ef_target=40.0)}
    with pytest.warns(EchoKDMWarning, match="pixel³"):
        root = write_echonet_cohort(tmp_path / "echonet", loops, split="val")
    filelist = read_echonet_filelist(root).set_index("FileName")
    assert filelist.loc["synA.avi", "EF"] == pytest.approx(52.5)  # ef_achieved
    assert filelist.loc["synB.avi", "EF"] == pytest.approx(40.0)  # ef_target when not achieved
    assert (filelist["Split"] == "VAL").all() and (filelist["FPS"] == FPS).all()
    volumes_ml = simpson_volume(loops["synA"].keypoints, SPACING)
    assert filelist.loc["synA.avi", "EDV"] == pytest.approx(volumes_ml.max(), rel=1e-5)
    assert filelist.loc["synA.avi", "ESV"] == pytest.approx(volumes_ml.min(), rel=1e-5)

    clip = read_echonet_clip(root, "synA")
    assert psnr(clip.frames, loops["synA"].frames) > 30.0 and clip.fps == pytest.approx(FPS)
    volumes = simpson_volume(loops["synA"].keypoints)
    es, ed = int(np.argmin(volumes)), int(np.argmax(volumes))
    assert list(clip.tracings) == [es, ed]  # ES listed first, as EchoNet's loader expects
    for frame, segments in clip.tracings.items():
        assert segments.shape == (21, 4)
        back = tracing_keypoints(segments).keypoints
        np.testing.assert_allclose(back, loops["synA"].keypoints[frame], atol=1e-3)

    side = pd.read_csv(root / COHORT_CSV_NAME).set_index("FileName")
    assert side.loc["synA", "volume_units"] == "mL" and side.loc["synB", "volume_units"] == "px^3"
    assert side.loc["synA", "patient_id"] == loops["synA"].patient_id
    assert (side.loc["synA", "ed_frame"], side.loc["synA", "es_frame"]) == (ed, es)


def test_echonet_cohort_traces_the_keypoints_re_detected_on_the_frames(tmp_path):
    """With re-detected keypoints behind ef_achieved, EF, EDV, ESV and the tracings all describe the
    frames (EF = (EDV - ESV) / EDV); the target keypoints' EF stays in the side table."""
    target = lv_keypoints(8)
    ed = int(np.argmax(simpson_volume(target)))
    detected = (target[ed] + 0.7 * (target - target[ed])).astype(np.float32)  # the frames move less
    detected[2] = np.nan  # one frame without keypoints
    v = simpson_volume(detected, SPACING)
    achieved = float(100 * (np.nanmax(v) - np.nanmin(v)) / np.nanmax(v))
    loop = make_loop(keypoints=target, detected_keypoints=detected, ef_achieved=achieved)
    root = write_echonet_cohort(tmp_path / "echonet", {"syn": loop})
    row = read_echonet_filelist(root).set_index("FileName").loc["syn.avi"]
    assert row["EF"] == pytest.approx(achieved, rel=1e-4)
    assert row["EDV"] == pytest.approx(np.nanmax(v), rel=1e-5) and row["ESV"] == pytest.approx(np.nanmin(v), rel=1e-5)
    assert 100 * (row["EDV"] - row["ESV"]) / row["EDV"] == pytest.approx(row["EF"], rel=1e-3)
    clip = read_echonet_clip(root, "syn")
    for frame, segments in clip.tracings.items():
        np.testing.assert_allclose(tracing_keypoints(segments).keypoints, detected[frame], atol=1e-3)
    side = pd.read_csv(root / COHORT_CSV_NAME).set_index("FileName").loc["syn"]
    vt = simpson_volume(target, SPACING)
    assert side["tracings_from"] == "frames"
    assert side["ef_keypoints"] == pytest.approx(100 * (vt.max() - vt.min()) / vt.max(), rel=1e-4)
    assert side["ef_keypoints"] > row["EF"] + 3
    # without a measured EF the target keypoints are traced
    root = write_echonet_cohort(tmp_path / "b", {"syn": make_loop(detected_keypoints=detected, ef_achieved=None)})
    assert pd.read_csv(root / COHORT_CSV_NAME)["tracings_from"].tolist() == ["keypoints"]


def test_echonet_cohort_names_unnamed_loops_and_refuses_existing_files(tmp_path):
    root = write_echonet_cohort(tmp_path, [make_loop(n_frames=6), make_loop(n_frames=6)])
    assert sorted(p.name for p in (root / "Videos").iterdir()) == ["synthetic_00000.avi", "synthetic_00001.avi"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Videos").mkdir()
    (tmp_path / "other" / "Videos" / "x.avi").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="x.avi"):
        write_echonet_cohort(tmp_path / "other", {"y": make_loop(n_frames=6), "x": make_loop(n_frames=6)})
    assert sorted(p.name for p in (tmp_path / "other").rglob("*")) == ["Videos", "x.avi"]


def test_echonet_cohort_takes_nan_ef_as_unknown(tmp_path):
    root = write_echonet_cohort(tmp_path / "a", {"c": make_loop(ef_achieved=float("nan"), ef_target=47.0)})
    assert read_echonet_filelist(root)["EF"].tolist() == [47.0]
    with pytest.raises(ValueError, match="'c'.*EF"):
        write_echonet_cohort(tmp_path / "b", {"c": make_loop(ef_achieved=None, ef_target=float("nan"))})


def test_echonet_cohort_names_a_loop_without_keypoints(tmp_path):
    keypoints = np.full((8, 40, 2), np.nan, np.float32)
    with pytest.raises(ValueError, match="'bad'.*40 keypoints"):
        write_echonet_cohort(tmp_path, {"bad": make_loop(keypoints=keypoints)})


def test_manifest_of_a_cohort_groups_loops_by_their_source_patient(tmp_path):
    """EchoNet has no patient column: without the side table, each loop would be its own patient,
    and a patient-level split or bootstrap would count loops of one heart as independent patients."""
    from echokdm.data.manifest import scan_folder

    other = pseudonymise("OTHER-SOURCE", salt="test")
    loops = {"synA": make_loop(), "synB": make_loop(ef_target=40.0), "synC": make_loop(patient_id=other)}
    root = write_echonet_cohort(tmp_path / "echonet", loops, split="train")
    manifest = scan_folder(root, "echonet").manifest.set_index("clip_id")
    assert len(manifest) == 3
    ids = {Path(str(c)).stem: p for c, p in manifest["patient_id"].items()}
    assert ids["synA"] == ids["synB"] == loops["synA"].patient_id
    assert ids["synC"] == other != ids["synA"]

    (root / COHORT_CSV_NAME).unlink()  # EchoNet-Dynamic itself: one clip per patient, as before
    alone = scan_folder(root, "echonet").manifest
    assert alone["patient_id"].nunique() == 3
