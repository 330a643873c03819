"""LV volumes by Simpson's method of discs, ED/ES detection and ejection fraction.

The 20 chords of the 40 keypoints are exactly Simpson's discs: ``V = Σ_j π/4 · d_j² · L/20``,
with ``d_j`` the length of chord ``j`` and ``L`` the long axis. Chord ``j`` crosses the long axis
at ``t_j = (j + 0.5) / 20``, so the chord midpoints lie on the axis and ``L`` is recovered from
the keypoints alone (least-squares slope of the midpoints against ``t_j``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from echokdm.geometry.keypoints import CHORD_FRACTIONS, N_CHORDS, N_KEYPOINTS

__all__ = ["simpson_volume", "long_axis_from_keypoints", "CardiacCycle", "cardiac_cycle", "first_full_ed_frame"]


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
        Frame indices, one pair per accepted beat (ED precedes its ES).
    edv, esv, ef : numpy.ndarray
        Per accepted beat: volumes (units of the input) and EF in percent.
    flags : tuple of str
        E.g. ``"no complete beat: EF from the curve's max and min"``, and one
        ``"rejected beat ED a -> ES b: <reason>"`` per rejected candidate.
    rejected : tuple of (int, int, str)
        ``(ed, es, reason)`` of every candidate beat that failed a physiological limit.
    """

    ed_frames: np.ndarray
    es_frames: np.ndarray
    edv: np.ndarray
    esv: np.ndarray
    ef: np.ndarray
    flags: tuple[str, ...] = ()
    rejected: tuple[tuple[int, int, str], ...] = ()

    @property
    def ef_mean(self) -> float:
        """Mean EF over beats (percent), NaN without beats."""
        return float(np.mean(self.ef)) if len(self.ef) else float("nan")

    @property
    def n_beats(self) -> int:
        return int(len(self.ef))


def _refine(curve: np.ndarray, i: int, radius: int, lo: int, hi: int, pick) -> int:
    """Index of ``pick`` (argmax/argmin) of ``curve`` within ``radius`` of ``i``, inside [lo, hi]."""
    a, b = max(lo, i - radius), min(hi, i + radius)
    if b < a:
        return i
    return a + int(pick(curve[a:b + 1]))


def _running_median3(curve: np.ndarray) -> np.ndarray:
    """The curve's 3-frame running median (ends kept)."""
    out = curve.copy()
    if len(curve) >= 3:
        out[1:-1] = np.median(np.stack([curve[:-2], curve[1:-1], curve[2:]]), axis=0)
    return out


def _largest_swing(curve: np.ndarray, min_frames: int, max_frames: int) -> tuple[int, int] | None:
    """``(ed, es)``: the frames of the largest volume drop between a larger and a smaller volume
    ``min_frames`` to ``max_frames`` apart, in either order (a clip holding less than one beat shows
    a systole or a filling); None when no pair is that far apart with a positive drop."""
    best, pair = 0.0, None
    n = len(curve)
    for i in range(n):
        for k in range(n):
            if min_frames <= abs(k - i) <= max_frames and curve[i] - curve[k] > best:
                best, pair = float(curve[i] - curve[k]), (i, k)
    return pair


