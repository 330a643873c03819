"""Thin-plate-spline keypoint warp: exactness at keypoints, affine reproduction, the phantom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from echokdm.baselines import no_edit, tps_flow, tps_warp
from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.flow import transport_keypoints, warp


def _ring(n=12, centre=(30.0, 26.0), radius=10.0):
    """``n`` keypoints (x, y) on a circle, float64 (n, 2)."""
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(angle), centre[1] + 0.8 * radius * np.sin(angle)], 1)


@pytest.fixture(scope="module")
def phantom():
    return simulate_clip(sample_patient(0, 0), n_frames=12, size=112, fps=25.0, decorrelation=0.0, noise=0.0)


@pytest.mark.parametrize("pin_border", [True, False])
def test_equal_keypoints_give_identity(pin_border):
    kp = _ring()
    flow = tps_flow(kp, kp, (48, 64), pin_border=pin_border)
    assert flow.shape == (2, 48, 64) and flow.dtype == np.float32
    assert np.abs(flow).max() < 1e-4
    image = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    np.testing.assert_allclose(tps_warp(image, kp, kp), image, atol=1e-4)


def test_affine_keypoint_motion_gives_the_affine_flow_exactly():
    target = _ring()
    matrix, offset = np.array([[1.05, 0.1], [-0.08, 0.95]]), np.array([1.5, -2.0])
    source = target @ matrix.T + offset  # source = A target + b
    flow = tps_flow(source, target, (48, 64), pin_border=False)
    yy, xx = np.mgrid[0:48, 0:64]
    grid = np.stack([xx, yy], -1).astype(np.float64)  # (H, W, 2) (x, y)
    expected = (grid @ matrix.T + offset - grid).transpose(2, 0, 1)  # (2, H, W)
    np.testing.assert_allclose(flow, expected, atol=1e-3)


def test_transport_lands_on_source_keypoints():
    # keypoints at pixel centres, so sampling the flow grid there is exact
    rng = np.random.default_rng(1)
    target = np.round(_ring(16))
    source = target + rng.normal(0, 2.0, target.shape)
    for pin_border in (True, False):
        flow = tps_flow(source, target, (48, 64), pin_border=pin_border)
        np.testing.assert_allclose(transport_keypoints(target, flow), source, atol=1e-3)


def test_pinned_border_stays_put_and_free_border_does_not():
    target = _ring()
    source = target + [3.0, 2.0]  # a pure shift of the keypoints
    pinned = tps_flow(source, target, (48, 64))
    for y, x in [(0, 0), (0, 63), (47, 0), (47, 63), (0, 31.5), (23.5, 0)]:
        assert np.abs(pinned[:, int(y), int(x)]).max() < 0.6  # anchors (exact at integer ones)
    assert np.abs(pinned[:, [0, 0, 47, 47], [0, 63, 0, 63]]).max() < 1e-3
    free = tps_flow(source, target, (48, 64), pin_border=False)
    np.testing.assert_allclose(free[:, 0, 0], [3.0, 2.0], atol=1e-3)


def test_nan_keypoints_are_dropped():
    target = _ring()
    source = target + [1.0, -1.0]
    with_nan_src, with_nan_tgt = source.copy(), target.copy()
    with_nan_src[2] = np.nan
    with_nan_tgt[5] = np.nan
    keep = np.ones(len(target), bool)
    keep[[2, 5]] = False
    expected = tps_flow(source[keep], target[keep], (40, 40))
    np.testing.assert_allclose(tps_flow(with_nan_src, with_nan_tgt, (40, 40)), expected, atol=1e-6)
    # no keypoint left: nothing moves
    all_nan = np.full_like(target, np.nan)
    assert np.abs(tps_flow(all_nan, target, (40, 40))).max() == 0.0


def test_smoothing_relaxes_exactness():
    rng = np.random.default_rng(2)
    target = np.round(_ring(16))
    source = target + rng.normal(0, 2.0, target.shape)
    exact = tps_flow(source, target, (48, 64))
    smooth = tps_flow(source, target, (48, 64), smoothing=10.0)
    miss = np.abs(transport_keypoints(target, smooth) - source).max()
    assert miss > 0.05
    assert np.abs(np.diff(smooth, axis=2)).max() < np.abs(np.diff(exact, axis=2)).max()


def test_phantom_tps_warp_moves_ed_towards_es(phantom):
    ed, es = int(phantom.ed_frames[0]), int(phantom.es_frames[0])
    kp_ed, kp_es = phantom.keypoints[ed], phantom.keypoints[es]
    predicted = tps_warp(phantom.frames[ed], kp_ed, kp_es)
    lv = ndimage.binary_dilation(phantom.masks[ed].astype(bool) | phantom.masks[es].astype(bool), iterations=3)
    mse_tps = np.mean((predicted - phantom.frames[es])[lv] ** 2)
    mse_still = np.mean((no_edit(phantom.frames[ed]) - phantom.frames[es])[lv] ** 2)
    assert mse_tps < 0.5 * mse_still
    # its flow is close to the truth around the LV and lands the ES keypoints on the ED ones
    flow = tps_flow(kp_ed, kp_es, (112, 112))
    truth = phantom.flow(ed, es)
    epe = np.sqrt(((flow - truth) ** 2).sum(0))[lv].mean()
    assert epe < 0.2 * np.sqrt((truth ** 2).sum(0))[lv].mean()
    # sub-pixel keypoints: only the bilinear sampling of the flow grid separates them
    np.testing.assert_allclose(transport_keypoints(kp_es, flow), kp_ed, atol=0.05)


def test_tps_warp_is_warp_of_tps_flow():
    image = np.random.default_rng(3).random((2, 40, 40)).astype(np.float32)  # (C, H, W)
    target = _ring(centre=(20.0, 20.0))
    source = target * 1.1 - 2.0
    expected = warp(image, tps_flow(source, target, (40, 40)))
    np.testing.assert_array_equal(tps_warp(image, source, target), expected)


def test_no_edit_returns_a_copy_of_the_source():
    import torch

    frame = np.random.default_rng(4).random((8, 8)).astype(np.float32)
    out = no_edit(frame, _ring(), _ring() + 1.0)
    np.testing.assert_array_equal(out, frame)
    out[0, 0] = 5.0
    assert frame[0, 0] != 5.0
    tensor = torch.from_numpy(frame)
    out_t = no_edit(tensor)
    assert isinstance(out_t, torch.Tensor) and torch.equal(out_t, tensor) and out_t.data_ptr() != tensor.data_ptr()


def test_bad_inputs_raise_clear_errors():
    kp = _ring()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        tps_flow(kp[:, :1], kp[:, :1], (32, 32))
    with pytest.raises(ValueError, match="shape of source_keypoints"):
        tps_flow(kp, kp[:-1], (32, 32))
    with pytest.raises(ValueError, match="shape must be"):
        tps_flow(kp, kp, (32,))
    with pytest.raises(ValueError, match="smoothing"):
        tps_flow(kp, kp, (32, 32), smoothing=-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        tps_flow(kp[:2], kp[:2], (32, 32), pin_border=False)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        tps_warp(np.zeros((1, 1, 8, 8)), kp, kp)
