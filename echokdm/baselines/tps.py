"""Thin-plate-spline keypoint warp: the keypoint-guided baseline with no learning.

Given the keypoints of a source frame and the keypoints wanted in the target frame, a thin-plate
spline (Bookstein 1989) interpolates the keypoint displacements ``source - target`` over the
whole target grid. The result is a flow in the shared/DESIGN.md convention (target grid,
pointing into the source) that carries every target keypoint exactly onto its source keypoint,
and :func:`tps_warp` turns it into an image with the package's one
:func:`~echokdm.geometry.flow.warp`.

Border anchors. The 40 echo keypoints cover only the LV; a thin-plate spline fitted to them
alone extrapolates their affine part over the whole image, moving the sector edges and the
other chambers. By default (``pin_border=True``) eight anchor points with zero displacement are
added at the four image corners and the four edge midpoints (pixel centres ``0`` and ``W - 1``,
``H - 1``), so the far field stays put and the deformation decays away from the LV. An anchor
that coincides with a keypoint is dropped (the keypoint wins). With ``pin_border=False`` the
spline is fitted to the keypoints alone and reproduces any affine motion of them exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["tps_flow", "tps_warp"]


def _keypoint_pairs(source_keypoints: Any, target_keypoints: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate two ``(N, 2)`` keypoint arrays; drop rows with a NaN in either; return float64."""
    src = np.asarray(source_keypoints, dtype=np.float64)
    tgt = np.asarray(target_keypoints, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"source_keypoints must have shape (N, 2) (x, y), got {src.shape}")
    if tgt.shape != src.shape:
        raise ValueError(f"target_keypoints {tgt.shape} must have the shape of source_keypoints {src.shape}")
    if np.isinf(src).any() or np.isinf(tgt).any():
        raise ValueError("keypoints must be finite or NaN (missing), found inf")
    found = ~(np.isnan(src).any(axis=1) | np.isnan(tgt).any(axis=1))
    return src[found], tgt[found]


def _border_anchors(h: int, w: int, keypoints: np.ndarray) -> np.ndarray:
    """Corners and edge midpoints ``(x, y)`` of an ``h x w`` grid, minus those on a keypoint."""
    xs, ys = (0.0, (w - 1) / 2, w - 1.0), (0.0, (h - 1) / 2, h - 1.0)
    anchors = np.array([(x, y) for y in ys for x in xs if not (x == xs[1] and y == ys[1])])  # (8, 2)
    anchors = np.unique(anchors, axis=0)  # a 1-pixel axis makes some coincide
    if len(keypoints):
        gap = np.linalg.norm(anchors[:, None] - keypoints[None], axis=-1).min(axis=1)  # (A,)
        anchors = anchors[gap > 1e-6]
    return anchors


