"""The one warp of echokdm: convention, border clamping, numpy == torch, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echokdm.geometry.flow import (
    compose_flows,
    fit_flow_to_keypoints,
    flow_to_grid,
    jacobian_determinant,
    keypoint_region_flow,
    transport_keypoints,
    warp,
    warp_frame,
)


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _constant_flow(dx, dy, h, w):
    flow = np.zeros((2, h, w), np.float32)
    flow[0], flow[1] = dx, dy
    return flow


def _smooth_flow(h, w, seed=0, amplitude=3.0):
    """A smooth random flow (a few cosines), float32 (2, H, W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    flow = np.zeros((2, h, w))
    for ch in range(2):
        for _ in range(3):
            kx, ky, ph = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * np.pi)
            flow[ch] += amplitude / 3 * np.cos(kx * xx + ky * yy + ph)
    return flow.astype(np.float32)


def test_identity_flow_returns_source():
    img = _random_image((3, 9, 11))
    out = warp(img, np.zeros((2, 9, 11), np.float32))
    np.testing.assert_array_equal(out, img)
    out_t = warp(torch.from_numpy(img), torch.zeros(2, 9, 11))
    np.testing.assert_allclose(out_t.numpy(), img, atol=1e-6)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 2), (-3, 1), (2, -2)])
def test_integer_shift_is_exact_away_from_border(dx, dy):
    img = _random_image((12, 13))
    out = warp(img, _constant_flow(dx, dy, 12, 13))
    # out[y, x] = img[y + dy, x + dx] wherever the sample point is inside the image
    ys = slice(max(0, -dy), 12 - max(0, dy))
    xs = slice(max(0, -dx), 13 - max(0, dx))
    ys_src = slice(ys.start + dy, ys.stop + dy)
    xs_src = slice(xs.start + dx, xs.stop + dx)
    np.testing.assert_array_equal(out[ys, xs], img[ys_src, xs_src])
    out_t = warp(torch.from_numpy(img), torch.from_numpy(_constant_flow(dx, dy, 12, 13))).numpy()
    np.testing.assert_allclose(out_t[ys, xs], img[ys_src, xs_src], atol=1e-6)


def test_subpixel_shift_on_linear_ramp_is_exact():
    # bilinear interpolation reproduces a linear function exactly
    h, w = 16, 20
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = (0.5 + 0.03 * xx - 0.02 * yy).astype(np.float64)
    dx, dy = 0.37, -0.61
    flow = _constant_flow(dx, dy, h, w).astype(np.float64)
    expected = 0.5 + 0.03 * (xx + dx) - 0.02 * (yy + dy)
    inside = (slice(1, h - 1), slice(1, w - 1))
    np.testing.assert_allclose(warp(ramp, flow)[inside], expected[inside], atol=1e-12)
    out_t = warp(torch.from_numpy(ramp), torch.from_numpy(flow)).numpy()
    np.testing.assert_allclose(out_t[inside], expected[inside], atol=1e-10)


def test_spatially_varying_flow_on_ramp():
    h, w = 15, 17
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = 2.0 * xx + 3.0 * yy
    flow = np.stack([0.3 * np.sin(yy / 3.0), 0.4 * np.cos(xx / 4.0)])  # |flow| < 1: stays inside
    expected = 2.0 * (xx + flow[0]) + 3.0 * (yy + flow[1])
    inside = (slice(1, h - 1), slice(1, w - 1))
    np.testing.assert_allclose(warp(ramp, flow)[inside], expected[inside], atol=1e-10)


def test_border_padding_clamps_to_edge_values():
    img = _random_image((6, 7))
    far = warp(img, _constant_flow(100.0, 0.0, 6, 7))  # every sample to the right of the image
    np.testing.assert_array_equal(far, np.repeat(img[:, -1:], 7, axis=1))
    up = warp(img, _constant_flow(0.0, -50.5, 6, 7))
    np.testing.assert_array_equal(up, np.repeat(img[:1], 6, axis=0))
    far_t = warp(torch.from_numpy(img), torch.from_numpy(_constant_flow(100.0, 0.0, 6, 7))).numpy()
    np.testing.assert_allclose(far_t, far, atol=1e-6)


