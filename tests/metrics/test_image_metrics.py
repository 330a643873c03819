import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from echokdm.metrics.image import mse, psnr, ssim


def _frames(n=3, size=24, seed=0):
    return np.random.default_rng(seed).random((n, size, size)).astype(np.float32)


def test_identical_frames():
    a = _frames()
    np.testing.assert_array_equal(mse(a, a), np.zeros(3))
    assert np.all(np.isinf(psnr(a, a)))
    np.testing.assert_allclose(ssim(a, a), np.ones(3))


def test_known_values_one_value_per_frame():
    a = np.zeros((2, 8, 8))
    b = np.stack([np.full((8, 8), 0.1), np.full((8, 8), 0.5)])
    np.testing.assert_allclose(mse(a, b), [0.01, 0.25])
    np.testing.assert_allclose(psnr(a, b), [20.0, 10 * np.log10(4)])
    single = mse(a[0], b[1])
    assert np.ndim(single) == 0 and float(single) == pytest.approx(0.25)


def test_ssim_matches_scikit_image_and_torch_inputs():
    a, b = _frames(seed=1), _frames(seed=2)
    expected = [structural_similarity(x, y, data_range=1.0)
                for x, y in zip(a.astype(float), b.astype(float), strict=True)]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(ssim(torch.from_numpy(a), torch.from_numpy(b)), expected, rtol=1e-6)
    np.testing.assert_allclose(mse(torch.from_numpy(a), torch.from_numpy(b)), mse(a, b))


def test_mask_restricts_average():
    a = np.zeros((16, 16))
    b = np.zeros((16, 16))
    b[:, 8:] = 1.0  # errors only on the right half
    mask = np.zeros((16, 16))
    mask[:, :8] = 1
    assert float(mse(a, b, mask)) == 0.0
    assert float(mse(a, b, 1 - mask)) == 1.0
    assert np.isnan(mse(a, b, np.zeros((16, 16))))
    c, d = _frames(1, 16, 3)[0], _frames(1, 16, 4)[0]
    assert float(ssim(c, d, np.ones((16, 16)))) == pytest.approx(float(ssim(c, d)))


def test_ssim_decreases_with_noise():
    a = _frames(1, 32, 5)[0] * 0.5 + 0.25
    rng = np.random.default_rng(0)
    values = [float(ssim(a, np.clip(a + s * rng.standard_normal(a.shape), 0, 1))) for s in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2]


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        mse(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mse(np.zeros((4, 4)), np.full((4, 4), 255.0))
    with pytest.raises(ValueError, match="mask"):
        mse(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), np.ones((3, 4, 4)))
    with pytest.raises(ValueError, match="frames"):
        mse(np.zeros(4), np.zeros(4))
