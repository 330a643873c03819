"""The phantom's heart motion: an explicit, smooth, invertible map from material to image space.

Material coordinates are the end-diastolic (ED) image positions, in millimetres with the
transducer at the origin (X right, Y depth). In the LV's own frame a point is ``(a, r)``: ``a``
the distance from the (fixed) endocardial apex along the long axis towards the base, ``r`` the
signed distance from the axis, positive on the image-right side. The ED blood pool is the bullet
``0 <= a <= L0``, ``r**2 <= W0**2 * q(a / L0)`` with ``q(u) = u (2 - u)`` (half an ellipse with
semi-axes ``L0`` and ``W0`` closed by the flat mitral annulus plane at ``a = L0``).

At frame ``t`` the cavity is exactly the bullet ``(L_t, W_t) = (lam_t L0, mu_t W0)`` with the same
apex. The map ``phi_t`` is the composition of two one-dimensional, monotone steps:

A. longitudinal, towards the apex: ``a1 = a * (1 - (1 - lam_t) * wA(a, r))``,
   ``wA = hA(a) kA(r)`` equal to 1 on the cavity and a 4 mm margin around it
   (``-4 <= a <= L0 + 4`` and ``|r| <= W0 + max(4, h/2)`` mm, ``h`` the wall thickness), falling
   smoothly to 0 over 12 mm beyond the apex, 25 mm below the base (into the atria) and 20 mm
   sideways;
B. transverse, towards the axis: ``r2 = r * (1 - (1 - mu_t) * wB(a1, r))``,
   ``wB = hB(a1) kB(|r| - Wext(a1))`` equal to 1 inside the step-A cavity plus the same margin
   (``|r| <= W0 sqrt(q(a1 / L_t)) + 4``, the square root smoothly rounded at the apex) and falling
   to 0 over one wall thickness outside it.

Inside the cavity both steps are scalings about the apex, so the cavity maps onto the bullet
``(L_t, W_t)`` exactly and every material boundary point keeps its fractional position along
the axis (the 40 keypoints are material points). Each step is a monotone function of one
coordinate with derivative at least ``lam_t`` (resp. ``mu_t``) because the weights never increase
away from the apex and the axis, so ``phi_t`` is a C1 bijection with Jacobian determinant at
least ``lam_t * mu_t``. The myocardium thickens in systole because the displacement decays
outward from the endocardium. Within the margin the map is exactly the cavity's affine map, so
at 112 px and finer the flow is affine on the pixels around every keypoint and bilinear sampling
of it there is exact. The inverse solves the two steps in reverse order with a
bracketed Newton iteration (to 1e-7 mm).
"""

from __future__ import annotations

import math

import numpy as np

from echokdm.data.phantom.patient import PhantomPatient

__all__ = ["LVMotion", "CHORD_FRACTIONS", "N_CHORDS", "simpson_volume_ml"]

N_CHORDS = 20
#: Chord positions along the long axis from the base (0) to the apex (1): t_j = (j + 0.5) / 20.
CHORD_FRACTIONS = (np.arange(N_CHORDS) + 0.5) / N_CHORDS

_APEX_FALLOFF_MM = 12.0  # longitudinal motion fades over this distance above the apex
_BASE_FALLOFF_MM = 25.0  # ... and below the annulus plane (into the atria)
_SIDE_FALLOFF_MM = 20.0  # ... and sideways beyond the walls
_CAP = 0.05  # rounding of the transverse plateau at the apex (fraction of W0**2)
_MARGIN_MM = 4.0  # the map stays exactly affine this far outside the cavity (keypoint neighbourhoods)


