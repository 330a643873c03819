"""How much a cine looks like real echo: image statistics and a real-vs-synthetic classifier.

Each statistic takes frames ``float32`` ``(T, H, W)`` (or one ``(H, W)`` frame) in [0, 1] as a
model sees them (no renormalisation) and boolean masks indexed ``[row, col]``, ``(H, W)`` (the
same for every frame) or ``(T, H, W)``. Distances are in pixels of the frames given (the
benchmark uses 112 × 112, the EchoNet-Dynamic size); "axial" is along rows (depth, the apex at
the top) and "lateral" along columns, which is what they are near the centre line of a sector.

* :func:`intensity_ratio`: mean of the blood pool over mean of the myocardium (real blood is
  nearly black: a ratio near 0.1);
* :func:`envelope_snr`: speckle SNR, mean / standard deviation in small tissue patches
  (1.91 for a fully developed Rayleigh envelope, larger after log compression or smoothing);
* :func:`autocorrelation_profiles` / :func:`autocorrelation_fwhm`: speckle size, the full width
  at half maximum of the normalised autocorrelation of the high-pass-filtered image;
* :func:`intensity_summary` / :func:`intensity_histogram`: the distribution of grey levels in the fan;
* :func:`frame_correlation`: Pearson correlation of consecutive frames in the fan (speckle that
  decorrelates, and motion, lower it);
* :func:`compensated_correlation`: how fast the speckle decorrelates once motion is removed, the
  correlation of the speckle (high-passed) of frame ``t + gap`` with frame ``t`` warped onto it by
  TV-L1 flow, on the brighter tissue of the fan, at several gaps;
* :func:`heldout_accuracy`: a tiny CNN (or logistic regression on :func:`patch_features`)
  trained to tell patches of one set from the other, scored on held-out patches (balanced
  accuracy; 0.5 means the sets cannot be told apart); defined in :mod:`echokdm.metrics.two_sample`
  (with its grouped cross-validated form used by ``echokdm evaluate``) and re-exported here.

:func:`real_cine_112` loads pydicom's real apical four-chamber cine the way the benchmark uses it,
and :data:`REAL_CINE_ROIS` holds hand-placed blood-pool and myocardium boxes on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from echokdm.metrics.two_sample import heldout_accuracy, patch_features  # one classifier for every realism test

__all__ = [
    "REAL_CINE_ROIS", "autocorrelation_fwhm", "autocorrelation_profiles", "box_mask", "compensated_correlation",
    "envelope_snr",
    "frame_correlation", "heldout_accuracy", "intensity_histogram", "intensity_ratio", "intensity_summary",
    "patch_features", "phantom_cine", "phantom_styles", "real_cine_112", "realism_stats", "ring_around",
    "sample_patches",
]

#: Hand-placed regions on pydicom's ``ybr_color`` cine read with ``crop_to_fan=True`` and resized
#: to 112 × 112 (:func:`real_cine_112`): half-open boxes ``(row0, row1, col0, col1)``. Chosen by
#: looking at all 30 frames with a pixel grid: the LV cavity is the dark region right of the
#: septum and above the mitral leaflets (rows 42-55, columns 56-65 stay inside it in every frame,
#: mean 0.02-0.04); the myocardium box lies on the bright interventricular septum (rows 44-55,
#: columns 46-49, inside the septum in every frame). The lateral wall moves too much for a fixed box.
REAL_CINE_ROIS: dict[str, list[tuple[int, int, int, int]]] = {
    "blood": [(42, 56, 56, 66)],
    "myocardium": [(44, 56, 46, 50)],
}


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------


def box_mask(shape: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """``bool`` ``(H, W)`` mask of the union of half-open boxes ``(row0, row1, col0, col1)``."""
    mask = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
            raise ValueError(f"box {(r0, r1, c0, c1)} is empty or outside the {shape[0]}x{shape[1]} frame")
        mask[r0:r1, c0:c1] = True
    return mask


def ring_around(mask: np.ndarray, inner: int = 1, width: int = 4, within: np.ndarray | None = None) -> np.ndarray:
    """A band of ``width`` pixels around ``mask`` starting ``inner`` pixels outside it.

    Used as the phantom's myocardium around its LV blood pool (``inner`` skips the blurred border).

    Parameters
    ----------
    mask : numpy.ndarray
        ``bool`` ``(H, W)`` or ``(T, H, W)`` (each frame done separately).
    inner, width : int
        Pixels (dilation steps with a 3 × 3 square, so chessboard distance).
    within : numpy.ndarray, optional
        ``bool`` ``(H, W)``: the ring is cut to it (e.g. the fan).

    Returns
    -------
    numpy.ndarray
        ``bool``, the shape of ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 3:
        return np.stack([ring_around(m, inner, width, within) for m in mask])
    square = np.ones((3, 3), dtype=bool)
    near = ndimage.binary_dilation(mask, square, iterations=inner) if inner > 0 else mask
    ring = ndimage.binary_dilation(mask, square, iterations=inner + width) & ~near
    return ring & within if within is not None else ring


