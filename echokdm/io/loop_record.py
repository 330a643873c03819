"""A generated cine loop read duck-typed: the checked fields that every loop writer needs.

A *loop* is any object with the attributes of ``echokdm.generation.loop.GeneratedLoop`` (read
duck-typed, so that :mod:`echokdm.io` does not import the generator):

=================  ==============================================================================
attribute          meaning
=================  ==============================================================================
``frames``         ``float32`` ``(T, H, W)`` in [0, 1], grayscale
``fps``            frames per second (> 0)
``spacing_mm``     ``(dx, dy)`` mm per pixel along columns and rows, or ``None``
``keypoints``      ``(T, N, 2)`` ``(x, y)`` pixels (x = column, y = row), NaN rows where missing
``ef_target``      EF (%) the motion was built for (``None`` or NaN when unknown)
``ef_achieved``    EF (%) measured on the generated loop (``None`` or NaN when unknown)
``source_frame``   index of the real frame the loop was generated from
``motion``         name of the keypoint motion (free text written by the generator)
``patient_id``     pseudonym of the source patient, or ``None``
=================  ==============================================================================

Optional: ``detected_keypoints`` (the keypoints re-detected on the frames, shaped like
``keypoints``) and ``metadata`` (a mapping; ``metadata["fan_masked"] is True`` says that every
frame is 0 outside the source's ultrasound fan).

:func:`read_loop_record` reads and checks them into a :class:`LoopRecord`, for the loop writers
of :mod:`echokdm.generation.export`, :mod:`echokdm.generation.echonet_cohort` and
:mod:`echokdm.io.dicom_write`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LoopRecord", "percent_text", "read_loop_record"]


@dataclasses.dataclass(frozen=True)
class LoopRecord:
    """Checked fields of a generated loop (see the module docstring).

    Attributes
    ----------
    frames : numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1].
    fps : float
        Frames per second, > 0.
    spacing_mm : (float, float) or None
        ``(dx, dy)`` mm per pixel.
    keypoints : numpy.ndarray
        ``float32`` ``(T, N, 2)`` ``(x, y)`` pixels, NaN where missing.
    ef_target, ef_achieved : float or None
        EF in percent; ``None`` when unknown (``None`` or NaN on the loop).
    source_frame : int or None
        Index of the real source frame.
    motion : str
        Name of the keypoint motion (``""`` when not given).
    patient_id : str or None
        Pseudonym of the source patient.
    detected_keypoints : numpy.ndarray or None
        ``float32`` ``(T, N, 2)`` re-detected on the frames, if measured.
    fan_masked : bool
        Every frame is 0 outside the source's ultrasound fan (``metadata["fan_masked"]``).
    ef_note : str
        Why ``ef_achieved`` is what it is (``metadata["ef_achieved_note"]``; ``""`` when not given).
    """

    frames: np.ndarray  # (T, H, W) float32
    fps: float
    spacing_mm: tuple[float, float] | None
    keypoints: np.ndarray  # (T, N, 2) float32 (x, y)
    ef_target: float | None
    ef_achieved: float | None
    source_frame: int | None
    motion: str
    patient_id: str | None
    detected_keypoints: np.ndarray | None = None  # (T, N, 2) re-detected on the frames, if measured
    fan_masked: bool = False  # every frame is 0 outside the source's ultrasound fan (metadata["fan_masked"])
    ef_note: str = ""  # metadata["ef_achieved_note"]


def read_loop_record(loop: Any, what: str = "loop", *, n_keypoints: int | None = None) -> LoopRecord:
    """Read and check the attributes of ``loop``.

    Parameters
    ----------
    loop : GeneratedLoop or any object with its attributes
        See the module docstring.
    what : str
        How errors name the loop (``"loop"``, ``"loop 'synA'"``, ``"<path>: loop"``).
    n_keypoints : int, optional
        The keypoint count ``N`` the loop must have (40 for echo); any ``N`` when not given.

    Returns
    -------
    LoopRecord

    Raises
    ------
    ValueError
        A missing or bad attribute; the message names ``what`` and the attribute.
    """
    missing = [name for name in ("frames", "fps", "keypoints") if not hasattr(loop, name)]
    if missing:
        raise ValueError(f"{what}: missing attribute(s) {', '.join(missing)} (expected a GeneratedLoop)")
    frames = np.asarray(loop.frames)
    if frames.ndim != 3 or 0 in frames.shape:
        raise ValueError(f"{what}: frames must be a non-empty (T, H, W) array, got shape {frames.shape}")
    if not np.issubdtype(frames.dtype, np.floating) or not np.isfinite(frames).all() \
            or frames.min() < 0.0 or frames.max() > 1.0:
        raise ValueError(f"{what}: frames must be finite floats in [0, 1] (dtype {frames.dtype})")
    keypoints = _checked_keypoints(loop.keypoints, frames.shape[0], n_keypoints, what)
    detected = getattr(loop, "detected_keypoints", None)
    if detected is not None:
        detected = np.asarray(detected, dtype=np.float32)
        if detected.shape != keypoints.shape:
            raise ValueError(f"{what}: detected_keypoints must have the keypoints' shape {keypoints.shape}, "
                             f"got {detected.shape}")
    metadata = getattr(loop, "metadata", None)
    return LoopRecord(
        detected_keypoints=detected,
        fan_masked=bool(isinstance(metadata, Mapping) and metadata.get("fan_masked") is True),
        ef_note=str(metadata.get("ef_achieved_note") or "") if isinstance(metadata, Mapping) else "",
        frames=frames.astype(np.float32, copy=False),
        fps=_positive(loop.fps, f"{what}: fps"),
        spacing_mm=_spacing(getattr(loop, "spacing_mm", None), what),
        keypoints=keypoints,
        ef_target=_ef(getattr(loop, "ef_target", None), f"{what}: ef_target"),
        ef_achieved=_ef(getattr(loop, "ef_achieved", None), f"{what}: ef_achieved"),
        source_frame=None if getattr(loop, "source_frame", None) is None else int(loop.source_frame),
        motion=str(getattr(loop, "motion", "") or ""),
        patient_id=None if getattr(loop, "patient_id", None) is None else str(loop.patient_id),
    )


def percent_text(value: float | None) -> str:
    """An EF for a caption: ``"55.0 %"``, or ``"n/a"`` when unknown (``None``)."""
    return "n/a" if value is None else f"{value:.1f} %"


def _checked_keypoints(value: Any, n_frames: int, n_keypoints: int | None, what: str) -> np.ndarray:
    """``float32`` ``(T, N, 2)``; ``N`` must be ``n_keypoints`` when given."""
    keypoints = np.asarray(value, dtype=np.float32)
    if n_keypoints is not None:
        if keypoints.shape != (n_frames, n_keypoints, 2):
            raise ValueError(f"{what}: keypoints must have shape (T, {n_keypoints}, 2) = "
                             f"{(n_frames, n_keypoints, 2)}, got {keypoints.shape}")
    elif keypoints.ndim != 3 or keypoints.shape[0] != n_frames or keypoints.shape[2] != 2:
        raise ValueError(f"{what}: keypoints must have shape (T, N, 2) with T = {n_frames}, got {keypoints.shape}")
    return keypoints


def _positive(value: Any, name: str) -> float:
    """``float(value)``, or a :class:`ValueError` naming ``name`` unless finite and > 0."""
    number = _optional_number(value, name)
    if number is None or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def _optional_number(value: Any, name: str) -> float | None:
    """``None`` or a finite float; :class:`ValueError` naming ``name`` otherwise."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _ef(value: Any, name: str) -> float | None:
    """An EF in percent, ``None`` when unknown (``None`` or NaN, as GeneratedLoop writes it)."""
    if value is not None and isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    return _optional_number(value, name)


def _spacing(value: Any, what: str) -> tuple[float, float] | None:
    """``None`` or ``(dx, dy)`` positive floats in mm."""
    if value is None:
        return None
    values = tuple(value)
    if len(values) != 2:
        raise ValueError(f"{what}: spacing_mm must be (dx, dy) in mm or None, got {value!r}")
    return (_positive(values[0], f"{what}: spacing_mm dx"), _positive(values[1], f"{what}: spacing_mm dy"))
