"""LPIPS on RGB frames: the published values on the LPIPS authors' example images, and the same
numbers as the ``lpips`` package itself (``lpips.im2tensor`` of the same PNGs)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echokdm.metrics.lpips import LPIPSMetric, lpips_distance

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "lpips"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "alexnet_features.pth").is_file()
                                   or not (WEIGHTS / "vgg16_features.pth").is_file(),
                                   reason=f"LPIPS backbone weights not found in {WEIGHTS}")


def _image(name: str) -> np.ndarray:
    """``(H, W, 3)`` float32 in [0, 1]."""
    return np.asarray(Image.open(DATA / f"{name}.png").convert("RGB"), np.float32) / 255.0


@needs_weights
def test_alexnet_gives_the_published_values_on_the_authors_examples():
    ref, p0, p1 = _image("ex_ref"), _image("ex_p0"), _image("ex_p1")
    values = LPIPSMetric("alex", WEIGHTS)(np.stack([ref, ref]), np.stack([p0, p1]), channel_axis=-1)
    assert values.shape == (2,)
    np.testing.assert_allclose(values, [0.722, 0.138], atol=5e-4)  # README of richzhang/PerceptualSimilarity
    one = lpips_distance(ref, p1, "alex", WEIGHTS, channel_axis=-1)  # one frame -> one value
    assert np.ndim(one) == 0 and abs(float(one) - values[1]) < 1e-6


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_the_lpips_package_on_rgb_input(net):
    import lpips

    metric = LPIPSMetric(net, WEIGHTS)
    ref, p0 = (lpips.im2tensor(np.asarray(Image.open(DATA / f"{n}.png").convert("RGB")))  # uint8 (H, W, 3)
               for n in ("ex_ref", "ex_p0"))
    with torch.inference_mode():
        expected = float(metric.model(ref, p0))  # the package's own forward on its own tensors
    ours = metric(_image("ex_ref"), _image("ex_p0"), channel_axis=-1)
    assert abs(float(ours) - expected) < 1e-5


@needs_weights
def test_colour_is_not_the_luma():
    ref, p0 = _image("ex_ref"), _image("ex_p0")
    metric = LPIPSMetric("alex", WEIGHTS)
    luma = lambda x: x @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    assert abs(float(metric(ref, p0, channel_axis=-1)) - float(metric(luma(ref), luma(p0)))) > 1e-3
    np.testing.assert_allclose(metric(ref, ref, channel_axis=-1), 0.0, atol=1e-6)


def test_colour_needs_channel_axis_and_three_channels():
    metric = LPIPSMetric("alex", WEIGHTS if WEIGHTS.is_dir() else None)
    rgb = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match="channel_axis=-1"):
        metric(rgb, rgb)
    with pytest.raises(ValueError, match="RGB"):
        metric(rgb[..., :2], rgb[..., :2], channel_axis=-1)
