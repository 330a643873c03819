"""Pixel conversions shared by the readers: everything to grayscale float32 in [0, 1]."""

from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights, as used by ffmpeg, Pillow's "L" mode and OpenCV's RGB2GRAY.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luma of RGB pixels (last axis of length 3 or 4, alpha ignored), same dtype scale, float32."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] not in (3, 4):
        raise ValueError(f"expected RGB(A) pixels in the last axis, got shape {rgb.shape}")
    return rgb[..., :3].astype(np.float32) @ _LUMA


def to_unit_range(pixels: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """Scale integer or float pixels to float32 in [0, 1].

    Integers are divided by ``max_value`` (default: the dtype's maximum, e.g. 255 for uint8);
    signed integers are shifted by the dtype's minimum first. Floats are assumed in [0, 1]
    when already within it, else min-max scaled over the whole array (a cine, not per frame,
    so that brightness changes over time survive).
    """
    pixels = np.asarray(pixels)
    if np.issubdtype(pixels.dtype, np.integer):
        info = np.iinfo(pixels.dtype)
        low = float(info.min) if info.min < 0 else 0.0
        top = float(max_value) if max_value is not None else float(info.max)
        out = (pixels.astype(np.float32) - low) / max(top - low, 1.0)
    elif pixels.dtype == np.bool_:
        out = pixels.astype(np.float32)
    else:
        out = pixels.astype(np.float32)
        lo, hi = (float(np.nanmin(out)), float(np.nanmax(out))) if out.size else (0.0, 1.0)
        if lo < 0.0 or hi > 1.0:
            out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def to_gray_frames(pixels: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """Frames to grayscale ``float32`` ``(T, H, W)`` in [0, 1].

    The layout is never guessed from sizes: ``(H, W)`` is one gray frame, ``(T, H, W)`` a gray
    cine and ``(T, H, W, 3|4)`` colour frames (BT.601 luma, alpha ignored). Pass a single colour
    image as ``image[None]``.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim == 4:
        if pixels.shape[-1] not in (3, 4):
            raise ValueError(f"expected (T, H, W, 3) colour frames, got shape {pixels.shape}")
        scaled = to_unit_range(pixels, max_value)
        return np.clip(rgb_to_gray(scaled), 0.0, 1.0).astype(np.float32)
    if pixels.ndim != 3:
        raise ValueError(f"expected (T, H, W) frames, got shape {pixels.shape}")
    return to_unit_range(pixels, max_value)
