"""Generic (face / pose) generation helpers: sources, keypoint distance, the source frame, writers."""

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echokdm.adapters import get_adapter
from echokdm.data.procedural import simulate_figure
from echokdm.generation.keypoint_edit import (
    generate_keypoint_edit,
    keypoint_distance,
    read_edit_source,
    write_keypoint_edit,
)
from echokdm.generation.settings import SamplingSettings
from echokdm.pipelines import KDMPipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import tiny_pipeline


@pytest.fixture(scope="module")
def figure(tmp_path_factory):
    """A 4-frame pose sequence on disk: frames/ and keypoints/ (OpenPose JSON)."""
    root = tmp_path_factory.mktemp("figure")
    scene = simulate_figure(2, n_frames=4, size=32)
    pose = get_adapter("pose")
    for t in range(4):
        (root / "frames").mkdir(exist_ok=True)
        Image.fromarray((scene.render(t) * 255).astype(np.uint8)).save(root / "frames" / f"{t}.png")
        pose.write_keypoints(root / "keypoints" / f"{t}_keypoints.json", scene.keypoints(t))
    return root, scene


def test_keypoint_distance_ignores_missing_keypoints():
    target = np.zeros((3, 4, 2))
    detected = target + [3.0, 4.0]
    detected[1, :2] = np.nan
    detected[2] = np.nan
    np.testing.assert_allclose(keypoint_distance(detected, target), [5.0, 5.0, np.nan])


def test_read_edit_source_from_a_sequence(figure):
    root, scene = figure
    src = read_edit_source(root / "frames", 2, "pose", root / "keypoints")
    assert src.frame.shape == (32, 32) and src.sequence.shape == (4, 25, 2) and src.keypoints_source == "given"
    np.testing.assert_allclose(src.keypoints, scene.keypoints(2), atol=1e-3)
    one = read_edit_source(root / "frames" / "1.png", 0, "pose", root / "keypoints" / "1_keypoints.json")
    assert one.sequence is None and one.frames.shape == (1, 32, 32)
    with pytest.raises(ValueError, match="frame 7 is outside its 4 frame"):
        read_edit_source(root / "frames", 7, "pose", root / "keypoints")
    with pytest.raises(ValueError, match="expected 68 keypoints, found 25"):  # pose files are not face landmarks
        read_edit_source(root / "frames", 0, "face", root / "keypoints" / "1_keypoints.json")


def test_generate_keeps_the_source_frame_and_writes(figure, tmp_path):
    scene = figure[1]
    tiny = tiny_pipeline()
    pipe = KDMPipeline(tiny.k2f, tiny.f2i, tiny.vae, tiny.scheduler, adapter="pose")
    targets = scene.all_keypoints()[[0, 2, 3]]  # the first target is the source pose
    fast = SamplingSettings(k=2, num_inference_steps=3)
    edit = generate_keypoint_edit(pipe, scene.render(0).mean(-1), scene.keypoints(0), targets, sampling=fast,
                                  progress=False)
    assert edit.frames.shape == (3, 32, 32) and edit.gammas[0] == 0 and edit.kp_md is None
    np.testing.assert_array_equal(edit.flows[0], 0.0)
    np.testing.assert_allclose(edit.frames[0], scene.render(0).mean(-1), atol=1e-6)
    again = generate_keypoint_edit(pipe, scene.render(0).mean(-1), scene.keypoints(0), targets, sampling=fast,
                                   progress=False)
    np.testing.assert_array_equal(edit.frames, again.frames)  # seeded
    written = write_keypoint_edit(tmp_path, edit, stem="e", formats="png,gif")
    assert min(p.name for p in written["keypoint_files"].iterdir()) == "0000_keypoints.json"
    assert (tmp_path / "e_preview.png").is_file() and not (tmp_path / "e.mp4").exists()
    with pytest.raises(FileExistsError):
        write_keypoint_edit(tmp_path, edit, stem="e", formats="png")
    with pytest.raises(ValueError, match="echo formats"):
        write_keypoint_edit(tmp_path, edit, stem="f", formats="dicom")


def test_keypoint_edits_never_fit_the_flow_to_their_keypoints(figure):
    """Face and pose keypoints are too sparse for a local fit: fit_keypoints (on by default) and fit_region
    are ignored, so a keypoint edit is K2F's flow as it is."""
    scene = figure[1]
    tiny = tiny_pipeline()
    pipe = KDMPipeline(tiny.k2f, tiny.f2i, tiny.vae, tiny.scheduler, adapter="pose")
    targets = scene.all_keypoints()[[0, 3]]
    frame, src = scene.render(0).mean(-1), scene.keypoints(0)
    plain = SamplingSettings(k=0, num_inference_steps=3, fit_keypoints=False, fit_region=False)
    fitted = plain.replace(fit_keypoints=True, fit_region=True)
    assert SamplingSettings().fit_keypoints
    a = generate_keypoint_edit(pipe, frame, src, targets, sampling=plain, progress=False)
    b = generate_keypoint_edit(pipe, frame, src, targets, sampling=fitted, progress=False)
    np.testing.assert_array_equal(a.flows, b.flows)
    from echokdm.geometry.flow import keypoint_region_flow
    region = keypoint_region_flow(a.flows[1], src, targets[1], inner=6.0, ramp=10.0)
    assert np.abs(region - a.flows[1]).max() > 0.1  # the region would have changed this edit's flow
