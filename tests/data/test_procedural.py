"""Procedural faces and figures: landmarks follow the drawn features, maps invert, flows are exact."""

import numpy as np
import pytest
import torch

from echokdm.data.procedural import simulate_face, simulate_figure
from echokdm.data.procedural.face import CartoonFace, FaceMotion, sample_face_subject
from echokdm.geometry.flow import warp


def _motion(n: int, **values) -> FaceMotion:
    fields = {k: np.zeros(n) for k in ("jaw", "smile", "brow", "blink", "yaw", "angle")}
    fields.update({"scale": np.ones(n), "shift": np.zeros((n, 2))})
    fields.update({k: np.asarray(v, dtype=np.float64) for k, v in values.items()})
    return FaceMotion(**fields)


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear ``image (C, H, W)`` at ``(x, y)`` points ``(N, 2)`` → ``(N, C)``."""
    from scipy.ndimage import map_coordinates

    return np.stack([map_coordinates(c, [points[:, 1], points[:, 0]], order=1, mode="nearest") for c in image], 1)


def test_face_landmarks_move_with_the_jaw_and_smile():
    subject = sample_face_subject(np.random.default_rng(1))
    face = CartoonFace(subject, _motion(3, jaw=[0, 1, 0], smile=[0, 0, 1]), 64)
    rest, open_, smile = (face.keypoints(t) for t in range(3))
    assert open_[8, 1] - rest[8, 1] > 2.5  # the chin drops (0.2 face units ≈ 3.5 px)
    assert (open_[66, 1] - open_[62, 1]) - (rest[66, 1] - rest[62, 1]) > 2.5  # the inner lips part
    np.testing.assert_allclose(open_[27:31], rest[27:31], atol=1e-9)  # the nose stays
    assert smile[54, 0] - smile[48, 0] > rest[54, 0] - rest[48, 0] + 0.5  # a smile widens the mouth
    assert smile[54, 1] < rest[54, 1] - 0.5  # and lifts its corners
    # the open mouth is dark: the pixel between the inner lips at jaw = 1
    frame = face.render(1).mean(-1)
    centre = (open_[62] + open_[66]) / 2
    assert frame[round(centre[1]), round(centre[0])] < 0.35


def test_face_maps_invert_and_stay_monotone():
    face = simulate_face(7, n_frames=6, size=48)
    grid = np.stack(np.meshgrid(np.linspace(-1.2, 1.2, 40), np.linspace(-1.6, 1.2, 40)), -1).reshape(-1, 2)
    for t in range(face.n_frames):
        np.testing.assert_allclose(face.inverse(face.forward(grid, t), t), grid, atol=1e-8)
    extreme = CartoonFace(face.subject, _motion(1, jaw=[1.0], smile=[1.0], brow=[1.0], blink=[0.7], yaw=[1.0]), 48)
    u = grid
    step = 1e-4
    dx = (extreme.forward(u + [step, 0], 0) - extreme.forward(u - [step, 0], 0)) / (2 * step)
    dy = (extreme.forward(u + [0, step], 0) - extreme.forward(u - [0, step], 0)) / (2 * step)
    det = dx[:, 0] * dy[:, 1] - dx[:, 1] * dy[:, 0]
    assert det.min() > 0  # no fold anywhere, even with every expression at its maximum


@pytest.mark.parametrize("make", [simulate_face, simulate_figure])
def test_flows_are_exact(make):
    scene = make(3, n_frames=6, size=48)
    frames = scene.frames()
    kp = scene.all_keypoints()
    for a, b in ((0, 3), (5, 1)):
        flow = scene.flow(a, b)
        assert flow.shape == (2, 48, 48) and flow.dtype == np.float32
        source = torch.from_numpy(frames[a].transpose(2, 0, 1))[None]
        warped = warp(source, torch.from_numpy(flow)[None])[0].numpy().transpose(1, 2, 0)
        assert np.abs(warped - frames[b]).mean() < 0.8 * np.abs(frames[a] - frames[b]).mean()
        # each target keypoint plus the flow there lands on its source keypoint (within interpolation
        # error at layer edges, where the flow jumps to the still background)
        error = np.linalg.norm(kp[b] + _sample(flow, kp[b]) - kp[a], axis=1)
        assert np.median(error) < 0.05 and error.max() < 2.0
    assert np.abs(scene.flow(2, 2)).max() == 0.0


def test_figure_is_rigid_and_stands_on_the_floor():
    figure = simulate_figure(4, n_frames=8, size=64, action="jacks")
    kp = figure.all_keypoints()
    for a, b in ((2, 3), (5, 6), (9, 10), (10, 11), (1, 8)):  # upper arm, forearm, thigh, shin, torso
        lengths = np.linalg.norm(kp[:, a] - kp[:, b], axis=1)
        np.testing.assert_allclose(lengths, lengths[0], rtol=1e-6)
    arm_span = np.abs(kp[:, 4, 0] - kp[:, 7, 0])
    assert arm_span.max() > 1.5 * arm_span.min()  # jumping jacks move the arms
    assert np.all(kp[:, [19, 22], 1].max(axis=1) < figure.ground)
    with pytest.raises(ValueError, match="unknown action"):
        simulate_figure(0, 4, 32, action="fly")


def test_same_seed_same_sequence():
    a, b = simulate_face(11, 4, 32), simulate_face(11, 4, 32)
    np.testing.assert_array_equal(a.render(2), b.render(2))
    assert not np.allclose(simulate_face(12, 4, 32).render(2), a.render(2))
