"""Flow metrics: known values, one value per sample, masks, numpy == torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from echokdm.geometry.flow import warp
from echokdm.metrics.flow import (
    endpoint_error,
    flow_mae,
    flow_rmse,
    keypoint_consistency,
    warped_mse,
    warped_ssim,
)


def _constant(dx, dy, h=8, w=10):
    flow = np.zeros((2, h, w), np.float32)
    flow[0], flow[1] = dx, dy
    return flow


def _image(h=24, w=28, seed=0):
    return np.random.default_rng(seed).random((h, w)).astype(np.float32)


# -- against a reference flow -------------------------------------------------------------------
@pytest.mark.parametrize("metric", [endpoint_error, flow_mae, flow_rmse])
def test_identical_flows_score_zero(metric):
    flow = np.random.default_rng(0).normal(size=(2, 8, 10)).astype(np.float32)
    assert metric(flow, flow) == 0.0


def test_constant_offset_known_values():
    flow, zero = _constant(3.0, -4.0), _constant(0.0, 0.0)
    assert endpoint_error(flow, zero) == pytest.approx(5.0)
    assert flow_mae(flow, zero) == pytest.approx(3.5)
    assert flow_rmse(flow, zero) == pytest.approx(math.sqrt(12.5))
    np.testing.assert_allclose(flow_mae(flow, zero, per_channel=True), [3.0, 4.0])
    np.testing.assert_allclose(flow_rmse(flow, zero, per_channel=True), [3.0, 4.0])
    assert isinstance(endpoint_error(flow, zero), float)  # numpy.float64 for one sample


def test_batches_give_one_value_per_sample():
    flows = np.stack([_constant(3.0, 4.0), _constant(1.0, 0.0), _constant(0.0, 0.0)])  # (3, 2, H, W)
    zero = np.zeros_like(flows)
    np.testing.assert_allclose(endpoint_error(flows, zero), [5.0, 1.0, 0.0])
    np.testing.assert_allclose(flow_mae(flows, zero), [3.5, 0.5, 0.0])
    np.testing.assert_allclose(flow_rmse(flows, zero), [math.sqrt(12.5), math.sqrt(0.5), 0.0])
    assert flow_mae(flows, zero, per_channel=True).shape == (3, 2)
    np.testing.assert_allclose(flow_rmse(flows, zero, per_channel=True)[0], [3.0, 4.0])


def test_masks_restrict_the_average():
    flow = _constant(0.0, 0.0)
    flow[0, :4] = 2.0  # error 2 in the top half, 0 in the bottom half
    zero = np.zeros_like(flow)
    top = np.zeros((8, 10), bool)
    top[:4] = True
    assert endpoint_error(flow, zero) == pytest.approx(1.0)
    assert endpoint_error(flow, zero, mask=top) == pytest.approx(2.0)
    assert endpoint_error(flow, zero, mask=(~top).astype(np.uint8)) == pytest.approx(0.0)
    np.testing.assert_allclose(flow_mae(flow, zero, mask=top, per_channel=True), [2.0, 0.0])
    assert flow_rmse(flow, zero, mask=top) == pytest.approx(math.sqrt(2.0))
    # one mask per sample, and an empty mask gives NaN
    flows, refs = np.stack([flow, flow]), np.zeros((2, 2, 8, 10))
    values = endpoint_error(flows, refs, mask=np.stack([top, np.zeros_like(top)]))
    assert values[0] == pytest.approx(2.0) and np.isnan(values[1])
    per_channel = flow_mae(flows, refs, mask=np.stack([top, ~top]), per_channel=True)
    np.testing.assert_allclose(per_channel, [[2.0, 0.0], [0.0, 0.0]])


def test_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(1)
    flows, refs = rng.normal(size=(2, 3, 2, 8, 10)).astype(np.float32)
    mask = rng.random((8, 10)) > 0.3
    for metric in (endpoint_error, flow_mae, flow_rmse):
        expected = metric(flows, refs, mask=mask)
        got = metric(torch.from_numpy(flows), torch.from_numpy(refs), mask=torch.from_numpy(mask))
        assert isinstance(got, torch.Tensor) and got.shape == (3,)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
        single = metric(torch.from_numpy(flows[0]), torch.from_numpy(refs[0]))
        assert single.shape == () and float(single) == pytest.approx(float(metric(flows[0], refs[0])), rel=1e-5)
    flow_t = torch.from_numpy(flows).requires_grad_(True)
    refs_t = torch.from_numpy(refs)
    refs_t[0, :, :2] = flow_t[0, :, :2].detach()  # exact pixels: the EPE gradient must stay finite there
    endpoint_error(flow_t, refs_t).sum().backward()
    assert flow_t.grad is not None and torch.isfinite(flow_t.grad).all()


def test_bad_flow_shapes_raise():
    flow = _constant(1.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        endpoint_error(flow, flow[:, :4])
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        flow_mae(flow[:1], flow[:1])
    with pytest.raises(ValueError, match="mask"):
        flow_rmse(flow, flow, mask=np.ones((3, 3)))
    with pytest.raises(TypeError):
        endpoint_error(torch.from_numpy(flow), flow)


# -- through the warped image ---------------------------------------------------------------------
def test_warped_mse_known_shift():
    source = _image()
    target = np.roll(source, (1, -2), axis=(0, 1))  # target(y, x) = source(y - 1, x + 2)
    flow = _constant(2.0, -1.0, *source.shape)
    inner = np.zeros(source.shape, bool)
    inner[1:, :-2] = True  # where the sample point lies inside the source
    assert warped_mse(source, target, flow, mask=inner) == pytest.approx(0.0, abs=1e-12)
    assert warped_mse(source, target, np.zeros_like(flow)) > 0.1
    # unmasked: exactly the MSE of the warped image against the target
    expected = np.mean((warp(source, flow) - target) ** 2)
    assert warped_mse(source, target, flow) == pytest.approx(expected, rel=1e-5)


def test_warped_metrics_batches_channels_and_torch():
    rng = np.random.default_rng(2)
    sources = rng.random((3, 20, 20)).astype(np.float32)
    targets = rng.random((3, 20, 20)).astype(np.float32)
    flows = rng.normal(0, 1.5, (3, 2, 20, 20)).astype(np.float32)
    for metric in (warped_mse, warped_ssim):
        batch = metric(sources, targets, flows)
        assert batch.shape == (3,)
        expected = [metric(s, t, f) for s, t, f in zip(sources, targets, flows, strict=True)]
        np.testing.assert_allclose(batch, expected, rtol=1e-6)
        # (B, 1, H, W) is the same as (B, H, W)
        np.testing.assert_allclose(metric(sources[:, None], targets[:, None], flows), batch, rtol=1e-6)
        got = metric(torch.from_numpy(sources), torch.from_numpy(targets), torch.from_numpy(flows))
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), batch, rtol=1e-4, atol=1e-6)


def test_warped_ssim_values():
    source = _image(32, 32)
    zero = np.zeros((2, 32, 32), np.float32)
    assert warped_ssim(source, source, zero) == pytest.approx(1.0)
    other = _image(32, 32, seed=5)
    expected = structural_similarity(source.astype(np.float64), other.astype(np.float64), data_range=1.0)
    assert warped_ssim(source, other, zero) == pytest.approx(expected, rel=1e-6)
    # an all-ones mask equals no mask; a mask on one half only sees that half
    assert warped_ssim(source, other, zero, mask=np.ones((32, 32))) == pytest.approx(expected, rel=1e-9)
    half = other.copy()
    half[:, 16:] = source[:, 16:]
    left = np.zeros((32, 32), bool)
    left[:, :10] = True
    right = np.zeros((32, 32), bool)
    right[:, 22:] = True
    assert warped_ssim(source, half, zero, mask=right) == pytest.approx(1.0)
    assert warped_ssim(source, half, zero, mask=left) < 0.5
    assert np.isnan(warped_ssim(source, half, zero, mask=np.zeros((32, 32))))


def test_warped_shape_errors():
    source = _image(16, 16)
    flow = np.zeros((2, 16, 16), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        warped_mse(source, source[:8], flow)
    with pytest.raises(ValueError, match="differs"):
        warped_mse(source[:8], source[:8], flow)
    with pytest.raises(ValueError, match="batch of 2"):
        warped_ssim(source, source, np.zeros((2, 2, 16, 16), np.float32))
    with pytest.raises(TypeError):
        warped_mse(torch.from_numpy(source), source, flow)


# -- through the keypoints ------------------------------------------------------------------------
def test_keypoint_consistency_known_values():
    target = np.array([[3.0, 2.0], [5.0, 5.0], [7.0, 4.0]])
    flow = _constant(1.0, 2.0)
    assert keypoint_consistency(flow, target + [1.0, 2.0], target) == pytest.approx(0.0, abs=1e-6)
    assert keypoint_consistency(flow, target, target) == pytest.approx(math.sqrt(5.0))
    assert keypoint_consistency(flow, target + [4.0, 6.0], target) == pytest.approx(5.0)


def test_keypoint_consistency_ignores_nan_rows_and_batches():
    target = np.array([[3.0, 2.0], [5.0, 5.0], [7.0, 4.0]])
    source = target.copy()
    source[0] += [3.0, 4.0]  # 5 px off after a zero flow
    source[2] = np.nan
    zero = np.zeros((2, 8, 10), np.float32)
    assert keypoint_consistency(zero, source, target) == pytest.approx(2.5)  # mean of 5 and 0
    sources = np.stack([source, np.full_like(source, np.nan)])
    values = keypoint_consistency(np.stack([zero, zero]), sources, np.stack([target, target]))
    assert values.shape == (2,) and values[0] == pytest.approx(2.5) and np.isnan(values[1])
    got = keypoint_consistency(torch.zeros(2, 2, 8, 10), torch.from_numpy(sources), torch.from_numpy(
        np.stack([target, target])))
    assert got[0].item() == pytest.approx(2.5) and torch.isnan(got[1])
    with pytest.raises(ValueError, match="same shape"):
        keypoint_consistency(zero, source[:2], target)
