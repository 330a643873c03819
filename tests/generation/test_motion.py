"""Motion sources: own, transferred, synthetic (EF) and drag trajectories, keypoint files."""

import numpy as np
import pandas as pd
import pytest

from echokdm.generation.motion import (
    LONGITUDINAL_SHARE,
    drag_motion,
    first_end_diastole,
    load_drag_file,
    load_keypoints_file,
    own_beat,
    own_motion,
    spread_drag_vectors,
    synthetic_motion,
    synthetic_volume_curve,
    transfer_motion,
)
from echokdm.geometry.keypoints import mask_keypoints
from echokdm.geometry.volumes import long_axis_from_keypoints, simpson_volume
from echokdm.metrics.lv_function import KEYPOINT_COLUMNS

T_CHORDS = (np.arange(20) + 0.5) / 20


def bullet(base=(50.0, 80.0), length=50.0, half_width=15.0):
    """40 keypoints of a bullet-shaped LV, apex straight up (smaller y)."""
    half = half_width * np.sqrt(1 - T_CHORDS**2)
    y = base[1] - length * T_CHORDS
    left = np.stack([base[0] - half, y], axis=1)
    right = np.stack([base[0] + half, y], axis=1)
    return np.concatenate([left, right[::-1]])


def ef_of(keypoints):
    v = simpson_volume(keypoints)
    return 100 * (v.max() - v.min()) / v.max()


def similarity(points, angle_deg, scale, shift):
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return scale * points @ rot.T + np.asarray(shift)


# --------------------------------------------------------------------------------------------
# own and transfer
# --------------------------------------------------------------------------------------------


def test_own_motion_is_the_clip_from_the_source_on():
    seq = np.random.default_rng(0).normal(size=(12, 40, 2))
    out = own_motion(seq, 3)
    assert out.dtype == np.float32 and out.shape == (9, 40, 2)
    np.testing.assert_allclose(out, seq[3:], rtol=1e-6)
    assert own_motion(seq, 3, stop=5).shape == (2, 40, 2)
    with pytest.raises(ValueError, match="source_index=12 is outside"):
        own_motion(seq, 12)
    with pytest.raises(ValueError, match="stop=3"):
        own_motion(seq, 3, stop=3)
    with pytest.raises(ValueError, match=r"\(T, 40, 2\)"):
        own_motion(seq[:, :39], 0)


def other_sequence():
    """An arbitrary motion: a beat plus a sideways sway plus per-keypoint wobble."""
    seq = synthetic_motion(bullet(), ef=50, heart_rate_bpm=60, fps=10).astype(np.float64)  # (10, 40, 2)
    rng = np.random.default_rng(1)
    seq[1:] += rng.normal(scale=0.8, size=seq[1:].shape)
    seq[:, :, 0] += 2.0 * np.sin(np.linspace(0, np.pi, len(seq)))[:, None]
    return seq


@pytest.mark.parametrize("angle, scale, shift", [(30.0, 1.3, (12.0, -7.0)), (-75.0, 0.6, (3.0, 40.0))])
def test_transfer_onto_a_moved_copy_reproduces_the_moved_trajectory(angle, scale, shift):
    seq = other_sequence()
    ed = 0
    src = similarity(seq[ed], angle, scale, shift)
    out = transfer_motion(src, seq, ed)
    assert out.shape == seq.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, similarity(seq, angle, scale, shift), atol=1e-3)


def test_transfer_starts_at_the_source_and_keeps_its_shape():
    seq = other_sequence()
    src = bullet(base=(40.0, 90.0), length=60.0, half_width=10.0)  # another, narrower heart
    out = transfer_motion(src, seq, 2, stop=8)
    assert out.shape == (6, 40, 2)
    np.testing.assert_allclose(out[0], src, atol=1e-4)
    # the relative long-axis shortening is transferred
    _, _, l_other = long_axis_from_keypoints(seq[2:8])
    _, _, l_out = long_axis_from_keypoints(out)
    np.testing.assert_allclose(l_out / l_out[0], l_other / l_other[0], rtol=1e-4)


def test_transfer_onto_a_copy_stretched_across_its_axis_reproduces_the_stretched_trajectory():
    """Fractional shortening is kept across the axis too: a copy of the donor's ED heart half as wide (then
    rotated and moved) gets the donor's trajectory half as wide (with length alone it moved twice too far)."""
    seq = other_sequence()
    narrow = seq.copy()
    narrow[..., 0] = 50.0 + 0.5 * (seq[..., 0] - 50.0)  # the long axis is vertical through x = 50
    src = similarity(narrow[0], 20.0, 1.1, (5.0, -3.0))
    out = transfer_motion(src, seq, 0)
    np.testing.assert_allclose(out, similarity(narrow, 20.0, 1.1, (5.0, -3.0)), atol=1e-3)


