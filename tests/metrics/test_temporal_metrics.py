import numpy as np
import pytest

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.metrics.temporal import TemporalWarpingError, temporal_warping_error


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(0, 0), n_frames=8, size=64, noise=0.0)


def test_exact_flows_low_shuffled_high(clip):
    frames, flows = clip.frames, clip.consecutive_flows()  # (8, 64, 64), (7, 2, 64, 64)
    exact = temporal_warping_error(frames, flows, mask=clip.fan_mask)
    assert isinstance(exact, TemporalWarpingError) and exact.per_pair.shape == (7,)
    still = temporal_warping_error(frames, np.zeros_like(flows), mask=clip.fan_mask)
    order = np.random.default_rng(0).permutation(8)
    while np.any(np.abs(np.diff(order)) == 1):  # no pair stays consecutive
        order = np.random.default_rng(int(order[0]) + 1).permutation(8)
    shuffled = temporal_warping_error(frames[order], flows, mask=clip.fan_mask)
    assert exact.mean < 0.5 * still.mean  # following the motion beats standing still
    assert shuffled.mean > 3 * exact.mean
    assert exact.max <= shuffled.max


def test_known_shift_and_summary():
    ramp = np.tile(np.linspace(0, 1, 10), (6, 1))  # (6, 10), varies along x
    frames = np.stack([np.roll(ramp, t, axis=1) for t in range(3)])  # content moves right by 1 px per frame
    flows = np.zeros((2, 2, 6, 10))
    flows[:, 0] = -1.0  # target pixel x comes from source x - 1
    mask = np.zeros((6, 10))
    mask[:, 1:] = 1  # leave out the column that wraps around
    result = temporal_warping_error(frames, flows, mask=mask)
    np.testing.assert_allclose(result.per_pair, 0.0, atol=1e-12)
    per_frame_mask = np.broadcast_to(mask, (3, 6, 10))  # (T, H, W): target frame's mask used
    np.testing.assert_allclose(temporal_warping_error(frames, flows, mask=per_frame_mask).per_pair, 0.0, atol=1e-12)
    unmasked = temporal_warping_error(frames, flows)
    assert unmasked.mean > 0
    assert unmasked.summary() == {"temporal_mse_mean": unmasked.mean, "temporal_mse_max": unmasked.max,
                                  "n_pairs": 2}


def test_bad_shapes():
    with pytest.raises(ValueError, match="T >= 2"):
        temporal_warping_error(np.zeros((1, 4, 4)), np.zeros((0, 2, 4, 4)))
    with pytest.raises(ValueError, match="flows"):
        temporal_warping_error(np.zeros((3, 4, 4)), np.zeros((3, 2, 4, 4)))
