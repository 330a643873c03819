"""echokdm.metrics.realism: statistics on inputs with known answers, the classifier on sets that
are and are not alike, and the real cine's hand-placed regions."""

import numpy as np
import pytest
from scipy import ndimage

from echokdm.metrics import realism


def _blurred_noise(rng, shape, sigma):
    """White noise blurred by a Gaussian of ``sigma`` pixels (per axis for a tuple), rescaled."""
    x = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape[1:]), sigma) for _ in range(shape[0])])
    return (0.5 + 0.1 * x / x.std()).astype(np.float32)


def test_rayleigh_envelope_snr_is_1_91():
    envelope = np.random.default_rng(0).rayleigh(size=(8, 112, 112))
    snr = realism.envelope_snr(envelope, tissue_quantile=0.0)
    assert abs(snr - 1.0 / np.sqrt(4.0 / np.pi - 1.0)) < 0.08  # 1.913
    # brighter-than-median patches only: the same speckle, the same SNR
    assert abs(realism.envelope_snr(envelope, tissue_quantile=0.5) - 1.913) < 0.15
    # a constant offset (unlike speckle) raises it
    assert realism.envelope_snr(envelope + 3.0, tissue_quantile=0.0) > 4.0


def test_envelope_snr_uses_only_patches_inside_the_region():
    rng = np.random.default_rng(1)
    frame = rng.rayleigh(size=(64, 64))
    frame[:, 32:] = 5.0 + 0.01 * rng.standard_normal((64, 32))  # smooth right half: SNR 500
    left = np.zeros((64, 64), bool)
    left[:, :32] = True
    assert abs(realism.envelope_snr(frame, left, tissue_quantile=0.0) - 1.91) < 0.25
    assert realism.envelope_snr(frame, ~left, tissue_quantile=0.0) > 100
    assert np.isnan(realism.envelope_snr(frame, np.zeros((64, 64), bool)))


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.5])
def test_autocorrelation_width_of_blurred_noise(sigma):
    frames = _blurred_noise(np.random.default_rng(2), (6, 112, 112), sigma)
    expected = 4.0 * sigma * np.sqrt(np.log(2.0))  # Gaussian ACF of std sigma*sqrt(2)
    axial, lateral = realism.autocorrelation_fwhm(frames, highpass_sigma=None)
    assert axial == pytest.approx(expected, rel=0.08) and lateral == pytest.approx(expected, rel=0.08)
    # the default high-pass (sigma 4) narrows it: a little at the speckle sizes measured (FWHM 3-6 px)
    axial_hp, lateral_hp = realism.autocorrelation_fwhm(frames)
    assert axial_hp < axial and lateral_hp < lateral
    if sigma <= 1.5:
        assert axial_hp == pytest.approx(expected, rel=0.2) and lateral_hp == pytest.approx(expected, rel=0.2)


def test_autocorrelation_axes_are_rows_then_columns_and_respect_the_region():
    rng = np.random.default_rng(3)
    frames = _blurred_noise(rng, (6, 112, 112), (3.0, 1.0))  # long along rows (axial)
    fan = np.zeros((112, 112), bool)
    fan[10:100, 20:90] = True
    frames[:, ~fan] = 0.0  # black outside, as outside a sector
    axial, lateral = realism.autocorrelation_fwhm(frames, fan, highpass_sigma=None)
    assert axial == pytest.approx(4 * 3.0 * np.sqrt(np.log(2)), rel=0.1)
    assert lateral == pytest.approx(4 * 1.0 * np.sqrt(np.log(2)), rel=0.1)
    profiles = realism.autocorrelation_profiles(frames, fan, max_lag=5)
    assert profiles[0].shape == (6,) and profiles[0][0] == pytest.approx(1.0) and profiles[1][0] == pytest.approx(1.0)


