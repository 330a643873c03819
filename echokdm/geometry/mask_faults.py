"""Degrade exact LV masks with the faults of a segmentation network's output (test data).

A network's blood-pool masks on real clips are not the clean bullets of the phantom: their
borders are jagged, they have holes, they leak through the open mitral valve into the atrium,
they lose the apex, and now and then a frame is simply wrong. :func:`degrade_masks` reproduces
these faults on masks with known keypoints (the phantom's), so that the geometry can be tested
and benchmarked on them against the exact truth (tests/geometry/test_robust.py,
benchmarks/keypoints_robust.py).

All coordinates are ``(x, y)`` pixels: x = column, y = row.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from echokdm.geometry.volumes import long_axis_from_keypoints, simpson_volume

__all__ = ["FaultyMasks", "degrade_masks", "FAULTS", "DEFAULT_FAULTS"]

#: Faults :func:`degrade_masks` can apply.
FAULTS = ("jagged", "holes", "leak", "lost_apex", "bad_frames", "open_valve")
#: What :func:`degrade_masks` applies by default (``"open_valve"`` is asked for by name).
DEFAULT_FAULTS = ("jagged", "holes", "leak", "lost_apex", "bad_frames")
_BAD_KINDS = ("empty", "fragment", "swollen", "blob")


@dataclasses.dataclass
class FaultyMasks:
    """Degraded masks and what was done to each frame.

    Attributes
    ----------
    masks : numpy.ndarray
        ``uint8`` ``(T, H, W)``.
    faults : list of list of str
        Per frame, the faults applied (``"jagged"``, ``"holes"``, ``"leak"``, ``"lost_apex"``,
        ``"bad:<kind>"``).
    bad_frames : numpy.ndarray
        ``int64`` indices of the destroyed frames (``"bad:…"``).
    """

    masks: np.ndarray
    faults: list[list[str]]
    bad_frames: np.ndarray


def _axis(kp: np.ndarray):
    base, apex, length = long_axis_from_keypoints(kp.astype(np.float64))
    a = (apex - base) / length
    return base, apex, float(length), a, np.array([-a[1], a[0]])


def _jagged(mask: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """The border moved in and out by a rough random field of ``amplitude`` px (rms)."""
    from scipy import ndimage

    m = mask.astype(bool)
    sd = ndimage.distance_transform_edt(m) - ndimage.distance_transform_edt(~m)
    field = ndimage.gaussian_filter(rng.standard_normal(m.shape), 1.5)
    field *= amplitude / max(float(field.std()), 1e-9)
    return (sd + field > 0.0).astype(np.uint8)


def _holes(mask: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    from scipy import ndimage

    out = mask.copy()
    inner = np.argwhere(ndimage.distance_transform_edt(mask) > 5)
    if len(inner) == 0:
        return out
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    for r, c in inner[rng.choice(len(inner), size=min(n, len(inner)), replace=False)]:
        radius = rng.uniform(1.0, 2.5)
        out[(yy - r) ** 2 + (xx - c) ** 2 <= radius**2] = 0
    return out


def _leak(mask: np.ndarray, kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A channel through the mitral valve (narrower than the annulus) opening into an atrium blob."""
    base, _, length, a, n = _axis(kp)
    annulus_w = float(np.linalg.norm(kp[0] - kp[-1]))
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    rel = np.stack([xx - base[0], yy - base[1]], axis=-1)
    u, v = rel @ a, rel @ n  # u < 0 beyond the base
    neck = rng.uniform(0.45, 0.65) * annulus_w / 2
    channel = (u <= 1.0) & (u >= -0.12 * length) & (np.abs(v) <= neck)
    centre = -rng.uniform(0.3, 0.4) * length
    ra, rb = rng.uniform(0.18, 0.25) * length, rng.uniform(0.5, 0.7) * annulus_w
    atrium = ((u - centre) / ra) ** 2 + (v / rb) ** 2 <= 1.0
    return (mask.astype(bool) | channel | atrium).astype(np.uint8)