def test_transfer_onto_a_narrow_based_heart_keeps_its_walls_apart():
    """A wide donor's inward wall motion, scaled by length alone, moved a heart whose base is narrow (as a
    network's mask that tapers into the mitral valve makes it) across itself; per keypoint, it does not."""
    donor = synthetic_motion(bullet(half_width=22.0), ef=60, heart_rate_bpm=60, fps=10)
    src = bullet(base=(40.0, 90.0), length=60.0, half_width=14.0)
    taper = 0.25 + 0.75 * np.concatenate([T_CHORDS, T_CHORDS[::-1]]) ** 0.5  # narrow at the base
    src[:, 0] = 40.0 + taper * (src[:, 0] - 40.0)
    out = transfer_motion(src, donor, 0)
    left, right = out[:, :20, 0], out[:, 39:19:-1, 0]  # keypoint k and 39 - k, at the same level
    assert (right - left > 0).all()
    assert ef_of(out) == pytest.approx(ef_of(donor), abs=3.0)


def test_transfer_validates_its_inputs():
    seq = other_sequence()
    with pytest.raises(ValueError, match=r"src_kp must have shape \(40, 2\)"):
        transfer_motion(np.zeros((39, 2)), seq, 0)
    with pytest.raises(ValueError, match="other_ed_index=10 is outside"):
        transfer_motion(bullet(), seq, 10)
    broken = seq.copy()
    broken[0, 5] = np.nan
    with pytest.raises(ValueError, match="long axis cannot be measured"):
        transfer_motion(bullet(), broken, 0)


# --------------------------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ef", [20.0, 35.0, 52.5, 70.0])
def test_synthetic_motion_has_the_requested_ef_and_frame_count(ef):
    src = bullet()
    out = synthetic_motion(src, ef, heart_rate_bpm=72, fps=30, n_beats=2)
    assert out.shape == (round(2 * 60 / 72 * 30), 40, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], src, atol=1e-4)
    assert abs(ef_of(out) - ef) < 0.5
    # apex fixed; the long axis shortens as r**s, less than the chords
    _, apex, length = long_axis_from_keypoints(out)
    np.testing.assert_allclose(apex, np.broadcast_to(apex[0], apex.shape), atol=1e-3)
    r = 1 - ef / 100
    assert length.min() / length[0] == pytest.approx(r**LONGITUDINAL_SHARE, rel=1e-3)
    es = int(np.argmin(simpson_volume(out)))
    width = np.linalg.norm(out[:, 0] - out[:, 39], axis=-1)
    assert 1 - length[es] / length[0] < 1 - width[es] / width[0]


def test_synthetic_motion_on_detected_keypoints_and_odd_rates():
    yy, xx = np.mgrid[0:112, 0:112]
    mask = ((((xx - 50) / 17) ** 2 + ((yy - 78) / 45) ** 2) < 1) & (yy <= 78)
    src = mask_keypoints(mask.astype(np.uint8)).keypoints  # chords only nearly perpendicular
    for ef, hr, fps in [(25.0, 48, 12.0), (65.0, 115, 33.0)]:
        out = synthetic_motion(src, ef, heart_rate_bpm=hr, fps=fps, n_beats=1.5)
        assert len(out) == round(1.5 * 60 / hr * fps)
        assert abs(ef_of(out) - ef) < 0.5


def test_synthetic_volume_curve_is_a_beat():
    curve = synthetic_volume_curve(60, heart_rate_bpm=60, fps=100, n_beats=1)
    assert curve.shape == (100,) and curve[0] == 1.0 and curve.min() == pytest.approx(0.4)
    es = int(np.argmin(curve))
    assert 25 <= es <= 45  # end-systole about a third into the cycle
    assert np.all(np.diff(curve[: es + 1]) <= 1e-12)  # ejection only shrinks