def test_intensity_ratio_of_constant_regions():
    frame = np.zeros((3, 20, 20), np.float32)
    frame[:, :, :10] = 0.2  # columns 0-9
    frame[:, :, 10:] = 0.8
    blood, wall = realism.box_mask((20, 20), [(0, 20, 0, 10)]), realism.box_mask((20, 20), [(0, 20, 10, 20)])
    assert realism.intensity_ratio(frame, blood, wall) == pytest.approx(0.25)
    per_frame = np.broadcast_to(blood, (3, 20, 20))  # (T, H, W) masks work too
    assert realism.intensity_ratio(frame, per_frame, wall) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="non-empty"):
        realism.intensity_ratio(frame, np.zeros((20, 20), bool), wall)


def test_box_mask_and_ring():
    assert realism.box_mask((10, 10), [(1, 3, 2, 5), (8, 10, 0, 1)]).sum() == 2 * 3 + 2
    with pytest.raises(ValueError, match="outside"):
        realism.box_mask((10, 10), [(0, 11, 0, 5)])
    yy, xx = np.mgrid[:41, :41]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 <= 8**2
    ring = realism.ring_around(disk, inner=1, width=3)
    radius = np.hypot(yy - 20, xx - 20)[ring]
    assert not (ring & disk).any() and radius.min() > 8.5 and radius.max() < 8 + 4 * np.sqrt(2) + 0.5
    fan = np.zeros((41, 41), bool)
    fan[:20] = True
    assert not (realism.ring_around(disk, within=fan)[20:]).any()
    assert realism.ring_around(np.stack([disk, disk]), 1, 3).shape == (2, 41, 41)


def test_intensity_summary_and_histogram():
    frames = np.zeros((2, 10, 10), np.float32)
    frames[:, :, 5:] = np.linspace(0.1, 1.0, 5)  # half black, half a ramp
    region = np.ones((10, 10), bool)
    summary = realism.intensity_summary(frames, region)
    assert summary["near_black"] == pytest.approx(0.5) and summary["p5"] == 0.0 and summary["p95"] == pytest.approx(1.0)
    assert summary["mean"] == pytest.approx(0.5 * np.mean(np.linspace(0.1, 1.0, 5)))
    right = np.zeros((10, 10), bool)
    right[:, 5:] = True
    assert realism.intensity_summary(frames, right)["near_black"] == 0.0
    density, edges = realism.intensity_histogram(frames, region, bins=10)
    assert density.shape == (10,) and edges.shape == (11,)
    assert np.sum(density * np.diff(edges)) == pytest.approx(1.0) and density[0] == pytest.approx(5.0)


def test_frame_correlation():
    rng = np.random.default_rng(4)
    a = rng.random((32, 32))
    assert realism.frame_correlation(np.stack([a, a, 1 - a])) == pytest.approx([1.0, -1.0])
    independent = realism.frame_correlation(rng.random((5, 64, 64)))
    assert np.all(np.abs(independent) < 0.1)
    region = np.zeros((32, 32), bool)
    region[:16] = True
    b = a.copy()
    b[16:] = rng.random((16, 32))  # differs only outside the region
    assert realism.frame_correlation(np.stack([a, b]), region)[0] == pytest.approx(1.0)


def _speckle(rng, shape=(64, 64)):
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    return np.clip(0.5 + 2.0 * field, 0.0, 1.0)


def test_compensated_correlation_removes_motion_but_not_decorrelation():
    rng = np.random.default_rng(5)
    base = _speckle(rng, (64, 96))
    moving = np.stack([base[:, 16 - t:80 - t] for t in range(6)])  # speckle moving 1 px a frame, unchanged
    fan = np.ones((64, 64), bool)
    moved = realism.compensated_correlation(moving, fan, gaps=(1, 2), stride=1)
    assert moved[1] > 0.9 and moved[2] > 0.9
    assert realism.frame_correlation(moving, fan).mean() < moved[1] - 0.2  # without compensation: much lower
    # speckle that partly redraws every frame (correlation 0.7 a frame) and does not move
    frames = [_speckle(rng)]
    for _ in range(8):
        frames.append(np.clip(0.5 + 0.7 * (frames[-1] - 0.5) + np.sqrt(1 - 0.49) * (_speckle(rng) - 0.5), 0, 1))
    decorrelating = realism.compensated_correlation(np.stack(frames), fan, gaps=(1, 4, 8), stride=1)
    assert decorrelating[1] < 0.85 and decorrelating[8] < decorrelating[4] < decorrelating[1]
    assert decorrelating[8] < 0.35
    assert set(realism.compensated_correlation(np.stack(frames[:3]), fan, gaps=(1, 8))) == {1}  # gap 8 too long
    with pytest.raises(ValueError, match="region"):
        realism.compensated_correlation(moving, np.ones((32, 32), bool))
    with pytest.raises(ValueError, match="gaps"):
        realism.compensated_correlation(moving, fan, gaps=(0,))


