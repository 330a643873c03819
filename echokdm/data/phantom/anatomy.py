"""Tissue map of the phantom's apical four-chamber view, in material (end-diastolic) coordinates.

Positions are given in the LV frame of :mod:`echokdm.data.phantom.motion`: ``a`` from the LV
apex towards the base (mm), ``r`` across the axis (mm, positive image-right), plus the distance
from the transducer for the chest wall. The layout of an apical four-chamber view:

* LV blood pool: the bullet ``0 <= a <= L``, ``r^2 <= W^2 q(a / L)``, ``q(u) = u (2 - u)``;
* LV myocardium: a thicker bullet around it, open at the mitral annulus (``a = L``); its
  image-left part is the interventricular septum;
* RV: a shorter, narrower bullet left of the septum, its base (tricuspid annulus) a little
  closer to the apex, with a thin free wall;
* LA and RA: ellipses below the two annulus planes, with thin walls; bright annulus spots;
* a bright pericardial band hugging the ventricles, epicardial fat between the chambers, a
  layered chest wall near the transducer and mid-grey tissue around.
"""

from __future__ import annotations

import math

import numpy as np

from echokdm.data.phantom.patient import PhantomPatient

__all__ = ["TISSUES", "tissue_labels", "echogenicity_db", "realistic_echogenicity_db", "texture_db",
           "tricuspid_hinges_mm"]

#: Tissue classes, in label order (uint8 label = index).
TISSUES = ("tissue", "chest_wall", "fat", "pericardium", "lv_blood", "lv_myocardium", "rv_blood",
           "rv_wall", "la_blood", "ra_blood", "atrial_wall", "annulus")
_L = {name: i for i, name in enumerate(TISSUES)}

_RV_WALL_MM = 4.0
_ATRIAL_WALL_MM = 2.5
_VALVE_GAP_MM = 2.0
_PERICARDIUM_MM = (1.5, 4.0)  # band of the pericardium outside the ventricular walls


def _bullet(a, r, apex_a, length, centre_r, half_width):
    """Inside a bullet with apex at ``(apex_a, centre_r)`` pointing up, base at ``apex_a + length``."""
    u = (a - apex_a) / length
    return (u >= 0) & (u <= 1) & ((r - centre_r) ** 2 <= half_width**2 * u * (2 - u))


def _ellipse_distance(a, r, centre_a, centre_r, semi_a, semi_r):
    """Approximate signed distance (mm) to an ellipse: ``(rho - 1) / |grad rho|`` (Sampson)."""
    da, dr = (a - centre_a) / semi_a, (r - centre_r) / semi_r
    rho = np.maximum(np.hypot(da, dr), 1e-9)
    grad = np.hypot(da / semi_a, dr / semi_r) / rho
    return (rho - 1.0) / np.maximum(grad, 1e-12)


def _ellipse(a, r, centre_a, centre_r, semi_a, semi_r):
    return ((a - centre_a) / semi_a) ** 2 + ((r - centre_r) / semi_r) ** 2 <= 1