def test_synthetic_motion_validates_its_inputs():
    with pytest.raises(ValueError, match="ef must be within"):
        synthetic_motion(bullet(), 0)
    with pytest.raises(ValueError, match="fps must be a positive"):
        synthetic_motion(bullet(), 50, fps=-1)
    with pytest.raises(ValueError, match="at least 2 are needed"):
        synthetic_motion(bullet(), 50, heart_rate_bpm=60, fps=1, n_beats=1)
    src = bullet()
    src[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        synthetic_motion(src, 50)


# --------------------------------------------------------------------------------------------
# drag
# --------------------------------------------------------------------------------------------


def test_drag_dense_vectors_as_an_edit_and_as_a_loop():
    src = bullet()
    v = np.random.default_rng(2).normal(size=(40, 2))
    edit = drag_motion(src, v)
    assert edit.shape == (1, 40, 2)
    np.testing.assert_allclose(edit[0], src + v, atol=1e-4)
    loop = drag_motion(src, v, n_frames=7)
    assert loop.shape == (7, 40, 2)
    np.testing.assert_allclose(loop[0], src, atol=1e-4)
    np.testing.assert_allclose(loop[3], src + v, atol=1e-4)  # the target, exactly, at n // 2
    gamma = (loop - src)[:, 0, 0] / v[0, 0]
    assert np.all(np.diff(gamma[:4]) > 0) and np.all(np.diff(gamma[3:]) < 0) and gamma[-1] > 0


def test_sparse_drag_moves_the_dragged_points_exactly_and_the_neighbours_smoothly():
    dense = spread_drag_vectors({19: (0.0, -5.0), 5: (2.0, 0.0)}, sigma=3.0)
    np.testing.assert_allclose(dense[19], [0, -5], atol=1e-9)
    np.testing.assert_allclose(dense[5], [2, 0], atol=1e-9)
    dy = -dense[:, 1]
    assert dy[18] > dy[16] > dy[14] > 0.01 and dy[30] < 0.01  # decays along the wall
    only = spread_drag_vectors({10: (1.0, 1.0)}, sigma=0)
    assert np.count_nonzero(only.any(axis=1)) == 1
    out = drag_motion(bullet(), {19: (0.0, -5.0)}, n_frames=1)
    np.testing.assert_allclose(out[0, 19], bullet()[19] + [0, -5], atol=1e-4)


def test_drag_validates_its_inputs():
    with pytest.raises(ValueError, match="drag keypoint index"):
        drag_motion(bullet(), {40: (1.0, 0.0)})
    with pytest.raises(ValueError, match="empty"):
        drag_motion(bullet(), {})
    with pytest.raises(ValueError, match=r"shape \(40, 2\)"):
        drag_motion(bullet(), np.zeros((20, 2)))
    with pytest.raises(ValueError, match="n_frames must be a positive integer"):
        drag_motion(bullet(), np.zeros((40, 2)), n_frames=0)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def _keypoint_csv(path, keypoints, frames):
    table = pd.DataFrame(np.concatenate([keypoints[..., 0], keypoints[..., 1]], axis=1), columns=KEYPOINT_COLUMNS)
    table.insert(0, "frame", frames)
    table.insert(0, "clip_id", "c1")
    table["volume"] = 1.0
    table.to_csv(path, index=False)
    return path


def test_load_keypoints_file_csv_and_npy(tmp_path):
    seq = np.random.default_rng(3).normal(size=(4, 40, 2)).astype(np.float32)
    seq[2, 7] = np.nan
    csv = _keypoint_csv(tmp_path / "kp.csv", seq, [10, 11, 12, 13])
    out = load_keypoints_file(csv)
    assert out.shape == (4, 40, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, seq, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(load_keypoints_file(csv, frame=11), seq[1], rtol=1e-5)
    with pytest.raises(ValueError, match="no row with frame == 3"):
        load_keypoints_file(csv, frame=3)
    np.save(tmp_path / "kp.npy", seq)
    np.testing.assert_array_equal(load_keypoints_file(tmp_path / "kp.npy", frame=3), seq[3])
    np.save(tmp_path / "one.npy", seq[0])
    assert load_keypoints_file(tmp_path / "one.npy").shape == (1, 40, 2)


def test_load_keypoints_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_keypoints_file(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"frame": [0], "x0": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: missing keypoint column\(s\) x1"):
        load_keypoints_file(bad)
    (tmp_path / "kp.txt").write_text("1 2")
    with pytest.raises(ValueError, match=r"kp\.txt: unknown keypoint file type"):
        load_keypoints_file(tmp_path / "kp.txt")
    np.save(tmp_path / "shape.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"shape\.npy: keypoints must have shape"):
        load_keypoints_file(tmp_path / "shape.npy")


def test_load_drag_file_sparse_csv_dense_csv_and_npy(tmp_path):
    sparse = tmp_path / "drag.csv"
    pd.DataFrame({"keypoint": [19, 20], "dx": [0.0, 1.0], "dy": [-4.0, -4.0]}).to_csv(sparse, index=False)
    assert load_drag_file(sparse) == {19: (0.0, -4.0), 20: (1.0, -4.0)}
    v = np.arange(80, dtype=np.float64).reshape(40, 2)
    np.save(tmp_path / "drag.npy", v)
    np.testing.assert_array_equal(load_drag_file(tmp_path / "drag.npy"), v)
    dense = _keypoint_csv(tmp_path / "dense.csv", v[None], [0])
    np.testing.assert_allclose(load_drag_file(dense), v)
    two = _keypoint_csv(tmp_path / "two.csv", np.stack([v, v]), [0, 1])
    with pytest.raises(ValueError, match="exactly one row"):
        load_drag_file(two)


def test_own_motion_works_from_a_frame_without_keypoints():
    """A NaN source frame (a mask the geometry could not measure) is filled from its neighbours;
    it used to fail with a message about "the other ED"."""
    t = np.arange(10.0)
    seq = np.repeat(bullet()[None], 10, axis=0) + t[:, None, None] * np.array([1.0, 0.5])
    holed = seq.copy()
    holed[[4, 7]] = np.nan
    out = own_motion(holed, 4)
    assert out.shape == (6, 40, 2) and np.isfinite(out).all()
    np.testing.assert_allclose(out, seq[4:], atol=1e-4)  # linear motion: interpolation is exact
    with pytest.raises(ValueError, match="no frame with all 40 keypoints"):
        own_motion(np.full((3, 40, 2), np.nan), 0)


def test_own_motion_applies_the_clip_motion_to_given_keypoints():
    seq = np.repeat(bullet()[None], 6, axis=0)
    seq[:, :, 1] *= np.linspace(1.0, 0.9, 6)[:, None]  # the heart shortens
    seq[2] = np.nan
    given = bullet() + np.array([3.0, -2.0])  # the user's keypoints of the source frame
    out = own_motion(seq, 2, src_kp=given)
    np.testing.assert_allclose(out[0], given, atol=1e-4)
    assert np.isfinite(out).all() and out.shape == (4, 40, 2)
    v = simpson_volume(out)
    assert v[-1] < v[0]  # the clip's shortening is carried over


def test_generate_own_starts_from_a_frame_whose_mask_is_broken(tmp_path):
    """``echokdm generate --own`` wiring (echokdm.cli.generate._own): a source frame without keypoints of
    its own (empty mask) gets them from its neighbours; keypoints of every frame given in
    --keypoints are used as they are."""
    from types import SimpleNamespace

    from echokdm.cli.generate import _own
    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(0, 0), n_frames=12, fps=50.0, size=112)
    cine = clip.to_cine()
    masks = cine.masks.copy()
    masks[5] = 0
    cine = cine.__class__(**{**cine.__dict__, "masks": masks, "labelled_frames": None, "tracings": None})
    source = SimpleNamespace(cine=cine, keypoints=np.full((40, 2), np.nan, np.float32), keypoints_source="mask",
                             fps=50.0, spacing_mm=None)
    args = SimpleNamespace(frame=5, frames=None, apex_direction="auto", mask=None, keypoints=None)
    src, targets, fps, beat = _own(args, source, None)
    assert beat.method == "segmentation"  # labelled on every frame: the labels, not tracking
    assert np.isfinite(src).all() and np.isfinite(targets).all() and targets.shape == (7, 40, 2)
    assert np.linalg.norm(src - clip.keypoints[5], axis=1).mean() < 1.0
    path = tmp_path / "kp.npy"
    np.save(path, clip.keypoints)
    given = SimpleNamespace(cine=cine, keypoints=clip.keypoints[5], keypoints_source="given", fps=50.0,
                            spacing_mm=None)
    args.keypoints = str(path)
    src, targets, _, _ = _own(args, given, None)
    np.testing.assert_allclose(targets, clip.keypoints[5:], atol=1e-4)


def test_own_beat_uses_given_keypoints_only_when_asked_or_needed():
    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(0, 0), n_frames=20, size=64, fps=25.0)
    seq = clip.keypoints.astype(np.float64).copy()
    given = seq[4] + 0.7  # e.g. a traced frame a little off the clip's own
    src, targets = own_beat(seq, 4, 12, source_keypoints=given)
    np.testing.assert_allclose(src, seq[4], atol=1e-5)
    np.testing.assert_allclose(targets, seq[4:12], atol=1e-5)
    src, targets = own_beat(seq, 4, 12, source_keypoints=given, prefer_source=True)
    np.testing.assert_allclose(src, given, atol=1e-5)
    np.testing.assert_allclose(targets[0], given, atol=1e-5)
    assert targets.shape == (8, 40, 2)
    seq[4] = np.nan  # the source frame without keypoints: the given ones, moved by the clip's motion
    src, targets = own_beat(seq, 4, 12, source_keypoints=given)
    np.testing.assert_allclose(src, given, atol=1e-5)
    src, _ = own_beat(seq, 4, 12)  # nothing given: interpolated in time
    assert np.isfinite(src).all()


def test_first_end_diastole_of_a_phantom_clip():
    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(0, 1), n_beats=2.0, size=64, fps=25.0)
    ed = first_end_diastole(clip.keypoints, clip.fps)
    assert abs(ed - int(clip.ed_frames[0])) <= 1
    with pytest.raises(ValueError, match="my clip: fewer than 3 frames"):
        first_end_diastole(np.full((5, 40, 2), np.nan), 25.0, "my clip")
