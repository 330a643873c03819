"""The small heatmap keypoint detector used for MD when face-alignment / OpenPose are not there."""

import numpy as np
import pytest
import torch

from echokdm.adapters.detector import (
    PACKAGED_DETECTORS,
    KeypointHeatmapNet,
    detect_with_heatmaps,
    load_detector,
    train_keypoint_detector,
)
from echokdm.cli import main
from echokdm.pretrained import CHECKPOINTS


def test_soft_argmax_reads_a_peak_at_its_pixel_centre():
    model = KeypointHeatmapNet(n_keypoints=2, size=32).eval()
    logits = torch.full((1, 2, 16, 16), -50.0)
    logits[0, 0, 3, 10] = 50.0  # heatmap pixel (x=10, y=3) at stride 2 -> input pixel centre 20.5, 6.5
    logits[0, 1, 15, 0] = 50.0
    model.forward = lambda frames: logits
    kp = model.keypoints(torch.zeros(1, 3, 32, 32))
    np.testing.assert_allclose(kp[0].numpy(), [[20.5, 6.5], [0.5, 30.5]], atol=1e-4)


def test_detect_maps_back_to_the_input_grid_and_takes_gray_or_rgb():
    model = KeypointHeatmapNet(n_keypoints=5, size=32).eval()
    rgb = np.random.default_rng(0).random((3, 64, 48, 3)).astype(np.float32)
    out = detect_with_heatmaps(rgb, model)
    assert out.shape == (3, 5, 2) and np.isfinite(out).all()
    assert (out[..., 0] > -0.5).all() and (out[..., 0] < 47.5).all() and (out[..., 1] < 63.5).all()
    assert detect_with_heatmaps(rgb[..., 0], model).shape == (3, 5, 2)


def test_training_saves_a_loadable_detector(tmp_path):
    data = tmp_path / "data"
    assert main(["procedural", "pose", "--out", str(data), "--subjects", "4", "--sequences-per-subject", "1",
                 "--frames", "3", "--size", "32", "--pairs", "2", "--seed", "0", "--no-progress"]) == 0
    result = train_keypoint_detector(data / "manifest.csv", "pose", tmp_path / "det", size=32, steps=4,
                                     batch_size=4, progress=False)
    assert np.isfinite(result["train_md"]) and result["train_frames"] > 0
    model = load_detector(tmp_path / "det")
    assert model.config.adapter == "pose" and model.config.n_keypoints == 25
    with pytest.raises(FileNotFoundError, match="packaged detector"):
        load_detector(tmp_path / "nowhere")


@pytest.mark.parametrize("adapter", sorted(PACKAGED_DETECTORS))
def test_packaged_detector_finds_procedural_keypoints(adapter, tmp_path):
    if not (CHECKPOINTS / PACKAGED_DETECTORS[adapter]).is_dir():
        pytest.skip("packaged detector not built")
    data = tmp_path / "data"
    assert main(["procedural", adapter, "--out", str(data), "--subjects", "2", "--sequences-per-subject", "1",
                 "--frames", "3", "--size", "64", "--pairs", "2", "--seed", "99", "--no-progress"]) == 0
    from echokdm.data.sequences import load_sequence_manifest, read_sequence_frames

    row = load_sequence_manifest(data / "manifest.csv").iloc[0]
    kp_true = np.load(data / "truth" / f"{row['clip_id']}.npz")["keypoints"]  # (T, N, 2), none missing
    found = detect_with_heatmaps(read_sequence_frames(row, 3), PACKAGED_DETECTORS[adapter])
    md = np.nanmean(np.linalg.norm(found - kp_true, axis=-1))
    assert md < 3.0  # px at 64 x 64, on subjects and motions it did not see (seed 99)