def test_numpy_and_torch_agree_on_random_smooth_flows():
    img = _random_image((2, 3, 40, 48), seed=1)
    flows = np.stack([_smooth_flow(40, 48, seed=s, amplitude=6.0) for s in (2, 3)])  # large: hits borders
    out_np = warp(img, flows)
    out_t = warp(torch.from_numpy(img), torch.from_numpy(flows)).numpy()
    assert out_np.shape == out_t.shape == (2, 3, 40, 48)
    assert out_np.dtype == np.float32
    np.testing.assert_allclose(out_np, out_t, atol=1e-5)
    # nearest mode agrees too (flows have no exact half-pixel ties)
    near_np = warp(img, flows, mode="nearest")
    near_t = warp(torch.from_numpy(img), torch.from_numpy(flows), mode="nearest").numpy()
    np.testing.assert_allclose(near_np, near_t, atol=1e-6)
    assert np.isin(near_np, img).all()


@pytest.mark.parametrize(
    "src_shape,flow_shape",
    [((10, 12), (2, 10, 12)), ((3, 10, 12), (2, 10, 12)), ((4, 2, 10, 12), (2, 10, 12)),
     ((4, 2, 10, 12), (4, 2, 10, 12))],
)
def test_batch_shapes(src_shape, flow_shape):
    img = _random_image(src_shape)
    flow = np.random.default_rng(0).normal(0, 2, flow_shape).astype(np.float32)
    out = warp(img, flow)
    assert out.shape == src_shape
    # every image of the batch is warped with its own (or the shared) flow
    flat = img.reshape(-1, *src_shape[-2:])
    flows = flow.reshape(-1, 2, *src_shape[-2:])
    n_per = flat.shape[0] // flows.shape[0]
    for k in range(flat.shape[0]):
        np.testing.assert_array_equal(out.reshape(flat.shape)[k], warp(flat[k], flows[k // n_per]))
    out_t = warp(torch.from_numpy(img), torch.from_numpy(flow))
    assert tuple(out_t.shape) == src_shape
    np.testing.assert_allclose(out_t.numpy(), out, atol=1e-5)


def test_dtypes():
    img64 = np.random.default_rng(0).random((5, 6))
    assert warp(img64, np.zeros((2, 5, 6))).dtype == np.float64
    half = img64.astype(np.float16)  # computed in float32, returned as float16
    out_half = warp(half, np.zeros((2, 5, 6), np.float16))
    assert out_half.dtype == np.float16
    np.testing.assert_array_equal(out_half, half)
    mask = (img64 > 0.5).astype(np.uint8)
    out = warp(mask, np.zeros((2, 5, 6), np.float32), mode="nearest")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, mask)


@pytest.mark.parametrize(
    "src_shape,flow_shape,message",
    [((10, 12), (3, 10, 12), r"\(2, H, W\)"),
     ((10, 12), (2, 10), r"\(2, H, W\)"),
     ((10, 12), (2, 9, 12), "spatial size"),
     ((3, 10, 12), (3, 2, 10, 12), "batched source"),
     ((2, 3, 10, 12), (3, 2, 10, 12), "batch 2 differs"),
     ((1, 2, 3, 10, 12), (2, 10, 12), "source must have shape")],
)
def test_bad_shapes_raise_clear_errors(src_shape, flow_shape, message):
    with pytest.raises(ValueError, match=message):
        warp(np.zeros(src_shape, np.float32), np.zeros(flow_shape, np.float32))
    with pytest.raises(ValueError, match=message):
        warp(torch.zeros(src_shape), torch.zeros(flow_shape))


def test_bad_mode_and_mixed_types():
    with pytest.raises(ValueError, match="mode"):
        warp(np.zeros((4, 4)), np.zeros((2, 4, 4)), mode="lanczos")
    with pytest.raises(TypeError, match="both"):
        warp(np.zeros((4, 4)), torch.zeros(2, 4, 4))


def test_flow_to_grid_normalisation():
    grid = flow_to_grid(np.zeros((2, 5, 9), np.float32))
    assert grid.shape == (5, 9, 2)
    np.testing.assert_allclose(grid[0, 0], [-1, -1])
    np.testing.assert_allclose(grid[-1, -1], [1, 1])
    np.testing.assert_allclose(grid[2, 4], [0, 0], atol=1e-7)
    flow = _smooth_flow(5, 9)
    g_np = flow_to_grid(flow)
    g_t = flow_to_grid(torch.from_numpy(flow)[None])
    assert tuple(g_t.shape) == (1, 5, 9, 2)
    np.testing.assert_allclose(g_t[0].numpy(), g_np, atol=1e-6)
    # x_norm = 2 (x + dx) / (W - 1) - 1
    np.testing.assert_allclose(g_np[3, 6, 0], 2 * (6 + flow[0, 3, 6]) / 8 - 1, atol=1e-6)


def test_transport_keypoints_matches_constant_and_affine_flows():
    h, w = 30, 40
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # affine flow: bilinear sampling of it is exact at sub-pixel points
    flow = np.stack([0.1 * xx - 0.05 * yy + 1.0, 0.02 * xx + 0.03 * yy - 2.0])
    kp = np.array([[5.3, 7.7], [20.25, 11.5], [np.nan, np.nan], [33.9, 25.1]])
    out = transport_keypoints(kp, flow)
    expected = kp + np.stack([0.1 * kp[:, 0] - 0.05 * kp[:, 1] + 1.0, 0.02 * kp[:, 0] + 0.03 * kp[:, 1] - 2.0], -1)
    np.testing.assert_allclose(out, expected, atol=1e-10)
    assert np.isnan(out[2]).all()
    out_t = transport_keypoints(torch.from_numpy(kp), torch.from_numpy(flow))
    np.testing.assert_allclose(out_t.numpy(), expected, atol=1e-8, equal_nan=True)
    # batched
    batched = transport_keypoints(np.stack([kp, kp]), np.stack([flow, 2 * flow]))
    assert batched.shape == (2, 4, 2)
    np.testing.assert_allclose(batched[1] - kp, 2 * (expected - kp), atol=1e-9, equal_nan=True)


def test_transport_keypoints_agrees_with_warp():
    # a bright dot at source point p appears at target q when q + flow(q) = p
    flow = _constant_flow(2.5, -1.5, 20, 20)
    q = np.array([[8.0, 10.0]])
    p = transport_keypoints(q, flow)
    np.testing.assert_allclose(p, [[10.5, 8.5]])
    src = np.zeros((20, 20), np.float32)
    src[8, 10] = src[8, 11] = src[9, 10] = src[9, 11] = 1.0  # a 2x2 blob centred on (10.5, 8.5)
    assert warp(src, flow)[10, 8] == pytest.approx(1.0)


def test_transport_keypoints_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        transport_keypoints(np.zeros((2, 4, 2)), np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        transport_keypoints(np.zeros((3, 4, 2)), np.zeros((2, 2, 8, 8)))


def test_compose_flows_is_exact_for_an_affine_first_flow():
    # with flow_ab affine, bilinear sampling is exact: flow_ac(q) = flow_bc(q) + flow_ab(q + flow_bc(q))
    h, w = 32, 36
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def f_ab(x, y):
        return np.stack([0.05 * x - 0.02 * y + 0.5, -0.03 * x + 0.04 * y - 0.7])

    f_bc = _smooth_flow(h, w, seed=5, amplitude=1.5).astype(np.float64)
    expected = f_bc + f_ab(xx + f_bc[0], yy + f_bc[1])
    inside = (slice(3, -3), slice(3, -3))  # sample points stay inside: no border clamping
    np.testing.assert_allclose(compose_flows(f_ab(xx, yy), f_bc)[:, inside[0], inside[1]],
                               expected[:, inside[0], inside[1]], atol=1e-10)
    composed_t = compose_flows(torch.from_numpy(f_ab(xx, yy)), torch.from_numpy(f_bc)).numpy()
    np.testing.assert_allclose(composed_t[:, 3:-3, 3:-3], expected[:, 3:-3, 3:-3], atol=1e-8)


def test_compose_flows_matches_sequential_warps():
    h, w = 48, 48
    yy, xx = np.mgrid[0:h, 0:w]
    img = (0.5 + 0.25 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float64)  # smooth: little interpolation loss
    f_ab = _smooth_flow(h, w, seed=4, amplitude=1.5).astype(np.float64)
    f_bc = _smooth_flow(h, w, seed=5, amplitude=1.5).astype(np.float64)
    two_steps = warp(warp(img, f_ab), f_bc)  # interpolates twice
    one_step = warp(img, compose_flows(f_ab, f_bc))
    inside = (slice(4, -4), slice(4, -4))
    assert np.abs(one_step - two_steps)[inside].max() < 5e-3
    assert np.abs(img - two_steps)[inside].max() > 0.05  # the flows do move the image
    # composing with the zero flow changes nothing
    np.testing.assert_allclose(compose_flows(f_ab, np.zeros_like(f_ab)), f_ab)
    with pytest.raises(ValueError, match="same shape"):
        compose_flows(f_ab, f_bc[None])


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, echokdm.geometry; print('torch' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_quarter_turn_rotation_is_exact(library):
    """A 90-degree rotation maps pixel centres onto pixel centres: warp equals np.rot90 exactly."""
    rng = np.random.default_rng(0)
    src = rng.random((9, 9)).astype(np.float32)
    yy, xx = np.mgrid[0:9, 0:9].astype(np.float32)
    # np.rot90(src)[y, x] = src[x, W - 1 - y]  ->  source row = x, source column = W - 1 - y
    flow = np.stack([(8 - yy) - xx, xx - yy])  # (dx, dy)
    if library == "torch":
        out = warp(torch.from_numpy(src), torch.from_numpy(flow)).numpy()
    else:
        out = warp(src, flow)
    np.testing.assert_allclose(out, np.rot90(src), atol=1e-5)


def _ring(n=40, cx=56.0, cy=56.0, rx=18.0, ry=28.0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def test_fit_flow_to_keypoints_carries_every_keypoint_and_stays_local():
    target = _ring()
    source = 56.0 + (target - 56.0) * 1.35  # the target frame is a contracted source: up to ~10 px of motion
    flow = np.zeros((2, 112, 112), np.float32)
    fitted = fit_flow_to_keypoints(flow, source, target, tolerance=0.05, min_jacobian=None)  # the exact local fit
    assert np.abs(transport_keypoints(target, fitted) - source).max() < 0.05
    assert not flow.any()  # the input is not modified
    assert np.abs(fitted[:, :10, :10]).max() < 1e-6  # far from the keypoints the flow is kept
    # between neighbouring keypoints the correction is smooth: the flow at the contour's midpoints
    # is close to the mean of the neighbours' displacements (no ripples)
    mid = (target + np.roll(target, -1, axis=0)) / 2
    expected = ((source - target) + np.roll(source - target, -1, axis=0)) / 2
    assert np.abs(transport_keypoints(mid, fitted) - mid - expected).max() < 0.5


def test_jacobian_determinant():
    ys, xs = np.mgrid[0:32, 0:40].astype(np.float32)
    np.testing.assert_allclose(jacobian_determinant(np.zeros((2, 32, 40), np.float32)), 1.0)
    scaling = np.stack([0.5 * xs, -0.25 * ys])  # x -> 1.5 x, y -> 0.75 y: areas times 1.125
    np.testing.assert_allclose(jacobian_determinant(scaling), 1.125, rtol=1e-5)
    batch = jacobian_determinant(np.stack([scaling, -2.0 * np.stack([xs, 0 * ys])]))
    assert batch.shape == (2, 32, 40) and np.allclose(batch[1], -1.0)  # x -> -x folds


def test_fit_flow_to_keypoints_does_not_fold():
    # a 10-px contraction carried by the keypoints alone folds the exact local fit (the tissue just
    # outside the contour is torn inwards); by default the fit stays fold-free
    target = _ring()
    source = 56.0 + (target - 56.0) * 1.35
    flow = np.zeros((2, 112, 112), np.float32)
    exact = fit_flow_to_keypoints(flow, source, target, min_jacobian=None)
    assert jacobian_determinant(exact).min() < 0.0
    fitted = fit_flow_to_keypoints(flow, source, target)
    assert jacobian_determinant(fitted).min() >= 0.2 - 1e-3
    moved = np.linalg.norm(transport_keypoints(target, fitted) - target, axis=1)
    assert moved.mean() > 0.3 * np.linalg.norm(source - target, axis=1).mean()  # still most of the way out
    # jittery keypoints (a segmentation network's on a real clip): no fold either
    rng = np.random.default_rng(0)
    jitter = source + rng.normal(0, 4.0, source.shape)
    assert jacobian_determinant(fit_flow_to_keypoints(flow, jitter, target, min_jacobian=None)).min() < 0.0
    assert jacobian_determinant(fit_flow_to_keypoints(flow, jitter, target)).min() >= 0.2 - 1e-3
    # a gentle motion is fitted exactly, as before
    gentle = 56.0 + (target - 56.0) * 1.05
    np.testing.assert_array_equal(fit_flow_to_keypoints(flow, gentle, target),
                                  fit_flow_to_keypoints(flow, gentle, target, min_jacobian=None))
    assert np.abs(transport_keypoints(target, fit_flow_to_keypoints(flow, gentle, target)) - gentle).max() < 0.05


def test_fit_flow_to_keypoints_keeps_a_flow_that_already_agrees_and_skips_missing_keypoints():
    target = _ring()
    flow = np.zeros((2, 2, 112, 112), np.float32)
    flow[:, 0] = 2.0  # a translation: every target keypoint comes from 2 px to its right
    source = target + [2.0, 0.0]
    source[3] = np.nan
    fitted = fit_flow_to_keypoints(flow, source, np.stack([target, target]))
    np.testing.assert_array_equal(fitted, flow)
    target_moved = target.copy()
    target_moved[5] += [0.0, 3.0]  # past its neighbour along the contour: only an exact fit that folds carries it
    fitted = fit_flow_to_keypoints(flow, source, np.stack([target, target_moved]), min_jacobian=None)
    np.testing.assert_array_equal(fitted[0], flow[0])
    ok = np.isfinite(source).all(1)
    assert np.abs(transport_keypoints(target_moved[ok], fitted[1]) - source[ok]).max() < 0.05
    outside = target_moved.copy()
    outside[7] = [-5.0, 50.0]  # outside the target frame: left out, not chased into the border
    fitted = fit_flow_to_keypoints(flow[0], source, outside)
    assert np.abs(fitted[:, 45:55, 0]).max() < 2.5 + 1e-3 and np.isfinite(fitted).all()


def test_fit_flow_to_keypoints_errors():
    flow = np.zeros((2, 32, 32), np.float32)
    with pytest.raises(ValueError, match="matching"):
        fit_flow_to_keypoints(flow, np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="sigma"):
        fit_flow_to_keypoints(flow, np.zeros((5, 2)), np.zeros((5, 2)), sigma=0)
    with pytest.raises(ValueError, match="flow"):
        fit_flow_to_keypoints(np.zeros((3, 32, 32)), np.zeros((5, 2)), np.zeros((5, 2)))


def test_bicubic_warp_is_the_same_for_numpy_and_torch_and_exact_on_integer_shifts():
    img = _random_image((2, 1, 24, 20))
    flow = np.stack([_smooth_flow(24, 20, seed=s) for s in (1, 2)])
    a = warp(img, flow, mode="bicubic")
    b = warp(torch.from_numpy(img), torch.from_numpy(flow), mode="bicubic").numpy()
    assert a.dtype == np.float32 and a.shape == img.shape
    np.testing.assert_allclose(a, b, atol=1e-6)
    shifted = warp(img[0, 0], _constant_flow(2, -1, 24, 20), mode="bicubic")
    np.testing.assert_allclose(shifted[3:-3, 3:-3], img[0, 0][2:-4, 5:-1], atol=1e-5)
    assert warp(img[0, 0].astype(np.float64), _constant_flow(0.5, 0, 24, 20), mode="bicubic").dtype == np.float64


def test_bicubic_keeps_speckle_sharper_than_bilinear_at_half_pixel_shifts():
    """Bilinear sampling half-way between pixels averages neighbours: white noise loses half its
    variance; the cubic kernel loses far less. This is why ``interpolation="bicubic"`` exists."""
    noise = _random_image((64, 64), seed=5)
    flow = _constant_flow(0.5, 0.5, 64, 64)
    var = {mode: float(warp(noise, flow, mode=mode)[4:-4, 4:-4].var()) for mode in ("bilinear", "bicubic")}
    assert var["bilinear"] < 0.3 * noise.var()
    assert var["bicubic"] > 1.5 * var["bilinear"]
    frames = warp_frame(noise, np.stack([flow, flow]), mode="bicubic")
    assert frames.shape == (2, 64, 64) and frames.min() >= 0 and frames.max() <= 1  # clipped to a frame


def test_keypoint_region_flow_moves_the_wall_around_the_contour_and_keeps_the_far_field():
    from echokdm.baselines.tps import tps_flow

    target = _ring()
    source = 56.0 + (target - 56.0) * 1.35  # a contraction of up to ~10 px
    k2f = np.full((2, 112, 112), 0.5, np.float32)  # a flow that ignores the keypoints
    region = keypoint_region_flow(k2f, source, target)
    assert (k2f == 0.5).all()  # the input is not modified
    tps = tps_flow(source, target, (112, 112))
    # on the contour and within 6 px of it (the wall): the thin-plate spline through the keypoints
    for point in (target[0] + [3.0, 0.0], target[10] - [0.0, 4.0], target[25]):
        x, y = np.round(point).astype(int)
        np.testing.assert_allclose(region[:, y, x], tps[:, y, x], atol=1e-4)
    np.testing.assert_allclose(transport_keypoints(target, region), source, atol=0.6)
    # 16 px or more from every keypoint: the input flow; in between, between the two
    np.testing.assert_allclose(region[:, :8, :8], 0.5)
    np.testing.assert_allclose(region[:, 56, 56], 0.5)  # the ring's centre is 18 px from the nearest keypoint
    x, y = np.round(target[0] + [11.0, 0.0]).astype(int)
    mix = (region[:, y, x] - k2f[:, y, x]) / (tps[:, y, x] - k2f[:, y, x])
    assert 0.3 < mix.mean() < 0.7
    # the fit afterwards carries the keypoints exactly, as without the region
    fitted = fit_flow_to_keypoints(region, source, target)
    assert np.abs(transport_keypoints(target, fitted) - source).max() < 0.1


def test_keypoint_region_flow_batches_scales_and_skips_too_few_keypoints():
    target = _ring()
    source = 56.0 + (target - 56.0) * 1.2
    flows = np.zeros((2, 2, 112, 112), np.float32)
    both = keypoint_region_flow(flows, source, np.stack([target, target + 1.0]))
    np.testing.assert_allclose(both[0], keypoint_region_flow(flows[0], source, target))
    assert not np.allclose(both[0], both[1])
    few = target.copy()
    few[2:] = np.nan  # 2 usable keypoints cannot fix a spline: left as it was
    np.testing.assert_array_equal(keypoint_region_flow(flows[0], source, few), flows[0])
    # the widths scale with the frame (6 + 10 px at 112): 20 px off the contour is in the ramp at 224 px
    # (12 + 20 px), 10 px off it is beyond the ramp at 56 px (3 + 5 px)
    big = keypoint_region_flow(np.zeros((2, 224, 224), np.float32), source * 2, target * 2)
    x, y = np.round(target[0] * 2 + [20.0, 0.0]).astype(int)
    assert np.abs(big[:, y, x]).max() > 0.1
    small = keypoint_region_flow(np.zeros((2, 56, 56), np.float32), source / 2, target / 2)
    x, y = np.round(target[0] / 2 + [10.0, 0.0]).astype(int)
    assert np.abs(small[:, y, x]).max() == 0
    with pytest.raises(ValueError, match="ramp"):
        keypoint_region_flow(flows[0], source, target, ramp=0)
    with pytest.raises(ValueError, match="matching"):
        keypoint_region_flow(flows[0], source[:10], target)
