"""The 40 LV blood-pool keypoints from a mask (paper §4.1, shared/DESIGN.md).

Definition. The mitral annulus is the pair of basal hinge points, the ends of the flat basal
side of the blood pool (the side facing away from the apex); the basal centre is their
midpoint; the apex is the boundary point farthest from the basal centre; the long axis runs from
the basal centre to the apex, length ``L``. Twenty chords perpendicular to the long axis cross it
at fractions ``t_j = (j + 0.5) / 20`` (``j = 0`` basal … ``19`` apical). Keypoint ``j`` is the
chord's crossing on the image-left side of the axis, keypoint ``39 - j`` the image-right one, so
read 0 … 39 the keypoints walk from the left base up to the apex and down to the right base.
"Image-left" is the side where the 2-D cross product ``(apex - base) × (p - base)`` is negative
(smaller x when the apex points straight up).

All coordinates are ``(x, y)`` pixels: x = column, y = row, integer values at pixel centres.

Method. The boundary is the 0.5 iso-contour of the mask smoothed by a small Gaussian (sub-pixel,
without the staircase of the pixel grid). The basal side is found on the convex hull: runs of
nearly collinear hull edges are merged, and the base is the longest run whose far side (the apex)
lies in the expected direction (``apex_direction``); each hinge point is refined as the
intersection of the base line with a line fitted to the adjacent wall, so the blur's rounding of
the corners does not pull the annulus inwards. The apex position is refined by a quadratic fit
of the distance to the basal centre along the contour. Each chord takes the boundary crossing
nearest to the axis on each side.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    "APEX_DIRECTIONS",
    "ApexDirection",
    "detect_apex_direction",
    "nearest_direction_name",
    "N_CHORDS",
    "N_KEYPOINTS",
    "CHORD_FRACTIONS",
    "KeypointError",
    "LVGeometry",
    "boundary_contour",
    "clean_mask",
    "detect_landmarks",
    "mask_keypoints",
    "keypoints_from_landmarks",
    "fill_missing_chords",
    "resolve_apex_direction",
    "keypoints_to_polygon",
    "keypoints_to_mask",
    "tracing_keypoints",
]

N_CHORDS = 20
N_KEYPOINTS = 2 * N_CHORDS
#: Positions of the chords along the long axis, basal (0) to apical (19): t_j = (j + 0.5) / 20.
CHORD_FRACTIONS = ((np.arange(N_CHORDS) + 0.5) / N_CHORDS).astype(np.float64)

_DIRECTIONS = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
#: Accepted names of ``apex_direction``: ``"auto"`` detects it from the mask(s).
APEX_DIRECTIONS = ("auto", *_DIRECTIONS)


class KeypointError(ValueError):
    """A mask from which the 40 keypoints cannot be derived; the message says why."""


@dataclasses.dataclass
class LVGeometry:
    """Keypoints and landmarks of one LV blood-pool mask.

    Attributes
    ----------
    keypoints : numpy.ndarray
        ``float32`` ``(40, 2)`` ``(x, y)`` pixels; a row of NaN where a chord missed the boundary.
    apex : numpy.ndarray
        ``(2,)`` ``(x, y)``.
    annulus : numpy.ndarray
        ``(2, 2)``: the image-left hinge point then the image-right one.
    basal_centre : numpy.ndarray
        ``(2,)`` midpoint of the annulus.
    length : float
        Long-axis length ``L`` in pixels.
    flags : tuple of str
        Observations that did not prevent the keypoints (``"several components"``,
        ``"holes filled"``, ``"touches border"``, ``"border smoothed"``, ``"leak beyond the base
        cut"``, ``"chord missed boundary"``, ``"apex direction unsure"``).
    apex_direction : str
        The apex direction used, by name (``"up"`` …; ``""`` when none was used).
    """

    keypoints: np.ndarray
    apex: np.ndarray
    annulus: np.ndarray
    basal_centre: np.ndarray
    length: float
    flags: tuple[str, ...] = ()
    apex_direction: str = ""

    @property
    def chord_lengths(self) -> np.ndarray:
        """``(20,)`` chord lengths d_j in pixels (NaN where a crossing is missing)."""
        return np.linalg.norm(self.keypoints[:N_CHORDS] - self.keypoints[::-1][:N_CHORDS], axis=1)


# ---------------------------------------------------------------------------------------------
# apex direction
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ApexDirection:
    """Where the apex points, detected from the blood-pool mask(s) of a clip.

    Attributes
    ----------
    vector : tuple of float
        Unit ``(dx, dy)`` from the base towards the apex (image ``y`` grows downwards).
    name : str
        The nearest of ``"up"``, ``"down"``, ``"left"``, ``"right"`` (what outputs record).
    confidence : float
        0 (no idea: a round or symmetric pool) … 1 (every frame an elongated bullet agreeing).
    unsure : bool
        ``confidence`` below the threshold of :func:`detect_apex_direction`; ``vector`` is then
        the fallback (``"up"``, the apical-view convention), and ``reason`` says why.
    reason : str
        ``""`` or why the direction is unsure.
    """

    vector: tuple[float, float]
    name: str
    confidence: float
    unsure: bool = False
    reason: str = ""

    @property
    def note(self) -> str:
        """A flag for outputs: ``""`` when sure, else ``"apex direction unsure (…); assumed up"``."""
        return f"apex direction unsure ({self.reason}); assumed {self.name}" if self.unsure else ""


def nearest_direction_name(vector) -> str:
    """The named apex direction (``"up"``, ``"down"``, ``"left"``, ``"right"``) nearest ``(dx, dy)``.

    Examples
    --------
    >>> nearest_direction_name((0.2, -0.9))
    'up'
    """
    v = np.asarray(vector, dtype=np.float64)
    return max(_DIRECTIONS, key=lambda k: float(np.dot(_DIRECTIONS[k], v)))


def _apex_vote(binary: np.ndarray) -> tuple[np.ndarray, float] | None:
    """One mask's vote: unit vector towards the apex and its weight in [0, 1] (None: no pool).

    The LV blood pool is a bullet: blunt and wide at the flat base, tapering to the apex. Along
    each principal axis (the long axis is usually the major one, but a squat pool's is the minor
    one) two cues give a signed score: the bluntness of the two ends (width of the outer 15 % of
    the extent at each end) and the skewness of the pixels' positions (the tail points to the
    apex). The axis with the clearer score wins; a round or symmetric pool scores about 0 on
    both and gets no weight.
    """
    from scipy import ndimage

    labels, count = ndimage.label(binary)
    if count > 1:  # specks elsewhere do not vote
        binary = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
    ys, xs = np.nonzero(binary)
    if xs.size < 20:
        return None
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    d = pts - pts.mean(axis=0)
    _, evecs = np.linalg.eigh(d.T @ d / len(d))
    best = (0.0, evecs[:, 1])
    for k in (1, 0):
        axis, across = evecs[:, k], evecs[:, 1 - k]
        p, q = d @ axis, d @ across
        lo, hi = float(p.min()), float(p.max())
        band = 0.15 * (hi - lo)
        w_lo = float(np.ptp(q[p <= lo + band])) + 1.0
        w_hi = float(np.ptp(q[p >= hi - band])) + 1.0
        blunt = (w_lo - w_hi) / (w_lo + w_hi)  # > 0: the low end is the blunt base, the apex is at +axis
        skew = float(np.mean((p / max(p.std(), 1e-9)) ** 3))  # > 0: tail (apex) at +axis
        score = blunt + 0.5 * skew
        if abs(score) > abs(best[0]):
            best = (score, axis)
    score, axis = best
    weight = min(1.0, max(0.0, (abs(score) - 0.08) / 0.15))
    return (axis if score > 0 else -axis), weight


def detect_apex_direction(masks: np.ndarray, *, min_confidence: float = 0.35,
                          fallback: str = "up") -> ApexDirection:
    """The apex direction of a clip, from its LV blood-pool mask(s).

    Each non-empty mask votes with a unit vector along its principal axis towards its tapering
    end, weighted by how elongated and how clearly bullet-shaped it is (:func:`_apex_vote`); the
    clip's direction is the weighted mean, so a few leaking or broken frames are outvoted.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(H, W)`` or ``(T, H, W)`` binary masks, 1 = LV blood pool.
    min_confidence : float
        Below this confidence (the length of the mean vote, 0 … 1) the direction is ``unsure``
        and ``fallback`` is returned instead.
    fallback : {"up", "down", "left", "right"}
        Direction used when unsure (apical views put the apex up).

    Returns
    -------
    ApexDirection

    Examples
    --------
    >>> yy, xx = np.mgrid[0:112, 0:112]
    >>> mask = ((((xx - 56) / 18) ** 2 + ((yy - 80) / 50) ** 2) < 1) & (yy <= 80)
    >>> detect_apex_direction(mask).name, detect_apex_direction(mask[::-1]).name
    ('up', 'down')
    """
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"masks must have shape (H, W) or (T, H, W), got {arr.shape}")
    total, n = np.zeros(2), 0
    for mask in arr:
        vote = _apex_vote(mask.astype(bool))
        if vote is None:
            continue
        vector, weight = vote
        total += weight * vector
        n += 1
    confidence = float(np.linalg.norm(total) / n) if n else 0.0
    if n and confidence >= min_confidence:
        vector = total / np.linalg.norm(total)
        return ApexDirection((float(vector[0]), float(vector[1])), nearest_direction_name(vector),
                             round(confidence, 3))
    reason = "no mask to vote" if not n else f"round or symmetric blood pool, confidence {confidence:.2f}"
    return ApexDirection(_DIRECTIONS[fallback], fallback, round(confidence, 3), True, reason)


def resolve_apex_direction(apex_direction, masks: np.ndarray | None = None):
    """``(vector or None, ApexDirection or None)`` for an ``apex_direction`` argument.

    ``"auto"`` is detected from ``masks`` (:func:`detect_apex_direction`); a name or ``(dx, dy)``
    is used as given (its ApexDirection has confidence 1); ``None`` stays None.
    """
    if apex_direction is None:
        return None, None
    if isinstance(apex_direction, str):
        if apex_direction == "auto":
            if masks is None:
                raise ValueError("apex_direction='auto' needs the masks")
            found = detect_apex_direction(masks)
            return found.vector, found
        if apex_direction not in _DIRECTIONS:
            raise ValueError(f"apex_direction must be one of {list(APEX_DIRECTIONS)} or (dx, dy), "
                             f"got {apex_direction!r}")
        vec = _DIRECTIONS[apex_direction]
        return vec, ApexDirection(vec, apex_direction, 1.0)
    vec = np.asarray(apex_direction, dtype=np.float64)
    if vec.shape != (2,) or not np.isfinite(vec).all() or np.linalg.norm(vec) == 0:
        raise ValueError(f"apex_direction must be one of {list(APEX_DIRECTIONS)} or a non-zero (dx, dy), "
                         f"got {apex_direction!r}")
    vec = vec / np.linalg.norm(vec)
    pair = (float(vec[0]), float(vec[1]))
    return pair, ApexDirection(pair, nearest_direction_name(vec), 1.0)


# ---------------------------------------------------------------------------------------------
# boundary
# ---------------------------------------------------------------------------------------------


def clean_mask(mask: np.ndarray, smooth: bool = True) -> tuple[np.ndarray, list[str]]:
    """Binary largest component with holes filled and (``smooth``) the border lightly smoothed.

    The smoothing is a morphological opening then closing with the 3x3 cross: it removes
    one-pixel spurs, notches and bridges (the jagged border of a network's output). It is applied
    (and flagged) only when it changes more than 2 % of the pool: an already smooth mask is kept
    exactly as given. Shared by :func:`mask_keypoints` and :mod:`echokdm.geometry.temporal`.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` binary LV blood-pool mask (bool or 0/1).
    smooth : bool
        Smooth the border as above.

    Returns
    -------
    binary, flags : numpy.ndarray, list of str
        ``bool`` ``(H, W)`` cleaned mask, and the repairs made (empty when none).

    Raises
    ------
    KeypointError
        If the mask is not 2-D, not binary, or empty.
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise KeypointError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    if mask.dtype != np.bool_ and ((mask != 0) & (mask != 1)).any():
        values = np.unique(mask)
        raise KeypointError(
            f"mask must be binary (0 = background, 1 = LV blood pool), found values {values[:10].tolist()}; "
            "map multi-label masks first (e.g. mask == 1)"
        )
    full = mask.astype(bool)
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    if rows.size == 0:
        raise KeypointError("mask is empty")
    flags = []
    if rows[0] == 0 or cols[0] == 0 or rows[-1] == full.shape[0] - 1 or cols[-1] == full.shape[1] - 1:
        flags.append("touches border")
    # work on the bounding box plus a margin (holes touching it are seen as holes; room for the closing)
    m = 3
    r0, c0 = rows[0] - m, cols[0] - m
    binary = np.pad(full, m)[rows[0]:rows[-1] + 2 * m + 1, cols[0]:cols[-1] + 2 * m + 1]
    labels, n = ndimage.label(binary)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        binary = labels == (int(np.argmax(sizes)) + 1)
        flags.append(f"several components ({n}; kept the largest, {int(sizes.max())} px)")
    filled = ndimage.binary_fill_holes(binary)
    n_filled = int(filled.sum() - binary.sum())
    if n_filled:
        flags.append(f"holes filled ({n_filled} px)")
    if smooth and filled.sum() >= 20:
        cross = ndimage.generate_binary_structure(2, 1)
        smoothed = ndimage.binary_closing(ndimage.binary_opening(filled, cross), cross)
        labels, n = ndimage.label(smoothed)
        if n > 1:
            smoothed = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
        smoothed = ndimage.binary_fill_holes(smoothed)
        changed = int((smoothed ^ filled).sum())
        # a smooth mask (a few corner pixels change) is kept exactly as given
        if changed > max(6, 0.02 * filled.sum()) and smoothed.sum() >= 0.5 * filled.sum():
            flags.append(f"border smoothed ({changed} px changed)")
            filled = smoothed
    out = np.zeros_like(full)
    rr, cc = np.nonzero(filled)
    rr, cc = rr + r0, cc + c0
    keep = (rr >= 0) & (rr < full.shape[0]) & (cc >= 0) & (cc < full.shape[1])
    out[rr[keep], cc[keep]] = True
    return out, flags


def _cut_leak(binary: np.ndarray, apex_vector) -> tuple[np.ndarray, str]:
    """Cut a leak through the mitral valve into the atrium at its neck; ``(mask, flag or "")``.

    A network's LV mask may spill through the open mitral valve into the left atrium: beyond the
    base the pool narrows at the valve and widens again into the atrium. Along the apex
    direction the width profile then has a neck (a minimum at most 80 % of the widest part on
    either side); the mask is cut there, keeping the apical side. A bullet-shaped pool, whose
    width never widens again towards the base, is returned unchanged.
    """
    from scipy import ndimage

    if apex_vector is None:
        return binary, ""
    a = np.asarray(apex_vector, dtype=np.float64)
    a = a / np.linalg.norm(a)
    ys, xs = np.nonzero(binary)
    if xs.size < 60:
        return binary, ""
    u = xs * a[0] + ys * a[1]  # larger = towards the apex
    u0 = float(u.min())
    bins = np.floor(u - u0).astype(int)
    width = np.bincount(bins).astype(np.float64)  # pixels per 1 px slab ~ width
    if len(width) < 12:
        return binary, ""
    smooth = ndimage.gaussian_filter1d(width, 1.5, mode="nearest")
    n = len(smooth)
    best = None
    # necks in the basal 70 % of the length (from the base end), with at least 4 px beyond them
    for k in range(4, int(0.7 * n)):
        if smooth[k] > smooth[k - 1] or smooth[k] > smooth[k + 1]:
            continue
        basal_max, apical_max = float(smooth[:k].max()), float(smooth[k + 1:].max())
        if smooth[k] <= 0.8 * min(basal_max, apical_max) and width[:k].sum() >= 0.04 * width.sum():
            depth = min(basal_max, apical_max) - smooth[k]
            if best is None or depth > best[1]:
                best = (k, depth)
    if best is None:
        # a stub: a channel of nearly constant width at the basal end, sharply narrower than the
        # pool just apical to it (a leak into the valve whose atrial part was lost); a tilted
        # base widens steadily instead and is left alone
        for k in range(int(0.3 * n), 4, -1):
            ahead = float(smooth[k + 1:k + 7].max())
            stub = width[1:k]
            if (float(smooth[:k + 1].max()) <= 0.75 * ahead and float(stub.mean()) >= 0.3 * ahead
                    and float(np.ptp(stub)) <= 0.3 * float(stub.mean())):
                best = (k, ahead - float(smooth[k]))
                break
    if best is None:
        return binary, ""
    # cut where the narrowing starts on the apical side of the neck (the valve plane), not in the
    # middle of the channel
    k = best[0]
    apical_max = float(smooth[k + 1:].max())
    level = smooth[k] + 0.25 * (apical_max - smooth[k])
    while k + 1 < n and smooth[k + 1] <= level:
        k += 1
    cut = u0 + k + 0.5
    out = binary.copy()
    out[ys[u < cut], xs[u < cut]] = False
    labels, count = ndimage.label(out)
    if count > 1:
        out = labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1)
    removed = int(binary.sum() - out.sum())
    return out, f"leak beyond the base cut at a neck ({removed} px removed)"


def boundary_contour(mask: np.ndarray, sigma: float = 0.7) -> np.ndarray:
    """Sub-pixel boundary of a binary mask as a closed polygon.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` binary mask (one component expected).
    sigma : float
        Gaussian smoothing in pixels before taking the 0.5 iso-contour.

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(P, 2)`` ``(x, y)`` vertices, counter-clockwise on screen is not guaranteed;
        the first vertex is not repeated at the end.
    """
    from scipy import ndimage
    from skimage import measure

    binary = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(binary)
    if rows.size == 0:
        raise KeypointError("mask is empty")
    pad = int(math.ceil(3 * sigma)) + 2
    r0, c0 = max(rows.min() - pad, 0), max(cols.min() - pad, 0)
    crop = np.zeros((rows.max() - r0 + pad + 1, cols.max() - c0 + pad + 1), dtype=np.float32)
    crop[rows - r0, cols - c0] = 1.0
    # pad so that masks touching the image border still give a closed contour
    crop = np.pad(crop, 1)
    smooth = ndimage.gaussian_filter(crop, sigma) if sigma > 0 else crop
    contours = measure.find_contours(smooth, 0.5)
    if not contours:
        raise KeypointError("mask has no boundary (too small after smoothing)")
    contour = max(contours, key=len)
    if np.allclose(contour[0], contour[-1]):
        contour = contour[:-1]
    # (row, col) in the padded crop -> (x, y) in the image
    return np.stack([contour[:, 1] - 1 + c0, contour[:, 0] - 1 + r0], axis=1)


# ---------------------------------------------------------------------------------------------
# landmarks: annulus and apex
# ---------------------------------------------------------------------------------------------


def _hull_runs(contour: np.ndarray, flat_tol: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Straight runs of the convex hull, as (start, end) points.

    A run grows along the hull while every hull vertex it spans stays within ``flat_tol`` pixels
    of the segment from its first to its last vertex, so a gently curved arc (the apex) is never
    mistaken for one long flat side.
    """
    from scipy.spatial import ConvexHull

    hull = contour[ConvexHull(contour).vertices]  # counter-clockwise in (x, y)
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    turn = np.abs(np.angle(np.exp(1j * (angles - np.roll(angles, 1)))))  # turn at each hull vertex
    n = len(hull)
    order = (int(np.argmax(turn)) + np.arange(n + 1)) % n  # start at the sharpest corner, wrap once
    pts = hull[order].tolist()  # plain floats: the runs are short and numpy overhead dominates
    runs = []
    first = 0
    for k in range(2, n + 1):
        (ax, ay), (bx, by) = pts[first], pts[k]
        norm = math.hypot(bx - ax, by - ay) or 1e-9
        nx, ny = -(by - ay) / norm, (bx - ax) / norm
        if any(abs((x - ax) * nx + (y - ay) * ny) > flat_tol for x, y in pts[first + 1 : k]):
            runs.append((hull[order[first]], hull[order[k - 1]]))
            first = k - 1
    runs.append((hull[order[first]], hull[order[n]]))
    return runs


def _cyclic_run(mask: np.ndarray, seed: int) -> np.ndarray:
    """The contiguous run of True values around index ``seed`` of a cyclic boolean array."""
    n = len(mask)
    out = np.zeros(n, dtype=bool)
    if not mask[seed]:
        out[seed] = True
        return out
    if mask.all():
        return mask.copy()
    i = seed
    while mask[i % n]:
        out[i % n] = True
        i += 1
    i = seed - 1
    while mask[i % n]:
        out[i % n] = True
        i -= 1
    return out


def _close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """A cyclic boolean array with every False run of at most ``max_gap`` values between two True
    values set True (a pixel staircase along a slanted base dips a little more than the flatness
    tolerance at its inner corners; those dips must not cut the base in pieces)."""
    n = len(mask)
    if mask.all() or not mask.any():
        return mask.copy()
    out = mask.copy()
    start = int(np.argmax(mask))  # a True value: walk once around from it
    gap = 0
    for step in range(1, n + 1):
        i = (start + step) % n
        if mask[i]:
            if 0 < gap <= max_gap:
                out[(i - np.arange(1, gap + 1)) % n] = True
            gap = 0
        else:
            gap += 1
    return out


def _fit_line(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total-least-squares line: (centroid, unit direction)."""
    centre = points.mean(axis=0)
    d = points - centre
    sxx, syy, sxy = float(d[:, 0] @ d[:, 0]), float(d[:, 1] @ d[:, 1]), float(d[:, 0] @ d[:, 1])
    theta = 0.5 * math.atan2(2.0 * sxy, sxx - syy)  # principal axis of the 2x2 scatter matrix
    return centre, np.array([math.cos(theta), math.sin(theta)])


def _intersect(p: np.ndarray, u: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """Intersection of lines p + s u and q + r v, None when nearly parallel."""
    det = v[0] * u[1] - u[0] * v[1]  # det [[u0, -v0], [u1, -v1]]
    if abs(det) < 1e-6:
        return None
    w = q - p
    s = (v[0] * w[1] - v[1] * w[0]) / det  # Cramer's rule
    return p + s * u


def _refine_hinge(contour: np.ndarray, idx: int, step: int, base_p: np.ndarray, base_u: np.ndarray) -> np.ndarray:
    """Intersect the base line with a line fitted to the wall next to contour vertex ``idx``.

    ``step`` (+1 or -1) walks along the contour away from the base onto the wall.
    """
    n = len(contour)
    seg = np.diff(contour[np.arange(idx, idx + step * 12, step) % n], axis=0)
    arclen = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
    take = (arclen >= 2.0) & (arclen <= 6.0)
    wall = contour[np.arange(idx, idx + step * 12, step) % n][take]
    corner = contour[idx]
    if len(wall) < 3:
        return corner
    wp, wu = _fit_line(wall)
    hit = _intersect(base_p, base_u, wp, wu)
    if hit is None or np.linalg.norm(hit - corner) > 3.0:
        return corner
    return hit


def _annulus(contour: np.ndarray, apex_direction: tuple[float, float] | None, flat_tol: float = 0.8):
    """Hinge points of the flat basal side and the wall between them.

    Returns the two hinge points (unordered) and the wall: an open polyline from the first hinge
    around the apex to the second, without the basal side.
    """
    runs = _hull_runs(contour, flat_tol=1.0)
    lengths = np.array([np.linalg.norm(b - a) for a, b in runs])
    allowed = np.ones(len(runs), dtype=bool)
    if apex_direction is not None:
        # the base faces away from the apex: its inward normal must point within 50 degrees
        # of apex_direction
        want = np.asarray(apex_direction, dtype=np.float64)
        want = want / np.linalg.norm(want)
        centroid = contour.mean(axis=0)
        for i, (a, b) in enumerate(runs):
            u = (b - a) / max(np.linalg.norm(b - a), 1e-9)
            inward = np.array([-u[1], u[0]])
            if np.dot(centroid - a, inward) < 0:
                inward = -inward
            allowed[i] = np.dot(inward, want) > 0.64
    if not allowed.any():
        allowed[:] = True
    chosen = int(np.argmax(np.where(allowed, lengths, -1.0)))
    a, b = runs[chosen]
    u = (b - a) / np.linalg.norm(b - a)
    normal = np.array([-u[1], u[0]])
    along = (contour - a) @ u
    flat = (np.abs((contour - a) @ normal) <= flat_tol) & (along >= -1.0) & (along <= np.linalg.norm(b - a) + 1.0)
    if flat.sum() < 2:
        raise KeypointError("no flat basal side found")
    # grow the flat run along the contour with the fitted line (the hull run may cover only part
    # of the base when the corners are rounded)
    for _ in range(3):
        base_p, base_u = _fit_line(contour[flat])
        near = _close_gaps(np.abs((contour - base_p) @ np.array([-base_u[1], base_u[0]])) <= flat_tol, 3)
        seed = int(np.nonzero(flat)[0][flat.sum() // 2])
        flat = _cyclic_run(near, seed)
    base_p, base_u = _fit_line(contour[flat])
    n = len(contour)
    if flat.all():
        raise KeypointError("no flat basal side found (the whole boundary is straight)")
    # ends of the flat run in contour order; the wall is everything else, around the apex
    idx = np.nonzero(flat)[0]
    run_start = int(idx[~flat[(idx - 1) % n]][0])
    run_end = int(idx[~flat[(idx + 1) % n]][0])
    h_end = _refine_hinge(contour, run_end, 1, base_p, base_u)
    h_start = _refine_hinge(contour, run_start, -1, base_p, base_u)
    count = (run_start - run_end) % n
    h_lo, h_hi = h_end, h_start
    wall = np.concatenate([h_lo[None], contour[(run_end + np.arange(1, count)) % n], h_hi[None]])
    # continue the wall 2 px past each hinge, so that a basal chord that runs a hair below the
    # annulus (chord 0 lies only L/40 above it) still meets the wall instead of the annulus
    ends = []
    for hinge, inner in ((wall[0], wall[min(4, len(wall) - 1)]), (wall[-1], wall[max(-5, -len(wall))])):
        d = hinge - inner
        ends.append(hinge + 2.0 * d / max(np.linalg.norm(d), 1e-9))
    return h_lo, h_hi, np.concatenate([ends[0][None], wall, ends[1][None]])


def _apex(contour: np.ndarray, basal_centre: np.ndarray, base_normal: np.ndarray, window_px: float = 1.5) -> np.ndarray:
    """Boundary point farthest from the basal centre.

    The farthest vertex is refined by a least-squares parabola of the distance against arc
    length over the stretch of contour within ``window_px`` of the maximum distance: near a
    blunt apex the distance is flat along the boundary, and the raw argmax jitters with the
    pixel grid.
    """
    d = np.linalg.norm(contour - basal_centre, axis=1)
    d = np.where((contour - basal_centre) @ base_normal > 0, d, -np.inf)
    i = int(np.argmax(d))
    n = len(contour)
    near = _cyclic_run(d >= d[i] - window_px, i)
    k_lo = 0
    while near[(i - k_lo - 1) % n] and k_lo < n // 2:
        k_lo += 1
    k_hi = 0
    while near[(i + k_hi + 1) % n] and k_hi < n // 2:
        k_hi += 1
    window = np.arange(i - max(k_lo, 2), i + max(k_hi, 2) + 1) % n
    seg = np.diff(contour[window], axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
    coef = np.polyfit(s, d[window], 2)
    if coef[0] >= 0:
        return contour[i]
    s_star = float(np.clip(-coef[1] / (2 * coef[0]), s[0], s[-1]))
    return np.array([np.interp(s_star, s, contour[window, 0]), np.interp(s_star, s, contour[window, 1])])


# ---------------------------------------------------------------------------------------------
# chords
# ---------------------------------------------------------------------------------------------


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def keypoints_from_landmarks(
    contour: np.ndarray, hinge_a: np.ndarray, hinge_b: np.ndarray, apex: np.ndarray, *, closed: bool = True
) -> tuple[np.ndarray, np.ndarray, int]:
    """The 40 keypoints from a boundary and the three landmarks.

    Parameters
    ----------
    contour : numpy.ndarray
        ``(P, 2)`` boundary ``(x, y)``: a closed polygon, or (``closed=False``) the open wall from
        one hinge around the apex to the other, which keeps the basal chords off the annulus.
    hinge_a, hinge_b : numpy.ndarray
        The two annulus hinge points, in any order.
    apex : numpy.ndarray
        ``(2,)`` apex.

    Returns
    -------
    keypoints : numpy.ndarray
        ``float32`` ``(40, 2)``; NaN rows where a chord does not meet the boundary.
    annulus : numpy.ndarray
        ``(2, 2)`` hinge points ordered image-left, image-right.
    n_missed : int
        Number of keypoints that could not be found.
    """
    contour = np.asarray(contour, dtype=np.float64)
    base = (np.asarray(hinge_a, float) + np.asarray(hinge_b, float)) / 2
    axis = np.asarray(apex, float) - base
    length = float(np.linalg.norm(axis))
    if length < 1e-6:
        raise KeypointError("apex coincides with the basal centre")
    a = axis / length
    n = np.array([-a[1], a[0]])  # perpendicular; cross(a, n) > 0, so +n is the image-right side
    annulus = np.stack([hinge_a, hinge_b]).astype(np.float64)
    if _cross(a, annulus[0] - base) > 0:
        annulus = annulus[::-1]
    centres = base + CHORD_FRACTIONS[:, None] * axis  # (20, 2)
    nxt = np.roll(contour, -1, axis=0)
    if not closed:
        contour, nxt = contour[:-1], contour[1:]
    g0 = (contour @ a)[None, :] - (centres @ a)[:, None]  # (20, P) signed offset along the axis
    g1 = (nxt @ a)[None, :] - (centres @ a)[:, None]
    crosses = (g0 == 0) | (g0 * g1 < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(crosses, g0 / (g0 - g1), np.nan)  # (20, P) fraction along each polygon edge
    px = contour[None, :, 0] + w * (nxt[None, :, 0] - contour[None, :, 0])
    py = contour[None, :, 1] + w * (nxt[None, :, 1] - contour[None, :, 1])
    s = (px - centres[:, :1]) * n[0] + (py - centres[:, 1:]) * n[1]  # (20, P) signed position on chord
    keypoints = np.full((N_KEYPOINTS, 2), np.nan)
    left_s = np.where(s < 0, s, -np.inf).max(axis=1)  # nearest crossing on the left (largest negative)
    right_s = np.where(s > 0, s, np.inf).min(axis=1)
    for j in range(N_CHORDS):
        if np.isfinite(left_s[j]):
            keypoints[j] = centres[j] + left_s[j] * n
        if np.isfinite(right_s[j]):
            keypoints[N_KEYPOINTS - 1 - j] = centres[j] + right_s[j] * n
    n_missed = int(np.isnan(keypoints[:, 0]).sum())
    return keypoints.astype(np.float32), annulus, n_missed


def fill_missing_chords(keypoints: np.ndarray, annulus: np.ndarray, apex: np.ndarray,
                        min_valid: int = 4) -> tuple[np.ndarray, int]:
    """Recover NaN keypoints from the neighbouring chords on the same wall.

    In the long-axis frame (basal centre to ``apex``) each keypoint is a signed half-width at
    its chord's fraction ``t_j``; a missing one is interpolated linearly in ``t`` from the valid
    ones of its side (the apex, half-width 0 at ``t = 1``, closes the apical end; beyond the most
    basal valid chord the half-width is held). A side with fewer than ``min_valid`` valid
    keypoints is left as it is.

    Returns
    -------
    keypoints : numpy.ndarray
        ``float32`` ``(40, 2)``.
    n_filled : int
        Keypoints recovered.
    """
    kp = np.asarray(keypoints, dtype=np.float64).copy()
    base = np.asarray(annulus, dtype=np.float64).mean(axis=0)
    axis = np.asarray(apex, dtype=np.float64) - base
    length = float(np.linalg.norm(axis))
    if not np.isfinite(length) or length < 1e-6:
        return kp.astype(np.float32), 0
    a = axis / length
    n = np.array([-a[1], a[0]])
    centres = base + CHORD_FRACTIONS[:, None] * axis
    filled = 0
    for idx in (np.arange(N_CHORDS), N_KEYPOINTS - 1 - np.arange(N_CHORDS)):  # left wall, right wall
        side = kp[idx]
        ok = np.isfinite(side).all(axis=1)
        if ok.all() or ok.sum() < min_valid:
            continue
        s = (side - centres) @ n  # (20,) signed half-widths
        t_known = np.concatenate([CHORD_FRACTIONS[ok], [1.0]])
        s_known = np.concatenate([s[ok], [0.0]])
        s_new = np.interp(CHORD_FRACTIONS[~ok], t_known, s_known)
        kp[idx[~ok]] = centres[~ok] + s_new[:, None] * n
        filled += int((~ok).sum())
    return kp.astype(np.float32), filled


def _principal_landmarks(contour: np.ndarray, binary: np.ndarray, apex_direction) -> tuple:
    """Hinges and wall of a rough mask from its principal axis (when no clean flat base is found).

    The long axis is the mask's principal axis (its major axis, or ``apex_direction`` when the two
    differ by more than 35°), pointing to the apex; the basal band is the contour within
    ``max(2 px, 6 %)`` of the length from the basal end; the hinges are the band's outermost
    points on either side, moved onto the band's fitted line. Returns ``(h1, h2, wall)`` like
    :func:`_annulus`.
    """
    ys, xs = np.nonzero(binary)
    pts = np.stack([xs, ys], axis=1).astype(np.float64)
    d = pts - pts.mean(axis=0)
    evals, evecs = np.linalg.eigh(d.T @ d / len(d))
    want = None if apex_direction is None else np.asarray(apex_direction, dtype=np.float64)
    a = evecs[:, 1]
    if want is not None:
        want = want / np.linalg.norm(want)
        if abs(float(a @ want)) < math.cos(math.radians(35)):
            a = want
        elif float(a @ want) < 0:
            a = -a
    elif float(np.mean((d @ a / max(float(np.std(d @ a)), 1e-9)) ** 3)) < 0:
        a = -a  # the tail of the pixel distribution points to the apex
    n = np.array([-a[1], a[0]])
    u, v = contour @ a, contour @ n
    length = float(u.max() - u.min())
    band = u <= u.min() + max(2.0, 0.06 * length)
    if band.sum() < 2:
        raise KeypointError("no flat basal side found (nor a basal end along the principal axis)")
    i_lo = np.flatnonzero(band)[int(np.argmin(v[band]))]
    i_hi = np.flatnonzero(band)[int(np.argmax(v[band]))]
    base_p, base_u = _fit_line(contour[band])
    h1, h2 = contour[i_lo].copy(), contour[i_hi].copy()
    for h in (h1, h2):  # project the hinge onto the basal line
        h[:] = base_p + float((h - base_p) @ base_u) * base_u
    if np.linalg.norm(h2 - h1) < 2.0:
        raise KeypointError("no flat basal side found (annulus shorter than 2 px)")
    # the wall: the contour arc between the hinges that holds the apical end
    m = len(contour)
    tip = int(np.argmax(u))
    arc1 = (i_lo + np.arange(((i_hi - i_lo) % m) + 1)) % m  # i_lo -> i_hi forwards
    if tip not in set(arc1.tolist()):
        arc1 = (i_hi + np.arange(((i_lo - i_hi) % m) + 1)) % m
        h1, h2 = h2, h1
    wall = np.concatenate([h1[None], contour[arc1[1:-1]], h2[None]])
    ends = []
    for hinge, inner in ((wall[0], wall[min(4, len(wall) - 1)]), (wall[-1], wall[max(-5, -len(wall))])):
        step = hinge - inner
        ends.append(hinge + 2.0 * step / max(np.linalg.norm(step), 1e-9))
    return h1, h2, np.concatenate([ends[0][None], wall, ends[1][None]])


def _implausible_base(contour: np.ndarray, h1: np.ndarray, h2: np.ndarray, apex_direction) -> str:
    """Why a flat side found on a rough mask cannot be its base (``""`` when it can)."""
    centre = (h1 + h2) / 2
    width = float(np.linalg.norm(h2 - h1))
    if apex_direction is not None:
        a = np.asarray(apex_direction, dtype=np.float64)
        a = a / np.linalg.norm(a)
        u = contour @ a
        if float(centre @ a) - float(u.min()) > 0.2 * float(np.ptp(u)):
            return "the flat side is not at the basal end"
    else:
        a = (contour.mean(axis=0) - centre)
        a = a / max(np.linalg.norm(a), 1e-9)
    n = np.array([-a[1], a[0]])
    if width < 0.45 * float(np.ptp(contour @ n)):
        return f"the flat side is {width:.1f} px, under half the pool's width"
    return ""


def detect_landmarks(mask: np.ndarray, apex_direction, sigma: float, min_area: int, repair: bool = True,
                     principal: bool = False):
    """Wall polyline, the two hinge points, the apex and the flags of one mask.

    ``apex_direction`` is a ``(dx, dy)`` vector, a name other than ``"auto"``, or None. With
    ``repair`` the mask is smoothed and a leak into the atrium is cut first (:func:`clean_mask`,
    :func:`_cut_leak`), and when the flat basal side cannot be found or is implausible (not at
    the basal end, or under half the pool's width: a rough border) the hinges come from the
    principal axis (:func:`_principal_landmarks`), flagged; ``principal`` uses the principal
    axis straight away (a clip of rough masks: the same method on every frame). Shared by
    :func:`mask_keypoints` and :mod:`echokdm.geometry.temporal`.

    Returns
    -------
    wall, hinge1, hinge2, apex, flags
        The open wall ``(P, 2)`` from one hinge around the apex to the other, the two hinges and
        the apex ``(2,)``, all ``(x, y)`` pixels, and the repairs made (list of str); the
        arguments of :func:`keypoints_from_landmarks` with ``closed=False``.

    Raises
    ------
    KeypointError
        On unusable masks.
    """
    binary, flags = clean_mask(mask, smooth=repair)
    if isinstance(apex_direction, str):
        if apex_direction not in _DIRECTIONS:
            raise ValueError(f"apex_direction must be one of {list(APEX_DIRECTIONS)} or (dx, dy), "
                             f"got {apex_direction!r}")
        apex_direction = _DIRECTIONS[apex_direction]
    if repair:
        binary, note = _cut_leak(binary, apex_direction)
        if note:
            flags.append(note)
    area = int(binary.sum())
    if area < min_area:
        raise KeypointError(f"mask too small for 20 chords ({area} px < min_area={min_area})")
    contour = boundary_contour(binary, sigma=sigma)
    if principal:
        h1, h2, wall = _principal_landmarks(contour, binary, apex_direction)
        return wall, h1, h2, _apex_from(contour, h1, h2), flags
    try:
        h1, h2, wall = _annulus(contour, apex_direction)
        if np.linalg.norm(h2 - h1) < 2.0:
            raise KeypointError("no flat basal side found (annulus shorter than 2 px)")
        problem = _implausible_base(contour, h1, h2, apex_direction) if repair else ""
    except KeypointError as exc:
        if not repair:
            raise
        problem = str(exc)
    if problem:
        h1, h2, wall = _principal_landmarks(contour, binary, apex_direction)
        flags.append(f"basal side from the principal axis ({problem})")
    return wall, h1, h2, _apex_from(contour, h1, h2), flags


def _apex_from(contour: np.ndarray, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    basal_centre = (h1 + h2) / 2
    u = (h2 - h1) / np.linalg.norm(h2 - h1)
    normal = np.array([-u[1], u[0]])
    if np.dot(contour.mean(axis=0) - basal_centre, normal) < 0:
        normal = -normal
    return _apex(contour, basal_centre, normal)


def mask_keypoints(
    mask: np.ndarray,
    *,
    apex_direction: str | tuple[float, float] | None = "auto",
    sigma: float = 0.7,
    min_area: int = 40,
    repair: bool = True,
) -> LVGeometry:
    """The 40 keypoints, annulus, apex and long axis of one LV blood-pool mask.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` binary mask, 1 = LV blood pool (bool or 0/1 integers).
    apex_direction : {"auto", "up", "down", "left", "right"} or (dx, dy) or None
        Where the apex roughly points in the image ("up" in apical views with the transducer at
        the top). ``"auto"`` (default) detects it from the mask's shape
        (:func:`detect_apex_direction`); when the shape cannot tell (a round pool) "up" is
        assumed and ``flags`` says so. Used to choose the basal side among the flat sides and
        to find a leak's neck; ``None`` takes the longest flat side.
    sigma : float
        Boundary smoothing in pixels (:func:`boundary_contour`).
    min_area : int
        Smallest blood pool in pixels from which 20 chords are meaningful.
    repair : bool
        Smooth the border lightly and cut a leak into the atrium at its neck before measuring
        (both flagged when they change the mask noticeably); missing chords are filled from
        their neighbours along the axis.

    Returns
    -------
    LVGeometry

    Raises
    ------
    KeypointError
        Empty, non-binary or too small mask, or no flat basal side. A chord that misses the
        boundary does not raise: its keypoint is recovered from the neighbouring chords (or
        left NaN when too few are left) and ``flags`` says so.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:112, 0:112]
    >>> mask = ((((xx - 56) / 18) ** 2 + ((yy - 80) / 50) ** 2) < 1) & (yy <= 80)
    >>> geo = mask_keypoints(mask)
    >>> geo.keypoints.shape
    (40, 2)
    >>> bool(geo.keypoints[0, 0] < geo.keypoints[39, 0])  # left wall first
    True
    """
    if np.ndim(mask) != 2:
        raise KeypointError(f"mask must be 2-D (H, W), got shape {np.shape(mask)}")
    vector, found = resolve_apex_direction(apex_direction, np.asarray(mask))
    wall, h1, h2, apex, flags = detect_landmarks(mask, vector, sigma, min_area, repair)
    if found is not None and found.unsure:
        flags.append(found.note)
    basal_centre = (h1 + h2) / 2
    keypoints, annulus, missed = keypoints_from_landmarks(wall, h1, h2, apex, closed=False)
    if missed:
        keypoints, filled = fill_missing_chords(keypoints, annulus, apex)
        flags.append(f"chord missed boundary ({missed} keypoint(s); {filled} recovered from neighbouring chords)"
                     if filled else f"chord missed boundary ({missed} keypoint(s) NaN)")
    return LVGeometry(
        keypoints=keypoints,
        apex=apex.astype(np.float32),
        annulus=annulus.astype(np.float32),
        basal_centre=basal_centre.astype(np.float32),
        length=float(np.linalg.norm(apex - basal_centre)),
        flags=tuple(flags),
        apex_direction=found.name if found is not None else "",
    )


def keypoints_to_polygon(keypoints: np.ndarray) -> np.ndarray:
    """The closed boundary polygon through the keypoints in order 0 … 39 (NaN rows dropped).

    Keypoints walk left base → apex → right base, so the polygon closes along the annulus.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (N_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (40, 2), got {kp.shape}")
    return kp[~np.isnan(kp).any(axis=1)]


def keypoints_to_mask(keypoints: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled polygon through the 40 keypoints (closed along the annulus), ``uint8`` ``(H, W)``.

    Pixels whose centre lies inside the polygon are 1. NaN keypoints are skipped.
    """
    from skimage.draw import polygon

    poly = keypoints_to_polygon(keypoints)
    mask = np.zeros(shape, dtype=np.uint8)
    if len(poly) >= 3:
        rr, cc = polygon(poly[:, 1], poly[:, 0], shape=shape)
        mask[rr, cc] = 1
    return mask


# ---------------------------------------------------------------------------------------------
# EchoNet tracings
# ---------------------------------------------------------------------------------------------


def tracing_keypoints(segments: np.ndarray) -> LVGeometry:
    """The 40 keypoints from an EchoNet-style tracing, resampled to the chords of DESIGN.md.

    Parameters
    ----------
    segments : numpy.ndarray
        ``(K, 4)`` rows ``(x1, y1, x2, y2)``: row 0 the long axis (one end at the apex, the
        other at the mitral annulus midpoint), rows 1 … K-1 the chords perpendicular to it.

    The traced boundary is the chord ends on each side plus the apex. Its basal ends are
    extended along the wall to the annulus plane (the line through the axis' basal end,
    perpendicular to the axis) to give the hinge points, so the long axis is the traced one;
    the 20 chords are then re-cut at ``t_j = (j + 0.5) / 20`` whatever the tracing's own
    chord positions were. The apex end of the axis is the one next to the shorter chords.
    """
    seg = np.asarray(segments, dtype=np.float64)
    if seg.ndim != 2 or seg.shape[1] != 4 or len(seg) < 4:
        raise KeypointError(f"a tracing needs (K, 4) segments with K >= 4 (axis + 3 chords), got shape {seg.shape}")
    p, q = seg[0, :2], seg[0, 2:]
    if np.linalg.norm(q - p) < 1e-6:
        raise KeypointError("the tracing's long axis has zero length")
    u = (q - p) / np.linalg.norm(q - p)
    ends_a, ends_b = seg[1:, :2], seg[1:, 2:]
    mids = (ends_a + ends_b) / 2
    s = (mids - p) @ u  # position of each chord along p -> q
    lengths = np.linalg.norm(ends_b - ends_a, axis=1)
    slope = np.polyfit(s, lengths, 1)[0] if np.ptp(s) > 0 else 0.0
    apex, base = (q, p) if slope < 0 else (p, q)
    axis = apex - base
    a = axis / np.linalg.norm(axis)
    order = np.argsort((mids - base) @ a)  # basal -> apical
    ends_a, ends_b = ends_a[order], ends_b[order]
    # put each chord's ends on the same sides: left (negative cross product) first
    swap = _cross(a, ends_a - base) > 0
    left = np.where(swap[:, None], ends_b, ends_a)
    right = np.where(swap[:, None], ends_a, ends_b)
    hinges = []
    for side in (left, right):
        d = side[0] - side[min(2, len(side) - 1)]  # wall direction towards the base
        along = np.dot(side[0] - base, a)
        denom = np.dot(d, a)
        hinges.append(side[0] - along / denom * d if abs(denom) > 1e-9 else side[0] - along * a)
    wall = np.concatenate([hinges[0][None], left, apex[None], right[::-1], hinges[1][None]])
    keypoints, annulus, missed = keypoints_from_landmarks(wall, hinges[0], hinges[1], apex, closed=False)
    flags = (f"chord missed boundary ({missed} keypoint(s) NaN)",) if missed else ()
    return LVGeometry(keypoints, apex.astype(np.float32), annulus.astype(np.float32),
                      ((annulus[0] + annulus[1]) / 2).astype(np.float32), float(np.linalg.norm(axis)), flags)
