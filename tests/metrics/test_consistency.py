"""Loop consistency: warping error along the step flows and the pop of the first generated frame."""

import numpy as np
import pytest

from echokdm.metrics.consistency import loop_consistency, pop_ratio


def _moving_texture(n, size=32, shift=1):
    rng = np.random.default_rng(0)
    base = rng.random((size, size + n * shift)).astype(np.float32)
    frames = np.stack([base[:, t * shift:t * shift + size] for t in range(n)])  # content moves left by `shift`
    flows = np.zeros((n - 1, 2, size, size), np.float32)
    flows[:, 0] = shift  # pixel x of frame t + 1 comes from x + shift of frame t
    return frames, flows


def test_pop_ratio():
    assert pop_ratio([4.0, 1.0, 2.0, 1.0]) == 4.0
    assert np.isnan(pop_ratio([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2"):
        pop_ratio([1.0])


def test_a_blurred_continuation_pops_and_a_consistent_one_does_not():
    from scipy import ndimage

    frames, flows = _moving_texture(6)
    real = loop_consistency(frames[0], frames[1:], flows)
    assert real["warp_error"] < 0.007 and real["pop_warp"] < 2.0  # warping explains all but the entering column
    assert real["pop_mse"] == pytest.approx(1.0, rel=0.3)
    blurred = ndimage.gaussian_filter(frames[1:], (0, 1.5, 1.5))
    out = loop_consistency(frames[0], blurred, flows, lpips=lambda a, b: ((a - b) ** 2).mean(axis=(1, 2)))
    assert out["pop_warp"] > 10 * real["pop_warp"] and out["pop_mse"] > real["pop_mse"]
    assert out["pop_lpips"] == pytest.approx(out["pop_mse"])  # the given distance is the MSE here
    assert np.isnan(real["pop_lpips"])


def test_flicker_raises_the_warping_error():
    frames, flows = _moving_texture(6)
    noisy = frames[1:] + np.random.default_rng(1).normal(0, 0.2, frames[1:].shape).astype(np.float32)
    assert loop_consistency(frames[0], noisy, flows)["warp_error"] > 0.05


def test_checks_shapes():
    frames, flows = _moving_texture(4)
    with pytest.raises(ValueError, match="step_flows"):
        loop_consistency(frames[0], frames[1:], flows[:1])
    with pytest.raises(ValueError, match="at least 2 frames"):
        loop_consistency(frames[0], frames[1:2])
    assert np.isnan(loop_consistency(frames[0], frames[1:])["warp_error"])
