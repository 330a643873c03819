"""Motion sources for generated loops: target keypoint trajectories ``(T, 40, 2)``.

Every function returns ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels (x = column, y = row, integer
values at pixel centres) in the **source frame's** pixel grid, the 40 keypoints in the order of
shared/DESIGN.md. Frame 0 of a trajectory is the source pose (the source heart at its own
frame), so the ``T`` frames play as a seamless loop (frame ``T`` would be frame 0 again for a
whole number of beats); :func:`~echokdm.generation.loop.generate_loop` puts the real source
frame there. The one exception is :func:`drag_motion` with ``n_frames == 1``: just the edit.

* :func:`own_motion` — the clip's own keypoints from the source frame on (any frame; frames
  without keypoints interpolated in time; optionally applied to given source keypoints).
* :func:`transfer_motion` — another patient's motion retargeted onto the source heart in
  normalised long-axis coordinates (invariant to position, rotation and size).
* :func:`synthetic_motion` — a physiological beat at a requested EF and heart rate (the
  phantom's volume–time curve, :func:`echokdm.data.phantom.volume_ratio`), by shortening the
  long axis and narrowing the chords about the fixed apex.
* :func:`drag_motion` — drag editing (KDM paper, appendix D): ``target = source + v``, played
  source → target → source; for any adapter (``N`` keypoints, 40 for echo).
* :func:`load_keypoints_file` / :func:`load_drag_file` — keypoints or drag vectors from files.

A keypoint that is missing (a NaN row) stays NaN in the output; it is never guessed, except
that :func:`own_motion` fills whole frames without keypoints from the clip's neighbouring frames.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from echokdm.geometry.keypoints import N_KEYPOINTS
from echokdm.geometry.volumes import long_axis_from_keypoints, simpson_volume

__all__ = [
    "LONGITUDINAL_SHARE",
    "drag_motion",
    "first_end_diastole",
    "load_drag_file",
    "load_keypoints_file",
    "own_beat",
    "own_motion",
    "spread_drag_vectors",
    "synthetic_motion",
    "synthetic_volume_curve",
    "transfer_motion",
]

#: Share of the volume change due to long-axis shortening in :func:`synthetic_motion`: the long
#: axis scales as ``r ** s`` and the chords as ``r ** ((1 - s) / 2)`` for a volume ratio ``r``
#: (the phantom's default, :class:`echokdm.data.phantom.PhantomPatient`).
LONGITUDINAL_SHARE = 0.17


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _keypoints(value, name: str) -> np.ndarray:
    """``float64`` ``(40, 2)`` or raise ValueError naming ``name``."""
    kp = np.asarray(value, dtype=np.float64)
    if kp.shape != (N_KEYPOINTS, 2):
        raise ValueError(f"{name} must have shape ({N_KEYPOINTS}, 2) (x, y pixels), got {kp.shape}")
    return kp


def _sequence(value, name: str) -> np.ndarray:
    """``float64`` ``(T, 40, 2)`` with ``T >= 1`` or raise ValueError naming ``name``."""
    seq = np.asarray(value, dtype=np.float64)
    if seq.ndim != 3 or seq.shape[1:] != (N_KEYPOINTS, 2) or len(seq) == 0:
        raise ValueError(f"{name} must have shape (T, {N_KEYPOINTS}, 2) with T >= 1, got {seq.shape}")
    return seq


def _index(value, n: int, name: str) -> int:
    """A frame index within ``0 .. n-1`` (negative indices are not accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer frame index, got {value!r}")  # user input: ValueError
    if not 0 <= int(value) < n:
        raise ValueError(f"{name}={value} is outside the sequence's frames 0..{n - 1}")
    return int(value)


def _positive(value, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# own and transferred motion
# ---------------------------------------------------------------------------------------------


def own_motion(keypoints_sequence: np.ndarray, source_index: int, stop: int | None = None, *,
               src_kp: np.ndarray | None = None, max_gap_frames: int | None = None) -> np.ndarray:
    """The clip's own keypoint trajectory from the source frame on, from any frame.

    Frames without keypoints (NaN rows: a mask the geometry could not measure) are filled in
    first by linear interpolation in time between the nearest frames that have them
    (:func:`~echokdm.geometry.temporal.interpolate_gaps`; the clip's ends take the nearest), so
    the source frame itself may be one of them.

    Parameters
    ----------
    keypoints_sequence : numpy.ndarray
        ``(T, 40, 2)`` ``(x, y)`` pixels of every frame of the clip (NaN rows allowed).
    source_index : int
        The source frame; it is frame 0 of the result.
    stop : int, optional
        One past the last frame to use (default: the end of the clip).
    src_kp : numpy.ndarray, optional
        ``(40, 2)`` keypoints given for the source frame (edited, traced, from another mask). The
        clip's motion is then applied to them: frame ``t`` is ``src_kp`` plus the displacement of
        the clip's keypoints from the source frame to frame ``t``, expressed in the long-axis
        frame of each heart (:func:`transfer_motion`), so frame 0 is exactly ``src_kp``.
    max_gap_frames : int, optional
        Longest run of missing frames that is filled (default: no limit).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(stop - source_index, 40, 2)``: ``keypoints_sequence[source_index:stop]``
        with gaps filled (or that motion applied to ``src_kp``).

    Raises
    ------
    ValueError
        Wrong shapes or indices, or a clip without any frame with all 40 keypoints.

    Examples
    --------
    >>> seq = np.zeros((10, 40, 2))
    >>> own_motion(seq, 4).shape, own_motion(seq, 4, stop=6).shape
    ((6, 40, 2), (2, 40, 2))
    """
    from echokdm.geometry.temporal import interpolate_gaps

    seq = _sequence(keypoints_sequence, "keypoints_sequence")
    _index(source_index, len(seq), "source_index")
    missing = ~np.isfinite(seq).all(axis=(1, 2))
    if missing.all():
        raise ValueError("keypoints_sequence has no frame with all 40 keypoints; the clip's motion is unknown")
    if missing.any():
        seq, _ = interpolate_gaps(seq, len(seq) if max_gap_frames is None else int(max_gap_frames), missing=missing)
    if src_kp is not None:
        return transfer_motion(src_kp, seq, source_index, stop)
    return _frames_from(seq, source_index, stop, "keypoints_sequence", "source_index")


def own_beat(keypoints_sequence: np.ndarray, source_index: int, stop: int | None = None, *,
             source_keypoints: np.ndarray | None = None, prefer_source: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(source keypoints, targets)`` of a clip's own beat from ``source_index``: what ``echokdm
    generate --own`` and the app use.

    The clip's keypoints are used (:func:`own_motion`, gaps filled in time) unless
    ``source_keypoints`` (all 40 finite) are given and either ``prefer_source`` (keypoints the user
    gave, or from a given mask) or the source frame has no keypoints of its own; then the clip's
    motion is applied to ``source_keypoints``. ``targets[0]`` is the source keypoints.

    Examples
    --------
    >>> seq = np.random.default_rng(0).uniform(10, 50, (6, 40, 2)); seq[2] = np.nan
    >>> given = seq[3].copy()
    >>> src, targets = own_beat(seq, 2, source_keypoints=given)  # frame 2 has no keypoints: the given ones
    >>> bool(np.allclose(src, given)), targets.shape
    (True, (4, 40, 2))
    >>> src, _ = own_beat(seq, 1, source_keypoints=given)  # frame 1 has its own
    >>> bool(np.allclose(src, seq[1]))
    True
    """
    seq = _sequence(keypoints_sequence, "keypoints_sequence")
    _index(source_index, len(seq), "source_index")
    given = source_keypoints is not None and np.isfinite(np.asarray(source_keypoints, np.float64)).all()
    if given and (prefer_source or not np.isfinite(seq[source_index]).all()):
        kp = np.asarray(source_keypoints, np.float32)
        return kp, own_motion(seq, source_index, stop, src_kp=kp)
    targets = own_motion(seq, source_index, stop)
    return targets[0], targets


def first_end_diastole(keypoints_sequence: np.ndarray, fps: float | None, where: str = "keypoints_sequence") -> int:
    """The first end-diastolic frame of a keypoint sequence: the first ED of
    :func:`~echokdm.geometry.volumes.cardiac_cycle` on its Simpson volumes (physiological limits
    from ``fps``), else the frame of largest volume. A ValueError naming ``where`` when fewer than 3
    frames have keypoints."""
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

    volumes = simpson_volume(_sequence(keypoints_sequence, where))
    if np.isfinite(volumes).sum() < 3:
        raise ValueError(f"{where}: fewer than 3 frames with keypoints; cannot find end-diastole")
    cycle = cardiac_cycle(volumes, fps)
    if len(cycle.ed_frames):
        return int(cycle.ed_frames[0])
    return int(np.nanargmax(volumes))


def _frames_from(sequence, start, stop, name: str, start_name: str) -> np.ndarray:
    """``float32`` ``sequence[start:stop]`` after checking shapes and indices (errors use the names)."""
    seq = _sequence(sequence, name)
    first = _index(start, len(seq), start_name)
    end = len(seq) if stop is None else int(stop)
    if not first < end <= len(seq):
        raise ValueError(f"stop={stop} must be within {first + 1}..{len(seq)} (after {start_name}={first})")
    return seq[first:end].astype(np.float32)


def _long_axis_frame(keypoints: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Basal centre ``(2,)``, rotation ``(2, 2)`` whose rows are (axis, image-right normal), and ``L``."""
    base, apex, length = long_axis_from_keypoints(keypoints)
    length = float(length)
    if not (math.isfinite(length) and length > 1e-6):
        raise ValueError(f"{name}: the long axis cannot be measured (missing keypoints or zero length)")
    axis = (apex - base) / length
    normal = np.array([-axis[1], axis[0]])  # image-right side, as in echokdm.geometry.keypoints
    return base, np.stack([axis, normal]), length


#: Floor of the across-axis scale of :func:`transfer_motion`, as a share of the heart's mean half-width.
TRANSFER_WIDTH_FLOOR = 0.1


def _half_width(local: np.ndarray, name: str) -> float:
    """Mean distance ``W`` of ``(40, 2)`` keypoints in (axis, normal) coordinates from the long axis."""
    width = float(np.mean(np.abs(local[:, 1])))
    if not (math.isfinite(width) and width > 1e-6):
        raise ValueError(f"{name}: the LV width cannot be measured (missing keypoints or a flat contour)")
    return width


def transfer_motion(
    src_kp: np.ndarray, other_sequence: np.ndarray, other_ed_index: int, stop: int | None = None
) -> np.ndarray:
    """Another patient's keypoint motion transferred onto the source heart.

    Each frame of the other clip is expressed in the long-axis frame of the other heart at its
    end-diastole (ED): origin at the basal centre, first unit vector along the long axis towards
    the apex, second the perpendicular towards the image-right wall. The displacement of every
    keypoint ``k`` from its ED position is mapped into the source heart's long-axis frame: along
    the axis scaled by ``L_s / L_o`` (the ED long-axis lengths), across it by ``(|n_s,k| + f W_s) /
    (|n_o,k| + f W_o)``, with ``n_k`` the keypoint's ED distance from the axis, ``W`` the mean of
    those (the half-width) and ``f`` = :data:`TRANSFER_WIDTH_FLOOR`, then added to the source
    keypoints::

        d_t = R_o (p_t - p_ED)                           (other heart, (axis, normal) px)
        q_t = src_kp + R_s^T (d_t * scale)               (source heart)

    with ``R`` the rotation whose rows are the axis and its normal
    (:func:`~echokdm.geometry.volumes.long_axis_from_keypoints`). Displacements, not positions,
    are transferred: the source keeps its own shape, each keypoint moves towards the axis by the
    same fraction of its own distance as the other heart's, and the base moves by the same fraction
    of the length, so fractional shortening is kept both ways. (With one scale, ``L``, a wide
    heart's inward wall motion moved a slender or narrow-based heart's walls across each other:
    the realistic phantom's beat transferred onto pydicom's real LV collapsed its base and asked for
    EF 68 % from a 61 % beat.) Transferring a clip's motion onto a rotated, scaled (even differently
    along and across its axis) and translated copy of its own ED heart gives exactly the same
    transformation of its trajectory; a mirrored copy does not (the normal follows the
    image-left/right walls, which a mirror swaps).

    Parameters
    ----------
    src_kp : numpy.ndarray
        ``(40, 2)`` source keypoints ``(x, y)`` px, ideally at ED (frame 0 of the result).
    other_sequence : numpy.ndarray
        ``(T, 40, 2)`` keypoints of every frame of the other clip (NaN rows stay NaN).
    other_ed_index : int
        The other clip's ED frame: frame 0 of the result.
    stop : int, optional
        One past the last frame of the other clip to use (default: its end).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(stop - other_ed_index, 40, 2)``; frame 0 equals ``src_kp``.

    Raises
    ------
    ValueError
        Wrong shapes, an index outside the clip, or a long axis or width that cannot be measured
        (NaN keypoints) at the other ED or on the source.
    """
    src = _keypoints(src_kp, "src_kp")
    frames = _frames_from(other_sequence, other_ed_index, stop, "other_sequence", "other_ed_index")
    frames = frames.astype(np.float64)  # (T, 40, 2)
    other_name = f"other_sequence[{other_ed_index}] (the other ED)"
    b_o, r_o, l_o = _long_axis_frame(frames[0], other_name)
    b_s, r_s, l_s = _long_axis_frame(src, "src_kp")
    local = (frames - b_o) @ r_o.T  # (T, 40, 2) px in (axis, normal)
    src_local = (src - b_s) @ r_s.T  # (40, 2)
    w_o, w_s = _half_width(local[0], other_name), _half_width(src_local, "src_kp")
    # across the axis, each keypoint moves by the same fraction of its own distance from the axis as the other
    # heart's (the floor, a tenth of the mean half-width, keeps keypoints near the apex from dividing by ~0)
    floor = TRANSFER_WIDTH_FLOOR
    across = (np.abs(src_local[:, 1]) + floor * w_s) / (np.abs(local[0, :, 1]) + floor * w_o)
    scale = np.stack([np.full(N_KEYPOINTS, l_s / l_o), across], axis=-1)  # (40, 2)
    displacement = (local - local[:1]) * scale
    return (src + displacement @ r_s).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# synthetic motion at a requested EF
# ---------------------------------------------------------------------------------------------


def synthetic_volume_curve(ef: float, heart_rate_bpm: float, fps: float, n_beats: float) -> np.ndarray:
    """Volume over EDV ``(T,)`` of a physiological beat, sampled at ``t = i / fps``.

    The curve is the phantom's (:func:`echokdm.data.phantom.volume_ratio`: isovolumic
    contraction, ejection, relaxation, rapid filling, diastasis, atrial kick, ES at about a third
    of the cycle), rescaled about 1 so that its sampled minimum is exactly ``1 - ef / 100``
    (a coarse frame rate might otherwise step over end-systole). ``T = round(n_beats * 60 /
    heart_rate_bpm * fps)``; frame 0 is ED (ratio 1).
    """
    from echokdm.data.phantom.cycle import volume_ratio

    ef = float(ef)
    if not 0.0 < ef < 100.0:
        raise ValueError(f"ef must be within (0, 100) percent, got {ef}")
    heart_rate_bpm = _positive(heart_rate_bpm, "heart_rate_bpm")
    fps, n_beats = _positive(fps, "fps"), _positive(n_beats, "n_beats")
    n_frames = round(n_beats * 60.0 / heart_rate_bpm * fps)
    if n_frames < 2:
        raise ValueError(f"{n_beats} beat(s) at {heart_rate_bpm} bpm and {fps} fps give {n_frames} frame(s); "
                         "at least 2 are needed (raise fps or n_beats)")
    ratio = volume_ratio(np.arange(n_frames) / fps, heart_rate_bpm, ef)  # (T,), 1 at ED
    drop = 1.0 - ratio
    return 1.0 - drop * (ef / 100.0) / drop.max()


def _scale_about_apex(src: np.ndarray, apex: np.ndarray, rot: np.ndarray, long_f: np.ndarray,
                      short_f: np.ndarray) -> np.ndarray:
    """Keypoints ``(T, 40, 2)``: ``src`` scaled about ``apex`` by ``long_f`` along the axis and
    ``short_f`` across it (``long_f``, ``short_f`` ``(T,)``; ``rot`` rows = axis, normal)."""
    local = (src - apex) @ rot.T  # (40, 2) (along, across)
    scaled = local[None] * np.stack([long_f, short_f], axis=-1)[:, None, :]  # (T, 40, 2)
    return apex + scaled @ rot


def synthetic_motion(
    src_kp: np.ndarray,
    ef: float,
    heart_rate_bpm: float = 70.0,
    fps: float = 50.0,
    n_beats: float = 1.0,
    *,
    longitudinal_share: float = LONGITUDINAL_SHARE,
) -> np.ndarray:
    """A synthetic beat of the source heart whose Simpson EF is ``ef``.

    The source keypoints are taken as end-diastole. Their Simpson volume follows
    :func:`synthetic_volume_curve` (the phantom's physiological curve), ESV = EDV · (1 − EF/100).
    The apex stays fixed; at a volume ratio ``r_t`` the heart is scaled about the apex by
    ``a_t = r_t ** s`` along the long axis (the annulus descends towards the apex) and by
    ``w_t = r_t ** ((1 - s) / 2)`` across it, so ``a_t · w_t² = r_t``: Simpson's volume
    ``Σ π/4 d_j² L/20`` scales by exactly ``r_t`` when the chords are perpendicular to the axis.
    With ``s = 0.17`` and EF 60 % the long axis shortens by 14 % and the width by 32 %, about
    the global longitudinal strain and fractional shortening of a normal heart (the long axis
    shortens less than the width). Detected keypoints have chords only nearly perpendicular
    to the axis, so each frame's factor is then corrected by a few fixed-point steps until its
    Simpson volume ratio is ``r_t`` to 1e-9.

    Parameters
    ----------
    src_kp : numpy.ndarray
        ``(40, 2)`` ``(x, y)`` pixels of the source heart at ED; no NaN rows.
    ef : float
        Ejection fraction in percent, within (0, 100).
    heart_rate_bpm, fps, n_beats : float
        Heart rate (beats/min), frame rate of the loop (frames/s) and number of beats.
    longitudinal_share : float
        ``s`` above, within [0, 1).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(round(n_beats * 60 / heart_rate_bpm * fps), 40, 2)``; frame 0 is ``src_kp``.

    Examples
    --------
    >>> t = (np.arange(20) + 0.5) / 20
    >>> half = 10 * np.sqrt(1 - t**2)
    >>> src = np.concatenate([np.stack([50 - half, 80 - 40 * t], 1), np.stack([50 + half, 80 - 40 * t], 1)[::-1]])
    >>> kp = synthetic_motion(src, ef=55, heart_rate_bpm=60, fps=25)
    >>> from echokdm.geometry.volumes import simpson_volume
    >>> v = simpson_volume(kp)
    >>> kp.shape, round(float(100 * (v.max() - v.min()) / v.max()), 3)
    ((25, 40, 2), 55.0)
    """
    src = _keypoints(src_kp, "src_kp")
    if not np.isfinite(src).all():
        raise ValueError("src_kp has missing (NaN) keypoints; synthetic_motion needs all 40 to measure the volume")
    if not 0.0 <= float(longitudinal_share) < 1.0:
        raise ValueError(f"longitudinal_share must be within [0, 1), got {longitudinal_share}")
    ratios = synthetic_volume_curve(ef, heart_rate_bpm, fps, n_beats)  # (T,)
    _, apex, _ = long_axis_from_keypoints(src)
    _, rot, _ = _long_axis_frame(src, "src_kp")
    v0 = float(simpson_volume(src))
    if not v0 > 0:
        raise ValueError(f"src_kp encloses no volume (Simpson volume {v0})")
    s = float(longitudinal_share)
    effective = ratios.copy()
    for _ in range(8):  # exact for perpendicular chords after the first pass
        kp = _scale_about_apex(src, apex, rot, effective**s, effective ** ((1.0 - s) / 2.0))
        achieved = simpson_volume(kp) / v0
        if np.max(np.abs(achieved - ratios)) < 1e-9:
            break
        effective = effective * ratios / achieved
    return kp.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# drag editing (appendix D)
# ---------------------------------------------------------------------------------------------


def spread_drag_vectors(vectors: Mapping[int, tuple[float, float]], sigma: float = 3.0, *,
                        n_keypoints: int = N_KEYPOINTS) -> np.ndarray:
    """Dense drag vectors ``(N, 2)`` from a few dragged keypoints, spread smoothly along the index.

    The displacement field over the keypoint index ``i`` (for echo the boundary walk 0 … 39, left
    base over the apex to the right base; the annulus is not crossed) is a Gaussian radial-basis
    interpolation: ``v_i = Σ_k exp(-(i - i_k)² / 2σ²) c_k``, with the coefficients ``c_k``
    chosen so that each dragged keypoint moves by exactly its own vector. Neighbours follow with
    weights that fall to 0.6 at ``σ`` keypoints and 0.01 at ``3σ``. (For face or pose keypoints,
    whose index runs over several lines or limbs, use ``sigma=0``: only the listed ones move.)

    Parameters
    ----------
    vectors : mapping
        ``{keypoint index: (dx, dy)}`` in pixels, indices within ``0..N-1``.
    sigma : float
        Spread in keypoints; 0 moves only the listed keypoints.
    n_keypoints : int
        ``N``, the adapter's keypoint count (40 for echo).

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(N, 2)`` ``(dx, dy)`` pixels.
    """
    if not vectors:
        raise ValueError("drag vectors are empty: give at least one {keypoint index: (dx, dy)}")
    idx = []
    for key in vectors:
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= int(key) < n_keypoints:
            raise ValueError(f"drag keypoint index must be an integer within 0..{n_keypoints - 1}, got {key!r}")
        idx.append(int(key))
    values = np.asarray([vectors[k] for k in vectors], dtype=np.float64)
    if values.shape != (len(idx), 2) or not np.isfinite(values).all():
        raise ValueError(f"each drag vector must be a finite (dx, dy) pair, got {list(vectors.values())!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be >= 0 keypoints, got {sigma}")
    if sigma == 0:
        dense = np.zeros((n_keypoints, 2))
        dense[idx] = values
        return dense
    centres = np.asarray(idx, dtype=np.float64)

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None] - b[None, :]) ** 2) / (2.0 * sigma**2))

    coef = np.linalg.lstsq(kernel(centres, centres), values, rcond=None)[0]  # (K, 2)
    return kernel(np.arange(n_keypoints, dtype=np.float64), centres) @ coef