def tps_flow(source_keypoints: Any, target_keypoints: Any, shape: tuple[int, int], *, smoothing: float = 0.0,
             pin_border: bool = True) -> np.ndarray:
    """Backward flow of the thin-plate spline that maps target keypoints onto source keypoints.

    Parameters
    ----------
    source_keypoints, target_keypoints : array_like
        ``(N, 2)`` keypoints ``(x, y)`` in pixels (x = column, y = row, integers at pixel centres)
        of the source frame and of the wanted target frame, in corresponding order. A row with a
        NaN in either array is ignored.
    shape : tuple of int
        ``(H, W)`` of the target grid.
    smoothing : float
        ``scipy.interpolate.RBFInterpolator`` smoothing, >= 0. 0 interpolates the keypoints
        exactly; larger values trade exactness for a smoother, less folded flow.
    pin_border : bool
        Add zero-displacement anchors at the image corners and edge midpoints so the far field
        stays put (see the module docstring). False reproduces affine keypoint motion exactly.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(2, H, W)``: channel 0 = dx (columns), channel 1 = dy (rows), pixels, on the
        target grid pointing into the source (shared/DESIGN.md), so that
        ``flow[:, y, x] = source_keypoint - target_keypoint`` at every target keypoint with
        ``smoothing=0``. Zero flow when no keypoint pair is left and ``pin_border`` is True.

    Raises
    ------
    ValueError
        Bad shapes, a negative smoothing, or fewer than 3 usable points (keypoints plus anchors),
        which cannot fix the spline's affine part.

    Examples
    --------
    >>> import numpy as np
    >>> target = np.array([[10.0, 10.0], [20.0, 10.0], [15.0, 20.0]])
    >>> flow = tps_flow(target + [2.0, -1.0], target, (32, 32), pin_border=False)  # a pure shift
    >>> flow[:, 0, 0].tolist(), flow.shape, flow.dtype
    ([2.0, -1.0], (2, 32, 32), dtype('float32'))
    """
    from scipy.interpolate import RBFInterpolator

    h, w = _check_shape(shape)
    if not smoothing >= 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    src, tgt = _keypoint_pairs(source_keypoints, target_keypoints)
    if pin_border:
        anchors = _border_anchors(h, w, tgt)
        tgt, src = np.concatenate([tgt, anchors]), np.concatenate([src, anchors])
        if len(tgt) == len(anchors):
            return np.zeros((2, h, w), np.float32)
    if len(tgt) < 3:
        raise ValueError(f"a thin-plate spline needs at least 3 points, got {len(tgt)} usable keypoint pairs "
                         "(rows with NaN are dropped)")
    spline = RBFInterpolator(tgt, src - tgt, kernel="thin_plate_spline", smoothing=smoothing)
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)  # (H*W, 2) as (x, y)
    return spline(grid).T.reshape(2, h, w).astype(np.float32)


def _check_shape(shape: Any) -> tuple[int, int]:
    """Validate an ``(H, W)`` grid size."""
    try:
        h, w = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (H, W), got {shape!r}")
    return h, w


def tps_warp(source_image: Any, source_keypoints: Any, target_keypoints: Any, *, smoothing: float = 0.0,
             pin_border: bool = True, channel_axis: int | None = None) -> Any:
    """Warp ``source_image`` so that its keypoints move to ``target_keypoints`` (thin-plate spline).

    ``warp(source_image, tps_flow(source_keypoints, target_keypoints, (H, W)))``: bilinear,
    border-clamped backward warping (:func:`echokdm.geometry.flow.warp`).

    Parameters
    ----------
    source_image : numpy.ndarray
        ``(H, W)`` or ``(C, H, W)`` image(s) of the source frame, e.g. float32 in [0, 1].
    source_keypoints, target_keypoints : array_like
        ``(N, 2)`` keypoints ``(x, y)`` in pixels of the source frame and where they should be in
        the output; rows with NaN are ignored.
    smoothing, pin_border
        As in :func:`tps_flow`.
    channel_axis : {None, -1}
        -1: ``source_image`` is a colour frame ``(H, W, C)`` (channels last, as faces and poses are
        read); every channel is warped by the same flow.

    Returns
    -------
    numpy.ndarray
        Same shape as ``source_image``: the predicted target frame (float sources keep their
        dtype, others become float32).
    """
    from echokdm.geometry.flow import warp

    image = np.asarray(source_image)
    if channel_axis is not None:
        if channel_axis != -1 or image.ndim != 3:
            raise ValueError(f"channel_axis=-1 takes a colour frame (H, W, C), got channel_axis={channel_axis!r} "
                             f"and shape {image.shape}")
        out = tps_warp(np.moveaxis(image, -1, 0), source_keypoints, target_keypoints, smoothing=smoothing,
                       pin_border=pin_border)  # (C, H, W)
        return np.moveaxis(out, 0, -1)
    if image.ndim not in (2, 3):
        raise ValueError(f"source_image must have shape (H, W) or (C, H, W), got {image.shape}")
    flow = tps_flow(source_keypoints, target_keypoints, image.shape[-2:], smoothing=smoothing, pin_border=pin_border)
    return warp(image, flow)
