"""The one resize of echokdm: images, masks and flows to another pixel grid.

Every resize is :func:`torch.nn.functional.interpolate` on ``float32`` with
``align_corners=False``: pixel *areas* are aligned, so a pixel centre ``x`` of a ``W``-wide grid
lands at ``x' = (x + 0.5) · W' / W − 0.5`` (the same for rows with ``H``). Keypoints follow with
:func:`echokdm.data.pairs.scale_keypoints`.

* :func:`resize_images` — frames or masks ``(..., H, W)``, bilinear or nearest-neighbour,
  optionally anti-aliased when shrinking; ``float32`` out, or ``uint8`` 0–255 for frames in
  [0, 1];
* :func:`resize_flow` — flows ``(2, H, W)`` or ``(B, 2, H, W)``: resized bilinearly and their
  vectors rescaled to the new pixels (dx times ``W' / W``, dy times ``H' / H``).

numpy in, numpy out; torch is imported on the first call, so ``import echokdm.geometry`` stays
light. A size equal to the input's returns the values unchanged (no interpolation, a copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["resize_images", "resize_flow"]

_MODES = ("bilinear", "nearest")


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` of ``size`` (an int is a square)."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    rows, cols = size
    return int(rows), int(cols)


def _interpolate(x: np.ndarray, hw: tuple[int, int], mode: str, antialias: bool) -> np.ndarray:
    """``float32`` ``(N, C, h, w)`` → ``(N, C, *hw)`` (``antialias`` only when an axis shrinks)."""
    import torch
    import torch.nn.functional as F

    if tuple(x.shape[-2:]) == hw:
        return x.copy()
    t = torch.from_numpy(x)
    if mode == "nearest":
        return F.interpolate(t, size=hw, mode="nearest").numpy()
    shrink = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=antialias and shrink).numpy()


def resize_images(images: Any, size: int | tuple[int, int], *, mode: str = "bilinear", antialias: bool = False,
                  dtype: Any = np.float32) -> np.ndarray:
    """Resize images ``(..., H, W)`` to ``(..., *size)``.

    Parameters
    ----------
    images : array_like
        ``(H, W)``, ``(T, H, W)`` or ``(B, C, H, W)`` (more leading axes are flattened into ``B``
        and restored). Any real dtype; the values are cast to ``float32`` unchanged (a ``uint8``
        mask stays 0/1, a ``uint8`` frame stays 0–255).
    size : int or (int, int)
        Output ``(rows, cols)``; an int is a square.
    mode : {"bilinear", "nearest"}
        Bilinear (``align_corners=False``) for images; nearest-neighbour for label masks
        (threshold the result, e.g. ``> 0.5``).
    antialias : bool
        Bilinear only: low-pass when shrinking (``antialias=True`` of torch, Pillow's filter),
        applied to the whole call when either axis shrinks; plain bilinear when no axis shrinks.
    dtype : {numpy.float32, numpy.uint8}
        ``float32`` returns the interpolated values. ``uint8`` is for frames in [0, 1]: it returns
        ``round(255 · value)`` clipped to 0–255 (the rounding in ``float32``, half to even).

    Returns
    -------
    numpy.ndarray
        ``(..., *size)`` of ``dtype``, a new array.

    Examples
    --------
    >>> frames = np.random.default_rng(0).random((3, 40, 56), dtype=np.float32)
    >>> resize_images(frames, 32).shape, resize_images(frames, (20, 28), antialias=True).dtype
    ((3, 32, 32), dtype('float32'))
    >>> resize_images(frames, 32, dtype=np.uint8).dtype
    dtype('uint8')
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise ValueError(f"dtype must be numpy.float32 or numpy.uint8, got {dtype!r}")
    x = np.ascontiguousarray(images, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError(f"images must have shape (..., H, W), got {x.shape}")
    hw = _hw(size)
    lead = x.shape[:-2]
    if x.ndim == 2:
        batch = x[None, None]  # (1, 1, H, W)
    elif x.ndim == 3:
        batch = x[:, None]  # (T, 1, H, W)
    else:
        batch = x.reshape(-1, *x.shape[-3:])  # (B, C, H, W)
    out = _interpolate(batch, hw, mode, antialias).reshape(*lead, *hw)
    if np.dtype(dtype) == np.uint8:
        return (out * 255.0).round().clip(0, 255).astype(np.uint8)
    return out


def resize_flow(flow: Any, size: int | tuple[int, int], *, antialias: bool = False) -> np.ndarray:
    """Resize a flow ``(2, H, W)`` or ``(B, 2, H, W)`` to ``size`` and rescale its vectors.

    The flow (channels ``dx``, ``dy`` in pixels, shared/DESIGN.md) is resized bilinearly like
    :func:`resize_images`; then dx is multiplied by ``W' / W`` and dy by ``H' / H`` (in
    ``float32``), so the vectors are in pixels of the new grid.

    Parameters
    ----------
    flow : array_like
        ``(2, H, W)`` or ``(B, 2, H, W)``, any real dtype (cast to ``float32``).
    size : int or (int, int)
        Output ``(rows, cols)``; an int is a square.
    antialias : bool
        As in :func:`resize_images` (low-pass when an axis shrinks).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(2, *size)`` or ``(B, 2, *size)``, a new array.

    Examples
    --------
    >>> flow = np.ones((2, 40, 56), np.float32)  # one pixel right and down
    >>> out = resize_flow(flow, 28)
    >>> float(out[0, 0, 0]), float(out[1, 0, 0])  # dx * 28 / 56, dy * 28 / 40
    (0.5, 0.699999988079071)
    """
    from echokdm.geometry.flow import check_flow

    x = np.ascontiguousarray(flow, dtype=np.float32)
    h, w = check_flow(x)
    hw = _hw(size)
    if (h, w) == hw:
        return x.copy()
    out = _interpolate(x if x.ndim == 4 else x[None], hw, "bilinear", antialias)  # (B, 2, *size)
    out *= np.array([hw[1] / w, hw[0] / h], np.float32)[:, None, None]
    return out if x.ndim == 4 else out[0]
