"""Temporal consistency of a generated loop and its "pop": the jump from the real source frame to
the first generated frame.

A loop starts on the real source frame and continues with generated ones. When the generated
frames are blurrier (or brighter, or their speckle is repainted), the loop visibly jumps after
its first frame although the motion is smooth. The pop compares that first step with the typical
step between consecutive generated frames::

    pop = d(source, frames[0]) / median_t d(frames[t], frames[t + 1])

with ``d`` the MSE (``pop_mse``), LPIPS (``pop_lpips``, when a model is given) or the warping
error along the motion (``pop_warp``: the MSE after warping the earlier frame by the step flow,
so that motion does not count, only what the motion does not explain). With evenly spaced frames
about 1 means the first step looks like any other; the ratio also depends on the frame spacing, so a
real clip sampled the same way gives the reference (its own ED frame and beat). The
warping error between consecutive generated frames (``warp_error``, the mean over pairs,
:func:`echokdm.metrics.temporal.temporal_warping_error`) measures flicker the motion does not
explain. Frames are ``float32`` ``(T, H, W)`` in [0, 1]; flows follow shared/DESIGN.md (``(2, H, W)``
dx, dy in pixels on the later frame's grid, pointing into the earlier frame).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from echokdm.metrics.flow import warped_mse
from echokdm.metrics.temporal import temporal_warping_error

__all__ = ["loop_consistency", "pop_ratio"]


def pop_ratio(steps: Any) -> float:
    """``steps[0] / median(steps[1:])`` for per-step distances ``(K,)``, K >= 2: the first step
    (source → first generated frame) against the typical later one; NaN when that median is 0 or NaN."""
    steps = np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or len(steps) < 2:
        raise ValueError(f"pop_ratio needs at least 2 step distances (K,), got shape {steps.shape}")
    typical = np.nanmedian(steps[1:]) if np.isfinite(steps[1:]).any() else np.nan
    if not np.isfinite(typical) or typical <= 0:
        return float("nan")
    return float(steps[0] / typical)


def loop_consistency(source: Any, frames: Any, step_flows: Any = None,
                     lpips: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """Warping error and pop of one loop ``[source, frames[0], frames[1], ...]``.

    Parameters
    ----------
    source : numpy.ndarray
        ``(H, W)`` the real source frame.
    frames : numpy.ndarray
        ``(K, H, W)`` the frames that follow it, K >= 2 (generated, or the real clip's for the reference).
    step_flows : numpy.ndarray, optional
        ``(K, 2, H, W)``: ``step_flows[0]`` from the source to ``frames[0]``, ``step_flows[t]`` from
        ``frames[t - 1]`` to ``frames[t]`` (the requested motion, e.g. the thin-plate spline of
        consecutive target keypoints). Without it ``warp_error`` and ``pop_warp`` are NaN.
    lpips : callable, optional
        ``lpips(a (n, H, W), b (n, H, W)) -> (n,)`` distances; without it ``pop_lpips`` is NaN.

    Returns
    -------
    dict
        ``warp_error`` (mean warped MSE over consecutive generated frames), ``pop_mse``,
        ``pop_warp``, ``pop_lpips``.

    Examples
    --------
    >>> still = np.full((3, 8, 8), 0.5, np.float32)
    >>> out = loop_consistency(still[0] + 0.1, still, np.zeros((3, 2, 8, 8), np.float32))
    >>> out["warp_error"], bool(np.isnan(out["pop_mse"]))  # later steps are 0: the pop is undefined
    (0.0, True)
    """
    source, frames = np.asarray(source, np.float64), np.asarray(frames, np.float64)
    if frames.ndim != 3 or len(frames) < 2 or source.shape != frames.shape[1:]:
        raise ValueError(f"need a source (H, W) and at least 2 frames (K, H, W) of that size, got {source.shape} "
                         f"and {frames.shape}")
    loop = np.concatenate([source[None], frames])  # (K + 1, H, W)
    out = {"warp_error": np.nan, "pop_warp": np.nan, "pop_lpips": np.nan,
           "pop_mse": pop_ratio(((loop[1:] - loop[:-1]) ** 2).mean(axis=(1, 2)))}
    if step_flows is not None:
        step_flows = np.asarray(step_flows, np.float64)
        if step_flows.shape != (len(frames), 2, *source.shape):
            raise ValueError(f"step_flows must be (K, 2, H, W) = {(len(frames), 2, *source.shape)}, "
                             f"got {step_flows.shape}")
        out["warp_error"] = temporal_warping_error(frames, step_flows[1:]).mean
        out["pop_warp"] = pop_ratio(np.asarray(warped_mse(loop[:-1], loop[1:], step_flows), np.float64))
    if lpips is not None:
        out["pop_lpips"] = pop_ratio(np.asarray(lpips(loop[:-1].astype(np.float32), loop[1:].astype(np.float32)),
                                                np.float64))
    return out
