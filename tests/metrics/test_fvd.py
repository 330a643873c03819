"""FVD: the I3D architecture (its parameter names and shapes), clip resampling, and the plumbing."""

import numpy as np
import pytest
import torch

from echokdm.metrics import fid, fvd


def test_i3d_has_the_kinetics_checkpoint_layout():
    model = fvd.inception_i3d()
    state = model.state_dict()
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Mixed_5c.b1b.conv3d.weight"].shape == (384, 192, 3, 3, 3)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1) and "logits.conv3d.bias" in state
    assert "logits.bn.weight" not in state
    n_params = sum(p.numel() for p in model.parameters())
    assert 12_000_000 < n_params < 13_000_000  # I3D (Inception-v1 inflated): about 12.3 M


def test_i3d_logits_of_short_small_clips(tmp_path):
    torch.manual_seed(0)
    torch.save(fvd.inception_i3d().state_dict(), tmp_path / "rgb_imagenet.pt")
    extractor, note = fvd.load_fvd_extractor(tmp_path)
    assert note is None
    extractor.size = 64  # small for the test; 224 by default
    clips = np.random.default_rng(0).random((2, 9, 32, 32)).astype(np.float32)
    logits = extractor(clips)
    assert logits.shape == (2, 400) and np.isfinite(logits).all()


def test_resample_clip_spreads_indices():
    clip = np.arange(8)[:, None, None] * np.ones((8, 2, 2))
    out = fvd.resample_clip(clip, 16)
    assert out.shape == (16, 2, 2) and out[0, 0, 0] == 0 and out[-1, 0, 0] == 7
    assert np.all(np.diff(out[:, 0, 0]) >= 0)
    np.testing.assert_array_equal(fvd.resample_clip(np.arange(32)[:, None, None], 16)[:, 0, 0],
                                  np.round(np.linspace(0, 31, 16)))


def test_fvd_plumbing_with_an_injected_network():
    rng = np.random.default_rng(3)

    def extract(clips):  # mean brightness over time and its frame-to-frame change: a 2-D "feature"
        clips = np.asarray([np.asarray(c) for c in clips])
        return np.stack([clips.mean(axis=(1, 2, 3)), np.abs(np.diff(clips, axis=1)).mean(axis=(1, 2, 3))], 1)

    smooth = [np.repeat(rng.random((1, 8, 8)), 6, 0) * rng.uniform(0.8, 1, 1) for _ in range(12)]
    smooth2 = [np.repeat(rng.random((1, 8, 8)), 6, 0) * rng.uniform(0.8, 1, 1) for _ in range(12)]
    flicker = [rng.random((6, 8, 8)) for _ in range(12)]
    with pytest.warns(fid.FewSamplesWarning, match="FVD from 12"):
        near = fvd.frechet_video_distance(smooth, smooth2, extract, batch_size=5)
    assert near < fvd.frechet_video_distance(smooth, flicker, extract, warn=False)


def test_fvd_weights_note_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(fvd.FVD_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(fid, "_hub_checkpoints", lambda: tmp_path)
    extractor, note = fvd.load_fvd_extractor(download=False)
    assert extractor is None and "--fvd-weights DIR" in note and "rgb_imagenet.pt" in note