def _smoothstep_down(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``S(x)`` = 1 for x <= 0, 0 for x >= 1, ``1 - 3x^2 + 2x^3`` between (C1); and ``dS/dx``."""
    xc = np.clip(x, 0.0, 1.0)
    return 1.0 - xc * xc * (3.0 - 2.0 * xc), -6.0 * xc * (1.0 - xc)


def _plateau(x: np.ndarray, low: np.ndarray | float, high: np.ndarray | float, fall_low: float,
             fall_high: float) -> tuple[np.ndarray, np.ndarray]:
    """1 on ``[low, high]``, smoothstep to 0 over ``fall_low`` below and ``fall_high`` above; and d/dx."""
    s_lo, ds_lo = _smoothstep_down((low - x) / fall_low)
    s_hi, ds_hi = _smoothstep_down((x - high) / fall_high)
    below = x < low
    value = np.where(below, s_lo, s_hi)
    slope = np.where(below, -ds_lo / fall_low, ds_hi / fall_high)
    return value, slope


def _solve_increasing(func, target: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                      tol: float = 1e-7, max_iter: int = 60) -> np.ndarray:
    """Solve ``func(x) = target`` elementwise for increasing ``func`` with the root in ``[lo, hi]``.

    ``func(x)`` returns ``(value, derivative)``. Newton steps that leave the bracket are replaced
    by bisection, so the iteration always converges.
    """
    x = 0.5 * (lo + hi)
    for _ in range(max_iter):
        value, slope = func(x)
        err = value - target
        if np.all(np.abs(err) < tol):
            return x
        lo = np.where(err < 0, x, lo)
        hi = np.where(err > 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - err / slope
        outside = ~((step > lo) & (step < hi))
        x = np.where(np.abs(err) < tol, x, np.where(outside, 0.5 * (lo + hi), step))
    raise RuntimeError(f"phantom motion inverse did not converge (max residual {np.abs(err).max():.2e} mm)")


def _bracket(target: np.ndarray, shrink: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Bracket of ``x`` when ``target = x * (1 - shrink * w)`` with ``0 <= w <= 1``."""
    far = target / (1.0 - shrink)
    return np.minimum(target, far), np.maximum(target, far)


def simpson_volume_ml(keypoints_mm: np.ndarray, length_mm: np.ndarray) -> np.ndarray:
    """Simpson's biplane-free disc volume ``sum_j pi/4 d_j^2 L/20`` in mL.

    Parameters
    ----------
    keypoints_mm : numpy.ndarray
        ``(..., 40, 2)`` keypoints in millimetres (shared/DESIGN.md order).
    length_mm : numpy.ndarray
        ``(...)`` long-axis lengths in millimetres.

    Returns
    -------
    numpy.ndarray
        ``(...)`` volumes in millilitres (1 mL = 1000 mm^3).
    """
    kp = np.asarray(keypoints_mm, dtype=np.float64)
    chords = np.linalg.norm(kp[..., :N_CHORDS, :] - kp[..., ::-1, :][..., :N_CHORDS, :], axis=-1)
    return np.pi / 4.0 * np.sum(chords**2, axis=-1) * np.asarray(length_mm) / N_CHORDS / 1000.0


class LVMotion:
    """Material (ED) -> image map of the phantom heart at each frame, in millimetres.

    Parameters
    ----------
    patient : PhantomPatient
        Geometry (apex, tilt, ``L0``, ``W0``, wall thickness) and ``longitudinal_share``.
    volume_ratios : numpy.ndarray
        ``(T,)`` LV volume over EDV at each frame (1 at ED).
    """

    def __init__(self, patient: PhantomPatient, volume_ratios: np.ndarray):
        ratios = np.asarray(volume_ratios, dtype=np.float64)
        if ratios.ndim != 1 or not np.all((ratios > 0) & (ratios <= 1 + 1e-9)):
            raise ValueError("volume_ratios must be a 1-D array of values in (0, 1]")
        tilt = math.radians(patient.tilt_deg)
        self.apex = np.array([patient.apex_lateral_mm, patient.apex_depth_mm])  # (X, Y) mm
        self.down = np.array([math.sin(tilt), math.cos(tilt)])  # unit vector apex -> base
        self.right = np.array([math.cos(tilt), -math.sin(tilt)])  # image-right normal of the axis
        self.length0 = float(patient.lv_length_mm)
        self.width0 = float(patient.lv_half_width_mm)
        self.wall = float(patient.wall_thickness_mm)
        self.long_scale = ratios ** patient.longitudinal_share  # lam_t, (T,)
        self.lat_scale = ratios ** ((1.0 - patient.longitudinal_share) / 2.0)  # mu_t, (T,)

    @property
    def n_frames(self) -> int:
        return int(self.long_scale.size)

    def lengths(self) -> np.ndarray:
        """``(T,)`` cavity long-axis length ``L_t`` in mm."""
        return self.length0 * self.long_scale

    def half_widths(self) -> np.ndarray:
        """``(T,)`` cavity half-width ``W_t`` at the base in mm."""
        return self.width0 * self.lat_scale

    # -- coordinates -------------------------------------------------------------------------
    def to_local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(..., 2)`` image (X, Y) mm -> ``(a, r)`` in the LV frame, each ``(...)``."""
        d = np.asarray(points, dtype=np.float64) - self.apex
        return d @ self.down, d @ self.right

    def to_image(self, a: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_local`: ``(...)`` a, r -> ``(..., 2)`` image (X, Y) mm."""
        return self.apex + a[..., None] * self.down + r[..., None] * self.right

    # -- the two steps -------------------------------------------------------------------------
    def _weight_long(self, a: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step-A weight ``wA(a, r)`` (material) and ``d wA / d a``."""
        h, dh = _plateau(a, -_MARGIN_MM, self.length0 + _MARGIN_MM, _APEX_FALLOFF_MM, _BASE_FALLOFF_MM)
        k, _ = _smoothstep_down((np.abs(r) - self.width0 - max(_MARGIN_MM, 0.5 * self.wall)) / _SIDE_FALLOFF_MM)
        return h * k, dh * k

    def _weight_lat(self, a1: np.ndarray, r: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step-B weight ``wB(a1, r)`` for cavity length ``length`` and ``d wB / d r``."""
        h, _ = _plateau(a1, -_MARGIN_MM, length + _MARGIN_MM, 0.8 * self.wall, 1.5 * self.wall)
        u = a1 / length
        q = u * (2.0 - u)
        half = self.width0 * np.sqrt(0.5 * (q + np.sqrt(q * q + _CAP * _CAP))) + _MARGIN_MM  # smooth, > cavity
        fall = self.wall
        k, dk = _smoothstep_down((np.abs(r) - half) / fall)
        return h * k, h * dk * np.sign(r) / fall

    def support(self) -> tuple[float, float, float]:
        """``(a_min, a_max, |r|_max)``: outside this LV-frame box the map is the identity."""
        a_min = -_MARGIN_MM - max(_APEX_FALLOFF_MM, 0.8 * self.wall)
        a_max = self.length0 + _MARGIN_MM + max(_BASE_FALLOFF_MM, 1.5 * self.wall)
        r_max = max(self.width0 + max(_MARGIN_MM, 0.5 * self.wall) + _SIDE_FALLOFF_MM,
                    self.width0 * math.sqrt(1.0 + _CAP) + _MARGIN_MM + self.wall)
        return a_min, a_max, r_max

    # -- map and inverse ----------------------------------------------------------------------
    def forward(self, points: np.ndarray, frames: np.ndarray | int) -> np.ndarray:
        """Image positions of material points.

        Parameters
        ----------
        points : numpy.ndarray
            ``(N, 2)`` material (ED) positions, image (X, Y) mm.
        frames : int or numpy.ndarray
            A frame index, or ``(F,)`` indices.

        Returns
        -------
        numpy.ndarray
            ``(N, 2)`` for one frame, ``(F, N, 2)`` for several; float64 mm.
        """
        idx = np.atleast_1d(np.asarray(frames))
        a, r = self.to_local(points)  # (N,)
        w_long, _ = self._weight_long(a, r)
        shrink_a = (1.0 - self.long_scale[idx])[:, None]  # (F, 1)
        a1 = a - shrink_a * (a * w_long)  # (F, N)
        w_lat, _ = self._weight_lat(a1, r, (self.length0 * self.long_scale[idx])[:, None])
        r2 = r - (1.0 - self.lat_scale[idx])[:, None] * r * w_lat  # (F, N)
        out = self.to_image(a1, r2)
        return out[0] if np.ndim(frames) == 0 else out

    def inverse(self, points: np.ndarray, frame: int) -> np.ndarray:
        """Material positions of image points at ``frame``: ``(N, 2)`` mm -> ``(N, 2)`` mm."""
        a1, r2 = self.to_local(points)
        length = self.length0 * self.long_scale[frame]
        shrink_r = 1.0 - self.lat_scale[frame]
        shrink_a = 1.0 - self.long_scale[frame]

        def step_b(r):
            w, dw = self._weight_lat(a1, r, length)
            return r * (1.0 - shrink_r * w), 1.0 - shrink_r * (w + r * dw)

        r = _solve_increasing(step_b, r2, *_bracket(r2, shrink_r))

        def step_a(a):
            w, dw = self._weight_long(a, r)
            return a * (1.0 - shrink_a * w), 1.0 - shrink_a * (w + a * dw)

        a = _solve_increasing(step_a, a1, *_bracket(a1, shrink_a))
        return self.to_image(a, r)

    # -- analytic ground truth -----------------------------------------------------------------
    def keypoints(self) -> np.ndarray:
        """``(T, 40, 2)`` keypoints (X, Y) mm of every frame, shared/DESIGN.md order.

        Chord ``j`` crosses the axis at fraction ``t_j`` from the basal centre to the apex;
        keypoint ``j`` is its image-left end (``r < 0``), keypoint ``39 - j`` its right end.
        """
        length = self.lengths()[:, None]  # (T, 1)
        half = self.half_widths()[:, None] * np.sqrt(1.0 - CHORD_FRACTIONS**2)  # (T, 20)
        a = length * (1.0 - CHORD_FRACTIONS)  # (T, 20)
        left = self.to_image(a, -half)
        right = self.to_image(a, half)
        return np.concatenate([left, right[:, ::-1]], axis=1)

    def annulus(self) -> np.ndarray:
        """``(T, 2, 2)`` mitral hinge points (image-left, image-right), mm."""
        length = self.lengths()
        half = self.half_widths()
        return np.stack([self.to_image(length, -half), self.to_image(length, half)], axis=1)

    def cavity(self, points: np.ndarray, frame: int) -> np.ndarray:
        """Boolean ``(...)``: which image points ``(..., 2)`` mm are inside the blood pool at ``frame``."""
        a, r = self.to_local(points)
        length = self.length0 * self.long_scale[frame]
        half = self.width0 * self.lat_scale[frame]
        u = a / length
        return (a >= 0) & (a <= length) & (r * r <= half * half * u * (2.0 - u))

    def volumes_ml(self) -> np.ndarray:
        """``(T,)`` Simpson volumes (mL) of the analytic keypoints."""
        return simpson_volume_ml(self.keypoints(), self.lengths())
