"""The 40 keypoints over a cine: landmarks smoothed in time so keypoint identity is stable.

Detected one frame at a time (:func:`~echokdm.geometry.keypoints.mask_keypoints`), the apex and
the two mitral hinge points jitter by a fraction of a pixel from frame to frame with the pixel
grid, and every chord moves with them: keypoint ``j`` slides along the wall although the wall
barely moved. :func:`sequence_keypoints` therefore

1. finds each frame's boundary, annulus and apex exactly as ``mask_keypoints`` does;
2. smooths the trajectories of the three landmarks over time (Gaussian, NaN-aware, edge mode
   ``"nearest"``), so a bad frame neither shifts its neighbours nor gets a guessed value;
3. recuts the 20 chords of each frame on that frame's own boundary with the smoothed landmarks.

Masks from a segmentation network are not clean, so by default (``repair=True``) it also

* detects the apex direction once per clip (``apex_direction="auto"``,
  :func:`~echokdm.geometry.keypoints.detect_apex_direction`) and records it;
* cleans each mask (largest component, holes filled, light morphological smoothing, a leak into
  the atrium cut at its neck) before measuring;
* rejects frames whose landmarks jump away from their neighbours' (running median over 5
  frames: long axis, apex or basal centre off by more than 15 % of the long axis, or the annulus
  width by 50 %) and gives
  them, and frames whose landmarks could not be found, the landmarks interpolated in time;
  their chords are still cut on their own boundary;
* recognises a leak through the wide-open mitral valve that has no neck to cut at (the walls run
  on past the annulus on every filling frame): runs of frames whose long axis is over
  ``max_length_ratio`` (1.3) × the clip's 25th percentile, the extra length at the base, get their
  landmarks interpolated from the frames on either side however long the run
  (:func:`_open_valve_frames`);
* fills chords that missed the boundary from the neighbouring chords of the same wall;
* replaces the keypoints of isolated frames whose Simpson volume is off the running median by
  more than 20 % (a destroyed mask; 8 % when the frame's landmarks were outliers, a lost apex),
  or that have no boundary at all, by linear interpolation in time between the nearest good
  frames (gaps of at most ``max_gap_frames``).

Every repair is named in the frame's flags.

The boundary itself is never smoothed in time: the keypoints stay on each frame's blood-pool
boundary and follow real wall motion; only where along the boundary they sit is stabilised.
:func:`jitter` gives the figure of merit, the RMS second temporal difference of the keypoints
in px/frame², reported before and after smoothing.

All coordinates are ``(x, y)`` pixels: x = column, y = row, integer values at pixel centres.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from echokdm.geometry.keypoints import (
    N_KEYPOINTS,
    KeypointError,
    boundary_contour,
    clean_mask,
    detect_landmarks,
    fill_missing_chords,
    keypoints_from_landmarks,
    resolve_apex_direction,
)

__all__ = ["SequenceKeypoints", "sequence_keypoints", "jitter", "smooth_trajectory", "interpolate_gaps"]

_ON_ERROR = ("nan", "raise")


@dataclasses.dataclass
class SequenceKeypoints:
    """Keypoints and landmarks of a mask sequence, after temporal smoothing of the landmarks.

    Attributes
    ----------
    keypoints : numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels; NaN rows where a frame failed or a chord
        missed the boundary (``flags`` says which).
    apex : numpy.ndarray
        ``float32`` ``(T, 2)`` smoothed apex ``(x, y)``; NaN on failed frames.
    annulus : numpy.ndarray
        ``float32`` ``(T, 2, 2)`` smoothed hinge points, image-left then image-right.
    flags : list of str
        One entry per frame, ``""`` when nothing was noticed; otherwise ``"; "``-joined
        observations (``"several components …"``, ``"touches border"``) or, for a frame without
        keypoints, ``"failed: <reason>"``.
    raw_keypoints : numpy.ndarray
        ``float32`` ``(T, 40, 2)``: the keypoints of each frame on its own, before smoothing
        (what :func:`~echokdm.geometry.keypoints.mask_keypoints` gives).
    jitter_raw, jitter_smoothed : float
        :func:`jitter` of ``raw_keypoints`` and of ``keypoints`` (px/frame²).
    landmark_jitter_raw, landmark_jitter_smoothed : float
        :func:`jitter` of the three landmarks (apex and both hinges) before and after smoothing
        (px/frame²): the detection noise that the smoothing removes.
    smooth_sigma_frames : float
        The Gaussian's standard deviation in frames (0 = no smoothing).
    apex_direction : str
        The apex direction used for the clip, by name (``"up"`` …; ``""`` when none).
    apex_note : str
        ``""``, or why the detected apex direction is unsure (also in every frame's flags).
    interpolated : numpy.ndarray
        ``bool`` ``(T,)``: frames whose keypoints were interpolated in time from their neighbours.
    """

    keypoints: np.ndarray
    apex: np.ndarray
    annulus: np.ndarray
    flags: list[str]
    raw_keypoints: np.ndarray
    jitter_raw: float
    jitter_smoothed: float
    landmark_jitter_raw: float
    landmark_jitter_smoothed: float
    smooth_sigma_frames: float
    apex_direction: str = ""
    apex_note: str = ""
    interpolated: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        """``bool`` ``(T,)``: frames whose landmarks were found (keypoints may still miss a chord)."""
        return np.isfinite(self.apex).all(axis=1)

    @property
    def basal_centre(self) -> np.ndarray:
        """``float32`` ``(T, 2)`` midpoint of the smoothed annulus."""
        return self.annulus.mean(axis=1)


@dataclasses.dataclass
class _FrameLandmarks:
    """One frame's boundary and raw landmarks, hinges ordered left, right.

    ``wall`` is the open wall polyline (``closed`` False) or, for a frame whose landmarks could
    not be found, the closed boundary of its cleaned mask (``closed`` True; ``annulus`` and
    ``apex`` NaN).
    """

    wall: np.ndarray
    annulus: np.ndarray
    apex: np.ndarray
    keypoints: np.ndarray
    flags: list[str]
    closed: bool = False


def _frame_landmarks(mask: np.ndarray, direction, sigma: float, min_area: int, repair: bool,
                     principal: bool = False) -> _FrameLandmarks:
    """Boundary, annulus and apex of one mask, as in ``mask_keypoints``; raises KeypointError."""
    wall, h1, h2, apex, flags = detect_landmarks(mask, direction, sigma, min_area, repair, principal)
    keypoints, annulus, _ = keypoints_from_landmarks(wall, h1, h2, apex, closed=False)
    if repair:
        keypoints, _ = fill_missing_chords(keypoints, annulus, apex)
    return _FrameLandmarks(wall, annulus, apex, keypoints, flags)


def _boundary_only(mask: np.ndarray, sigma: float, min_area: int) -> _FrameLandmarks | None:
    """The closed boundary of a mask whose landmarks failed, to cut chords with borrowed landmarks."""
    try:
        binary, _ = clean_mask(mask)
        if binary.sum() < min_area:
            return None
        contour = boundary_contour(binary, sigma=sigma)
    except KeypointError:
        return None
    nan2 = np.full(2, np.nan)
    return _FrameLandmarks(contour, np.full((2, 2), np.nan), nan2,
                           np.full((N_KEYPOINTS, 2), np.nan, np.float32), [], closed=True)


def smooth_trajectory(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """NaN-aware Gaussian smoothing along axis 0, edge mode ``"nearest"``.

    Parameters
    ----------
    values : numpy.ndarray
        ``(T, ...)`` trajectories; NaN entries are missing samples.
    sigma_frames : float
        Standard deviation of the Gaussian in frames; ``0`` returns a copy.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of the same shape: the weighted mean of the finite neighbours. Missing
        samples stay NaN (they are not filled in).
    """
    from scipy.ndimage import gaussian_filter1d

    v = np.asarray(values, dtype=np.float64)
    if sigma_frames < 0:
        raise ValueError(f"sigma_frames must be >= 0, got {sigma_frames}")
    if sigma_frames == 0 or len(v) < 2:
        return v.copy()
    good = np.isfinite(v)
    num = gaussian_filter1d(np.where(good, v, 0.0), sigma_frames, axis=0, mode="nearest")
    den = gaussian_filter1d(good.astype(np.float64), sigma_frames, axis=0, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(good, out, np.nan)


def jitter(keypoints: np.ndarray) -> float:
    """RMS second temporal difference of keypoint trajectories, in px/frame².

    ``|k[t+1] - 2 k[t] + k[t-1]|`` is the acceleration of each keypoint; smooth motion gives a
    small value, detection noise a large one (white noise of standard deviation σ per
    coordinate gives about ``σ·√12``).

    Parameters
    ----------
    keypoints : numpy.ndarray
        ``(T, N, 2)`` ``(x, y)`` pixels; NaN rows are left out.

    Returns
    -------
    float
        The RMS over every keypoint and frame triple where all three are finite; NaN when there
        is none (fewer than 3 frames).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (T, N, 2), got {kp.shape}")
    if len(kp) < 3:
        return float("nan")
    d2 = kp[2:] - 2 * kp[1:-1] + kp[:-2]  # (T-2, N, 2)
    norm = np.linalg.norm(d2, axis=-1)  # (T-2, N)
    norm = norm[np.isfinite(norm)]
    return float(np.sqrt(np.mean(norm**2))) if norm.size else float("nan")


def interpolate_gaps(values: np.ndarray, max_gap: int, missing: np.ndarray | None = None):
    """Linear interpolation in time of missing frames in gaps of at most ``max_gap`` frames.

    Parameters
    ----------
    values : numpy.ndarray
        ``(T, ...)``; a frame is missing where ``missing`` is True (default: any NaN in it).
    max_gap : int
        Longest run of missing frames that is filled. A run between two present frames is
        interpolated linearly; a run at the start or end of the clip takes the nearest present
        frame. Longer runs stay missing (NaN).

    Returns
    -------
    filled : numpy.ndarray
        ``float64``, same shape.
    sources : dict
        ``{frame: (previous, next)}`` for every filled frame (one of them None at a clip end).
    """
    v = np.array(values, dtype=np.float64)
    n = len(v)
    flat = v.reshape(n, -1)
    if missing is None:
        missing = ~np.isfinite(flat).all(axis=1)
    missing = np.asarray(missing, dtype=bool).copy()
    flat[missing] = np.nan
    sources: dict[int, tuple[int | None, int | None]] = {}
    if max_gap <= 0 or missing.all() or not missing.any():
        return flat.reshape(v.shape), sources
    t = 0
    while t < n:
        if not missing[t]:
            t += 1
            continue
        end = t
        while end < n and missing[end]:
            end += 1
        prev, nxt = (t - 1 if t > 0 else None), (end if end < n else None)
        if end - t <= max_gap:
            for k in range(t, end):
                if prev is not None and nxt is not None:
                    w = (k - prev) / (nxt - prev)
                    flat[k] = (1 - w) * flat[prev] + w * flat[nxt]
                else:
                    flat[k] = flat[prev if prev is not None else nxt]
                sources[k] = (prev, nxt)
        t = end
    return flat.reshape(v.shape), sources


def _running_median(values: np.ndarray, half: int = 2) -> np.ndarray:
    """NaN-aware running median along axis 0 over ``2 * half + 1`` frames, the centre left out."""
    n = len(values)
    out = np.full(values.shape, np.nan)
    for t in range(n):
        idx = [k for k in range(max(0, t - half), min(n, t + half + 1)) if k != t]
        if len(idx) < 2:
            continue
        window = values[idx]
        ok = np.isfinite(window.reshape(len(idx), -1)).all(axis=1)
        if ok.sum() >= 2:
            out[t] = np.median(window[ok], axis=0)
    return out


def _landmark_outliers(apex: np.ndarray, annulus: np.ndarray) -> dict[int, str]:
    """Frames whose landmarks jump away from their neighbours', with the reason."""
    base = annulus.mean(axis=1)  # (T, 2)
    length = np.linalg.norm(apex - base, axis=1)
    width = np.linalg.norm(annulus[:, 1] - annulus[:, 0], axis=1)
    med_len, med_width = _running_median(length), _running_median(width)
    med_apex, med_base = _running_median(apex), _running_median(base)
    out = {}
    for t in range(len(apex)):
        if not (np.isfinite(length[t]) and np.isfinite(med_len[t])):
            continue
        tol = max(0.15 * med_len[t], 2.0)
        if abs(length[t] - med_len[t]) > tol:
            out[t] = f"long axis {length[t]:.1f} px vs {med_len[t]:.1f} px in the neighbouring frames"
        elif np.linalg.norm(apex[t] - med_apex[t]) > tol:
            out[t] = f"apex {np.linalg.norm(apex[t] - med_apex[t]):.1f} px off the neighbouring frames'"
        elif np.linalg.norm(base[t] - med_base[t]) > tol:
            out[t] = f"basal centre {np.linalg.norm(base[t] - med_base[t]):.1f} px off the neighbouring frames'"
        elif np.isfinite(med_width[t]) and abs(width[t] - med_width[t]) > max(0.5 * med_width[t], 3.0):
            out[t] = f"annulus {width[t]:.1f} px wide vs {med_width[t]:.1f} px in the neighbouring frames"
    return out


#: A frame whose long axis exceeds this multiple of the clip's short-axis reference (its 25th percentile
#: of the long axis) is taken for a leak through the open mitral valve (see :func:`_open_valve_frames`).
MAX_LENGTH_RATIO = 1.3
#: ... unless more than this fraction of the clip's measured frames would be (see :func:`_open_valve_frames`).
MAX_LEAK_FRACTION = 0.5
#: ... and only when its base lies this fraction of the reference long axis beyond the short frames' base.
LEAK_BASE_SHIFT = 0.2


def _open_valve_frames(apex: np.ndarray, annulus: np.ndarray, max_ratio: float | None) -> dict[int, str]:
    """Frames whose long axis is longer than ``max_ratio`` × the clip's 25th percentile, with the reason.

    The apex barely moves and the mitral annulus travels 10-20 % of the long axis over a beat (its
    systolic excursion), so no heart's long axis is 1.3 × its shorter frames'. A mask that is: the pool
    running on through the open mitral valve into the atrium with no neck to cut at (on pydicom's
    real cine a phantom-trained network does it on diastolic frames 7-12 and 18-19, up to 117 px
    against 67-74 in systole).
    Such runs outlast the running median of :func:`_landmark_outliers`, so the reference is the
    clip's, not the neighbours'; with closed-valve frames at ED and ES on either side, the landmarks
    interpolated across the run keep the clip's EDV and ESV.

    The extra length must be at the base (its basal centre over ``LEAK_BASE_SHIFT`` (0.2) × the
    reference beyond the shorter frames'): when systolic frames lose their apex, the others look long
    from the apex end. Runs at the clip's start or end are left to the other checks: they have an
    anchor on one side only. When the runs would cover more than ``MAX_LEAK_FRACTION`` (0.5) of the
    measured frames, nothing is flagged.
    """
    if max_ratio is None:
        return {}
    length = np.linalg.norm(apex - annulus.mean(axis=1), axis=1)
    ok = np.isfinite(length) & (length > 0)
    if ok.sum() < 4:
        return {}
    reference = float(np.percentile(length[ok], 25))
    long = ok & (length > max_ratio * reference)
    # the extra length must be at the base: frames whose apex is lost make the others look long, apex first
    base = annulus.mean(axis=1)
    axis = np.nanmedian(apex[ok] - base[ok], axis=0)
    axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
    short = ok & (length <= reference)
    beyond = float(np.median(base[short] @ axis)) - np.where(ok, np.nan_to_num(base) @ axis, np.nan)
    long &= beyond > LEAK_BASE_SHIFT * reference
    out = {}
    first, last = np.flatnonzero(ok)[[0, -1]]
    for run in np.split(np.flatnonzero(long), np.flatnonzero(np.diff(np.flatnonzero(long)) > 1) + 1):
        # a run that reaches the clip's first or last measured frame has a closed-valve frame on one side
        # only: copying that frame's landmarks would give the run its phase (on the ED-to-ES beats of
        # benchmarks/seg_sim2real.py, a mid-systolic frame's at ED), so only runs between two are repaired
        if run.size == 0 or run[0] <= first or run[-1] >= last:
            continue
        for t in run:
            out[int(t)] = (f"long axis {length[t]:.1f} px, over {max_ratio:g} × the clip's {reference:.1f} px: the "
                           "pool runs on through the open mitral valve")
    # leaks come with the open valve, at most about half a beat's frames (46 % in a phantom heart at 53 bpm);
    # when more frames are "too long" the reference is off, and nothing is repaired. (A wrong apex side is
    # not always caught: on pydicom's real cine at 112 px with the side read "left" from the masks, 15 of
    # 30 frames were flagged. Network masks take the side from the sector: io.fan.apex_direction_with_fan.)
    return out if len(out) <= MAX_LEAK_FRACTION * ok.sum() else {}


def _disc_volume(keypoints: np.ndarray) -> np.ndarray:
    from echokdm.geometry.volumes import simpson_volume

    return simpson_volume(keypoints)


def _volume_outliers(keypoints: np.ndarray, suspect: set[int] = frozenset(), tolerance: float = 0.2,
                     suspect_tolerance: float = 0.08) -> dict[int, str]:
    """Frames whose Simpson volume is off its neighbours' running median by more than ``tolerance``
    (``suspect_tolerance`` for frames whose landmarks were already outliers: a lost apex)."""
    v = _disc_volume(keypoints)
    med = _running_median(v)
    out = {}
    for t in range(len(v)):
        tol = suspect_tolerance if t in suspect else tolerance
        if not (np.isfinite(v[t]) and np.isfinite(med[t]) and med[t] > 0 and abs(v[t] / med[t] - 1) > tol):
            continue
        # a spike, not the extreme of a fast beat sampled at a low frame rate: the frame is also off the
        # mean of its finite immediate neighbours (at ED/ES of a smooth curve it stays close to them)
        near = [v[s] for s in (t - 1, t + 1) if 0 <= s < len(v) and np.isfinite(v[s])]
        if near and abs(v[t] / np.mean(near) - 1) <= tol:
            continue
        out[t] = f"volume {100 * (v[t] / med[t] - 1):+.0f} % off the neighbouring frames'"
    return out


def _detect_all(masks, direction, sigma, min_area, on_error, repair, principal=False):
    """Per-frame landmarks (None for a failed frame without usable boundary) and per-frame flag lists."""
    frames: list[_FrameLandmarks | None] = []
    flags: list[list[str]] = []
    for t, mask in enumerate(masks):
        try:
            lm = _frame_landmarks(mask, direction, sigma, min_area, repair, principal)
        except KeypointError as exc:
            if on_error == "raise":
                raise KeypointError(f"frame {t}: {exc}") from exc
            frames.append(_boundary_only(mask, sigma, min_area) if repair else None)
            flags.append([f"failed: {exc}"])
            continue
        frames.append(lm)
        flags.append(list(lm.flags))
    return frames, flags


def _rough_masks_note(masks: np.ndarray, flags: list[list[str]], outliers: dict[int, str]) -> str:
    """A note when over a quarter of the non-empty masks have no clean flat base (``""`` otherwise).

    Such a clip is measured again with the basal side from the principal axis on every frame.
    """
    n_present = sum(1 for m in masks if m.any())
    n_rough = sum(1 for t, f in enumerate(flags) if t in outliers or any(
        x.startswith(("failed: no flat", "basal side from the principal axis")) for x in f))
    if n_present and n_rough > 0.25 * n_present:
        return (f"rough masks ({n_rough} of {n_present} frames without a clean flat base): basal side "
                "from the principal axis on every frame")
    return ""


def _interpolate_landmarks(frames: list, flags: list[list[str]], apex: np.ndarray, annulus: np.ndarray,
                           outliers: dict[int, str], max_gap_frames: int,
                           open_valve: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Apex ``(T, 2)`` and annulus ``(T, 2, 2)`` with outlier frames (set to NaN in place) and gaps
    of up to ``3 * max_gap_frames`` frames interpolated in time; each such frame is flagged.
    ``open_valve`` frames (outliers too) are filled over runs of any length: a leak through the open
    valve lasts the filling phase, and its landmarks are the closed-valve frames' on either side."""
    for t, reason in outliers.items():
        flags[t].append(f"outlier landmarks ({reason}): landmarks interpolated")
        apex[t], annulus[t] = np.nan, np.nan
    # landmarks may be borrowed over longer gaps than keypoints: the chords are still cut on
    # each frame's own boundary
    apex_f, filled = interpolate_gaps(apex, 3 * max_gap_frames)
    annulus_f, _ = interpolate_gaps(annulus, 3 * max_gap_frames)
    if open_valve:
        apex_l, long_filled = interpolate_gaps(apex_f, len(apex_f))
        annulus_l, _ = interpolate_gaps(annulus_f, len(annulus_f))
        for t in open_valve & set(long_filled):
            apex_f[t], annulus_f[t] = apex_l[t], annulus_l[t]
    for t in filled:
        if frames[t] is not None and not any("outlier landmarks" in f for f in flags[t]):
            flags[t].append("landmarks interpolated from the neighbouring frames")
    return apex_f, annulus_f


def _finish_flags(flags: list[list[str]], keypoints: np.ndarray, notes: tuple[str, ...]) -> None:
    """Add the clip-wide ``notes`` to every frame, and rename "failed" to "recovered" on the frames
    that got all their keypoints after all (in place)."""
    for note in notes:
        if note:
            for f in flags:
                f.append(note)
    for t in range(len(keypoints)):
        if np.isfinite(keypoints[t]).all():
            flags[t] = [f.replace("failed: ", "recovered: ", 1) if f.startswith("failed: ") else f for f in flags[t]]


def sequence_keypoints(
    masks: np.ndarray,
    *,
    smooth_sigma_frames: float = 1.0,
    apex_direction: str | tuple[float, float] | None = "auto",
    on_error: str = "nan",
    sigma: float = 0.7,
    min_area: int = 40,
    repair: bool = True,
    max_gap_frames: int = 3,
    max_length_ratio: float | None = MAX_LENGTH_RATIO,
) -> SequenceKeypoints:
    """The 40 keypoints of every frame of a mask sequence, with temporally smoothed landmarks.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(T, H, W)`` binary masks, 1 = LV blood pool, consecutive frames of one clip (smoothing
        assumes equal time steps; split a clip at gaps between labelled frames).
    smooth_sigma_frames : float
        Standard deviation in frames of the Gaussian applied to the apex and hinge trajectories
        (NaN-aware, edge mode ``"nearest"``). ``0`` (with ``repair=False``) gives each frame's own
        landmarks, i.e. the result of :func:`~echokdm.geometry.keypoints.mask_keypoints` per frame.
    apex_direction : {"auto", "up", "down", "left", "right"} or (dx, dy) or None
        As in :func:`~echokdm.geometry.keypoints.mask_keypoints`; ``"auto"`` (default) detects it
        once for the whole clip from all its masks (``apex_direction`` and ``apex_note`` of the
        result say what was found).
    on_error : {"nan", "raise"}
        A frame whose keypoints cannot be derived (empty, too small, no flat base) is repaired
        (``repair``) or gets NaN rows, with a ``"failed: <reason>"`` flag; or raise
        :class:`KeypointError` naming the frame.
    sigma, min_area
        Boundary smoothing (px) and smallest blood pool (px), as in ``mask_keypoints``.
    repair : bool
        Clean the masks, reject outlier frames, recover missed chords and interpolate bad frames
        (see the module docstring); ``False`` measures every mask as it is.
    max_gap_frames : int
        Longest run of consecutive bad frames that is interpolated in time.
    max_length_ratio : float or None
        With ``repair``, runs of frames whose long axis is over this multiple of the clip's 25th
        percentile are a leak through the open valve: landmarks interpolated (:func:`_open_valve_frames`).

    Returns
    -------
    SequenceKeypoints

    Examples
    --------
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> masks = np.stack([((((xx - 32) / (12 - 0.2 * t)) ** 2 + ((yy - 45) / 30) ** 2) < 1) & (yy <= 45)
    ...                   for t in range(6)]).astype(np.uint8)
    >>> seq = sequence_keypoints(masks)
    >>> seq.keypoints.shape, seq.flags[0], seq.apex_direction
    ((6, 40, 2), '', 'up')
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (T, H, W), got {masks.shape}")
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    direction, found = resolve_apex_direction(apex_direction, masks)
    apex_note = found.note if found is not None else ""
    frames, flags = _detect_all(masks, direction, sigma, min_area, on_error, repair)
    raw, apex, annulus = _landmark_arrays(frames)
    outliers = _landmark_outliers(apex, annulus) if repair else {}
    rough_note = _rough_masks_note(masks, flags, outliers) if repair else ""
    if rough_note:
        # rough masks: one method for every frame, so that the landmarks are consistent in time
        frames, flags = _detect_all(masks, direction, sigma, min_area, on_error, repair, principal=True)
        raw, apex, annulus = _landmark_arrays(frames)
        outliers = _landmark_outliers(apex, annulus)
    n = len(frames)
    if repair:
        outliers = {**(open_valve := _open_valve_frames(apex, annulus, max_length_ratio)), **outliers}
        apex_f, annulus_f = _interpolate_landmarks(frames, flags, apex, annulus, outliers, max_gap_frames,
                                                   frozenset(open_valve))
    else:
        apex_f, annulus_f = apex, annulus
    apex_s = smooth_trajectory(apex_f, smooth_sigma_frames)
    annulus_s = smooth_trajectory(annulus_f, smooth_sigma_frames)
    keypoints = _recut(frames, apex_s, annulus_s, flags, repair)
    interpolated = np.zeros(n, dtype=bool)
    if repair:
        keypoints, interpolated = _repair_frames(keypoints, frames, flags, max_gap_frames, set(outliers))
    _finish_flags(flags, keypoints, (rough_note, apex_note))
    return SequenceKeypoints(
        keypoints=keypoints,
        apex=apex_s.astype(np.float32),
        annulus=annulus_s.astype(np.float32),
        flags=["; ".join(f) for f in flags],
        raw_keypoints=raw,
        jitter_raw=jitter(raw),
        jitter_smoothed=jitter(keypoints),
        landmark_jitter_raw=jitter(np.concatenate([apex[:, None], annulus], axis=1)),  # (T, 3, 2)
        landmark_jitter_smoothed=jitter(np.concatenate([apex_s[:, None], annulus_s], axis=1)),
        smooth_sigma_frames=float(smooth_sigma_frames),
        apex_direction=found.name if found is not None else "",
        apex_note=apex_note,
        interpolated=interpolated,
    )


def _landmark_arrays(frames):
    """Raw keypoints ``(T, 40, 2)``, apex ``(T, 2)`` and annulus ``(T, 2, 2)`` (NaN where missing)."""
    n = len(frames)
    raw = np.full((n, N_KEYPOINTS, 2), np.nan, dtype=np.float32)
    apex = np.full((n, 2), np.nan)
    annulus = np.full((n, 2, 2), np.nan)
    for t, lm in enumerate(frames):
        if lm is not None:
            raw[t], apex[t], annulus[t] = lm.keypoints, lm.apex, lm.annulus
    return raw, apex, annulus


def _repair_frames(keypoints: np.ndarray, frames, flags: list[list[str]], max_gap: int, suspect: set[int]):
    """Interpolate in time the keypoints of frames without keypoints or with an outlier volume."""
    bad = ~np.isfinite(keypoints).all(axis=(1, 2))
    good_kp = np.where(bad[:, None, None], np.nan, keypoints)
    for t, reason in _volume_outliers(good_kp, suspect).items():
        flags[t].append(f"outlier frame ({reason})")
        bad[t] = True
    filled, sources = interpolate_gaps(keypoints, max_gap, missing=bad)
    interpolated = np.zeros(len(keypoints), dtype=bool)
    for t, (prev, nxt) in sources.items():
        where = " and ".join(str(k) for k in (prev, nxt) if k is not None)
        flags[t].append(f"keypoints interpolated from frame(s) {where}")
        interpolated[t] = True
    return filled.astype(np.float32), interpolated


def _recut(frames, apex_s: np.ndarray, annulus_s: np.ndarray, flags: list[list[str]],
           repair: bool = False) -> np.ndarray:
    """Chords of each frame's own wall with the smoothed landmarks; ``float32`` ``(T, 40, 2)``."""
    out = np.full((len(frames), N_KEYPOINTS, 2), np.nan, dtype=np.float32)
    for t, lm in enumerate(frames):
        if lm is None or not np.isfinite(apex_s[t]).all() or not np.isfinite(annulus_s[t]).all():
            continue
        try:
            kp, annulus, missed = keypoints_from_landmarks(lm.wall, annulus_s[t, 0], annulus_s[t, 1], apex_s[t],
                                                           closed=lm.closed)
        except KeypointError as exc:  # pragma: no cover - smoothed apex on the basal centre
            flags[t].append(f"failed: {exc}")
            continue
        if missed:
            filled = 0
            if repair:
                kp, filled = fill_missing_chords(kp, annulus, apex_s[t])
            flags[t].append(f"chord missed boundary ({missed} keypoint(s); {filled} recovered from neighbouring "
                            "chords)" if filled else f"chord missed boundary ({missed} keypoint(s) NaN)")
        out[t] = kp
    return out
