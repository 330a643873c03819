"""Classical optical flow baselines: the shared/DESIGN.md convention, against exact shifts and the phantom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from echokdm.baselines import ilk_flow, tvl1_flow
from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.flow import warp

METHODS = {"tvl1": tvl1_flow, "ilk": ilk_flow}


def _smooth_texture(h=64, w=64, seed=0):
    """Random blobs a few pixels wide, float32 in [0, 1]: easy to track, no periodic ambiguity."""
    noise = np.random.default_rng(seed).random((h, w))
    tex = ndimage.gaussian_filter(noise, 2.0, mode="wrap")
    return ((tex - tex.min()) / (tex.max() - tex.min())).astype(np.float32)


@pytest.fixture(scope="module")
def phantom():
    return simulate_clip(sample_patient(0, 0), n_frames=12, size=112, fps=25.0, decorrelation=0.0, noise=0.0)


def _epe(flow, reference, mask):
    return float(np.sqrt(((flow - reference) ** 2).sum(0))[mask].mean())


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("shift_x,shift_y", [(2, 0), (0, -1), (1, 2)])
def test_integer_shift_gives_backward_flow(name, shift_x, shift_y):
    source = _smooth_texture()
    # content moves by (+shift_x, +shift_y): target(y, x) = source(y - shift_y, x - shift_x)
    target = np.roll(source, (shift_y, shift_x), axis=(0, 1))
    flow = METHODS[name](source, target)
    assert flow.shape == (2, 64, 64) and flow.dtype == np.float32
    inner = (slice(12, -12), slice(12, -12))
    # the flow points from the target pixel into the source: (dx, dy) = (-shift_x, -shift_y)
    assert np.median(flow[0][inner]) == pytest.approx(-shift_x, abs=0.05)
    assert np.median(flow[1][inner]) == pytest.approx(-shift_y, abs=0.05)
    # and warping the source with it reproduces the target
    assert np.abs(warp(source, flow) - target)[inner].mean() < 0.01


@pytest.mark.parametrize("name,ratio", [("tvl1", 0.3), ("ilk", 0.4)])
def test_phantom_flow_is_far_better_than_zero(phantom, name, ratio):
    source, target = 0, 4
    truth = phantom.flow(source, target)
    fan = phantom.fan_mask
    flow = METHODS[name](phantom.frames[source], phantom.frames[target])
    zero_epe = _epe(np.zeros_like(truth), truth, fan)
    assert zero_epe > 0.8  # the pair really moves
    assert _epe(flow, truth, fan) < ratio * zero_epe
    # the opposite convention (forward flow) would be worse than doing nothing
    assert _epe(-flow, truth, fan) > zero_epe


def test_phantom_end_diastole_to_end_systole(phantom):
    ed, es = int(phantom.ed_frames[0]), int(phantom.es_frames[0])
    truth = phantom.flow(ed, es)
    flow = tvl1_flow(phantom.frames[ed], phantom.frames[es])
    lv = ndimage.binary_dilation(phantom.masks[es].astype(bool), iterations=4)
    assert _epe(flow, truth, lv) < 0.5 * _epe(np.zeros_like(truth), truth, lv)
    fan = phantom.fan_mask
    mse_warped = np.mean((warp(phantom.frames[ed], flow) - phantom.frames[es])[fan] ** 2)
    mse_still = np.mean((phantom.frames[ed] - phantom.frames[es])[fan] ** 2)
    assert mse_warped < 0.5 * mse_still


@pytest.mark.parametrize("name", METHODS)
def test_stacks_give_one_flow_per_pair(name):
    sources = np.stack([_smooth_texture(32, 32, seed) for seed in range(2)])  # (2, 32, 32)
    targets = np.roll(sources, 1, axis=2)
    flows = METHODS[name](sources, targets)
    assert flows.shape == (2, 2, 32, 32) and flows.dtype == np.float32
    for i in range(2):
        np.testing.assert_allclose(flows[i], METHODS[name](sources[i], targets[i]), atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_identical_frames_give_zero_flow(name):
    frame = _smooth_texture(32, 32)
    flow = METHODS[name](frame, frame)
    assert np.abs(flow).max() < 1e-3


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs_raise_clear_errors(name):
    method = METHODS[name]
    frame = np.zeros((16, 16), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        method(frame, np.zeros((16, 17), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        method(np.zeros((1, 2, 16, 16)), np.zeros((1, 2, 16, 16)))
    bad = frame.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        method(frame, bad)
    with pytest.raises(TypeError):
        method(frame, frame, not_an_option=1)