class _Layout:
    """Positions of the chambers of one patient, in the LV frame (mm)."""

    def __init__(self, p: PhantomPatient):
        self.L, self.W, self.h = p.lv_length_mm, p.lv_half_width_mm, p.wall_thickness_mm
        self.h_apex = 0.8 * self.h
        self.rv_base = self.L - p.tricuspid_offset_mm
        self.rv_length = p.rv_length_fraction * self.L
        self.rv_centre = -(self.W + self.h + 0.8 * p.rv_half_width_mm)
        self.rv_half = p.rv_half_width_mm
        self.la = (self.L + _VALVE_GAP_MM + p.la_length_mm / 2, 0.1 * self.W, p.la_length_mm / 2, p.la_half_width_mm)
        ra_centre_r = self.rv_centre - 0.15 * self.rv_half
        self.ra = (self.rv_base + _VALVE_GAP_MM + p.ra_length_mm / 2, ra_centre_r, p.ra_length_mm / 2,
                   p.ra_half_width_mm)

    def lv_outer(self, a, r):
        return _bullet(a, r, -self.h_apex, self.L + self.h_apex, 0.0, self.W + self.h)

    def rv_cavity(self, a, r):
        return _bullet(a, r, self.rv_base - self.rv_length, self.rv_length, self.rv_centre, self.rv_half)

    def rv_outer(self, a, r):
        return _bullet(a, r, self.rv_base - self.rv_length - _RV_WALL_MM, self.rv_length + _RV_WALL_MM,
                       self.rv_centre, self.rv_half + _RV_WALL_MM)

    def pericardium(self, a, r):
        """Bands just outside the LV and RV outer walls (ventricles only)."""
        lo, hi = _PERICARDIUM_MM
        lv = _ellipse_distance(a, r, self.L, 0.0, self.L + self.h_apex, self.W + self.h)
        rv_len = self.rv_length + _RV_WALL_MM
        rv = _ellipse_distance(a, r, self.rv_base, self.rv_centre, rv_len, self.rv_half + _RV_WALL_MM)
        band = ((lv > lo) & (lv < hi) & (r > self.rv_centre)) | ((rv > lo) & (rv < hi) & (r < 0))
        return band & (a < self.L + 4.0)

    def heart(self, a, r):
        """Rough outline of the whole heart (chambers and walls, with the fat between them)."""
        top = -self.h_apex - _PERICARDIUM_MM[1]
        bottom = max(self.la[0] + self.la[2], self.ra[0] + self.ra[2]) + _ATRIAL_WALL_MM
        left = min(self.rv_centre - self.rv_half, self.ra[1] - self.ra[3]) - _RV_WALL_MM
        right = max(self.W + self.h, self.la[1] + self.la[3]) + _ATRIAL_WALL_MM
        ca, cr = 0.5 * (top + bottom), 0.5 * (left + right)
        sa, sr = 0.5 * (bottom - top), 0.5 * (right - left)
        return np.abs((a - ca) / sa) ** 3 + np.abs((r - cr) / sr) ** 3 <= 1


def tricuspid_hinges_mm(patient: PhantomPatient) -> np.ndarray:
    """``float64`` ``(2, 2)`` LV-frame ``(a, r)`` mm of the tricuspid annulus at end-diastole.

    Row 0 is the image-left hinge (in the middle of the RV free wall), row 1 the septal hinge;
    both at the RV base. The realistic style hangs the tricuspid leaflets on them.
    """
    lay = _Layout(patient)
    return np.array([[lay.rv_base, lay.rv_centre - lay.rv_half - 0.5 * _RV_WALL_MM],
                     [lay.rv_base, lay.rv_centre + lay.rv_half]])


def tissue_labels(a: np.ndarray, r: np.ndarray, depth_mm: np.ndarray, patient: PhantomPatient) -> np.ndarray:
    """Tissue class of material points.

    Parameters
    ----------
    a, r : numpy.ndarray
        ``(N,)`` LV-frame coordinates (mm) at end-diastole.
    depth_mm : numpy.ndarray
        ``(N,)`` distance from the transducer (mm), for the chest wall.
    patient : PhantomPatient
        Chamber sizes and positions.

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(N,)`` labels indexing :data:`TISSUES`. The LV blood pool (label
        ``TISSUES.index("lv_blood")``) is exactly the bullet of the motion model.
    """
    lay = _Layout(patient)
    labels = np.full(a.shape, _L["tissue"], np.uint8)
    chest = patient.apex_depth_mm - lay.h_apex - 8.0
    labels[depth_mm < chest] = _L["chest_wall"]
    labels[lay.heart(a, r)] = _L["fat"]
    labels[lay.pericardium(a, r)] = _L["pericardium"]
    la_outer = _ellipse(a, r, lay.la[0], lay.la[1], lay.la[2] + _ATRIAL_WALL_MM, lay.la[3] + _ATRIAL_WALL_MM)
    ra_outer = _ellipse(a, r, lay.ra[0], lay.ra[1], lay.ra[2] + _ATRIAL_WALL_MM, lay.ra[3] + _ATRIAL_WALL_MM)
    labels[la_outer | ra_outer] = _L["atrial_wall"]
    labels[_ellipse(a, r, *lay.ra)] = _L["ra_blood"]
    labels[_ellipse(a, r, *lay.la)] = _L["la_blood"]
    lv_outer = lay.lv_outer(a, r)
    labels[lay.rv_outer(a, r) & ~lv_outer] = _L["rv_wall"]
    labels[lay.rv_cavity(a, r) & ~lv_outer] = _L["rv_blood"]
    labels[lv_outer] = _L["lv_myocardium"]
    spots = [(lay.L, -(lay.W + 0.5 * lay.h)), (lay.L, lay.W + 0.5 * lay.h),
             (lay.rv_base, lay.rv_centre - lay.rv_half - 0.5 * _RV_WALL_MM)]
    for sa, sr in spots:
        labels[(a - sa) ** 2 + (r - sr) ** 2 <= 3.0**2] = _L["annulus"]
    labels[_bullet(a, r, 0.0, lay.L, 0.0, lay.W)] = _L["lv_blood"]
    return labels


