"""generate_ef_loop: the closed-loop EF control, on a stand-in generator that under-moves."""

import warnings

import numpy as np
import pytest
import torch

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.generation import generate_ef_loop
from echokdm.generation.ef_control import _next_request
from echokdm.geometry.keypoints import keypoints_to_mask
from echokdm.pipelines import KDMOutput

SIZE = 64


class _UnderMovingPipe:
    """Stands in for KDMPipeline: each 'frame' is the LV polygon of the keypoints moved by only
    ``gain`` × the asked motion (as K2F under-moves large motions), so the EF measured on the
    frames is below the keypoints' EF and grows with the asked EF."""

    class vae:
        class config:
            sample_size = SIZE

    def __init__(self, gain: float):
        self.gain, self.calls = gain, 0

    def __call__(self, source_frame, source_keypoints, target_keypoints, **kwargs):
        self.calls += 1
        moved = source_keypoints[None] + self.gain * (target_keypoints - source_keypoints[None])
        frames = np.stack([keypoints_to_mask(k, (SIZE, SIZE)) for k in moved]).astype(np.float32)
        return KDMOutput(frames=frames, flows=np.zeros((len(frames), 2, SIZE, SIZE), np.float32), gammas=None)


class _ThresholdSegmentation(LVSegmentationNet):
    """A 'model' that reads the LV as the bright pixels (the stand-in's frames are LV masks)."""

    def __init__(self):
        super().__init__(channels=(4, 8), num_res_units=0, sample_size=SIZE)

    def predict_masks(self, frames, batch_size=32, threshold=0.5):
        return (frames > 0.5).to(torch.uint8)


@pytest.fixture(scope="module")
def source():
    clip = simulate_clip(sample_patient(0, 0), n_frames=4, size=SIZE, fps=25.0)
    kp = clip.keypoints[0]
    return keypoints_to_mask(kp, (SIZE, SIZE)).astype(np.float32), kp


GEN = {"heart_rate_bpm": 120.0, "fps": 16.0, "progress": False}


def test_open_loop_misses_and_calibration_reaches_the_target(source):
    frame, kp = source
    seg = _ThresholdSegmentation()
    pipe = _UnderMovingPipe(gain=0.7)
    open_loop = generate_ef_loop(pipe, frame, kp, 50.0, segmentation=seg, calibrate=False, **GEN)
    assert pipe.calls == 1
    assert open_loop.ef_target == 50.0 and open_loop.metadata["ef_trajectory"] == pytest.approx(50.0, abs=0.01)
    assert open_loop.ef_achieved < 50.0 - 5  # the stand-in under-moves: the open loop misses by > 5 points

    pipe = _UnderMovingPipe(gain=0.7)
    loop = generate_ef_loop(pipe, frame, kp, 50.0, segmentation=seg, tolerance=2.0, max_attempts=4, **GEN)
    assert abs(loop.ef_achieved - 50.0) <= 2.0
    assert loop.ef_target == 50.0
    assert loop.metadata["ef_calibrated"] is True and loop.metadata["ef_requested"] == 50.0
    attempts = loop.metadata["ef_attempts"]
    assert 2 <= len(attempts) == pipe.calls <= 4
    assert attempts[0]["ef_achieved"] == pytest.approx(open_loop.ef_achieved)
    # the returned loop's keypoints are the trajectory it was generated from, which moves more than asked
    assert loop.metadata["ef_trajectory"] > 55.0
    from echokdm.generation import loop_ef
    assert loop_ef(loop.keypoints) == pytest.approx(loop.metadata["ef_trajectory"], abs=0.01)


def test_exact_generator_needs_one_attempt(source):
    frame, kp = source
    pipe = _UnderMovingPipe(gain=1.0)
    loop = generate_ef_loop(pipe, frame, kp, 45.0, segmentation=_ThresholdSegmentation(), tolerance=3.0, **GEN)
    assert pipe.calls == 1 and loop.metadata["ef_calibrated"] is True
    assert abs(loop.ef_achieved - 45.0) <= 3.0


def test_unreachable_target_warns_and_returns_the_closest(source):
    frame, kp = source
    pipe = _UnderMovingPipe(gain=0.2)  # can never contract enough for EF 60
    with pytest.warns(UserWarning, match="did not reach it"):
        loop = generate_ef_loop(pipe, frame, kp, 60.0, segmentation=_ThresholdSegmentation(), max_attempts=3, **GEN)
    achieved = [a["ef_achieved"] for a in loop.metadata["ef_attempts"]]
    assert loop.metadata["ef_calibrated"] is False and len(achieved) == pipe.calls
    assert loop.ef_achieved == pytest.approx(min(achieved, key=lambda a: abs(a - 60.0)))
    assert max(a["trajectory_ef"] for a in loop.metadata["ef_attempts"]) <= 90.0  # within the limits