def _drag_gammas(n_frames: int) -> np.ndarray:
    """``(n,)`` edit fraction per frame: raised cosine 0 → 1 at ``n // 2`` → back towards 0."""
    if n_frames == 1:
        return np.ones(1)
    peak = n_frames // 2
    i = np.arange(n_frames, dtype=np.float64)
    up = 0.5 * (1.0 - np.cos(np.pi * i / peak))
    down = 0.5 * (1.0 - np.cos(np.pi * (n_frames - i) / (n_frames - peak)))
    return np.where(i <= peak, up, down)


def drag_motion(
    src_kp: np.ndarray, vectors: np.ndarray | Mapping[int, tuple[float, float]], n_frames: int = 1,
    *, sigma: float = 3.0,
) -> np.ndarray:
    """Drag editing (KDM paper, appendix D): target ``= src_kp + v``, as an edit or a loop.

    Works for any adapter: ``N`` is the number of source keypoints (40 for echo, 68 for faces,
    25 for BODY_25 poses). A NaN source keypoint stays NaN.

    Parameters
    ----------
    src_kp : numpy.ndarray
        ``(N, 2)`` source keypoints ``(x, y)`` pixels.
    vectors : numpy.ndarray or mapping
        ``(N, 2)`` drag vector ``(dx, dy)`` px per keypoint, or a sparse
        ``{keypoint index: (dx, dy)}`` spread to the neighbours by :func:`spread_drag_vectors`.
    n_frames : int
        1: the edited keypoints alone. More: a loop source → target → back, frame ``i`` being
        ``src_kp + γ_i v`` with ``γ`` a raised cosine from 0 (frame 0, the source) to 1 at
        frame ``n_frames // 2`` (exactly the target) and back towards 0 (frame ``n_frames``
        would be the source again).
    sigma : float
        Spread of sparse vectors, in keypoints (ignored for a dense array).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(n_frames, N, 2)``.

    Examples
    --------
    >>> src = np.zeros((40, 2))
    >>> loop = drag_motion(src, {19: (0.0, -4.0)}, n_frames=4)
    >>> loop[:, 19, 1].round(2).tolist()
    [0.0, -2.0, -4.0, -2.0]
    """
    src = np.asarray(src_kp, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or len(src) == 0:
        raise ValueError(f"src_kp must have shape (N, 2) (x, y pixels), got {src.shape}")
    n = len(src)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    if isinstance(vectors, Mapping):
        v = spread_drag_vectors(vectors, sigma, n_keypoints=n)
    else:
        v = np.asarray(vectors, dtype=np.float64)
        if v.shape != (n, 2):
            raise ValueError(f"drag vectors must have shape ({n}, 2) (dx, dy pixels) or be a "
                             f"{{keypoint index: (dx, dy)}} mapping, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("drag vectors contain NaN or infinite values")
    gammas = _drag_gammas(int(n_frames))  # (T,)
    return (src[None] + gammas[:, None, None] * v[None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def load_keypoints_file(path: str | os.PathLike, frame: int | None = None) -> np.ndarray:
    """Echo keypoints (40 per frame) from an (edited) keypoint file, as ``float32``.

    Reads with :func:`echokdm.io.keypoint_files.read_keypoint_file` (``n_keypoints=40``), the
    package's one keypoint reader, and keeps its errors.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` with columns ``x0 … x39, y0 … y39`` (pixels; other columns such as
        ``clip_id`` or ``volume`` are ignored) and optionally ``frame``, as written by
        ``echokdm keypoints`` (:data:`echokdm.metrics.lv_function.KEYPOINT_COLUMNS`) and by
        ``echokdm generate``; a ``.npy`` of shape ``(40, 2)`` or ``(T, 40, 2)``; or any other
        file :func:`~echokdm.io.keypoint_files.read_keypoint_file` reads (``.json``, ``.pts``,
        a long CSV).
    frame : int, optional
        Return only this frame's ``(40, 2)``: the set whose ``frame`` column equals it (CSV with
        a ``frame`` column), else set ``frame``.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels in file order (empty cells are NaN), or
        ``(40, 2)`` when ``frame`` is given.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    echokdm.errors.ReadError
        (a :class:`ValueError`) Another suffix, missing columns, wrong shape; names the file.
    ValueError
        ``frame`` not in the file; names the file.
    """
    from echokdm.io.keypoint_files import read_keypoint_file, read_keypoints_csv

    path = Path(path)
    if path.suffix.lower() == ".csv":
        keypoints, frames = read_keypoints_csv(path, n_keypoints=N_KEYPOINTS, return_frames=True)
    else:
        keypoints, frames = read_keypoint_file(path, n_keypoints=N_KEYPOINTS), None
    if frame is None:
        return keypoints.astype(np.float32)
    if frames is not None:
        rows = np.nonzero(frames == int(frame))[0]
        if len(rows) != 1:
            found = "no row" if len(rows) == 0 else f"{len(rows)} rows"
            raise ValueError(f"{path}: {found} with frame == {frame} (frames in the file: "
                             f"{sorted(set(frames.tolist()))[:10]})")
        return keypoints[rows[0]].astype(np.float32)
    if not 0 <= int(frame) < len(keypoints):
        raise ValueError(f"{path}: frame {frame} is outside the file's {len(keypoints)} keypoint set(s)")
    return keypoints[int(frame)].astype(np.float32)


def load_drag_file(path: str | os.PathLike, *, n_keypoints: int = N_KEYPOINTS
                   ) -> np.ndarray | dict[int, tuple[float, float]]:
    """Drag vectors from a file, for :func:`drag_motion`.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy`` of shape ``(N, 2)`` ``(dx, dy)`` pixels; or a ``.csv`` either sparse, with
        columns ``keypoint, dx, dy`` (one row per dragged keypoint, spread to its neighbours), or
        dense, one row with columns ``x0 … x{N-1}, y0 … y{N-1}`` holding ``dx`` and ``dy``.
    n_keypoints : int
        ``N``, the adapter's keypoint count (40 for echo).

    Returns
    -------
    numpy.ndarray or dict
        ``float64`` ``(N, 2)``, or ``{keypoint index: (dx, dy)}``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Another suffix, a table of neither kind, more than one set of dense vectors, or NaN
        among them; the message names the file (a dense file's reading errors are those of
        :func:`echokdm.io.keypoint_files.read_keypoint_file`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy"):
        raise ValueError(f"{path}: unknown drag file type {path.suffix!r}; use .csv or .npy")
    sparse = _sparse_drag(path) if suffix == ".csv" and path.is_file() else None
    return sparse if sparse is not None else _dense_drag(path, n_keypoints)


def _sparse_drag(path: Path) -> dict[int, tuple[float, float]] | None:
    """``{keypoint: (dx, dy)}`` of a table with columns ``keypoint, dx, dy``; None for another table."""
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from exc
    if not {"keypoint", "dx", "dy"} <= set(table.columns):
        return None
    try:
        return {int(r.keypoint): (float(r.dx), float(r.dy)) for r in table.itertuples(index=False)}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: keypoint, dx, dy must be numbers ({exc})") from exc


def _dense_drag(path: Path, n_keypoints: int) -> np.ndarray:
    """``float64`` ``(N, 2)`` dense drag vectors of a ``.npy`` or a wide ``.csv`` (one set)."""
    from echokdm.io.keypoint_files import read_keypoint_file

    dense = read_keypoint_file(path, n_keypoints=n_keypoints)
    if len(dense) != 1:
        raise ValueError(f"{path}: a dense drag file has exactly one row of x0..x{n_keypoints - 1}, "
                         f"y0..y{n_keypoints - 1} (one ({n_keypoints}, 2) set of (dx, dy)), got {len(dense)}")
    if not np.isfinite(dense).all():
        raise ValueError(f"{path}: drag vectors contain NaN or empty cells")
    return dense[0]
