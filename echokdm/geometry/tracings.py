"""EchoNet-Dynamic ``VolumeTracings`` geometry: the long axis and the 20 chords of a keypoint set.

The inverse of :func:`~echokdm.geometry.keypoints.tracing_keypoints`, which reads keypoints from
such a tracing.
"""

from __future__ import annotations

import numpy as np

from echokdm.geometry.keypoints import CHORD_FRACTIONS, N_CHORDS, N_KEYPOINTS

__all__ = ["keypoints_to_tracing"]


def keypoints_to_tracing(keypoints: np.ndarray) -> np.ndarray:
    """EchoNet-style tracing of one keypoint set: the long axis, then the 20 chords.

    The long axis is rebuilt as DESIGN.md defines it: perpendicular to the chords (their mean
    direction), from the basal centre (midpoint of the hinge points, found by extending each
    wall's two basal-most segments to the annulus plane, as
    :func:`~echokdm.geometry.keypoints.tracing_keypoints` does) over the length ``L`` at which
    the chords sit at ``t_j = (j + 0.5) / 20``. So ``tracing_keypoints`` returns the keypoints
    (exactly when the chords are perpendicular to the axis, as
    :func:`~echokdm.geometry.keypoints.mask_keypoints` makes them, asymmetric ventricles
    included).

    Parameters
    ----------
    keypoints : numpy.ndarray
        ``(40, 2)`` ``(x, y)`` pixels, all present.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(21, 4)`` rows ``(x1, y1, x2, y2)``: row 0 from the apex to the basal
        centre; row ``1 + j`` from keypoint ``j`` (image-left) to keypoint ``39 - j``, basal
        (``j = 0``) to apical.

    Raises
    ------
    ValueError
        Wrong shape, a missing keypoint, or chords that do not progress towards an apex.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (N_KEYPOINTS, 2) or not np.isfinite(kp).all():
        raise ValueError(f"keypoints must be a finite (40, 2) array, got shape {kp.shape}")
    left, right = kp[:N_CHORDS], kp[::-1][:N_CHORDS]  # (20, 2) each, basal -> apical
    across = (right - left).sum(axis=0)  # mean chord direction, image-left -> image-right
    n = across / max(np.linalg.norm(across), 1e-12)
    a = np.array([n[1], -n[0]])  # apex direction: n is image-right of a (DESIGN.md)
    slope, s0 = np.polyfit(CHORD_FRACTIONS, ((left + right) / 2) @ a, 1)  # axial position = s0 + t_j L
    if slope <= 0:
        raise ValueError("keypoints: the chords do not progress from base to apex along an axis")
    hinges = [_hinge(side, a, s0) for side in (left, right)]
    base = (hinges[0] + hinges[1]) / 2
    apex = base + slope * a
    chords = np.concatenate([left, right], axis=1)  # (20, 4)
    return np.concatenate([np.concatenate([apex, base])[None], chords]).astype(np.float32)  # (21, 4)


def _hinge(side: np.ndarray, a: np.ndarray, s0: float) -> np.ndarray:
    """Wall ``side`` ``(20, 2)`` (basal first) extended to the annulus plane ``p @ a = s0``."""
    direction = side[0] - side[2]  # towards the base
    along = side[0] @ a - s0
    denom = direction @ a
    return side[0] - along / denom * direction if abs(denom) > 1e-9 else side[0] - along * a

