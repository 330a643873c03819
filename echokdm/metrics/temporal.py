"""Temporal consistency of a cine: the frame-to-frame warping error along a flow.

A generated loop whose frames move as the flow says has a low warping error; flicker, speckle
that jumps, or frames in the wrong order raise it. Flows follow shared/DESIGN.md: ``flows[t]``
is ``(2, H, W)`` (dx, dy) in pixels on the grid of frame ``t + 1`` pointing into frame ``t``
(the phantom's :meth:`~echokdm.data.phantom.clip.PhantomClip.consecutive_flows`, or an optical
flow estimate on generated frames).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from echokdm.metrics.flow import warped_mse

__all__ = ["TemporalWarpingError", "temporal_warping_error"]


@dataclasses.dataclass(frozen=True)
class TemporalWarpingError:
    """Warping error of one clip.

    Attributes
    ----------
    per_pair : numpy.ndarray
        float64 ``(T-1,)``: MSE between ``warp(frames[t], flows[t])`` and ``frames[t + 1]``
        (intensity units squared; NaN where the mask is empty).
    """

    per_pair: np.ndarray

    @property
    def mean(self) -> float:
        """Clip summary: mean over frame pairs (NaN pairs ignored; NaN if none is left)."""
        finite = self.per_pair[np.isfinite(self.per_pair)]
        return float(finite.mean()) if finite.size else float("nan")

    @property
    def max(self) -> float:
        """The worst frame pair (NaN pairs ignored; NaN if none is left)."""
        finite = self.per_pair[np.isfinite(self.per_pair)]
        return float(finite.max()) if finite.size else float("nan")

    def summary(self) -> dict[str, float]:
        """``{"temporal_mse_mean", "temporal_mse_max", "n_pairs"}`` for a per-clip table."""
        return {"temporal_mse_mean": self.mean, "temporal_mse_max": self.max, "n_pairs": int(self.per_pair.size)}


def temporal_warping_error(frames: Any, flows: Any, mask: Any = None, *,
                           channel_axis: int | None = None) -> TemporalWarpingError:
    """Frame-to-frame warping error: per pair, ``MSE(warp(frames[t], flows[t]), frames[t + 1])``.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` float frames in [0, 1], T >= 2.
    flows : numpy.ndarray
        ``(T-1, 2, H, W)`` backward flows: ``flows[t]`` (dx, dy) in pixels, on the grid of frame
        ``t + 1`` pointing into frame ``t``.
    mask : array_like, optional
        Where to average, on the target grid: ``(H, W)`` for every pair (e.g. the sector),
        ``(T, H, W)`` one per frame (the target frame's ``mask[t + 1]`` is used for pair t), or
        ``(T-1, H, W)`` one per pair.
    channel_axis : {None, -1}
        -1: colour frames ``(T, H, W, C)``; the error is the mean over the channels (one MSE over
        every pixel and channel, as :func:`~echokdm.metrics.image.mse` with ``channel_axis=-1``).

    Returns
    -------
    TemporalWarpingError
        ``per_pair`` float64 ``(T-1,)`` and the clip summary ``mean`` / ``max``.

    Examples
    --------
    >>> import numpy as np
    >>> frames = np.zeros((3, 8, 8), np.float32)
    >>> temporal_warping_error(frames, np.zeros((2, 2, 8, 8), np.float32)).mean
    0.0
    """
    frames = np.asarray(frames, dtype=np.float64)
    if channel_axis not in (None, -1):
        raise ValueError(f"channel_axis must be None (grayscale) or -1 (channels last), got {channel_axis!r}")
    if channel_axis == -1:
        if frames.ndim != 4:
            raise ValueError(f"frames must be a colour cine (T, H, W, C) with channel_axis=-1, got {frames.shape}")
        per_channel = [temporal_warping_error(frames[..., c], flows, mask).per_pair for c in range(frames.shape[-1])]
        return TemporalWarpingError(per_pair=np.mean(per_channel, axis=0))  # equal pixel counts per channel
    flows = np.asarray(flows)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be a cine (T, H, W) with T >= 2, got {frames.shape}")
    t, h, w = frames.shape
    if flows.shape != (t - 1, 2, h, w):
        raise ValueError(f"flows must have shape (T-1, 2, H, W) = {(t - 1, 2, h, w)} for frames {frames.shape}, "
                         f"got {flows.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape == (t, h, w):
            mask = mask[1:]  # (T-1, H, W): the target frame's mask
    values = warped_mse(frames[:-1], frames[1:], flows.astype(np.float64), mask)  # (T-1,)
    return TemporalWarpingError(per_pair=np.asarray(values, dtype=np.float64))