def test_sample_patches_stay_inside_the_region():
    frames = np.zeros((3, 64, 64), np.float32)
    frames[:, :, :40] = 1.0
    region = frames[0] > 0
    patches = realism.sample_patches(frames, region, 50, size=32, min_fill=0.9, rng=0)
    assert patches.shape == (50, 32, 32) and patches.dtype == np.float32
    assert patches.mean(axis=(1, 2)).min() >= 0.9
    with pytest.raises(ValueError, match="no 32x32 patch"):
        realism.sample_patches(frames, region[:, ::-1] & (np.arange(64) > 60), 5, size=32)


def _texture_sets(rng, n, sigma, size=32):
    return _blurred_noise(rng, (n, size, size), sigma)


@pytest.mark.parametrize("model", ["cnn", "logistic"])
def test_classifier_separates_different_textures(model):
    rng = np.random.default_rng(5)
    fine, coarse = 0.7, 2.0  # same mean and contrast, different speckle size
    sets = (_texture_sets(rng, 200, fine), _texture_sets(rng, 200, coarse),
            _texture_sets(rng, 100, fine), _texture_sets(rng, 100, coarse))
    assert realism.heldout_accuracy(*sets, model=model, seed=0, steps=150) > 0.9


@pytest.mark.parametrize("model", ["cnn", "logistic"])
def test_classifier_is_at_chance_on_one_distribution(model):
    rng = np.random.default_rng(6)
    sets = [_texture_sets(rng, n, 1.2) for n in (200, 200, 150, 150)]
    accuracy = realism.heldout_accuracy(*sets, model=model, seed=0, steps=150)
    assert abs(accuracy - 0.5) < 0.12


def test_classifier_rejects_an_unknown_model():
    x = np.zeros((4, 16, 16), np.float32)
    with pytest.raises(ValueError, match="model must be"):
        realism.heldout_accuracy(x, x, x, x, model="forest")


def test_real_cine_regions_stay_on_blood_and_septum():
    frames, fan, fps = realism.real_cine_112()
    assert frames.shape == (30, 112, 112) and fan.shape == (112, 112)
    assert 0.4 < fan.mean() < 0.8 and fps == pytest.approx(30, abs=0.1)
    blood = realism.box_mask(fan.shape, realism.REAL_CINE_ROIS["blood"])
    wall = realism.box_mask(fan.shape, realism.REAL_CINE_ROIS["myocardium"])
    assert (blood | wall)[~fan].sum() == 0  # both inside the sector
    blood_mean, wall_mean = frames[:, blood].mean(axis=1), frames[:, wall].mean(axis=1)
    assert np.all(blood_mean < 0.06) and np.all(wall_mean > 0.15)  # dark cavity, bright septum, every frame
    assert 0.05 < realism.intensity_ratio(frames, blood, wall) < 0.2


def test_phantom_cine_classic_and_stats():
    assert "classic" in realism.phantom_styles()
    clip = realism.phantom_cine(0, style="classic", n_frames=6)
    assert clip.frames.shape == (6, 112, 112)
    wall = realism.ring_around(clip.masks, within=clip.fan_mask)
    stats = realism.realism_stats(clip.frames, clip.fan_mask, clip.masks, wall)
    assert set(stats) >= {"blood_myocardium_ratio", "envelope_snr", "acf_fwhm_axial_px", "near_black",
                          "frame_correlation"}
    assert 0.0 < stats["blood_myocardium_ratio"] < 1.0 and np.isfinite(stats["acf_fwhm_lateral_px"])