def _frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W) or (H, W), got shape {frames.shape}")
    return frames


def _region(region: np.ndarray | None, frames: np.ndarray, name: str = "region") -> np.ndarray:
    """``bool`` ``(T, H, W)`` region for ``(T, H, W)`` frames (all true when None)."""
    if region is None:
        return np.ones(frames.shape, dtype=bool)
    region = np.asarray(region, dtype=bool)
    if region.shape == frames.shape[1:]:
        return np.broadcast_to(region, frames.shape)
    if region.shape != frames.shape:
        raise ValueError(f"{name} has shape {region.shape}; frames are {frames.shape}")
    return region


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def intensity_ratio(frames: np.ndarray, blood: np.ndarray, myocardium: np.ndarray) -> float:
    """Mean intensity in the blood pool divided by the mean in the myocardium (over all frames).

    ``blood`` and ``myocardium`` are ``bool`` ``(H, W)`` or ``(T, H, W)``. Real echo: about 0.1
    (blood nearly black); 1 means the blood is as bright as the wall.
    """
    frames = _frames(frames)
    blood, myocardium = _region(blood, frames, "blood"), _region(myocardium, frames, "myocardium")
    if not blood.any() or not myocardium.any():
        raise ValueError("intensity_ratio needs non-empty blood and myocardium masks")
    wall = frames[myocardium].mean()
    return float(frames[blood].mean() / wall) if wall > 0 else float("nan")


def envelope_snr(frames: np.ndarray, region: np.ndarray | None = None, *, patch: int = 8,
                 tissue_quantile: float = 0.75) -> float:
    """Speckle SNR: the median over tissue patches of mean / standard deviation (``ddof=1``).

    The frames are tiled into non-overlapping ``patch`` × ``patch`` squares; those wholly inside
    ``region`` are kept, and among them those whose mean is at least the ``tissue_quantile``
    quantile of the kept patches' means (the bright, tissue patches; 0 keeps every patch).
    A fully developed speckle envelope (Rayleigh) gives 4/π−1 to the power −1/2 ≈ 1.91.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` or ``(H, W)``.
    region : numpy.ndarray, optional
        ``bool`` ``(H, W)`` or ``(T, H, W)``, e.g. the fan; default the whole frame.

    Returns
    -------
    float
        Dimensionless; NaN when no patch qualifies.
    """
    frames = _frames(frames)
    region = _region(region, frames)
    t, h, w = frames.shape
    rows, cols = h // patch, w // patch
    tiles = frames[:, :rows * patch, :cols * patch].reshape(t, rows, patch, cols, patch).transpose(0, 1, 3, 2, 4)
    inside = region[:, :rows * patch, :cols * patch].reshape(t, rows, patch, cols, patch).all(axis=(2, 4))
    tiles = tiles[inside].reshape(-1, patch * patch)  # (N, patch²)
    if len(tiles) == 0:
        return float("nan")
    means, stds = tiles.mean(axis=1), tiles.std(axis=1, ddof=1)
    keep = (means >= np.quantile(means, tissue_quantile)) & (stds > 0)
    return float(np.median(means[keep] / stds[keep])) if keep.any() else float("nan")