def _open_valve(mask: np.ndarray, kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The pool running on through the wide-open mitral valve into the atrium with no neck.

    What a phantom-trained network does on real diastolic frames (pydicom's real cine, frames 7-12 and 18-19):
    the leaflets are thin or invisible, so the walls run straight on past the annulus into an atrium
    about as wide as the orifice; the width profile along the long axis narrows by less than the
    20 % that ``_cut_leak`` looks for.
    """
    base, _, length, a, n = _axis(kp)
    annulus_w = float(np.linalg.norm(kp[0] - kp[-1]))
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    rel = np.stack([xx - base[0], yy - base[1]], axis=-1)
    u, v = rel @ a, rel @ n  # u < 0 beyond the base
    half = rng.uniform(0.5, 0.55) * annulus_w
    channel = (u <= 1.0) & (u >= -0.2 * length) & (np.abs(v) <= half)
    centre = -rng.uniform(0.3, 0.4) * length
    ra, rb = rng.uniform(0.2, 0.28) * length, rng.uniform(1.0, 1.15) * half
    atrium = ((u - centre) / ra) ** 2 + (v / rb) ** 2 <= 1.0
    return (mask.astype(bool) | channel | atrium).astype(np.uint8)


def _lost_apex(mask: np.ndarray, kp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base, _, length, a, _ = _axis(kp)
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    u = (xx - base[0]) * a[0] + (yy - base[1]) * a[1]
    return (mask.astype(bool) & (u <= (1.0 - rng.uniform(0.15, 0.25)) * length)).astype(np.uint8)


def _bad(mask: np.ndarray, kp: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    from scipy import ndimage

    if kind == "empty":
        return np.zeros_like(mask)
    if kind == "fragment":  # only a basal sliver of the pool found
        base, _, length, a, _ = _axis(kp)
        yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
        u = (xx - base[0]) * a[0] + (yy - base[1]) * a[1]
        return (mask.astype(bool) & (u <= 0.4 * length)).astype(np.uint8)
    if kind == "swollen":  # merged with the surrounding tissue
        return ndimage.binary_dilation(mask.astype(bool), iterations=6).astype(np.uint8)
    # "blob": the network segmented something else (an ellipse off the LV)
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    return ((((yy - cy) / (0.12 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2) <= 1).astype(np.uint8)


def degrade_masks(
    masks: np.ndarray,
    keypoints: np.ndarray,
    *,
    seed: int = 0,
    faults: tuple[str, ...] = DEFAULT_FAULTS,
    jagged_px: float = 1.2,
    n_holes: int = 2,
    lost_apex_fraction: float = 0.15,
    bad_every: int = 10,
) -> FaultyMasks:
    """Masks with the faults of network output, from exact masks and their keypoints.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(T, H, W)`` exact binary LV masks (e.g. :attr:`PhantomClip.masks`).
    keypoints : numpy.ndarray
        ``(T, 40, 2)`` their exact keypoints (locate base, apex and annulus).
    seed : int
        Seed; the same inputs and seed give the same output.
    faults : tuple of str
        Which of :data:`FAULTS` to apply:

        * ``"jagged"``: every border moved by a rough random field of ``jagged_px`` px rms;
        * ``"holes"``: ``n_holes`` small holes inside the pool on every frame;
        * ``"leak"``: during filling (volume rising, the mitral valve open) a channel through the
          valve into an atrium blob beyond the base;
        * ``"open_valve"`` (not applied by default): during filling the pool runs on through the
          wide-open valve into the atrium with no neck (the walls continue past the annulus), as a
          phantom-trained network's masks do on real diastolic frames;
        * ``"lost_apex"``: on a fraction ``lost_apex_fraction`` of frames (isolated), the apical
          15–25 % of the long axis is missing;
        * ``"bad_frames"``: one frame in ``bad_every`` is destroyed: empty, only a basal
          fragment, swollen by 6 px, or a blob elsewhere.
    """
    masks = np.asarray(masks)
    kp = np.asarray(keypoints, dtype=np.float64)
    if masks.ndim != 3 or kp.shape != (len(masks), 40, 2):
        raise ValueError(f"masks (T, H, W) and keypoints (T, 40, 2) must match, got {masks.shape} and {kp.shape}")
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {FAULTS}")
    rng = np.random.default_rng(seed)
    n = len(masks)
    out = masks.astype(np.uint8).copy()
    applied: list[list[str]] = [[] for _ in range(n)]
    volumes = simpson_volume(kp)
    rising = np.zeros(n, dtype=bool)
    rising[1:] = np.diff(volumes) > 0.002 * np.nanmax(volumes)  # filling: the mitral valve is open
    bad = np.zeros(n, dtype=bool)
    if "bad_frames" in faults and bad_every > 0:
        bad[int(rng.integers(0, bad_every))::bad_every] = True
    lost = np.zeros(n, dtype=bool)
    if "lost_apex" in faults and lost_apex_fraction > 0:
        candidates = [t for t in range(n) if not bad[t] and not bad[max(t - 1, 0)] and not bad[min(t + 1, n - 1)]]
        k = int(round(lost_apex_fraction * n))
        for t in rng.permutation(candidates):
            if k == 0:
                break
            if not lost[max(t - 1, 0)] and not lost[min(t + 1, n - 1)]:  # isolated frames
                lost[t] = True
                k -= 1
    kinds = iter(np.resize(rng.permutation(_BAD_KINDS), n))
    for t in range(n):
        m = out[t]
        if bad[t]:
            kind = str(next(kinds))
            out[t] = _bad(m, kp[t], rng, kind)
            applied[t].append(f"bad:{kind}")
            continue
        if "leak" in faults and rising[t]:
            m = _leak(m, kp[t], rng)
            applied[t].append("leak")
        if "open_valve" in faults and rising[t]:
            m = _open_valve(m, kp[t], rng)
            applied[t].append("open_valve")
        if lost[t]:
            m = _lost_apex(m, kp[t], rng)
            applied[t].append("lost_apex")
        if "jagged" in faults:
            m = _jagged(m, rng, jagged_px)
            applied[t].append("jagged")
        if "holes" in faults and n_holes:
            m = _holes(m, rng, n_holes)
            applied[t].append("holes")
        out[t] = m
    return FaultyMasks(out, applied, np.flatnonzero(bad).astype(np.int64))
