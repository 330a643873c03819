"""Tests of echokdm.metrics.lv_function: frame table, EF table, agreement and plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echokdm.data.manifest import load_manifest
from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.data.phantom.export import write_cohort
from echokdm.geometry.volumes import simpson_volume
from echokdm.metrics.lv_function import (
    KEYPOINT_COLUMNS,
    cine_keypoints,
    ef_agreement,
    ef_table,
    keypoints_table,
    plot_ef_agreement,
    write_table,
)


@pytest.fixture(scope="module")
def camus_cohort(tmp_path_factory):
    """Two phantom patients as CAMUS NIfTI (masks on every frame, spacing known)."""
    out = tmp_path_factory.mktemp("camus")
    write_cohort(out, 2, "camus", seed=3, fps=30.0, n_beats=1.3, progress=False)
    return out


@pytest.fixture(scope="module")
def echonet_cohort(tmp_path_factory):
    """Two phantom patients in the EchoNet-Dynamic layout (tracings on ED and ES only)."""
    out = tmp_path_factory.mktemp("echonet")
    write_cohort(out, 2, "echonet", seed=3, fps=30.0, n_beats=1.3, progress=False)
    return out


@pytest.fixture(scope="module")
def phantom_cine():
    clip = simulate_clip(sample_patient(5, 0), n_beats=1.0, fps=30.0, size=112)
    return clip, clip.to_cine()


def test_frame_table_from_masks_has_every_frame_and_the_design_columns(camus_cohort):
    result = keypoints_table(camus_cohort / "manifest.csv", progress=False)
    frames, manifest = result.frames, load_manifest(camus_cohort / "manifest.csv")
    assert result.skipped == []
    assert list(frames.columns[:5]) == ["clip_id", "patient_id", "dataset", "frame", "mask_source"]
    assert list(frames.columns[5:85]) == KEYPOINT_COLUMNS
    assert list(frames.columns[85:]) == ["volume", "volume_units", "flags", "apex_direction"]
    assert len(frames) == int(manifest["n_frames"].sum())
    assert set(frames["mask_source"]) == {"mask"} and set(frames["volume_units"]) == {"mL"}
    assert frames[KEYPOINT_COLUMNS].notna().all().all()
    assert set(frames["clip_id"]) == set(manifest["clip_id"])
    assert result.clips["all_labelled"].all()
    # EDV of a phantom LV is tens of mL, not mm³ or px³
    assert 20 < frames["volume"].max() < 400


def test_ef_from_phantom_masks_matches_the_true_ef(camus_cohort):
    result = ef_table(keypoints_table(camus_cohort / "manifest.csv", progress=False))
    clips = result.clips
    truth = pd.read_csv(camus_cohort / "ground_truth.csv")
    assert set(clips["method"]) == {"cardiac cycle"} and (clips["n_beats"] >= 1).all()
    assert np.allclose(np.sort(clips["ef_reference"]), np.sort(truth["ef_percent"]))
    assert clips["ef_error"].abs().mean() < 2.0
    assert ((clips["edv"] - clips["edv_reference"]).abs() / clips["edv_reference"]).max() < 0.05
    summary = ef_agreement(clips, n_boot=200)
    assert list(summary["dataset"]) == ["phantom-camus", "all"]
    row = summary.iloc[-1]
    assert row["n"] == 2 and row["mae"] < 2.0
    assert row["mae"] == pytest.approx(clips["ef_error"].abs().mean())
    assert row["bias"] == pytest.approx(clips["ef_error"].mean())


def test_echonet_tracings_give_two_frames_and_ef_from_ed_es(echonet_cohort):
    table = keypoints_table(echonet_cohort / "manifest.csv", progress=False)
    frames = table.frames
    assert set(frames["mask_source"]) == {"tracing"}
    assert frames.groupby("clip_id").size().tolist() == [2, 2]
    assert set(frames["volume_units"]) == {"px^3"}  # EchoNet AVIs carry no spacing
    clips = ef_table(table).clips
    assert set(clips["method"]) == {"labelled frames max/min"}
    assert (clips["edv"] > clips["esv"]).all()
    # tracings are the phantom's exact chords: EF agrees to rounding
    assert clips["ef_error"].abs().max() < 0.5


def test_tracings_win_over_their_own_outline_masks_but_not_over_full_masks(phantom_cine):
    clip, cine = phantom_cine
    assert set(cine_keypoints(cine)["mask_source"]) == {"mask"}  # masks on every frame
    traced = sorted(cine.tracings)
    labelled = cine.__class__(**{**cine.__dict__, "labelled_frames": np.array(traced)})
    rows = cine_keypoints(labelled)
    assert set(rows["mask_source"]) == {"tracing"} and rows["frame"].tolist() == traced
    kp = np.stack([rows[[f"x{i}" for i in range(40)]].to_numpy(), rows[[f"y{i}" for i in range(40)]].to_numpy()], -1)
    np.testing.assert_allclose(kp, clip.keypoints[traced], atol=0.05)
    np.testing.assert_allclose(rows["volume"], simpson_volume(clip.keypoints[traced], clip.spacing_mm), rtol=1e-3)


def test_smoothing_runs_only_over_consecutive_labelled_frames(phantom_cine):
    clip, cine = phantom_cine
    masks = np.zeros_like(cine.masks)
    keep = np.array([0, 1, 2, 10, 11, 12])
    masks[keep] = cine.masks[keep]
    part = cine.__class__(**{**cine.__dict__, "masks": masks, "labelled_frames": keep, "tracings": None})
    rows = cine_keypoints(part)
    assert rows["frame"].tolist() == keep.tolist() and set(rows["mask_source"]) == {"mask"}
    alone = cine_keypoints(cine.__class__(**{**part.__dict__, "frames": cine.frames[10:13], "masks": masks[10:13],
                                             "labelled_frames": None}))
    # the run 10-12 is smoothed on its own: same keypoints as that run alone
    np.testing.assert_allclose(rows[KEYPOINT_COLUMNS].to_numpy()[3:], alone[KEYPOINT_COLUMNS].to_numpy(), atol=1e-5)
    clips = ef_table(_as_table(rows, cine, all_labelled=False)).clips
    assert clips["method"].iloc[0] == "labelled frames max/min"
    assert "largest/smallest of 6 labelled frames" in clips["flags"].iloc[0]


def _as_table(rows, cine, all_labelled):
    from echokdm.metrics.lv_function import KeypointsTable

    info = pd.DataFrame([{"clip_id": cine.clip_id, "patient_id": cine.patient_id, "dataset": cine.dataset,
                          "n_frames": cine.n_frames, "fps": cine.fps, "mask_source": "mask", "n_labelled": len(rows),
                          "all_labelled": all_labelled, "volume_units": "mL", "ef_reference": np.nan,
                          "edv_reference": np.nan, "esv_reference": np.nan}])
    return KeypointsTable(frames=rows, clips=info, skipped=[])


def test_batch_finishes_good_clips_and_lists_every_skipped_item(camus_cohort, phantom_cine):
    _, cine = phantom_cine
    manifest = load_manifest(camus_cohort / "manifest.csv")
    bad_row = manifest.iloc[0].copy()
    bad_row["clip_id"], bad_row["path"] = "missing", str(camus_cohort / "nope.nii.gz")
    no_labels = manifest.iloc[0].copy()
    no_labels["clip_id"] = "unlabelled"
    broken_frame = manifest.iloc[0].copy()
    broken_frame["clip_id"] = "broken"
    frame = pd.DataFrame([manifest.iloc[0], bad_row, no_labels, broken_frame])

    def read(row):
        if row["clip_id"] == "missing":
            raise FileNotFoundError(f"{row['path']}: no such file")
        if row["clip_id"] == "unlabelled":
            return cine.__class__(**{**cine.__dict__, "masks": None, "tracings": None})
        if row["clip_id"] == "broken":
            masks = cine.masks.copy()
            masks[4] = 0
            return cine.__class__(**{**cine.__dict__, "masks": masks, "tracings": None})
        return cine

    result = keypoints_table(frame, read_clip=read, progress=False)
    reasons = dict(result.skipped)
    assert len(result.skipped) == 2
    assert any("missing" in k and "no such file" in v for k, v in reasons.items())
    assert any("unlabelled" in k and "no masks or tracings" in v for k, v in reasons.items())
    assert sorted(result.frames["clip_id"].unique()) == sorted(["broken", manifest.iloc[0]["clip_id"]])
    broken = result.frames[result.frames["clip_id"] == "broken"].set_index("frame")
    # an isolated empty mask is recovered from its neighbours, and says so
    assert broken.loc[4, "flags"].startswith("recovered: mask is empty; keypoints interpolated from frame(s) 3 and 5")
    assert broken[KEYPOINT_COLUMNS].notna().all().all() and np.isfinite(broken.loc[4, "volume"])
    # without its neighbours (two frames in a row and more) a frame stays failed and is listed
    result = keypoints_table(frame.iloc[[3]], read_clip=lambda row: cine.__class__(
        **{**cine.__dict__, "masks": np.concatenate([cine.masks[:2], 0 * cine.masks[2:]]), "tracings": None}),
        progress=False)
    assert any(k.endswith("broken frame 9") and v == "failed: mask is empty" for k, v in result.skipped)
    # the manifest's IDs are kept, not the reader's
    assert set(result.frames["patient_id"]) == {manifest.iloc[0]["patient_id"]}


def test_ef_table_skips_clips_without_a_beat_with_the_reason(phantom_cine):
    _, cine = phantom_cine
    rows = cine_keypoints(cine.__class__(**{**cine.__dict__, "labelled_frames": np.array([3]), "tracings": None}))
    result = ef_table(_as_table(rows, cine, all_labelled=False))
    assert np.isnan(result.clips["ef"].iloc[0])
    assert len(result.skipped) == 1 and "fewer than 2 labelled frames" in result.skipped[0][1]


def test_agreement_statistics_on_known_numbers():
    clips = pd.DataFrame({"dataset": ["a", "a", "b", "b"], "ef": [50.0, 62.0, 40.0, np.nan],
                          "ef_reference": [52.0, 60.0, 41.0, 55.0]})
    summary = ef_agreement(clips, n_boot=100).set_index("dataset")
    assert summary.loc["all", "n"] == 3
    assert summary.loc["all", "mae"] == pytest.approx((2 + 2 + 1) / 3)
    assert summary.loc["all", "bias"] == pytest.approx((-2 + 2 - 1) / 3)
    assert summary.loc["a", "bias"] == pytest.approx(0.0)
    assert np.isnan(summary.loc["b", "pearson_r"])  # one clip
    sd = np.std([-2.0, 2.0, -1.0], ddof=1)
    assert summary.loc["all", "loa_high"] == pytest.approx(summary.loc["all", "bias"] + 1.96 * sd)
    assert summary.loc["all", "mae_ci_low"] <= summary.loc["all", "mae"] <= summary.loc["all", "mae_ci_high"]
    assert ef_agreement(clips.assign(ef_reference=np.nan)).empty


def test_plots_and_tables_are_written_once_unless_overwrite(tmp_path):
    clips = pd.DataFrame({"dataset": ["a"] * 3, "ef": [50.0, 62.0, 40.0], "ef_reference": [52.0, 60.0, 41.0]})
    paths = plot_ef_agreement(clips, tmp_path)
    for p in paths.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError, match="ef_bland_altman.png"):
        plot_ef_agreement(clips, tmp_path)
    plot_ef_agreement(clips, tmp_path, overwrite=True)
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_ef_agreement(clips.assign(ef_reference=np.nan), tmp_path / "x")
    for name in ("t.csv", "t.parquet"):
        write_table(clips, tmp_path / name)
        with pytest.raises(FileExistsError, match=name):
            write_table(clips, tmp_path / name)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), clips)
    with pytest.raises(ValueError, match="parquet or .csv"):
        write_table(clips, tmp_path / "t.xlsx")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ef_bland_altman.png", "ef_scatter.png", "t.csv", "t.parquet"])  # no temporary files left


def test_segmentation_masks_fill_every_frame_of_traced_clips(tmp_path):
    """EchoNet-style clips traced on two frames get whole cycles from `echokdm segment` output."""
    import numpy as np
    import pandas as pd

    from echokdm.data.phantom import load_npz
    from echokdm.data.phantom.export import write_cohort
    from echokdm.metrics.lv_function import ef_table, keypoints_table

    cohort = write_cohort(tmp_path / "c", n_patients=2, format="echonet", seed=4, size=64, fps=25.0, n_beats=1.3,
                          progress=False)
    seg = tmp_path / "seg"
    (seg / "masks").mkdir(parents=True)
    rows = []
    for _, t in cohort.ground_truth.iterrows():  # stand-in for the model: the exact masks
        gt = load_npz(cohort.out / t.npz)
        np.savez_compressed(seg / "masks" / f"{t.clip_id}.npz", masks=gt.masks)
        rows.append({"clip_id": t.clip_id, "dataset": "phantom-echonet", "masks": f"masks/{t.clip_id}.npz"})
    pd.DataFrame(rows).to_csv(seg / "segmentation.csv", index=False)
    table = keypoints_table(cohort.out / "manifest.csv", segmentation=seg, progress=False)
    assert set(table.frames["mask_source"]) == {"segmentation"}
    assert (table.clips["n_labelled"] == table.clips["n_frames"]).all() and table.clips["all_labelled"].all()
    efs = ef_table(table).clips
    truth = cohort.ground_truth.set_index("clip_id")["ef_percent"]
    assert (efs.set_index("clip_id")["ef"] - truth).abs().max() < 2.5
    traced = keypoints_table(cohort.out / "manifest.csv", progress=False)
    assert set(traced.frames["mask_source"]) == {"tracing"} and (traced.clips["n_labelled"] == 2).all()


def test_the_ef_table_flags_a_file_that_is_not_of_the_heart(tmp_path):
    """pydicom's lymph-node frame measured with the packaged segmentation: its row in ef_per_clip.csv says the LV
    is not there (a batch's table is what researchers filter, not the console); the real cardiac cine's row does
    not."""
    import warnings

    import pydicom.data
    import pydicom.examples

    rows = [{"clip_id": name, "patient_id": "p", "dataset": "dicom", "path": path, "format": "dicom"}
            for name, path in (("node", pydicom.data.get_testdata_file("examples_jpeg2k.dcm")),
                               ("heart", pydicom.examples.get_path("ybr_color")))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = keypoints_table(pd.DataFrame(rows), segmentation="seg_phantom_112", progress=False)
    flags = ef_table(table).clips.set_index("clip_id")["flags"].fillna("")
    assert flags["node"].startswith("not an echocardiogram by its header (Image Type says SMALL PARTS)")
    assert "echocardiogram" not in flags["heart"]
    assert table.clips.set_index("clip_id").loc["heart", "header_note"] == ""