def _specular_db(labels: np.ndarray, a: np.ndarray, r: np.ndarray, points_mm: np.ndarray,
                 patient: PhantomPatient) -> np.ndarray:
    """Wall brightness by incidence: up to -8 dB where a wall runs along the beam (lateral dropout)."""
    lay = _Layout(patient)
    tilt = np.radians(patient.tilt_deg)
    down, right = np.array([np.sin(tilt), np.cos(tilt)]), np.array([np.cos(tilt), -np.sin(tilt)])
    on_rv = r < 0.5 * lay.rv_centre
    # normals of the LV and RV outer ellipses, in the LV frame then in the image
    sa = np.where(on_rv, lay.rv_length + _RV_WALL_MM, lay.L + lay.h_apex)
    sr = np.where(on_rv, lay.rv_half + _RV_WALL_MM, lay.W + lay.h)
    ga = (a - np.where(on_rv, lay.rv_base, lay.L)) / sa**2
    gr = (r - np.where(on_rv, lay.rv_centre, 0.0)) / sr**2
    normal = ga[:, None] * down + gr[:, None] * right
    beam = points_mm / np.maximum(np.linalg.norm(points_mm, axis=1, keepdims=True), 1e-9)
    cosine = np.abs(np.sum(normal * beam, axis=1)) / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)
    walls = np.isin(labels, [_L["lv_myocardium"], _L["rv_wall"], _L["pericardium"]])
    return np.where(walls, 20.0 * np.log10(0.4 + 0.6 * cosine), 0.0)


def echogenicity_db(labels: np.ndarray, a: np.ndarray, r: np.ndarray, points_mm: np.ndarray,
                    patient: PhantomPatient) -> np.ndarray:
    """Mean echo level (dB re white) of material points, ``float64`` ``(N,)``.

    The level of the point's tissue class; chest wall layered in depth; ventricular walls and
    pericardium dimmer where they run along the beam (specular reflection).
    """
    p = patient
    table = {
        "tissue": p.tissue_db, "chest_wall": p.tissue_db + 9.0, "fat": p.tissue_db + 3.0,
        "pericardium": p.pericardium_db, "lv_blood": p.blood_db, "lv_myocardium": p.myocardium_db,
        "rv_blood": p.blood_db, "rv_wall": p.myocardium_db + 1.0, "la_blood": p.blood_db,
        "ra_blood": p.blood_db, "atrial_wall": p.myocardium_db - 1.0, "annulus": p.pericardium_db - 1.0,
    }
    levels = np.array([table[name] for name in TISSUES])[labels]
    layered = labels == _L["chest_wall"]
    depth = np.linalg.norm(points_mm[layered], axis=1)
    levels[layered] += 5.0 * np.cos(2 * np.pi * depth / 6.0)  # fascia and muscle layers
    return levels + _specular_db(labels, a, r, points_mm, patient)