def test_an_attempt_read_on_another_chamber_ends_the_search(source):
    """When the segmentation's LV is not the generated one (here: the frames show the LV 20 px to the side
    wherever the asked motion is large, as a real frame made to contract far shows the right ventricle to a
    phantom-trained model), the attempt has no EF achieved and no further attempt is steered by it."""
    frame, kp = source

    class Jumping(_UnderMovingPipe):
        def __call__(self, source_frame, source_keypoints, target_keypoints, **kwargs):
            out = super().__call__(source_frame, source_keypoints, target_keypoints, **kwargs)
            moved = np.linalg.norm(target_keypoints - source_keypoints[None], axis=-1).mean(axis=-1)
            far = moved > 0.5 * moved.max()
            out.frames[far] = np.roll(out.frames[far], 20, axis=-1)  # another 'chamber'
            return out

    pipe = Jumping(gain=1.0)
    with pytest.warns(UserWarning, match="not a reading of the generated LV"):
        loop = generate_ef_loop(pipe, frame, kp, 50.0, segmentation=_ThresholdSegmentation(), max_attempts=4, **GEN)
    assert pipe.calls == 1 and loop.ef_achieved is None and loop.metadata["ef_calibrated"] is False
    assert loop.metadata["ef_attempts"] == [{"trajectory_ef": pytest.approx(50.0, abs=0.01), "ef_achieved": None}]
    reading = loop.metadata["ef_reading"]
    assert reading["reliable"] is False and reading["lost_frames"] and reading["ef_read"] is not None
    assert "lost it on frame(s) " + reading["lost_frames"] in loop.metadata["ef_achieved_note"]
    # the same generator without the jump is read, and reached in one attempt
    pipe = _UnderMovingPipe(gain=1.0)
    loop = generate_ef_loop(pipe, frame, kp, 50.0, segmentation=_ThresholdSegmentation(), tolerance=3.0, **GEN)
    assert loop.metadata["ef_reading"]["reliable"] is True and abs(loop.ef_achieved - 50.0) <= 3.0


def test_next_request_steps():
    assert _next_request([(50.0, 40.0)], 50.0, (5, 90)) == pytest.approx(60.0)  # slope 1
    # secant through (50, 40) and (60, 45): slope 0.5 -> 60 + 5 / 0.5
    assert _next_request([(50.0, 40.0), (60.0, 45.0)], 50.0, (5, 90)) == pytest.approx(70.0)
    # a flat or falling response: the model has saturated, no further attempt
    assert _next_request([(50.0, 40.0), (60.0, 39.0)], 50.0, (5, 90)) is None
    assert _next_request([(50.0, 40.0), (60.0, 42.0)], 50.0, (5, 90)) is None
    assert _next_request([(85.0, 50.0)], 70.0, (5, 90)) == 90.0  # clipped


def test_a_saturated_model_is_not_asked_again(source):
    """A generator whose motion stops growing: the control stops after the step that showed it."""
    frame, kp = source

    class Saturating(_UnderMovingPipe):
        def __call__(self, source_frame, source_keypoints, target_keypoints, **kwargs):
            if self.calls == 0:
                self.first = target_keypoints
            # any larger ask moves the heart as the first did
            return super().__call__(source_frame, source_keypoints, self.first, **kwargs)

    pipe = Saturating(gain=0.6)
    with pytest.warns(UserWarning, match="did not reach it"):
        loop = generate_ef_loop(pipe, frame, kp, 50.0, segmentation=_ThresholdSegmentation(), max_attempts=5, **GEN)
    assert pipe.calls == 2 and len(loop.metadata["ef_attempts"]) == 2


def test_errors(source):
    frame, kp = source
    pipe = _UnderMovingPipe(gain=1.0)
    with pytest.raises(ValueError, match="segmentation model"):
        generate_ef_loop(pipe, frame, kp, 50.0, **GEN)
    with pytest.raises(ValueError, match="within"):
        generate_ef_loop(pipe, frame, kp, 100.0, segmentation=_ThresholdSegmentation(), **GEN)
    with pytest.raises(ValueError, match="max_attempts"):
        generate_ef_loop(pipe, frame, kp, 50.0, segmentation=_ThresholdSegmentation(), max_attempts=0, **GEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loop = generate_ef_loop(pipe, frame, kp, 50.0, calibrate=False, **GEN)  # no model: open loop, no warning
    assert loop.ef_achieved is None and loop.metadata["ef_attempts"] == []
