"""Segmentation training on a tiny phantom cohort: it learns, checkpoints, resumes and segments."""

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.data.manifest import load_manifest, read_clip
from echokdm.data.phantom.export import write_cohort
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.echo.segmentation_training import (
    _evaluate,
    dice_scores,
    labelled_frames,
    load_seg_config,
    segment_manifest,
    train_segmentation,
)

TINY = {"model": {"channels": [8, 16, 32], "num_res_units": 1}, "data": {"size": 64},
        "train": {"steps": 160, "batch_size": 8, "lr": 0.003, "val_every": 80, "seed": 1}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_cohort")
    write_cohort(out, n_patients=5, format="camus", seed=5, size=64, fps=25.0, n_beats=0.6, progress=False)
    return out / "manifest.csv"


def test_dice_scores():
    a = np.zeros((3, 4, 4), np.uint8)
    b = a.copy()
    a[0, :2] = 1
    b[0, :2] = 1
    a[1, :2] = 1
    b[1, 1:3] = 1
    np.testing.assert_allclose(dice_scores(a, b), [1.0, 0.5, 1.0])


def test_model_round_trip(tmp_path):
    model = LVSegmentationNet(channels=(4, 8), num_res_units=1, sample_size=32)
    model.save_pretrained(tmp_path / "m")
    again = LVSegmentationNet.from_pretrained(tmp_path / "m")
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(model(x), again(x))
    assert again.predict_masks(torch.rand(3, 40, 50)).shape == (3, 40, 50)


@pytest.mark.slow
def test_training_learns_checkpoints_resumes_and_segments(cohort, tmp_path):
    manifest = load_manifest(cohort)
    config = load_seg_config(None, TINY)
    val = labelled_frames(manifest, "val", 64, progress=False)
    torch.manual_seed(1)
    untrained, _ = _evaluate(LVSegmentationNet(channels=(8, 16, 32), num_res_units=1, sample_size=64), val)

    run = tmp_path / "run"
    result = train_segmentation(config, cohort, run, progress=False)
    assert result["steps"] == 160 and result["validated_on"] == "val"
    assert result["best_dice"] > max(0.6, untrained + 0.2), (result, untrained)
    for name in ("config.yaml", "git.txt", "log.csv", "best/config.json", "last/trainer_state.pt"):
        assert (run / name).exists(), name
    log = pd.read_csv(run / "log.csv")
    assert log["step"].tolist() == [80, 160]
    assert load_seg_config(run / "config.yaml") == config  # the run folder rebuilds the config

    with pytest.raises(FileExistsError, match="--resume"):
        train_segmentation(config, cohort, run, progress=False)
    longer = load_seg_config(None, {**TINY, "train": {**TINY["train"], "steps": 200}})
    resumed = train_segmentation(longer, cohort, run, resume=True, progress=False)
    assert resumed["steps"] == 200 and pd.read_csv(run / "log.csv")["step"].tolist() == [80, 160, 200]

    table, skipped = segment_manifest(cohort, run / "best", tmp_path / "seg", progress=False)
    assert skipped == [] and len(table) == len(manifest)
    assert (table["n_labelled"] == table["n_frames"]).all() and table["dice"].between(0, 1).all()
    masks = np.load(tmp_path / "seg" / table["masks"].iloc[0])["masks"]
    assert masks.shape == (table["n_frames"].iloc[0], 64, 64) and masks.dtype == np.uint8
    assert table.loc[table.split == "train", "dice"].mean() > 0.6
    with pytest.raises(FileExistsError, match="segmentation.csv"):
        segment_manifest(cohort, run / "best", tmp_path / "seg", progress=False)


@pytest.mark.parametrize("elastic_px", [0.0, 3.0])
def test_augmentation_moves_frame_and_mask_together(elastic_px):
    """The same geometry for frame and mask (the frame here is the mask itself, so the augmented
    frame's bright pixels are the augmented mask), and the elastic deformation does deform."""
    from echokdm.echo.segmentation_training import _augment
    from echokdm.geometry.keypoints import keypoints_to_mask

    t = (np.arange(20) + 0.5) / 20
    half = 12 * np.sqrt(1 - t**2)
    kp = np.concatenate([np.stack([32 - half, 54 - 40 * t], 1), np.stack([32 + half, 54 - 40 * t], 1)[::-1]])
    mask = torch.from_numpy(keypoints_to_mask(kp, (64, 64)).astype(np.float32))[None, None].repeat(8, 1, 1, 1)
    x, y = _augment(mask.clone(), mask.clone(), torch.Generator().manual_seed(0), elastic_px)
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    x, inside = x.numpy(), y.numpy() > 0.5
    top = x.max(axis=(1, 2, 3), keepdims=True)  # the gain: fully inside pixels
    assert not (inside & (x == 0)).any(), "mask pixels where the frame is empty"
    assert not (~inside & (x >= top - 1e-6)).any(), "frame interior outside the mask"
    assert ((x > 0.5 * top) == inside).mean(axis=(1, 2, 3)).min() > 0.99  # they differ only on the boundary
    # compared with the affine alone (same random draws), the deformation moves the boundary
    _, y0 = _augment(mask.clone(), mask.clone(), torch.Generator().manual_seed(0), 0.0)
    changed = (y0 != y).float().mean().item()
    assert (changed > 0.005) if elastic_px else (changed == 0.0)


def _tiny_net(seed: int = 0) -> LVSegmentationNet:
    torch.manual_seed(seed)
    return LVSegmentationNet(channels=(4, 8), num_res_units=1, sample_size=32)


def _fan(shape, box):
    """A sector-like region: a triangle widening downwards inside ``box`` (r0, r1, c0, c1)."""
    r0, r1, c0, c1 = box
    fan = np.zeros(shape, bool)
    for r in range(r0, r1):
        half = (c1 - c0) / 2 * (r - r0 + 1) / (r1 - r0)
        mid = (c0 + c1) / 2
        fan[r, int(np.floor(mid - half)):int(np.ceil(mid + half))] = True
    return fan


def test_predict_masks_in_a_region_sees_only_the_sector_box():
    """A small fan in a large frame with bright text around it: with ``region`` the network sees exactly the
    sector's box, black outside the sector (as if the file had been cropped), and nothing outside it is LV."""
    rng = np.random.default_rng(0)
    frames = rng.random((3, 80, 120)).astype(np.float32)
    frames[:, 2:8, 5:60] = 1.0  # burned-in text outside the fan
    fan = _fan((80, 120), (20, 70, 40, 100))
    net = _tiny_net()
    got = net.predict_masks(torch.from_numpy(frames), region=fan).numpy()
    assert got.shape == (3, 80, 120) and got.dtype == np.uint8
    assert not got[:, ~fan].any()
    cropped = (frames * fan)[:, 20:70, 40:100]
    expected = net.predict_masks(torch.from_numpy(np.ascontiguousarray(cropped))).numpy() * fan[None, 20:70, 40:100]
    np.testing.assert_array_equal(got[:, 20:70, 40:100], expected)
    # the text changes nothing once a region is given; without one it reaches the network
    quiet = frames.copy()
    quiet[:, 2:8, 5:60] = 0.0
    np.testing.assert_array_equal(net.predict_masks(torch.from_numpy(quiet), region=fan).numpy(), got)


def test_predict_masks_region_filling_the_frame_is_not_resampled():
    rng = np.random.default_rng(1)
    frames = rng.random((2, 32, 32)).astype(np.float32)
    fan = np.ones((32, 32), bool)
    fan[0, :] = False  # the sector's box misses one row: 31 of 32 rows, kept as the whole frame
    fan[:, :1] = False  # and one column
    net = _tiny_net(1)
    got = net.predict_masks(torch.from_numpy(frames), region=fan).numpy()
    expected = net.predict_masks(torch.from_numpy(frames * fan)).numpy() * fan
    np.testing.assert_array_equal(got, expected)


def test_predict_masks_region_errors():
    net = _tiny_net()
    frames = torch.zeros((1, 40, 40))
    with pytest.raises(ValueError, match="does not match"):
        net.predict_masks(frames, region=np.ones((30, 40), bool))
    with pytest.raises(ValueError, match="empty"):
        net.predict_masks(frames, region=np.zeros((40, 40), bool))


def test_segment_manifest_segments_a_scanner_cine_inside_its_fan(tmp_path):
    """``echokdm segment`` on pydicom's real cine as the scanner wrote it (text and an ECG around the fan):
    nothing outside the fan is LV, and the LV found is the one the file cropped to its fan gives."""
    import shutil
    import warnings

    import pydicom.examples

    from echokdm.data.manifest import scan_folder
    from echokdm.io.fan import fan_mask_or_none
    from echokdm.pretrained import pretrained_path

    (tmp_path / "dicom").mkdir()
    shutil.copy(pydicom.examples.get_path("ybr_color"), tmp_path / "dicom" / "cine.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its calibration region belongs to another image size
        scan = scan_folder(tmp_path / "dicom", "dicom", progress=False)
        scan.manifest.to_csv(tmp_path / "manifest.csv", index=False)
        table, skipped = segment_manifest(tmp_path / "manifest.csv", pretrained_path("seg_phantom_112"),
                                          tmp_path / "seg", progress=False)
        cine = read_clip(scan.manifest.iloc[0])
    assert skipped == [] and len(table) == 1
    stored = np.load(tmp_path / "seg" / table["masks"].iloc[0])
    masks, network = stored["masks"], stored["network"]
    fan = fan_mask_or_none(cine)
    # the network runs on through the open mitral valve on diastolic frames: those are cut at the annulus
    # line, the network's own masks kept beside them
    assert table["frames_cut"].iloc[0] >= 5 and "cut at the annulus line" in table["repair_note"].iloc[0]
    assert masks.dtype == np.uint8 and masks.shape == network.shape
    from scipy import ndimage

    assert all(not (masks[t].astype(bool) & ~ndimage.binary_fill_holes(network[t])).any() for t in range(len(masks)))
    extent = [np.ptp(np.nonzero(m)[0]) for m in masks]
    extent_network = [np.ptp(np.nonzero(m)[0]) for m in network]
    assert max(extent) < 0.85 * max(extent_network)  # the atrium is gone from the longest frames
    assert masks.shape == cine.frames.shape and fan is not None
    assert not masks[:, ~fan].any() and masks.any(axis=(1, 2)).all()
    rows = np.nonzero(masks)[1]
    assert np.median(rows) > 0.3 * masks.shape[1]  # not the caption at the top: the LV lies deep in the fan
    # echokdm keypoints / ef on these masks take the apex side from the sector (the transducer is at the top);
    # the masks alone vote "down" (a leak through the mitral valve tapers the base)
    from echokdm.geometry.keypoints import detect_apex_direction
    from echokdm.metrics.lv_function import ef_table, keypoints_table

    assert detect_apex_direction(network).name != "up"
    table = keypoints_table(tmp_path / "manifest.csv", segmentation=tmp_path / "seg", progress=False)
    assert table.clips["apex_direction"].tolist() == ["up"]
    assert (table.frames["mask_source"] == "segmentation").all() and table.frames["volume"].notna().all()
    assert 20 < ef_table(table).clips["ef"].iloc[0] < 60
    # --network-masks: the network's output as it is
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw, _ = segment_manifest(tmp_path / "manifest.csv", pretrained_path("seg_phantom_112"), tmp_path / "raw",
                                  progress=False, repair=False)
    raw_stored = np.load(tmp_path / "raw" / raw["masks"].iloc[0])
    assert raw_stored.files == ["masks"] and np.array_equal(raw_stored["masks"], network)
    assert "frames_cut" not in raw
