"""Image metrics between generated and reference frames: MSE, PSNR, SSIM, one value per frame.

Frames follow shared/DESIGN.md: grayscale, values in [0, 1], one frame ``(H, W)`` or a stack
``(N, H, W)``; colour frames ``(H, W, C)`` / ``(N, H, W, C)`` with ``channel_axis=-1`` (as in
scikit-image; faces and poses); numpy arrays or torch tensors (computed in numpy float64, not differentiable).
Every function returns one value per frame: a ``numpy.float64`` for ``(H, W)`` inputs, a
float64 ``(N,)`` array for stacks, so the values go straight into a per-frame table.

``mask`` (optional, everywhere) restricts the average to pixels where it is nonzero, e.g. the
imaging sector: ``(H, W)`` for every frame or ``(N, H, W)`` one per frame. A frame whose mask
is empty gets NaN.

LPIPS lives in :mod:`echokdm.metrics.lpips`; flow-based metrics in :mod:`echokdm.metrics.flow`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mse", "psnr", "ssim", "RANGE_TOLERANCE", "to_numpy", "frame_stacks"]

#: Values this far outside [0, 1] mean that frames are not in [0, 1] (0-255 or [-1, 1] frames).
RANGE_TOLERANCE = 1e-3


def to_numpy(x: Any) -> np.ndarray:
    """A numpy float64 copy of an array_like or (detached, CPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def frame_stacks(a: Any, b: Any, names: tuple[str, str] = ("a", "b"), *,
                 channel_axis: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check two frame arrays in [0, 1] of the same shape; return both as stacks and whether batched.

    ``a`` and ``b`` are ``(H, W)`` frames or ``(N, H, W)`` stacks (numpy or torch), returned as
    ``(N, H, W)``; with ``channel_axis=-1`` colour frames ``(H, W, C)`` or stacks ``(N, H, W, C)``,
    returned as ``(N, H, W, C)``. ``names`` are used in the ``ValueError`` for mismatched shapes or
    values outside [0, 1] (NaN is allowed). The frame metrics (MSE, PSNR, SSIM, LPIPS) check their
    inputs with it.
    """
    a, b = to_numpy(a), to_numpy(b)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} must have the same shape")
    if channel_axis not in (None, -1):
        raise ValueError(f"channel_axis must be None (grayscale) or -1 (channels last), got {channel_axis!r}")
    if channel_axis == -1:
        if a.ndim not in (3, 4):
            raise ValueError(f"{names[0]} and {names[1]} must be colour frames (H, W, C) or stacks (N, H, W, C) "
                             f"with channel_axis=-1, got {a.shape}")
    elif a.ndim not in (2, 3):
        raise ValueError(f"{names[0]} and {names[1]} must be frames (H, W) or stacks (N, H, W), got {a.shape} "
                         "(colour frames (..., H, W, C): pass channel_axis=-1)")
    for name, x in zip(names, (a, b), strict=True):
        finite = x[np.isfinite(x)]
        if finite.size and (finite.min() < -RANGE_TOLERANCE or finite.max() > 1 + RANGE_TOLERANCE):
            raise ValueError(f"{name} must hold values in [0, 1], got [{finite.min():.4g}, {finite.max():.4g}] "
                             "(convert 0-255 or [-1, 1] frames first)")
    if channel_axis == -1:
        return a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:]), a.ndim == 4
    batched = a.ndim == 3
    return a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), batched


def _mask_weights(mask: Any, n: int, shape: tuple[int, int]) -> np.ndarray | None:
    """``mask`` as float64 weights ``(N or 1, H, W)`` (1 where nonzero), or None."""
    if mask is None:
        return None
    mask = to_numpy(mask)
    if mask.shape not in (shape, (n, *shape)):
        raise ValueError(f"mask must have shape (H, W) = {shape} or (N, H, W) = {(n, *shape)}, got {mask.shape}")
    return (mask != 0).astype(np.float64).reshape(-1, *shape)


def _weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Mean of ``values`` (N, H, W) per frame, weighted by ``weights`` (N or 1, H, W); NaN when empty."""
    if weights is None:
        return values.mean(axis=(1, 2))
    weights = np.broadcast_to(weights, values.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values * weights).sum(axis=(1, 2)) / weights.sum(axis=(1, 2))


def _per_frame(values: np.ndarray, batched: bool) -> np.ndarray | np.float64:
    """``(N,)`` values as returned: the array for a stack, the single value for one frame."""
    return values if batched else np.float64(values[0])


def mse(generated: Any, reference: Any, mask: Any = None, *,
        channel_axis: int | None = None) -> np.ndarray | np.float64:
    """Mean squared error per frame (the paper's MSE_img), for frames in [0, 1].

    Parameters
    ----------
    generated, reference : numpy.ndarray or torch.Tensor
        ``(H, W)`` or ``(N, H, W)`` grayscale frames in [0, 1], same shape; with ``channel_axis=-1``
        colour ``(H, W, C)`` or ``(N, H, W, C)`` (the error is averaged over the channels too).
    mask : array_like, optional
        ``(H, W)`` or ``(N, H, W)``; average only where nonzero (NaN for an empty mask).
    channel_axis : {None, -1}
        None: grayscale frames; -1: channels last (scikit-image's convention).

    Returns
    -------
    numpy.float64 or numpy.ndarray
        One MSE per frame (intensity units squared, in [0, 1]): scalar, or ``(N,)`` float64.

    Examples
    --------
    >>> import numpy as np
    >>> float(mse(np.zeros((4, 4)), np.full((4, 4), 0.5)))
    0.25
    """
    a, b, batched = frame_stacks(generated, reference, ("generated", "reference"), channel_axis=channel_axis)
    weights = _mask_weights(mask, a.shape[0], a.shape[1:3])
    error = (a - b) ** 2 if channel_axis is None else ((a - b) ** 2).mean(axis=-1)  # (N, H, W)
    return _per_frame(_weighted_mean(error, weights), batched)


def psnr(generated: Any, reference: Any, mask: Any = None, *,
         channel_axis: int | None = None) -> np.ndarray | np.float64:
    """Peak signal-to-noise ratio per frame, ``10 log10(1 / MSE)`` dB (data range 1).

    Parameters
    ----------
    generated, reference, mask, channel_axis
        As in :func:`mse`.

    Returns
    -------
    numpy.float64 or numpy.ndarray
        One PSNR per frame in dB: scalar, or ``(N,)`` float64. ``inf`` for identical frames,
        NaN for an empty mask.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(psnr(np.zeros((4, 4)), np.full((4, 4), 0.1))), 6)
    20.0
    """
    error = np.atleast_1d(mse(generated, reference, mask, channel_axis=channel_axis))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(1.0 / error)
    return _per_frame(values, np.ndim(generated) == (3 if channel_axis is None else 4))


def ssim(generated: Any, reference: Any, mask: Any = None, *, win_size: int = 7,
         channel_axis: int | None = None) -> np.ndarray | np.float64:
    """Structural similarity per frame (:func:`skimage.metrics.structural_similarity`, data range 1).

    A uniform ``win_size`` window computes the SSIM map. Without a mask the result is
    scikit-image's mean SSIM, which leaves out the ``(win_size - 1) // 2`` border pixels; with a
    mask it is the mean of the map over the mask minus that same border (as in
    :func:`echokdm.metrics.flow.warped_ssim`), so an all-ones mask gives the unmasked value.
    Windows near the mask edge still see pixels outside it.

    Parameters
    ----------
    generated, reference : numpy.ndarray or torch.Tensor
        ``(H, W)`` or ``(N, H, W)`` grayscale frames in [0, 1], same shape; H, W >= ``win_size``.
    mask : array_like, optional
        ``(H, W)`` or ``(N, H, W)``; average the map only where nonzero (NaN for an empty mask).
    win_size : int
        Odd side of the SSIM window, pixels.
    channel_axis : {None, -1}
        -1: colour frames ``(H, W, C)`` / ``(N, H, W, C)``; the SSIM map is computed per channel and
        averaged over the channels (scikit-image's ``channel_axis``), then over the pixels.

    Returns
    -------
    numpy.float64 or numpy.ndarray
        One SSIM in [-1, 1] per frame (1 = identical): scalar, or ``(N,)`` float64.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.random.default_rng(0).random((16, 16))
    >>> float(ssim(frame, frame))
    1.0
    """
    from skimage.metrics import structural_similarity

    a, b, batched = frame_stacks(generated, reference, ("generated", "reference"), channel_axis=channel_axis)
    hw = a.shape[1:3]
    if win_size < 3 or win_size % 2 == 0 or min(hw) < win_size:
        raise ValueError(f"win_size must be odd, >= 3 and <= the frame size {hw}, got {win_size}")
    weights = _mask_weights(mask, a.shape[0], hw)
    pad = (win_size - 1) // 2
    inner = np.zeros(hw)
    inner[pad:inner.shape[0] - pad, pad:inner.shape[1] - pad] = 1.0  # (H, W) where the map is valid
    maps = np.stack([structural_similarity(x, y, data_range=1.0, win_size=win_size, full=True,
                                           channel_axis=channel_axis)[1]
                     for x, y in zip(a, b, strict=True)])  # (N, H, W) or (N, H, W, C)
    if channel_axis is not None:
        maps = maps.mean(axis=-1)  # (N, H, W)
    inner = inner[None] if weights is None else inner * weights  # (N or 1, H, W)
    return _per_frame(_weighted_mean(maps, inner), batched)
