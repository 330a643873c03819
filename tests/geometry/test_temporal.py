"""Tests of echokdm.geometry.temporal: keypoints over a sequence with smoothed landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.keypoints import KeypointError, mask_keypoints
from echokdm.geometry.temporal import jitter, sequence_keypoints, smooth_trajectory
from echokdm.geometry.volumes import cardiac_cycle, simpson_volume


@pytest.fixture(scope="module")
def phantom_clips():
    """Three phantom patients, one beat each at 50 fps, 112x112 (masks and exact keypoints)."""
    return [simulate_clip(sample_patient(0, i), n_beats=1.0, fps=50.0, size=112) for i in range(3)]


def test_smooth_trajectory_is_nan_aware_and_keeps_missing_samples_missing():
    v = np.array([0.0, 1.0, np.nan, 3.0, 4.0])[:, None]
    out = smooth_trajectory(v, 1.0)
    assert np.isnan(out[2, 0])  # a missing sample is not filled in
    assert np.all(np.isfinite(out[[0, 1, 3, 4], 0]))
    line = np.arange(10.0)[:, None]
    inner = smooth_trajectory(line, 1.0)[3:7, 0]
    assert np.allclose(inner, line[3:7, 0], atol=1e-3)  # a straight line is unchanged inside
    assert np.array_equal(smooth_trajectory(v, 0.0), v, equal_nan=True)
    with pytest.raises(ValueError, match="sigma_frames"):
        smooth_trajectory(v, -1.0)


def test_jitter_of_a_straight_motion_is_zero_and_of_noise_is_positive():
    t = np.arange(10.0)
    kp = np.zeros((10, 40, 2))
    kp[..., 0] = 3.0 * t[:, None]  # constant velocity
    assert jitter(kp) == pytest.approx(0.0, abs=1e-12)
    noisy = kp + np.random.default_rng(0).normal(0, 0.3, kp.shape)
    assert jitter(noisy) > 0.5  # about 0.3 * sqrt(12) * sqrt(2) for two coordinates
    assert np.isnan(jitter(kp[:2]))
    with pytest.raises(ValueError, match=r"\(T, N, 2\)"):
        jitter(kp[0])


def test_without_smoothing_equals_mask_keypoints_per_frame(phantom_clips):
    masks = phantom_clips[0].masks[:6]
    seq = sequence_keypoints(masks, smooth_sigma_frames=0.0)
    for t, mask in enumerate(masks):
        np.testing.assert_allclose(seq.keypoints[t], mask_keypoints(mask).keypoints, atol=1e-5)
    np.testing.assert_allclose(seq.raw_keypoints, seq.keypoints, atol=1e-5)


def test_smoothing_reduces_jitter_and_stays_close_to_exact_keypoints(phantom_clips):
    for clip in phantom_clips:
        seq = sequence_keypoints(clip.masks, smooth_sigma_frames=1.0)
        assert seq.keypoints.shape == (clip.n_frames, 40, 2) and seq.keypoints.dtype == np.float32
        assert seq.apex.shape == (clip.n_frames, 2) and seq.annulus.shape == (clip.n_frames, 2, 2)
        assert seq.flags == [""] * clip.n_frames
        assert seq.jitter_smoothed < seq.jitter_raw
        assert seq.landmark_jitter_smoothed < 0.8 * seq.landmark_jitter_raw
        err = np.linalg.norm(seq.keypoints - clip.keypoints, axis=-1)  # (T, 40) px
        assert np.isfinite(err).all()
        assert err.mean() < 0.3
        assert np.percentile(err, 95) < 0.6
        # image-left hinge first, keypoint 0 on the left wall
        assert np.all(seq.annulus[:, 0, 0] < seq.annulus[:, 1, 0])
        assert np.all(seq.keypoints[:, 0, 0] < seq.keypoints[:, 39, 0])


def test_phantom_ef_from_sequence_keypoints_within_two_points(phantom_clips):
    errors = []
    for clip in phantom_clips:
        seq = sequence_keypoints(clip.masks)
        volumes = simpson_volume(seq.keypoints, clip.spacing_mm)  # (T,) mL
        cycle = cardiac_cycle(volumes, clip.fps)
        errors.append(cycle.ef_mean - clip.ef)
    assert np.mean(np.abs(errors)) < 2.0


def test_bad_frames_are_interpolated_from_their_neighbours_and_say_so(phantom_clips):
    clip = phantom_clips[0]
    masks = clip.masks[:8].copy()
    masks[3] = 0  # empty
    masks[5] = 0
    masks[5, 50:53, 50:53] = 1  # too small for 20 chords
    seq = sequence_keypoints(masks)
    assert np.isfinite(seq.keypoints).all()
    assert seq.interpolated.tolist() == [t in (3, 5) for t in range(8)]
    assert seq.flags[3] == "recovered: mask is empty; keypoints interpolated from frame(s) 2 and 4"
    assert seq.flags[5].startswith("recovered: mask too small") and "frame(s) 4 and 6" in seq.flags[5]
    assert np.linalg.norm(seq.keypoints[3] - clip.keypoints[3], axis=-1).mean() < 1.0
    assert all(seq.flags[t] == "" for t in (0, 1, 2, 4, 6, 7))


def test_without_repair_bad_frames_give_nan_rows_with_a_reason(phantom_clips):
    masks = phantom_clips[0].masks[:8].copy()
    masks[3] = 0  # empty
    masks[5] = 0
    masks[5, 50:53, 50:53] = 1  # too small for 20 chords
    seq = sequence_keypoints(masks, repair=False)
    assert np.isnan(seq.keypoints[3]).all() and np.isnan(seq.keypoints[5]).all()
    assert np.isnan(seq.apex[3]).all() and np.isnan(seq.annulus[5]).all()
    assert seq.flags[3] == "failed: mask is empty"
    assert seq.flags[5].startswith("failed: mask too small")
    assert not seq.valid[3] and seq.valid[4]
    good = [0, 1, 2, 4, 6, 7]
    assert np.isfinite(seq.keypoints[good]).all()
    assert all(seq.flags[t] == "" for t in good)


def test_on_error_raise_names_the_frame(phantom_clips):
    masks = phantom_clips[0].masks[:4].copy()
    masks[2] = 0
    with pytest.raises(KeypointError, match="frame 2: mask is empty"):
        sequence_keypoints(masks, on_error="raise")


def test_flags_and_argument_errors(phantom_clips):
    masks = phantom_clips[0].masks[:4].copy()
    masks[1, 2:5, 2:5] = 1  # a second component
    seq = sequence_keypoints(masks)
    assert "several components" in seq.flags[1] and seq.flags[0] == ""
    with pytest.raises(ValueError, match="on_error"):
        sequence_keypoints(masks, on_error="skip")
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        sequence_keypoints(masks[0])
    with pytest.raises(ValueError, match="apex_direction"):
        sequence_keypoints(masks, apex_direction="north")
    assert sequence_keypoints(masks).apex_direction == "up"


def test_a_fast_beat_at_a_low_frame_rate_is_not_repaired_flat():
    """ED and ES of an 8-frame beat differ from their running median by far more than the outlier
    tolerance; they are extremes of the curve, not spikes, and must keep their keypoints."""
    from echokdm.generation import synthetic_motion
    from echokdm.generation.loop import loop_ef
    from echokdm.transforms.array import KeypointsToMask

    clip = simulate_clip(sample_patient(0), n_frames=4, size=32, fps=25)
    targets = synthetic_motion(clip.keypoints[0], ef=40, heart_rate_bpm=120, fps=16)
    masks = np.stack([KeypointsToMask((32, 32))(k) for k in targets]).astype(np.uint8)
    repaired = sequence_keypoints(masks, smooth_sigma_frames=0.0)
    plain = sequence_keypoints(masks, smooth_sigma_frames=0.0, repair=False)
    assert not any("outlier frame" in f for flags in repaired.flags for f in flags)
    assert loop_ef(repaired.keypoints) == pytest.approx(loop_ef(plain.keypoints), abs=0.5)
    assert loop_ef(repaired.keypoints) == pytest.approx(40.0, abs=6.0)
