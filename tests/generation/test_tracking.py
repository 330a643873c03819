"""Keypoints carried by speckle tracking (echokdm.generation.tracking)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from echokdm.generation.tracking import (
    clip_ef_target,
    own_beat_motion,
    own_motion_keypoints,
    phase_anchors,
    track_keypoints,
)


def _texture(shape=(64, 80), seed=0):
    base = gaussian_filter(np.random.default_rng(seed).random(shape), 1.2)
    return ((base - base.min()) / (base.max() - base.min())).astype(np.float32)


def _moving(n=6, step=(0.8, -0.5)):
    """A speckle texture translated by ``step`` (dx, dy) px per frame (sub-pixel: interpolated)."""
    base = _texture()
    return np.stack([shift(base, (t * step[1], t * step[0]), order=3, mode="reflect") for t in range(n)])


def test_tracks_a_sub_pixel_translation():
    frames = _moving()
    kp = np.array([[30.0, 30.0], [50.0, 25.0], [40.0, 40.0]])
    out = track_keypoints(frames, kp, max_size=None)
    assert out.shape == (6, 3, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], kp)
    expected = kp + 5 * np.array([0.8, -0.5])
    np.testing.assert_allclose(out[-1], expected, atol=0.35)


def test_tracking_on_reduced_frames_maps_back_to_full_size():
    frames = _moving()
    kp = np.array([[30.0, 30.0], [50.0, 25.0]])
    small = track_keypoints(frames, kp, max_size=40)  # tracked at half size, returned in full-size pixels
    np.testing.assert_allclose(small[-1], kp + 5 * np.array([0.8, -0.5]), atol=0.8)


def test_start_stop_nan_rows_and_a_static_clip():
    frames = np.repeat(_texture()[None], 5, axis=0)
    kp = np.array([[20.0, 20.0], [np.nan, np.nan]])
    out = track_keypoints(frames, kp, start=1, stop=4)
    assert out.shape == (3, 2, 2)
    assert np.isnan(out[:, 1]).all()
    np.testing.assert_allclose(out[:, 0], np.broadcast_to(kp[0], (3, 2)), atol=0.05)


def test_anchors_remove_the_drift_of_a_periodic_motion():
    """Three periods of a sub-pixel back-and-forth: the frame-by-frame track drifts; measured directly
    at the periods' starts (the source's phase), the drift goes."""
    base = _texture()
    d = 3.3 * np.sin(2 * np.pi * np.arange(31) / 10)
    frames = np.stack([shift(base, (0, x), order=3, mode="reflect") for x in d]).astype(np.float32)
    kp = np.array([[30.0, 30.0], [50.0, 25.0]])
    truth = kp[None, :, 0] + d[:, None]
    plain = np.abs(track_keypoints(frames, kp, max_size=None)[:, :, 0] - truth)
    anchored = np.abs(track_keypoints(frames, kp, max_size=None, anchors=[10, 20, 30, 99])[:, :, 0] - truth)
    assert plain[21:].mean() > 0.05  # it drifts (cubic-interpolated speckle)
    assert anchored[21:].mean() < 0.3 * plain[21:].mean()
    assert anchored[[10, 20, 30]].max() < 0.02


def test_phase_anchors_are_the_source_phase_in_later_beats():
    t = np.arange(90)
    scale = 1 - 0.1 * (1 - np.cos(2 * np.pi * (t - 5) / 30))  # ED (largest) at 5, 35, 65
    one = _bullet_sequence(1, 0.0)[0]
    seq = np.stack([(one - [40, 55]) * [s, 1] + [40, 55] for s in scale]).astype(np.float32)
    assert phase_anchors(seq, 5, fps=30.0) == [35, 65]
    assert phase_anchors(seq, 12, fps=30.0) == [42, 72]  # 7 frames after ED, in each later beat
    assert phase_anchors(seq, 12, 60, fps=30.0) == [42]
    assert phase_anchors(seq[:30], 5, fps=30.0) == []  # one beat: nothing to anchor to


@pytest.mark.parametrize("kwargs, match", [
    ({"frames": np.zeros((4, 8)), "keypoints": np.zeros((2, 2))}, "frames must be"),
    ({"keypoints": np.zeros((2, 3))}, "keypoints must be"),
    ({"start": 4}, "start=4"),
    ({"start": 2, "stop": 2}, "stop=2"),
    ({"attachment": 0.0}, "attachment"),
])
def test_errors_name_the_problem(kwargs, match):
    args = {"frames": np.zeros((4, 16, 16), np.float32), "keypoints": np.zeros((2, 2))} | kwargs
    with pytest.raises(ValueError, match=match):
        track_keypoints(**args)


def test_own_motion_keypoints_replaces_the_frames_from_the_source_on():
    frames = _moving(n=8)
    seq = np.full((8, 3, 2), 5.0, np.float32)  # a "segmentation" that sees no motion at all
    seq[2] = [[30.0, 30.0], [50.0, 25.0], [40.0, 40.0]]
    out = own_motion_keypoints(frames, seq, 2, 7)
    np.testing.assert_array_equal(out[:2], seq[:2])  # before the source: kept
    np.testing.assert_array_equal(out[7:], seq[7:])  # after stop: kept
    np.testing.assert_allclose(out[6], seq[2] + 4 * np.array([0.8, -0.5]), atol=0.35)
    np.testing.assert_array_equal(own_motion_keypoints(frames, seq, 2, method="segmentation"), seq)
    seq[3] = np.nan
    with pytest.raises(ValueError, match="frame 3 has no keypoints"):
        own_motion_keypoints(frames, seq, 3)
    with pytest.raises(ValueError, match="method must be"):
        own_motion_keypoints(frames, seq, 2, method="flow")


class _Cine:
    def __init__(self, frames, masks=None):
        self.frames, self.masks, self.labelled_frames, self.n_frames = frames, masks, None, len(frames)


def _bullet_sequence(n, shrink_per_frame):
    """40 keypoints of a bullet-shaped LV (apex up, base at y = 55) narrowing by ``shrink_per_frame`` a frame."""
    t = (np.arange(20) + 0.5) / 20
    out = []
    for i in range(n):
        half = 12 * (1 - shrink_per_frame * i) * np.sqrt(1 - t**2)
        y = 55 - 40 * t
        out.append(np.concatenate([np.stack([40 - half, y], 1), np.stack([40 + half, y], 1)[::-1]]))
    return np.stack(out).astype(np.float32)


def test_own_beat_motion_auto_tracks_unlabelled_clips_and_keeps_labels():
    frames = _moving(n=6)
    seq = _bullet_sequence(6, 0.01)  # the segmentation sees a little contraction (EF 8 %), the frames none
    unlabelled = own_beat_motion(_Cine(frames), seq, 1)
    assert unlabelled.method == "tracking" and unlabelled.note == ""
    np.testing.assert_allclose(unlabelled.targets[0], seq[1])
    # the frames translate: the tracked targets follow them, not the segmentation's shrinking shape
    np.testing.assert_allclose(unlabelled.targets[-1], seq[1] + 4 * np.array([0.8, -0.5]), atol=0.4)
    assert 5 < unlabelled.ef_segmentation < 10  # the segmented keypoints' EF is reported alongside
    labelled = own_beat_motion(_Cine(frames, masks=np.zeros((6, 64, 80), np.uint8)), seq, 1)
    assert labelled.method == "segmentation"
    np.testing.assert_allclose(labelled.targets, seq[1:])
    given = own_beat_motion(_Cine(frames), seq, 1, given_sequence=True)
    assert given.method == "segmentation"
    forced = own_beat_motion(_Cine(frames, masks=np.zeros((6, 64, 80), np.uint8)), seq, 1, method="tracking")
    assert forced.method == "tracking"
    with pytest.raises(ValueError, match="own motion must be"):
        own_beat_motion(_Cine(frames), seq, 1, method="optical")
    bare = own_beat_motion(frames, seq, 1)  # frames alone: no labels, so tracked, as the clip without masks
    assert bare.method == "tracking"
    np.testing.assert_allclose(bare.targets, unlabelled.targets)


def test_auto_falls_back_to_the_segmentation_when_tracking_loses_the_wall():
    frames = _moving(n=6)
    seq = _bullet_sequence(6, 0.05)  # the segmentation sees EF 36 %; the tracked keypoints only translate
    beat = own_beat_motion(_Cine(frames), seq, 1)
    assert beat.method == "segmentation" and "lost the wall" in beat.note
    np.testing.assert_allclose(beat.targets, seq[1:])
    assert own_beat_motion(_Cine(frames), seq, 1, max_ef_drop=50).method == "tracking"
    forced = own_beat_motion(_Cine(frames), seq, 1, method="tracking")
    assert forced.method == "tracking" and forced.note == ""


def test_clip_ef_target_replaces_the_target_only_for_tracked_beats():
    class Loop:
        def __init__(self):
            self.ef_target, self.metadata = 20.0, {}

    tracked = own_beat_motion(_Cine(_moving(n=4)), _bullet_sequence(4, 0.01), 0)
    loop = clip_ef_target(Loop(), tracked)
    assert loop.ef_target == pytest.approx(tracked.ef_segmentation)
    assert loop.metadata["ef_tracked_keypoints"] == 20.0
    segmented = tracked._replace(method="segmentation")
    assert clip_ef_target(Loop(), segmented).ef_target == 20.0
