"""LV volumes by Simpson's method of discs, ED/ES detection and ejection fraction.

The 20 chords of the 40 keypoints are exactly Simpson's discs: ``V = Σ_j π/4 · d_j² · L/20``,
with ``d_j`` the length of chord ``j`` and ``L`` the long axis. Chord ``j`` crosses the long axis
at ``t_j = (j + 0.5) / 20``, so the chord midpoints lie on the axis and ``L`` is recovered from
the keypoints alone (least-squares slope of the midpoints against ``t_j``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from echokdm.geometry.keypoints import CHORD_FRACTIONS, N_CHORDS, N_KEYPOINTS

__all__ = ["simpson_volume", "long_axis_from_keypoints", "CardiacCycle", "cardiac_cycle"]


def _to_mm(keypoints: np.ndarray, spacing_mm: tuple[float, float] | None) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape[-2:] != (N_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (..., 40, 2), got {kp.shape}")
    if spacing_mm is None:
        return kp
    return kp * np.asarray(spacing_mm, dtype=np.float64)  # (x, y) * (dx, dy)


def long_axis_from_keypoints(keypoints: np.ndarray, spacing_mm: tuple[float, float] | None = None):
    """Basal centre, apex and length ``L`` implied by the keypoints.

    Returns ``(basal_centre (..., 2), apex (..., 2), length (...))`` in pixels, or in mm when
    ``spacing_mm`` is given. NaN where a keypoint is missing.
    """
    kp = _to_mm(keypoints, spacing_mm)
    mid = (kp[..., :N_CHORDS, :] + kp[..., ::-1, :][..., :N_CHORDS, :]) / 2  # (..., 20, 2)
    t = CHORD_FRACTIONS - CHORD_FRACTIONS.mean()
    slope = np.einsum("j,...jc->...c", t, mid - mid.mean(axis=-2, keepdims=True)) / np.sum(t**2)
    base = mid.mean(axis=-2) - CHORD_FRACTIONS.mean() * slope  # midpoint line at t = 0
    return base, base + slope, np.linalg.norm(slope, axis=-1)


def simpson_volume(keypoints: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> np.ndarray:
    """Simpson (method of discs) volume from 40 keypoints.

    Parameters
    ----------
    keypoints : numpy.ndarray
        ``(..., 40, 2)`` ``(x, y)`` pixels.
    spacing_mm : (dx, dy), optional
        Pixel size in mm. With it the volume is in **mL**; without it in **pixel³**.

    Returns
    -------
    numpy.ndarray
        Volume per keypoint set (shape ``(...)``); NaN when any keypoint is missing.

    Examples
    --------
    A cylinder-like LV of chord 20 px and length 40 px: V = π/4 · 20² · 40.

    >>> t = (np.arange(20) + 0.5) / 20
    >>> left = np.stack([np.full(20, 40.0), 80 - 40 * t], axis=1)
    >>> right = np.stack([np.full(20, 60.0), 80 - 40 * t], axis=1)
    >>> kp = np.concatenate([left, right[::-1]])
    >>> round(float(simpson_volume(kp)), 1) == round(np.pi / 4 * 400 * 40, 1)
    True
    """
    kp = _to_mm(keypoints, spacing_mm)
    d = np.linalg.norm(kp[..., :N_CHORDS, :] - kp[..., ::-1, :][..., :N_CHORDS, :], axis=-1)  # (..., 20)
    _, _, length = long_axis_from_keypoints(keypoints, spacing_mm)
    volume = np.sum(np.pi / 4 * d**2, axis=-1) * length / N_CHORDS
    if spacing_mm is not None:
        volume = volume / 1000.0  # mm³ -> mL
    return volume


@dataclasses.dataclass
class CardiacCycle:
    """ED/ES frames and ejection fraction of a volume curve.

    Attributes
    ----------
    ed_frames, es_frames : numpy.ndarray
        Frame indices, one pair per beat (ED precedes its ES).
    edv, esv, ef : numpy.ndarray
        Per beat: volumes (units of the input) and EF in percent.
    flags : tuple of str
        E.g. ``"no complete beat: EF from the curve's max and min"``.
    """

    ed_frames: np.ndarray
    es_frames: np.ndarray
    edv: np.ndarray
    esv: np.ndarray
    ef: np.ndarray
    flags: tuple[str, ...] = ()

    @property
    def ef_mean(self) -> float:
        """Mean EF over beats (percent), NaN without beats."""
        return float(np.mean(self.ef)) if len(self.ef) else float("nan")

    @property
    def n_beats(self) -> int:
        return int(len(self.ef))


def cardiac_cycle(
    volumes: np.ndarray, fps: float | None = None, *, min_cycle_s: float = 0.35, min_prominence: float = 0.15
) -> CardiacCycle:
    """Find end-diastole and end-systole per beat from a volume curve, and the EF of each beat.

    End-systoles are the curve's minima (peak finding on ``-volumes``) separated by at least
    ``min_cycle_s`` seconds (a heart rate below 170 bpm) and standing out by at least
    ``min_prominence`` of the curve's range; each beat's end-diastole is the largest volume
    since the previous end-systole (or the clip start). A clip without an interior minimum
    (less than one beat) falls back to the curve's maximum before its minimum, and says so.

    Parameters
    ----------
    volumes : numpy.ndarray
        ``(T,)`` volumes; NaN frames are ignored (interpolated for peak finding).
    fps : float, optional
        Frame rate; without it beats are assumed at least ``T / 8`` frames apart.
    """
    from scipy.signal import find_peaks

    v = np.asarray(volumes, dtype=np.float64)
    if v.ndim != 1 or len(v) < 3:
        raise ValueError(f"volumes must be a 1-D curve of at least 3 frames, got shape {v.shape}")
    good = np.isfinite(v)
    if good.sum() < 3:
        raise ValueError("volumes has fewer than 3 finite values")
    t = np.arange(len(v))
    filled = np.interp(t, t[good], v[good])
    span = float(filled.max() - filled.min())
    distance = max(1, int(round(min_cycle_s * fps))) if fps else max(1, len(v) // 8)
    flags: list[str] = []
    if span <= 0:
        return CardiacCycle(*(np.array([], dtype=int),) * 2, *(np.array([]),) * 3, flags=("flat volume curve",))
    troughs, _ = find_peaks(-filled, distance=distance, prominence=min_prominence * span)
    ed, es = [], []
    start = 0
    for k in troughs:
        i = start + int(np.argmax(filled[start : k + 1]))
        if i < k and filled[i] > filled[k]:
            ed.append(i)
            es.append(int(k))
        start = int(k)
    if not es:
        k = int(np.argmin(filled))
        i = int(np.argmax(filled[: k + 1]))
        if i < k:
            ed, es = [i], [k]
            flags.append("no complete beat: EF from the largest volume before the smallest")
        else:
            flags.append("no end-systole after an end-diastole in the clip")
    ed_a, es_a = np.array(ed, dtype=int), np.array(es, dtype=int)
    edv, esv = filled[ed_a], filled[es_a]
    return CardiacCycle(ed_a, es_a, edv, esv, 100.0 * (edv - esv) / edv, tuple(flags))
