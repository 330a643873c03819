"""Analytic LV-like shapes with exactly known keypoints, for geometry tests."""

from __future__ import annotations

import numpy as np

from echokdm.geometry.keypoints import CHORD_FRACTIONS, N_CHORDS


def truncated_ellipse(size=(112, 112), centre=(56.0, 60.0), a=38.0, b=17.0, cut=10.0, tilt_deg=0.0):
    """Mask, analytic keypoints (40, 2), apex and annulus of an ellipse cut across its long axis.

    The long axis points to the apex, "up" in the image rotated by ``tilt_deg`` (clockwise on
    screen for positive angles); the cut lies ``cut`` px from the centre on the basal side.
    Pixels whose centre is inside the shape are 1.
    """
    h, w = size
    th = np.deg2rad(tilt_deg)
    axis = np.array([np.sin(th), -np.cos(th)])  # unit vector towards the apex, (x, y)
    right = np.array([-axis[1], axis[0]])  # cross(axis, right) > 0: image-right side
    c = np.asarray(centre, float)
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.stack([xx - c[0], yy - c[1]], axis=-1)
    u, v = d @ axis, d @ right
    mask = (((u / a) ** 2 + (v / b) ** 2) <= 1) & (u >= -cut)
    u_j = -cut + CHORD_FRACTIONS * (a + cut)
    half = b * np.sqrt(1 - (u_j / a) ** 2)
    left = c + u_j[:, None] * axis - half[:, None] * right
    rightp = c + u_j[:, None] * axis + half[:, None] * right
    kp = np.concatenate([left, rightp[::-1]], axis=0)
    hb = b * np.sqrt(1 - (cut / a) ** 2)
    annulus = np.stack([c - cut * axis - hb * right, c - cut * axis + hb * right])
    apex = c + a * axis
    return mask.astype(np.uint8), kp.astype(np.float64), apex, annulus


def simpson_analytic(kp: np.ndarray, apex, annulus) -> float:
    base = annulus.mean(axis=0)
    length = np.linalg.norm(np.asarray(apex) - base)
    d = np.linalg.norm(kp[:N_CHORDS] - kp[::-1][:N_CHORDS], axis=1)
    return float(np.sum(np.pi / 4 * d**2 * length / N_CHORDS))