def _frame_limits(n: int, fps: float | None, slow: float, fast: float, min_cycle_s: float | None,
                  min_systole_s: float, smooth_s: float) -> tuple[int, int, int, int, int, float]:
    """The limits of :func:`cardiac_cycle` in frames of a ``n``-frame curve.

    ``(distance, longest, min_sys, max_sys, radius, sigma)``: shortest and longest beat, shortest
    and longest systole, the radius within which an extreme is placed on the raw curve, and the
    Gaussian smoothing (no smoothing below 0.3 frames; none without ``fps``).
    """
    if not fps:
        return max(1, n // 8), n, 2, n, 1, 0.0
    shortest = min_cycle_s if min_cycle_s is not None else 60.0 / fast
    distance = max(1, int(round(shortest * fps)))
    longest = max(distance + 1, int(round(60.0 / slow * fps)))
    min_sys = max(1, int(math.ceil(min_systole_s * fps - 1e-9)))
    max_sys = max(min_sys + 1, int(round(0.6 * 60.0 / slow * fps)))
    radius = max(1, int(round(smooth_s * fps)))
    return distance, longest, min_sys, max_sys, radius, smooth_s * fps


def _systole_problem(frames: int, edv: float, esv: float, fps: float | None, min_sys: int, max_sys: int,
                     min_systole_s: float, slow: float) -> str:
    """Why a candidate beat (ED to ES ``frames`` apart) is implausible, or ``""``."""
    unit = f"{frames / fps:.2f} s" if fps else f"{frames} frame(s)"
    if frames < min_sys:
        return f"systole {unit} is shorter than {min_systole_s:g} s" if fps else f"systole {unit} is too short"
    if frames > max_sys:
        return f"systole {unit} is longer than a {slow:g} bpm beat allows"
    if not edv > esv:
        return "ED volume not above ES volume"
    return ""


def _pair_beats(filled: np.ndarray, smooth: np.ndarray, troughs: np.ndarray, radius: int, longest: int,
                check) -> tuple[list[int], list[int], list[tuple[int, int, str]]]:
    """ED and ES frames of the accepted beats, and the rejected ``(ED, ES, reason)``.

    Each trough of the smoothed curve is an end-systole, placed on the raw curve's minimum within
    ``radius``; its end-diastole is the largest volume since the previous end-systole, at most
    ``longest`` frames before. ``check(ed, es)`` gives the reason to reject a beat (``""``: none).
    """
    n = len(filled)
    ed, es, rejected = [], [], []
    start = 0
    for k0 in troughs:
        k = _refine(filled, int(k0), radius, start, n - 1, np.argmin)
        lo = max(start, k - longest)
        i0 = lo + int(np.argmax(smooth[lo : k + 1]))
        i = _refine(filled, i0, radius, lo, k, np.argmax)
        reason = check(i, k)
        if reason:
            rejected.append((i, k, reason))
        else:
            ed.append(i)
            es.append(k)
        start = k
    return ed, es, rejected


def cardiac_cycle(
    volumes: np.ndarray,
    fps: float | None = None,
    *,
    heart_rate_bpm: tuple[float, float] = (30.0, 200.0),
    min_systole_s: float = 0.1,
    min_prominence: float = 0.15,
    smooth_s: float = 0.05,
    min_cycle_s: float | None = None,
) -> CardiacCycle:
    """Find end-diastole and end-systole per beat from a volume curve, and the EF of each beat.

    The curve (NaN frames interpolated) is smoothed with a Gaussian of ``smooth_s`` seconds to
    find the extremes without chasing noise; each extreme is then placed on the largest (ED) or
    smallest (ES) volume of the unsmoothed curve within the same ``smooth_s`` neighbourhood, and
    EDV/ESV are read there on the curve's 3-frame running median (a single noisy frame does not
    set them). End-systoles are the smoothed curve's minima standing out by at least
    ``min_prominence`` of its range and at least one shortest beat apart (``60 /
    heart_rate_bpm[1]`` s); each beat's end-diastole is the largest volume since the previous
    end-systole, at most one longest beat (``60 / heart_rate_bpm[0]`` s) before its own.

    Physiological limits reject a candidate beat, with the reason recorded in ``rejected`` and
    ``flags``, instead of averaging it into the EF: systole (ED to ES) shorter than
    ``min_systole_s`` or longer than 60 % of the longest beat, or an ED volume not above the ES
    volume. When no beat is accepted (a clip of less than one beat, or only rejected candidates),
    the EF comes from the largest drop of the 3-frame running median between two frames at least
    a shortest systole and at most a longest beat apart, in either order (a systole or a filling),
    and a flag says so.

    Parameters
    ----------
    volumes : numpy.ndarray
        ``(T,)`` volumes; NaN frames are ignored (interpolated).
    fps : float, optional
        Frame rate; without it beats are assumed at least ``T / 8`` frames apart, the systole at
        least 2 frames long, and there is no smoothing.
    heart_rate_bpm : (float, float)
        Slowest and fastest plausible heart rate.
    min_systole_s : float
        Shortest plausible ED-to-ES time.
    min_prominence : float
        Smallest drop of an ES below its surroundings, as a fraction of the curve's range.
    smooth_s : float
        Gaussian smoothing for finding the extremes, in seconds (0 = none).
    min_cycle_s : float, optional
        Overrides ``60 / heart_rate_bpm[1]`` as the shortest beat (kept for older callers).
    """
    from scipy.ndimage import gaussian_filter1d
    from scipy.signal import find_peaks

    v = np.asarray(volumes, dtype=np.float64)
    if v.ndim != 1 or len(v) < 3:
        raise ValueError(f"volumes must be a 1-D curve of at least 3 frames, got shape {v.shape}")
    good = np.isfinite(v)
    if good.sum() < 3:
        raise ValueError("volumes has fewer than 3 finite values")
    slow, fast = (float(x) for x in heart_rate_bpm)
    if not 0 < slow < fast:
        raise ValueError(f"heart_rate_bpm must be (slowest, fastest) with 0 < slowest < fastest, got {heart_rate_bpm}")
    n = len(v)
    t = np.arange(n)
    filled = np.interp(t, t[good], v[good])
    span = float(filled.max() - filled.min())
    if span <= 0:
        return CardiacCycle(*(np.array([], dtype=int),) * 2, *(np.array([]),) * 3, flags=("flat volume curve",))
    distance, longest, min_sys, max_sys, radius, sigma = _frame_limits(n, fps, slow, fast, min_cycle_s,
                                                                       min_systole_s, smooth_s)
    smooth = gaussian_filter1d(filled, sigma, mode="nearest") if sigma > 0.3 else filled
    troughs, _ = find_peaks(-smooth, distance=distance, prominence=min_prominence * span)

    def check(i: int, k: int) -> str:
        return _systole_problem(k - i, filled[i], filled[k], fps, min_sys, max_sys, min_systole_s, slow)

    ed, es, rejected = _pair_beats(filled, smooth, troughs, radius, longest, check)
    flags: list[str] = []
    if not es:
        fallback = _largest_swing(_running_median3(filled), min_sys, longest)
        if fallback is None and not rejected:
            k = int(np.argmin(filled))
            i = int(np.argmax(filled[: k + 1]))
            rejected.append((i, k, check(i, k) if i < k else "no end-systole after an end-diastole in the clip"))
        elif fallback is not None:
            i, k = fallback
            ed, es = [i], [k]
            flags.append(f"no complete beat accepted: EF from the largest and the smallest volume of the clip, "
                         f"{abs(k - i)} frame(s) apart ({'systole' if i < k else 'filling'}, ED {i}, ES {k})")
    for i, k, reason in rejected:
        flags.append(f"rejected beat ED {i} -> ES {k}: {reason}")
    if not es and not flags:
        flags.append("no end-systole after an end-diastole in the clip")
    ed_a, es_a = np.array(ed, dtype=int), np.array(es, dtype=int)
    # volumes from a 3-frame running median: one noisy frame at an extreme does not set EDV/ESV
    robust = _running_median3(filled)
    edv, esv = robust[ed_a], robust[es_a]
    return CardiacCycle(ed_a, es_a, edv, esv, 100.0 * (edv - esv) / edv, tuple(flags), tuple(rejected))


def first_full_ed_frame(volumes, ed_frames=(), tolerance: float = 0.05) -> int | None:
    """The end-diastolic frame a beat starts from: the first of ``ed_frames`` (e.g. :func:`cardiac_cycle`'s)
    whose volume is within ``tolerance`` of the clip's largest volume (the earliest, so that the most of the
    clip follows it), else the largest volume's frame (a clip that starts in systole makes frame 0 the "ED" of
    a partial beat); None without a finite volume.

    >>> first_full_ed_frame([0.98, 0.6, 0.8, 1.0, 0.99, 0.7], ed_frames=[0, 4])
    0
    >>> first_full_ed_frame([0.7, 0.6, 0.8, 1.0, 0.9, 0.7], ed_frames=[0])
    3
    """
    v = np.asarray(volumes, dtype=np.float64)
    if not np.isfinite(v).any():
        return None
    best = int(np.nanargmax(v))
    for t in sorted(int(t) for t in ed_frames):
        if 0 <= t < len(v) and np.isfinite(v[t]) and v[t] >= (1.0 - tolerance) * v[best]:
            return t
    return best