def texture_db(points_mm: np.ndarray, patient: PhantomPatient, n_waves: int = 24) -> np.ndarray:
    """Smooth random echogenicity variation (dB) at ``(N, 2)`` points, std ``patient.texture_db``.

    A sum of plane waves with wavelengths of 6–40 mm, drawn from ``patient.scatter_seed`` so that
    it belongs to the patient's anatomy, not to one acquisition.
    """
    rng = np.random.default_rng([patient.scatter_seed, 1])
    wavelength = rng.uniform(6.0, 40.0, n_waves)
    angle = rng.uniform(0, 2 * np.pi, n_waves)
    k = (2 * np.pi / wavelength)[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    waves = np.cos(np.asarray(points_mm) @ k.T + phase)  # (N, n)
    return patient.texture_db * np.sqrt(2.0 / n_waves) * waves.sum(axis=1)


def _ellipse_cosine(a, r, centre_a, centre_r, semi_a, semi_r, down, right, points_mm):
    """|cos| between the normal of an ellipse's level set (LV frame) and the beam through each point."""
    normal = ((a - centre_a) / semi_a**2)[:, None] * down + ((r - centre_r) / semi_r**2)[:, None] * right
    beam = points_mm / np.maximum(np.linalg.norm(points_mm, axis=1, keepdims=True), 1e-9)
    return np.abs(np.sum(normal * beam, axis=1)) / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)


def _inner_structures(a, r, patient, look) -> np.ndarray:
    """Bool ``(N,)``: papillary muscles and trabeculae inside the LV bullet (drawn from ``look.seed``).

    Two papillary muscles (elongated blobs at 45-70 % of the way from the apex, one on each
    wall, the lateral one larger) and 4-9 small trabeculae next to the wall of the apical half.
    """
    lay = _Layout(patient)
    rng = np.random.default_rng([look.seed, 3])
    u = np.clip(a / lay.L, 0.0, 1.0)
    local_half = lay.W * np.sqrt(np.clip(u * (2 - u), 0.0, None))
    inside = np.zeros(a.shape, bool)
    for side, size in ((1.0, 1.0), (-1.0, 0.7)):
        ua = rng.uniform(0.45, 0.7)
        half = lay.W * math.sqrt(ua * (2 - ua))
        ca, cr = ua * lay.L, side * (half - rng.uniform(2.5, 4.0))
        semi_a, semi_r = size * rng.uniform(6.0, 10.0), size * rng.uniform(2.2, 3.5)
        inside |= ((a - ca) / semi_a) ** 2 + ((r - cr) / semi_r) ** 2 <= 1
    for _ in range(int(rng.integers(4, 10))):
        ua = rng.uniform(0.04, 0.55)
        side = 1.0 if rng.random() < 0.7 else -1.0
        half = lay.W * math.sqrt(ua * (2 - ua))
        ca, cr, radius = ua * lay.L, side * (half - rng.uniform(0.5, 2.0)), rng.uniform(1.2, 2.5)
        inside |= (a - ca) ** 2 + (r - cr) ** 2 <= radius**2
    return inside & (np.abs(r) <= local_half) & (a >= 0) & (a <= lay.L)


