"""Keypoint transforms (array and dictionary): masks/tracings -> keypoints -> masks, images, heatmaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echokdm.adapters.echo import render_keypoints
from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.keypoints import KeypointError
from echokdm.transforms import (
    BloodPoolKeypoints,
    BloodPoolKeypointsD,
    BloodPoolKeypointsd,
    BloodPoolKeypointsDict,
    KeypointsToHeatmaps,
    KeypointsToHeatmapsd,
    KeypointsToMask,
    KeypointsToMaskd,
    RenderKeypoints,
    RenderKeypointsd,
    TracingsToKeypoints,
    TracingsToKeypointsd,
)


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(0, 0), n_frames=3, size=64)


# -- BloodPoolKeypoints ------------------------------------------------------------------------


def test_blood_pool_keypoints_numpy_sequence(clip):
    kp = BloodPoolKeypoints()(clip.masks)
    assert isinstance(kp, np.ndarray) and kp.shape == (3, 40, 2) and kp.dtype == np.float32
    assert np.abs(kp - clip.keypoints).max() < 1.0


def test_blood_pool_keypoints_torch_and_layouts(clip):
    ref = BloodPoolKeypoints()(clip.masks)
    out = BloodPoolKeypoints()(torch.as_tensor(clip.masks))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 40, 2)
    np.testing.assert_allclose(out.numpy(), ref)
    single = BloodPoolKeypoints()(clip.masks[1])
    assert single.shape == (40, 2)
    np.testing.assert_allclose(single, ref[1])
    channel_first = BloodPoolKeypoints()(clip.masks[1:2])
    assert channel_first.shape == (1, 40, 2)
    np.testing.assert_allclose(channel_first[0], ref[1])


def test_blood_pool_keypoints_bad_frame_raise_or_nan(clip):
    masks = clip.masks.copy()
    masks[1] = 0
    with pytest.raises(KeypointError, match="mask 1: mask is empty"):
        BloodPoolKeypoints()(masks)
    with pytest.raises(KeypointError, match=r"mask \(0, 1\): mask is empty"):
        BloodPoolKeypoints()(masks[None])  # (1, T, H, W): the index names both axes
    kp, flags = BloodPoolKeypoints(on_error="nan").with_flags(masks)
    assert np.isnan(kp[1]).all() and np.isfinite(kp[[0, 2]]).all()
    assert flags[0] == "" and flags[1] == "failed: mask is empty"
    with pytest.raises(ValueError, match="on_error"):
        BloodPoolKeypoints(on_error="skip")


def test_blood_pool_keypoints_flags_observations(clip):
    mask = clip.masks[0].copy()
    mask[2:5, 2:5] = 1  # a second component
    kp, flags = BloodPoolKeypoints().with_flags(mask)
    assert isinstance(flags, str) and "several components" in flags
    assert np.isfinite(kp).all()


def test_blood_pool_keypoints_dict(clip):
    masks = clip.masks.copy()
    masks[2] = 0
    data = {"mask": masks, "image": clip.frames, "id": "p0"}
    out = BloodPoolKeypointsd("mask", output_keys="keypoints", on_error="nan")(data)
    assert set(data) == {"mask", "image", "id"}  # input not mutated
    assert out["mask"] is masks and out["image"] is clip.frames and out["id"] == "p0"
    assert out["keypoints"].shape == (3, 40, 2) and np.isnan(out["keypoints"][2]).all()
    assert out["keypoints_flags"] == ["", "", "failed: mask is empty"]
    in_place = BloodPoolKeypointsd("mask")({"mask": torch.as_tensor(clip.masks)})
    assert isinstance(in_place["mask"], torch.Tensor) and in_place["mask"].shape == (3, 40, 2)
    assert "mask_flags" in in_place
    assert BloodPoolKeypointsD is BloodPoolKeypointsDict is BloodPoolKeypointsd
    with pytest.raises(KeyError):
        BloodPoolKeypointsd("missing")(data)
    assert BloodPoolKeypointsd("missing", allow_missing_keys=True)(data).keys() == data.keys()


# -- TracingsToKeypoints -----------------------------------------------------------------------


def test_tracings_to_keypoints_forms(clip):
    conv = TracingsToKeypoints()
    one = conv(clip.tracings(1))
    assert one.shape == (40, 2) and one.dtype == np.float32
    assert np.abs(one - clip.keypoints[1]).max() < 0.05  # the phantom's chords are the design chords
    stacked = conv(np.stack([clip.tracings(0), clip.tracings(2)]))
    np.testing.assert_allclose(stacked[1], conv(clip.tracings(2)))
    as_dict = conv({0: clip.tracings(0), 2: clip.tracings(2)})
    assert set(as_dict) == {0, 2}
    np.testing.assert_allclose(as_dict[2], stacked[1])
    tensor = conv(torch.as_tensor(clip.tracings(1)))
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), one)


def test_tracings_to_keypoints_errors_and_dict(clip):
    bad = np.zeros((2, 4), np.float32)
    with pytest.raises(KeypointError, match="tracing of frame 5"):
        TracingsToKeypoints()({5: bad})
    data = {"tracings": {0: clip.tracings(0), 5: bad}, "other": 1}
    out = TracingsToKeypointsd("tracings", output_keys="kp", on_error="nan")(data)
    assert out["other"] == 1 and out["tracings"] is data["tracings"] and "kp" not in data
    assert np.isfinite(out["kp"][0]).all() and np.isnan(out["kp"][5]).all()
    assert out["kp_flags"][0] == "" and out["kp_flags"][5].startswith("failed: a tracing needs")


# -- KeypointsToMask ---------------------------------------------------------------------------


def test_keypoints_to_mask_matches_phantom_masks(clip):
    masks = KeypointsToMask((64, 64))(clip.keypoints)
    assert masks.shape == (3, 64, 64) and masks.dtype == np.uint8
    inter = (masks & clip.masks).sum()
    union = (masks | clip.masks).sum()
    assert inter / union > 0.9
    tensor = KeypointsToMask()(torch.as_tensor(clip.keypoints), spatial_size=(64, 64))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.uint8
    np.testing.assert_array_equal(tensor.numpy(), masks)
    with pytest.raises(ValueError, match="spatial_size"):
        KeypointsToMask()(clip.keypoints)
    with pytest.raises(ValueError, match=r"\(\.\.\., 40, 2\)"):
        KeypointsToMask((64, 64))(clip.keypoints[:, :39])


def test_keypoints_to_mask_dict_uses_ref_key(clip):
    data = {"keypoints": clip.keypoints, "image": np.zeros((3, 48, 40), np.float32)}
    out = KeypointsToMaskd("keypoints", ref_key="image", output_keys="mask")(data)
    assert out["mask"].shape == (3, 48, 40) and out["keypoints"] is clip.keypoints
    assert "mask" not in data
    with pytest.raises(ValueError, match="ref_key"):
        KeypointsToMaskd("keypoints")
    with pytest.raises(KeyError, match="ref_key 'nope'"):
        KeypointsToMaskd("keypoints", ref_key="nope")(data)


# -- RenderKeypoints ---------------------------------------------------------------------------


def test_render_keypoints_transform(clip):
    images = RenderKeypoints((64, 64))(clip.keypoints)
    assert images.shape == (3, 3, 64, 64) and images.dtype == np.float32
    np.testing.assert_array_equal(images[1], render_keypoints(clip.keypoints[1], (64, 64)))
    tensor = RenderKeypoints((64, 64), thickness=2.0)(torch.as_tensor(clip.keypoints[0]))
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3, 64, 64)
    np.testing.assert_allclose(tensor.numpy(), render_keypoints(clip.keypoints[0], (64, 64), thickness=2.0))


def test_render_keypoints_custom_renderer_and_dict(clip):
    calls = []

    def one_channel(kp, shape, thickness):
        calls.append(kp.shape)
        return np.ones((1, *shape), np.float32) * thickness

    out = RenderKeypoints((8, 9), thickness=0.5, renderer=one_channel)(np.zeros((2, 5, 2)))
    assert out.shape == (2, 1, 8, 9) and np.all(out == 0.5) and calls == [(5, 2), (5, 2)]
    data = {"kp": clip.keypoints, "image": clip.frames}
    res = RenderKeypointsd("kp", ref_key="image", output_keys="cond")(data)
    assert res["cond"].shape == (3, 3, 64, 64) and res["kp"] is clip.keypoints and "cond" not in data


# -- KeypointsToHeatmaps -----------------------------------------------------------------------


def test_heatmaps_peak_at_keypoints_and_nan_is_zero():
    kp = np.array([[3.0, 5.0], [10.0, 2.0], [np.nan, np.nan]], np.float32)
    maps = KeypointsToHeatmaps((12, 16), sigma=1.5)(kp)
    assert maps.shape == (3, 12, 16) and maps.dtype == np.float32
    assert maps[0, 5, 3] == pytest.approx(1.0) and np.unravel_index(maps[0].argmax(), (12, 16)) == (5, 3)
    assert maps[1, 2, 10] == pytest.approx(1.0)
    assert maps[0, 5, 4] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-5)
    assert maps[2].max() == 0.0
    tensor = KeypointsToHeatmaps(sigma=1.5)(torch.as_tensor(kp), spatial_size=(12, 16))
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), maps)
    with pytest.raises(ValueError, match="sigma"):
        KeypointsToHeatmaps(sigma=0)


def test_heatmaps_dict_sequence(clip):
    out = KeypointsToHeatmapsd("kp", ref_key="image", sigma=2.0, output_keys="maps")(
        {"kp": clip.keypoints, "image": clip.frames})
    assert out["maps"].shape == (3, 40, 64, 64)
    x, y = np.round(clip.keypoints[1, 7]).astype(int)
    assert out["maps"][1, 7, y, x] > 0.8
