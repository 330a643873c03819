"""The LV volume–time curve of the phantom: one physiological cardiac cycle, repeated.

Time 0 of a cycle is end-diastole (ED, mitral valve closure). The cycle runs through

1. isovolumic contraction (volume constant, 45 ms),
2. rapid ejection (the first 35 % of the ejection time ejects 70 % of the stroke volume),
3. slow ejection, ending at end-systole (ES, the minimum volume),
4. isovolumic relaxation (volume constant, 75 ms),
5. rapid filling (E wave),
6. diastasis (slow filling, shortened or nearly gone at high heart rates),
7. atrial contraction (A wave, the ``atrial_fraction`` of the filling), ending at the next ED.

The ejection time follows Weissler's regression ``LVET = 0.413 - 0.0017 * HR`` seconds. The curve
is a monotone piecewise-cubic (PCHIP) interpolation through the phase boundaries, so it is
smooth (C1), flat during the isovolumic phases, and its only maximum and minimum per beat are at
ED and ES.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

__all__ = ["CardiacTiming", "cardiac_timing", "volume_ratio"]

_IVC_S = 0.045  # isovolumic contraction
_IVR_S = 0.075  # isovolumic relaxation
_RAPID_EJECTION_TIME = 0.35  # fraction of the ejection time ...
_RAPID_EJECTION_VOLUME = 0.70  # ... that ejects this fraction of the stroke volume


@dataclasses.dataclass(frozen=True)
class CardiacTiming:
    """Durations of the phases of one cycle, in seconds (see the module docstring)."""

    period_s: float
    isovolumic_contraction_s: float
    ejection_s: float
    isovolumic_relaxation_s: float
    rapid_filling_s: float
    diastasis_s: float
    atrial_s: float

    @property
    def end_systole_s(self) -> float:
        """Time of ES after ED."""
        return self.isovolumic_contraction_s + self.ejection_s


def cardiac_timing(heart_rate_bpm: float) -> CardiacTiming:
    """Phase durations of one cycle at ``heart_rate_bpm`` (valid for about 40–150 bpm).

    Examples
    --------
    >>> t = cardiac_timing(60.0)
    >>> round(t.period_s, 3), round(t.end_systole_s, 3)
    (1.0, 0.356)
    """
    if not 30.0 <= heart_rate_bpm <= 200.0:
        raise ValueError(f"heart_rate_bpm must be within 30..200, got {heart_rate_bpm}")
    period = 60.0 / heart_rate_bpm
    ejection = 0.413 - 0.0017 * heart_rate_bpm  # Weissler et al. 1968
    filling = period - _IVC_S - ejection - _IVR_S
    atrial = min(0.12, 0.35 * filling)
    rapid = min(0.16, 0.45 * filling)
    return CardiacTiming(period, _IVC_S, ejection, _IVR_S, rapid, filling - atrial - rapid, atrial)


@functools.lru_cache(maxsize=64)
def _cycle_curve(heart_rate_bpm: float, ef_percent: float, atrial_fraction: float):
    """PCHIP of V/EDV over one cycle (knots of three cycles, so slopes at the ends are periodic)."""
    from scipy.interpolate import PchipInterpolator

    t = cardiac_timing(heart_rate_bpm)
    sv = ef_percent / 100.0
    diastasis_fraction = 0.1 * min(1.0, t.diastasis_s / 0.3)  # share of filling during diastasis
    early = 1.0 - atrial_fraction - diastasis_fraction
    knots_t = np.cumsum([0.0, t.isovolumic_contraction_s, _RAPID_EJECTION_TIME * t.ejection_s,
                         (1 - _RAPID_EJECTION_TIME) * t.ejection_s, t.isovolumic_relaxation_s,
                         t.rapid_filling_s, t.diastasis_s])
    knots_v = np.array([1.0, 1.0, 1.0 - _RAPID_EJECTION_VOLUME * sv, 1.0 - sv, 1.0 - sv,
                        1.0 - sv + early * sv, 1.0 - sv + (early + diastasis_fraction) * sv])
    times = np.concatenate([knots_t - t.period_s, knots_t, knots_t + t.period_s, [2 * t.period_s]])
    values = np.concatenate([knots_v, knots_v, knots_v, [1.0]])
    return PchipInterpolator(times, values), t.period_s


def volume_ratio(times_s: np.ndarray, heart_rate_bpm: float, ef_percent: float,
                 atrial_fraction: float = 0.25) -> np.ndarray:
    """LV volume relative to EDV at ``times_s`` (seconds after an ED), periodic.

    Parameters
    ----------
    times_s : numpy.ndarray
        Times in seconds; 0, one period, two periods … are end-diastoles.
    heart_rate_bpm : float
        Heart rate (beats per minute).
    ef_percent : float
        Ejection fraction in percent: the minimum of the curve is ``1 - ef_percent / 100``.
    atrial_fraction : float
        Share of the diastolic filling due to atrial contraction (0.1–0.5).

    Returns
    -------
    numpy.ndarray
        ``float64`` array like ``times_s``, values in ``[1 - ef/100, 1]``.
    """
    if not 0.0 < ef_percent < 100.0:
        raise ValueError(f"ef_percent must be within (0, 100), got {ef_percent}")
    if not 0.0 <= atrial_fraction <= 0.6:
        raise ValueError(f"atrial_fraction must be within 0..0.6, got {atrial_fraction}")
    curve, period = _cycle_curve(float(heart_rate_bpm), float(ef_percent), float(atrial_fraction))
    ratio = curve(np.mod(np.asarray(times_s, dtype=np.float64), period))
    return np.clip(ratio, 1.0 - ef_percent / 100.0, 1.0)