def _highpass(frame: np.ndarray, region: np.ndarray, sigma: float | None) -> np.ndarray:
    """``frame`` minus its Gaussian low-pass inside ``region`` (normalised convolution, so the
    black outside the region does not leak in), zero outside; mean-free inside."""
    if sigma is None:
        out = frame - frame[region].mean()
    else:
        weight = ndimage.gaussian_filter(region.astype(np.float64), sigma)
        low = ndimage.gaussian_filter(frame * region, sigma) / np.maximum(weight, 1e-6)
        out = frame - low
        out = out - out[region].mean()
    return out * region


def autocorrelation_profiles(frames: np.ndarray, region: np.ndarray | None = None, *,
                             highpass_sigma: float | None = 4.0, max_lag: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Normalised autocorrelation of the high-pass-filtered frames along rows and columns.

    Each frame minus its Gaussian low-pass (``highpass_sigma`` pixels; None: only the mean is
    removed) is autocorrelated inside ``region`` (FFT, each lag divided by the number of pixel
    pairs it has in the region), averaged over frames and divided by its value at lag 0.

    Returns
    -------
    axial, lateral : numpy.ndarray
        ``float64`` ``(max_lag + 1,)``: the autocorrelation at lags 0..max_lag pixels along rows
        (axial) and along columns (lateral); 1 at lag 0.
    """
    frames = _frames(frames)
    region = _region(region, frames)
    t, h, w = frames.shape
    shape = (2 * h, 2 * w)  # zero padding: no wrap-around
    total = np.zeros(shape)
    pairs = np.zeros(shape)
    for frame, inside in zip(frames, region, strict=True):
        x = _highpass(frame, inside, highpass_sigma)
        total += np.fft.irfft2(np.abs(np.fft.rfft2(x, shape)) ** 2, shape)
        pairs += np.fft.irfft2(np.abs(np.fft.rfft2(inside.astype(np.float64), shape)) ** 2, shape)
    acf = total / np.maximum(pairs, 1.0)  # (2H, 2W), lag (dy, dx) at [dy, dx]
    if acf[0, 0] <= 0:
        nan = np.full(max_lag + 1, np.nan)
        return nan, nan.copy()
    acf = acf / acf[0, 0]
    return acf[:max_lag + 1, 0].copy(), acf[0, :max_lag + 1].copy()


def _fwhm(profile: np.ndarray) -> float:
    """Twice the lag where a profile (1 at lag 0) first falls to 0.5, linearly interpolated."""
    below = np.flatnonzero(profile < 0.5)
    if len(below) == 0:
        return float("nan")
    lag = int(below[0])
    a, b = profile[lag - 1], profile[lag]
    return float(2.0 * (lag - 1 + (a - 0.5) / (a - b)))


def autocorrelation_fwhm(frames: np.ndarray, region: np.ndarray | None = None, *,
                         highpass_sigma: float | None = 4.0, max_lag: int = 10) -> tuple[float, float]:
    """Speckle size: ``(axial, lateral)`` full width at half maximum of
    :func:`autocorrelation_profiles`, in pixels (NaN when the profile stays above 0.5 up to
    ``max_lag``). Gaussian-blurred white noise of standard deviation ``s`` pixels gives
    ``4 s sqrt(ln 2)`` ≈ 3.33 ``s`` without high-pass filtering."""
    axial, lateral = autocorrelation_profiles(frames, region, highpass_sigma=highpass_sigma, max_lag=max_lag)
    return _fwhm(axial), _fwhm(lateral)


def intensity_summary(frames: np.ndarray, region: np.ndarray | None = None, *, black: float = 0.05,
                      percentiles: Sequence[float] = (5, 25, 50, 75, 95)) -> dict[str, float]:
    """Grey levels inside ``region`` over all frames: ``near_black`` (fraction below ``black``),
    ``mean`` and ``p<q>`` for each percentile (intensity units, [0, 1])."""
    frames = _frames(frames)
    values = frames[_region(region, frames)]
    if values.size == 0:
        raise ValueError("intensity_summary: the region is empty")
    out = {"near_black": float(np.mean(values < black)), "mean": float(values.mean())}
    for q, v in zip(percentiles, np.percentile(values, percentiles), strict=True):
        out[f"p{q:g}"] = float(v)
    return out


def intensity_histogram(frames: np.ndarray, region: np.ndarray | None = None, *,
                        bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Density of grey levels inside ``region``: ``(density (bins,), edges (bins + 1,))`` on [0, 1]
    (values outside [0, 1] clipped into the end bins); the density integrates to 1."""
    frames = _frames(frames)
    values = np.clip(frames[_region(region, frames)], 0.0, 1.0)
    density, edges = np.histogram(values, bins=bins, range=(0.0, 1.0), density=True)
    return density, edges


def frame_correlation(frames: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Pearson correlation of each pair of consecutive frames inside ``region`` (``(H, W)`` only).

    Returns ``float64`` ``(T - 1,)`` in [-1, 1] (NaN for a constant frame). It depends on the frame
    rate: compare clips at the same fps.
    """
    frames = _frames(frames)
    if region is not None and np.asarray(region).shape != frames.shape[1:]:
        raise ValueError(f"frame_correlation needs an (H, W) region, got {np.asarray(region).shape}")
    inside = np.ones(frames.shape[1:], bool) if region is None else np.asarray(region, dtype=bool)
    x = frames[:, inside]  # (T, N)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((x**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x[:-1] * x[1:]).sum(axis=1) / (norm[:-1] * norm[1:])


def compensated_correlation(frames: np.ndarray, region: np.ndarray, gaps: Sequence[int] = (1, 2, 4, 8), *,
                            stride: int = 2, sigma: float = 3.0, tissue_quantile: float = 0.6,
                            attachment: float = 2.0) -> dict[int, float]:
    """Speckle correlation after motion compensation, per frame gap: how fast speckle decorrelates
    (out-of-plane motion, deformation, noise) apart from how far it moves.

    For pairs ``(t, t + gap)`` (``t`` every ``stride`` frames), frame ``t`` is warped onto frame
    ``t + gap`` by a smooth TV-L1 flow (:func:`echokdm.baselines.flow.tvl1_flow`, ``attachment`` 2,
    measured on the frames scaled so that the region's 99th percentile is 1: the flow follows the
    tissue, not the speckle; at TV-L1's usual attachment of 10 it rearranges even independent speckle
    fields into a correlation of 0.7, at 2 into 0.05); both are high-passed
    (minus a Gaussian low-pass of ``sigma`` px inside the region) and correlated over the pixels of
    ``region`` (eroded by 4 px) that are brighter, after a 2-px blur, than its ``tissue_quantile``
    (tissue, not the black cavities). The same estimator for every cine makes cines comparable,
    real or simulated, whatever their gain; it depends on the frame rate (compare at the same fps).

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` in [0, 1].
    region : numpy.ndarray
        ``bool`` ``(H, W)``: the fan.
    gaps : sequence of int
        Frame gaps; gaps not shorter than the clip are left out.

    Returns
    -------
    dict
        ``{gap: mean correlation over pairs}`` in [-1, 1].
    """
    from echokdm.baselines.flow import tvl1_flow
    from echokdm.geometry.flow import warp

    frames = _frames(frames).astype(np.float32)
    region = np.asarray(region, dtype=bool)
    if region.shape != frames.shape[1:]:
        raise ValueError(f"compensated_correlation needs an (H, W) region matching the frames "
                         f"{frames.shape[1:]}, got {region.shape}")
    if stride < 1 or any(int(g) < 1 for g in gaps):
        raise ValueError(f"stride and gaps must be >= 1, got stride={stride}, gaps={list(gaps)}")
    inner = ndimage.binary_erosion(region, iterations=4)
    if not inner.any():
        raise ValueError("compensated_correlation: the region is empty once eroded by 4 px")
    top = float(np.percentile(frames[:, region], 99))
    scaled = np.clip(frames / top, 0.0, 1.0).astype(np.float32) if top > 0 else frames
    out: dict[int, float] = {}
    for gap in (int(g) for g in gaps):
        starts = np.arange(0, len(frames) - gap, stride)
        if not len(starts):
            continue
        flows = tvl1_flow(scaled[starts], scaled[starts + gap], attachment=attachment)
        flows = flows.reshape(len(starts), 2, *frames.shape[1:])
        values = []
        for t, flow in zip(starts, flows, strict=True):
            target = frames[t + gap]
            blurred = ndimage.gaussian_filter(target, 2.0)
            tissue = inner & (blurred > np.quantile(blurred[inner], tissue_quantile))
            a = _highpass(np.asarray(warp(frames[t], flow), np.float64), region, sigma)[tissue]
            b = _highpass(target.astype(np.float64), region, sigma)[tissue]
            a, b = a - a.mean(), b - b.mean()
            denominator = np.sqrt((a * a).sum() * (b * b).sum())
            values.append(float((a * b).sum() / denominator) if denominator > 0 else np.nan)
        out[gap] = float(np.nanmean(values))
    return out


def realism_stats(frames: np.ndarray, fan: np.ndarray, blood: np.ndarray, myocardium: np.ndarray) -> dict[str, float]:
    """Every statistic of one cine: ``blood_myocardium_ratio``, ``envelope_snr`` (tissue patches in
    the fan), ``acf_fwhm_axial_px`` / ``acf_fwhm_lateral_px``, the :func:`intensity_summary` of the
    fan (``near_black``, ``mean``, ``p5`` … ``p95``) and ``frame_correlation`` (mean over pairs).

    ``frames`` ``(T, H, W)``; ``fan`` ``bool`` ``(H, W)``; ``blood`` / ``myocardium`` ``bool``
    ``(H, W)`` or ``(T, H, W)``.
    """
    frames = _frames(frames)
    axial, lateral = autocorrelation_fwhm(frames, fan)
    stats = {"blood_myocardium_ratio": intensity_ratio(frames, blood, myocardium),
             "envelope_snr": envelope_snr(frames, fan),
             "acf_fwhm_axial_px": axial, "acf_fwhm_lateral_px": lateral}
    stats.update(intensity_summary(frames, fan))
    stats["frame_correlation"] = float(np.nanmean(frame_correlation(frames, fan))) if len(frames) > 1 else float("nan")
    return stats


# --------------------------------------------------------------------------------------------
# real-vs-synthetic classifier
# --------------------------------------------------------------------------------------------


def sample_patches(frames: np.ndarray, region: np.ndarray | None, n: int, *, size: int = 64,
                   min_fill: float = 0.9, rng: np.random.Generator | int = 0) -> np.ndarray:
    """``n`` random ``size`` × ``size`` patches ``float32`` ``(n, size, size)`` from random frames,
    each with at least ``min_fill`` of its pixels in ``region`` (``bool`` ``(H, W)``; default all).

    Raises ValueError when no position qualifies."""
    frames = _frames(frames).astype(np.float32)
    t, h, w = frames.shape
    if size > min(h, w):
        raise ValueError(f"patch size {size} is larger than the {h}x{w} frames")
    rng = np.random.default_rng(rng)
    inside = np.ones((h, w), np.float64) if region is None else np.asarray(region, dtype=np.float64)
    if inside.shape != (h, w):
        raise ValueError(f"sample_patches needs an (H, W) region, got {inside.shape}")
    fill = ndimage.uniform_filter(inside, size, mode="constant", origin=(-(size // 2), -(size // 2)))
    fill = fill[:h - size + 1, :w - size + 1]  # fill[r, c]: fraction of the patch at (r, c) inside
    rows, cols = np.nonzero(fill >= min_fill - 1e-9)
    if len(rows) == 0:
        raise ValueError(f"no {size}x{size} patch has {min_fill:.0%} of its pixels in the region")
    pick, frame = rng.integers(len(rows), size=n), rng.integers(t, size=n)
    return np.stack([frames[f, r:r + size, c:c + size] for f, r, c in zip(frame, rows[pick], cols[pick], strict=True)])


# --------------------------------------------------------------------------------------------
# the frames the benchmark compares
# --------------------------------------------------------------------------------------------


def real_cine_112(size: int = 112) -> tuple[np.ndarray, np.ndarray, float]:
    """pydicom's real apical four-chamber cine (``ybr_color``, 30 frames) as echokdm reads it:
    cropped to the sector (``crop_to_fan=True``), resized to ``size`` × ``size`` (bilinear,
    anti-aliased, as the EchoNet preprocessing shrinks frames), with the sector found by motion.

    Returns
    -------
    frames : numpy.ndarray
        ``float32`` ``(30, size, size)`` in [0, 1].
    fan : numpy.ndarray
        ``bool`` ``(size, size)``: the sector (:func:`echokdm.io.dicom.motion_fan_mask`, resized).
    fps : float
    """
    import warnings

    import pydicom.examples

    from echokdm.geometry.resize import resize_images
    from echokdm.io.dicom import motion_fan_mask
    from echokdm.io.dispatch import read_cine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its calibration region belongs to another image size
        cine = read_cine(pydicom.examples.get_path("ybr_color"), "dicom", crop_to_fan=True)
    fan = motion_fan_mask(cine.frames)
    stack = np.concatenate([cine.frames, fan[None].astype(np.float32)])  # (T+1, H, W)
    small = resize_images(stack, size, antialias=True)  # (T+1, size, size)
    return np.clip(small[:-1], 0.0, 1.0).astype(np.float32), small[-1] > 0.5, float(cine.fps)


def phantom_cine(seed: int, patient_index: int = 0, *, style: str = "classic", size: int = 112,
                 fps: float = 30.0, n_frames: int = 30):
    """One phantom clip of ``n_frames`` at ``fps`` for the comparison, in the given ``style``.

    ``style`` is passed to ``sample_patient`` or ``simulate_clip`` when they accept it; the
    ``"classic"`` phantom (the only one when neither does) gets ``write_cohort``'s defaults
    (speckle decorrelation 0.03 per frame, noise 0.002); other styles get their own defaults.

    Returns the :class:`~echokdm.data.phantom.clip.PhantomClip` (``frames``, ``masks``, ``fan_mask``).
    """
    from echokdm.data.phantom import sample_patient, simulate_clip

    patient_args: dict = {}
    clip_args: dict = {"size": size, "fps": fps, "n_frames": n_frames}
    takes_style = [f for f in (sample_patient, simulate_clip) if "style" in inspect.signature(f).parameters]
    if sample_patient in takes_style:
        patient_args["style"] = style
    elif simulate_clip in takes_style:
        clip_args["style"] = style
    elif style != "classic":
        raise ValueError(f"phantom style {style!r} is not available: this echokdm's phantom has no style= option "
                         "(only 'classic')")
    if style == "classic":
        clip_args.update(decorrelation=0.03, noise=0.002)
    return simulate_clip(sample_patient(seed, patient_index=patient_index, **patient_args), **clip_args)


def phantom_styles() -> list[str]:
    """The phantom styles this echokdm offers: ``["classic"]``, plus ``"realistic"`` when
    ``sample_patient`` or ``simulate_clip`` takes ``style=``."""
    from echokdm.data.phantom import sample_patient, simulate_clip

    if any("style" in inspect.signature(f).parameters for f in (sample_patient, simulate_clip)):
        return ["classic", "realistic"]
    return ["classic"]
