"""echokdm.geometry.resize: the one resize gives, bit for bit, what each of the six it replaced gave.

The reference functions below are the bodies of those six as they were before issue 19
(generation/loop.py ``_resize``, training/flow.py ``_resize_frames`` and ``_resize_flow``,
data/pairs.py ``resize_frames`` and ``resize_flow``, echo/segmentation_training.py ``_resize``).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from echokdm.geometry.resize import resize_flow, resize_images
from echokdm.models.ofnet import upsample_flow

# --- the old bodies, copied as references ------------------------------------------------------


def old_loop_resize(images, size):
    if tuple(images.shape[-2:]) == tuple(size):
        return np.asarray(images, dtype=np.float32)
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink).numpy()


def old_loop_flows(flows, size):
    """generation/loop.py ``_run_pipeline``: the flows back to the input size, in its pixels."""
    out = old_loop_resize(flows, size)
    out[:, 0] *= size[1] / flows.shape[-1]
    out[:, 1] *= size[0] / flows.shape[-2]
    return out


def old_training_resize_frames(frames, size):  # also data/pairs.py resize_frames, the same body
    t = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None]
    if tuple(t.shape[-2:]) != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return (t[:, 0].numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


def old_training_resize_flow(flow, size):
    return upsample_flow(torch.from_numpy(np.ascontiguousarray(flow, np.float32))[None], (size, size))[0].numpy()


def old_pairs_resize_flow(flow, size):
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    h, w = flow.shape[-2:]
    if (h, w) == (size, size):
        return flow
    out = F.interpolate(torch.from_numpy(flow)[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return (out.numpy() * np.array([size / w, size / h], np.float32)[:, None, None]).astype(np.float32)


def old_segmentation_resize(x, size, mode):
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    if t.shape[-2:] != (size, size):
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        t = F.interpolate(t, size=(size, size), mode=mode, **kwargs)
    return t[:, 0].numpy()


# --- the comparisons -------------------------------------------------------------------------------

SIZES = [(40, 56), (112, 112), (17, 23)]
TARGETS = [32, 112, 64, 17]


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("target", [(112, 112), (20, 28), (80, 30), (40, 56)])
def test_matches_the_generation_loop(hw, target):
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, *hw)).astype(np.float32)
    _same(resize_images(images, target, antialias=True), old_loop_resize(images, target))
    frame = rng.random(hw).astype(np.float32)  # (H, W), the loop's frame[None, None]
    _same(resize_images(frame, target, antialias=True), old_loop_resize(frame[None, None], target)[0, 0])
    flows = rng.normal(size=(4, 2, *hw)).astype(np.float32)
    _same(resize_flow(flows, target, antialias=True), old_loop_flows(flows, target))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("size", TARGETS)
def test_matches_the_training_and_pairs_frames(hw, size):
    frames = np.random.default_rng(1).random((3, *hw)).astype(np.float32)
    frames[0, 0, :3] = [-0.1, 1.2, 0.5 / 255]  # out of range and a rounding tie are clipped and rounded alike
    _same(resize_images(frames, size, dtype=np.uint8), old_training_resize_frames(frames, size))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("size", TARGETS)
def test_matches_the_training_and_pairs_flow(hw, size):
    flow = np.random.default_rng(2).normal(size=(2, *hw)).astype(np.float32) * 5
    _same(resize_flow(flow, size), old_training_resize_flow(flow, size))
    _same(resize_flow(flow, size), old_pairs_resize_flow(flow, size))
    _same(resize_flow(flow.astype(np.float16), size), old_pairs_resize_flow(flow.astype(np.float16), size))


@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("size", TARGETS)
def test_matches_the_segmentation_loader(hw, size):
    rng = np.random.default_rng(3)
    frames = rng.random((2, *hw)).astype(np.float32)
    masks = (rng.random((2, *hw)) > 0.5).astype(np.uint8)
    _same(resize_images(frames, size), old_segmentation_resize(frames, size, "bilinear"))
    _same(resize_images(masks, size, mode="nearest"), old_segmentation_resize(masks, size, "nearest"))
    old_u8 = np.round(old_segmentation_resize(frames, size, "bilinear") * 255).clip(0, 255).astype(np.uint8)
    _same(resize_images(frames, size, dtype=np.uint8), old_u8)


def test_contract():
    frames = np.random.default_rng(4).random((2, 3, 5, 8, 10)).astype(np.float32)
    out = resize_images(frames, (4, 5))
    assert out.shape == (2, 3, 5, 4, 5) and out.dtype == np.float32
    _same(out[1], resize_images(frames[1], (4, 5)))  # leading axes flattened and restored
    same = resize_images(frames, (8, 10))
    _same(same, frames)
    assert not np.shares_memory(same, frames)
    flow = np.ones((2, 40, 56), np.float32)
    np.testing.assert_allclose(resize_flow(flow, (20, 14))[:, 5, 5], [14 / 56, 20 / 40])
    with pytest.raises(ValueError, match="mode"):
        resize_images(frames, 4, mode="bicubic")
    with pytest.raises(ValueError, match="dtype"):
        resize_images(frames, 4, dtype=np.float64)
    with pytest.raises(ValueError, match="flow"):
        resize_flow(np.zeros((3, 4, 4)), 2)