def realistic_echogenicity_db(labels: np.ndarray, a: np.ndarray, r: np.ndarray, points_mm: np.ndarray,
                              patient: PhantomPatient) -> np.ndarray:
    """Mean echo level (dB re white) of material points in the realistic style (``patient.look``).

    Near-anechoic blood; walls dim, brighter where they face the beam and dropping out where
    they run along it (``specular_db``, ``specular_power``); a bright crux (septum base and
    annuli) and posterior pericardium; papillary muscles and trabeculae inside the LV.
    """
    look = patient.look
    lay = _Layout(patient)
    table = {
        "tissue": look.tissue_db, "chest_wall": look.tissue_db + 8.0, "fat": look.tissue_db + 5.0,
        "pericardium": look.pericardium_db + look.free_wall_db, "lv_blood": look.blood_db,
        "lv_myocardium": look.myocardium_db,
        "rv_blood": look.blood_db, "rv_wall": look.myocardium_db + 1.0 + look.free_wall_db,
        "la_blood": look.blood_db,
        "ra_blood": look.blood_db, "atrial_wall": look.myocardium_db - 1.0 + look.atrial_wall_db,
        "annulus": look.annulus_db,
    }
    levels = np.array([table[name] for name in TISSUES])[labels]
    # the thick septum near the beam axis is the brightest wall; the LV lateral wall, far off axis,
    # the thin RV free wall, the pericardium alongside the ventricles and the atrial walls are dim
    # (free_wall_db, atrial_wall_db <= 0); the posterior pericardium below stays bright
    lv_wall = labels == _L["lv_myocardium"]
    levels[lv_wall] += np.where(r[lv_wall] < 0, look.septum_db, look.free_wall_db)
    layered = labels == _L["chest_wall"]
    depth = np.linalg.norm(points_mm[layered], axis=1)
    levels[layered] += 6.0 * np.cos(2 * np.pi * depth / 5.0)  # fascia and muscle layers
    tilt = np.radians(patient.tilt_deg)
    down, right = np.array([np.sin(tilt), np.cos(tilt)]), np.array([np.cos(tilt), -np.sin(tilt)])
    # wall orientation against the beam: LV, RV and atrial ellipses
    on_rv = r < 0.5 * lay.rv_centre
    cos_v = np.where(
        on_rv,
        _ellipse_cosine(a, r, lay.rv_base, lay.rv_centre, lay.rv_length + _RV_WALL_MM, lay.rv_half + _RV_WALL_MM,
                        down, right, points_mm),
        _ellipse_cosine(a, r, lay.L, 0.0, lay.L + lay.h_apex, lay.W + lay.h, down, right, points_mm))
    atrial = labels == _L["atrial_wall"]
    near_la = np.abs(r - lay.la[1]) < np.abs(r - lay.ra[1])
    cos_la = _ellipse_cosine(a, r, *lay.la, down, right, points_mm)
    cos_ra = _ellipse_cosine(a, r, *lay.ra, down, right, points_mm)
    cosine = np.where(atrial, np.where(near_la, cos_la, cos_ra), cos_v)
    walls = np.isin(labels, [_L["lv_myocardium"], _L["rv_wall"], _L["pericardium"], _L["atrial_wall"]])
    levels += np.where(walls, look.specular_db * (cosine**look.specular_power - 0.5), 0.0)
    # the atria open into the ventricles: no wall across the valve orifices (the leaflets close them)
    for (_ca, cr_, sa_, sr_), base in ((lay.la, lay.L), (lay.ra, lay.rv_base)):
        roof = atrial & (a < base + _VALVE_GAP_MM + 0.35 * sa_) & (np.abs(r - cr_) < 0.75 * sr_)
        levels[roof] = look.blood_db
    # the crux: septum base, annuli and the atrioventricular junction
    crux_a, crux_r = lay.L, -(lay.W + 0.5 * lay.h)
    crux = np.exp(-((a - crux_a) ** 2 + (r - crux_r) ** 2) / (2 * 9.0**2))
    tissue_like = labels != _L["lv_blood"]
    tissue_like &= ~np.isin(labels, [_L["rv_blood"], _L["la_blood"], _L["ra_blood"]])
    levels += np.where(tissue_like, look.crux_db * crux, 0.0)
    # bright posterior pericardium and fibrous tissue behind the atria
    top = -lay.h_apex - _PERICARDIUM_MM[1]
    bottom = max(lay.la[0] + lay.la[2], lay.ra[0] + lay.ra[2]) + _ATRIAL_WALL_MM
    left = min(lay.rv_centre - lay.rv_half, lay.ra[1] - lay.ra[3]) - _RV_WALL_MM
    right_edge = max(lay.W + lay.h, lay.la[1] + lay.la[3]) + _ATRIAL_WALL_MM
    ca, cr, sa, sr = 0.5 * (top + bottom), 0.5 * (left + right_edge), 0.5 * (bottom - top), 0.5 * (right_edge - left)
    rho = (np.abs((a - ca) / sa) ** 3 + np.abs((r - cr) / sr) ** 3) ** (1 / 3)
    band = (rho > 0.97) & (rho < 1.07) & (a > lay.L + 0.3 * min(lay.la[2], lay.ra[2]))
    band &= np.isin(labels, [_L["tissue"], _L["fat"], _L["atrial_wall"]])
    levels[band] = np.maximum(levels[band], look.pericardium_db - 2.0)
    # papillary muscles and trabeculae (part of the blood pool by definition)
    inner = (labels == _L["lv_blood"]) & _inner_structures(a, r, patient, look)
    levels[inner] = look.papillary_db
    return levels
