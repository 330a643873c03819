"""EF-targeted loops whose re-measured EF meets the target (closed-loop EF control).

A synthetic beat at EF ``e`` (:func:`~echokdm.generation.motion.synthetic_motion`) moves the
keypoints so that *their* Simpson EF is ``e``. The generated frames do not follow large motions
exactly (K2F under-moves motions larger than those it was trained on, which ``fit_keypoints``
corrects, and F2I renders the contracted cavity a little larger than the flow puts it), so the EF
re-measured on the frames, which is what a reader of the loop sees, misses ``e`` by a few points
(``benchmarks/ef_targets.py``). :func:`generate_ef_loop` therefore solves
for the motion: it generates the loop, re-measures its EF with the segmentation model, and, while
the re-measured EF is further than ``tolerance`` from the target, regenerates with the keypoint
trajectory's EF corrected by the secant method (same seed, so only the amplitude changes). It
stops early when the model has saturated (asking for more motion changed the re-measured EF by
less than 0.3 points per point, or lowered it). The loop whose re-measured EF is closest to the
target is returned.

What the returned loop says:

* ``loop.ef_target``: the EF asked for;
* ``loop.ef_achieved``: the EF re-measured on its frames;
* ``loop.keypoints``: the keypoint trajectory it was generated from, whose own EF
  (``loop.metadata["ef_trajectory"]``) is usually a few points above the target: the keypoints
  describe the motion that was asked of the model, not the motion measured on the frames;
* ``loop.metadata["ef_attempts"]``: every attempt's trajectory EF and re-measured EF (None when it
  was not read);
* ``loop.metadata["ef_calibrated"]``: whether the re-measured EF is within the tolerance.

An attempt whose re-measurement is not a reading of the generated LV (the segmentation lost it on
more than 10 % of the frames, :func:`~echokdm.generation.loop.ef_reading`: on real frames made to
contract far, the phantom-trained segmentation jumps to the right ventricle) has no
``ef_achieved`` and ends the search: its reading would steer the next attempt anywhere. The loop
returned is then the closest reliably read attempt, or the first (the motion at the target EF).

The control is only as good as the measurement: the re-measured EF is the segmentation model's
reading of the generated frames (its own error on real frames is reported by
``benchmarks/ef_targets.py``).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from echokdm.generation.settings import DEFAULT_FPS, DEPRECATED_KEYWORDS, SamplingSettings, sampling_from_keywords

__all__ = ["generate_ef_loop"]

#: Range of trajectory EFs the control may ask of the model (percent).
EF_LIMITS = (5.0, 90.0)
_MIN_SLOPE = 0.3  # re-measured EF points per trajectory EF point below which the model has saturated


def _next_request(attempts: list[tuple[float, float]], target: float, limits: tuple[float, float]) -> float | None:
    """The next trajectory EF: one step of slope 1, then secant steps through the last two attempts;
    ``None`` when the last step changed the re-measured EF by less than ``_MIN_SLOPE`` per point
    asked (or the wrong way): the model has saturated, and asking for more only breaks the loop
    (on the demo checkpoint, every such further attempt came out worse)."""
    (r1, a1) = attempts[-1]
    slope = 1.0
    if len(attempts) >= 2:
        r0, a0 = attempts[-2]
        if abs(r1 - r0) > 1e-6:
            slope = (a1 - a0) / (r1 - r0)
            if not (math.isfinite(slope) and slope >= _MIN_SLOPE):
                return None
    return float(np.clip(r1 + (target - a1) / slope, *limits))


def _checked_request(ef: float, ef_limits: tuple[float, float], tolerance: float, max_attempts: int,
                     calibrate: bool, segmentation) -> tuple[float, tuple[float, float]]:
    """``(ef, (low, high))`` checked (the Raises of :func:`generate_ef_loop`); the limits widened to hold ``ef``."""
    ef = float(ef)
    if not (math.isfinite(ef) and 0.0 < ef < 100.0):
        raise ValueError(f"ef must be within (0, 100) percent, got {ef}")
    if not (tolerance > 0):
        raise ValueError(f"tolerance must be positive (EF points), got {tolerance}")
    if int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    if calibrate and segmentation is None:
        raise ValueError("calibrate=True needs a segmentation model to re-measure the EF of the generated frames; "
                         "pass segmentation=... or calibrate=False")
    return ef, (min(float(ef_limits[0]), ef), max(float(ef_limits[1]), ef))


def _search(generate, ef: float, n_attempts: int, tolerance: float,
            limits: tuple[float, float]) -> tuple[Any, float, list[tuple[float, float | None]]]:
    """The closed loop: ``generate(trajectory EF)`` a loop, re-measure, ask again (:func:`_next_request`) until
    within ``tolerance``, saturated or ``n_attempts`` loops made. Returns the loop closest to ``ef``, its
    error (EF points; inf when nothing was measured) and every ``(trajectory EF, re-measured EF or None)``;
    an attempt without a reading (nothing measured, or not the generated LV) ends the search."""
    attempts: list[tuple[float, float | None]] = []
    best, best_error, request = None, math.inf, ef
    for _ in range(n_attempts):
        loop = generate(request)
        trajectory = loop.ef_target if loop.ef_target is not None else request
        achieved = loop.ef_achieved
        error = abs(achieved - ef) if achieved is not None else math.inf
        if error < best_error or best is None:
            best, best_error = loop, error
        if achieved is not None or loop.metadata.get("ef_reading") is not None:  # a reading was tried
            attempts.append((float(trajectory), None if achieved is None else float(achieved)))
        if achieved is None:
            break  # nothing measured, or not the generated LV: nothing to correct with
        if error <= tolerance:
            break
        following = _next_request(attempts, ef, limits)  # every attempt so far was read
        if following is None or min(abs(following - r) for r, _ in attempts) < 0.05:
            break  # saturated, at a limit, or no change possible
        request = following
    return best, best_error, attempts


def _record(best, ef: float, attempts: list[tuple[float, float | None]], *, calibrate: bool, calibrated: bool,
            heart_rate_bpm: float, n_beats: float, metadata: dict[str, Any] | None) -> None:
    """Write what the EF control did into the chosen loop (module docstring); its ``ef_target`` becomes ``ef``."""
    best.metadata.update({**(metadata or {}), "ef_requested": ef,
                          "ef_trajectory": None if best.ef_target is None else round(float(best.ef_target), 4),
                          "ef_attempts": [{"trajectory_ef": round(r, 4),
                                           "ef_achieved": None if a is None else round(a, 4)} for r, a in attempts],
                          "ef_calibration": bool(calibrate), "ef_calibrated": calibrated,
                          "heart_rate_bpm": float(heart_rate_bpm), "n_beats": float(n_beats)})
    best.ef_target = ef


def generate_ef_loop(
    pipeline,
    source_frame: np.ndarray,
    source_keypoints: np.ndarray,
    ef: float,
    *,
    heart_rate_bpm: float = 70.0,
    fps: float = DEFAULT_FPS,
    n_beats: float = 1.0,
    sampling: SamplingSettings | None = None,
    segmentation=None,
    calibrate: bool = True,
    tolerance: float = 2.0,
    max_attempts: int = 3,
    ef_limits: tuple[float, float] = EF_LIMITS,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    **generate_kwargs: Any,
):
    """A synthetic beat at ejection fraction ``ef`` whose frames re-measure at ``ef``.

    Parameters
    ----------
    pipeline, source_frame, source_keypoints
        As :func:`~echokdm.generation.loop.generate_loop` (the keypoints are the source at ED).
    ef : float
        EF to reach, percent, within (0, 100).
    heart_rate_bpm, fps, n_beats : float
        The beat, as :func:`~echokdm.generation.motion.synthetic_motion` (``fps`` default
        :data:`~echokdm.generation.settings.DEFAULT_FPS`).
    sampling : SamplingSettings, optional
        As :func:`~echokdm.generation.loop.generate_loop`; every attempt uses the same settings
        (the same seed), so only the motion's amplitude changes.
    segmentation : LVSegmentationNet or path
        The model that re-measures the EF (required when ``calibrate``).
    calibrate : bool
        True: regenerate with a corrected trajectory EF until the re-measured EF is within
        ``tolerance`` (at most ``max_attempts`` loops). False: one loop at the trajectory EF ``ef``
        (the open-loop behaviour of :func:`generate_loop`).
    tolerance : float
        EF points.
    max_attempts : int
        Loops generated at most (each costs one generation).
    ef_limits : (low, high)
        Trajectory EFs the control may ask for (widened to include ``ef``).
    progress : bool
        Progress bars.
    metadata : dict, optional
        Stored in the loop's metadata (no personal data).
    **generate_kwargs
        Passed to :func:`generate_loop` (``spacing_mm``, ``include_source``, ``fan_mask``,
        ``source_index``, ``patient_id``); the old separate sampling settings (``mode``, ``k``,
        ``num_inference_steps``, ``seed``, ``batch_size``, ``fit_keypoints``) are mapped onto
        ``sampling`` with a FutureWarning (for one release).

    Returns
    -------
    GeneratedLoop
        ``motion="synthetic"``; see the module docstring for its EF fields. A warning says so when
        no attempt came within ``tolerance``.

    Raises
    ------
    ValueError
        ``ef`` outside (0, 100), ``tolerance`` not positive, ``max_attempts`` < 1, or
        ``calibrate`` without a segmentation model.
    """
    from echokdm.generation.loop import generate_loop, load_segmentation
    from echokdm.generation.motion import synthetic_motion

    old = {name: generate_kwargs.pop(name) for name in DEPRECATED_KEYWORDS if name in generate_kwargs}
    sampling = sampling_from_keywords(sampling, old, "generate_ef_loop")
    ef, limits = _checked_request(ef, ef_limits, tolerance, max_attempts, calibrate, segmentation)
    if isinstance(pipeline, (str, os.PathLike)):
        from echokdm.pipelines.kdm import KDMPipeline

        pipeline = KDMPipeline.from_pretrained(pipeline)
    if segmentation is not None:
        segmentation = load_segmentation(segmentation)
    generate_kwargs.pop("motion", None)

    def generate(request: float):
        targets = synthetic_motion(source_keypoints, request, heart_rate_bpm, fps, n_beats)
        return generate_loop(pipeline, source_frame, source_keypoints, targets, fps=fps, sampling=sampling,
                             segmentation=segmentation, progress=progress, motion="synthetic", **generate_kwargs)

    best, best_error, attempts = _search(generate, ef, int(max_attempts) if calibrate else 1, tolerance, limits)
    calibrated = bool(best_error <= tolerance)
    _record(best, ef, attempts, calibrate=calibrate, calibrated=calibrated, heart_rate_bpm=heart_rate_bpm,
            n_beats=n_beats, metadata=metadata)
    if calibrate and not calibrated:
        got = (f"no EF measured ({best.metadata.get('ef_achieved_note', 'n/a')})" if best.ef_achieved is None
               else f"best re-measured EF {best.ef_achieved:.1f} %")
        warnings.warn(f"EF-targeted loop: asked for EF {ef:.1f} %, {got} after {len(attempts) or 1} attempt(s) "
                      f"(tolerance ±{tolerance:g} points); the model did not reach it", stacklevel=2)
    return best
