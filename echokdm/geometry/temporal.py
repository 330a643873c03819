"""The 40 keypoints over a cine: landmarks smoothed in time so keypoint identity is stable.

Detected one frame at a time (:func:`~echokdm.geometry.keypoints.mask_keypoints`), the apex and
the two mitral hinge points jitter by a fraction of a pixel from frame to frame with the pixel
grid, and every chord moves with them: keypoint ``j`` slides along the wall although the wall
barely moved. :func:`sequence_keypoints` therefore

1. finds each frame's boundary, annulus and apex exactly as ``mask_keypoints`` does;
2. smooths the trajectories of the three landmarks over time (Gaussian, NaN-aware, edge mode
   ``"nearest"``), so a bad frame neither shifts its neighbours nor gets a guessed value;
3. recuts the 20 chords of each frame on that frame's own boundary with the smoothed landmarks.

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
    _DIRECTIONS,
    N_KEYPOINTS,
    KeypointError,
    _detect_landmarks,
    keypoints_from_landmarks,
)

__all__ = ["SequenceKeypoints", "sequence_keypoints", "jitter", "smooth_trajectory"]

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
    """One frame's boundary (open wall polyline) and raw landmarks, hinges ordered left, right."""

    wall: np.ndarray
    annulus: np.ndarray
    apex: np.ndarray
    keypoints: np.ndarray
    flags: list[str]


def _frame_landmarks(mask: np.ndarray, direction, sigma: float, min_area: int) -> _FrameLandmarks:
    """Boundary, annulus and apex of one mask, as in ``mask_keypoints``; raises KeypointError."""
    wall, h1, h2, apex, flags = _detect_landmarks(mask, direction, sigma, min_area)
    keypoints, annulus, _ = keypoints_from_landmarks(wall, h1, h2, apex, closed=False)
    return _FrameLandmarks(wall, annulus, apex, keypoints, flags)


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


def _resolve_direction(apex_direction):
    if isinstance(apex_direction, str):
        if apex_direction not in _DIRECTIONS:
            raise ValueError(f"apex_direction must be one of {sorted(_DIRECTIONS)} or (dx, dy), got {apex_direction!r}")
        return _DIRECTIONS[apex_direction]
    return apex_direction


def _detect_all(masks, direction, sigma, min_area, on_error):
    """Per-frame landmarks (None for a failed frame) and per-frame flag lists."""
    frames: list[_FrameLandmarks | None] = []
    flags: list[list[str]] = []
    for t, mask in enumerate(masks):
        try:
            lm = _frame_landmarks(mask, direction, sigma, min_area)
        except KeypointError as exc:
            if on_error == "raise":
                raise KeypointError(f"frame {t}: {exc}") from exc
            frames.append(None)
            flags.append([f"failed: {exc}"])
            continue
        frames.append(lm)
        flags.append(list(lm.flags))
    return frames, flags


def sequence_keypoints(
    masks: np.ndarray,
    *,
    smooth_sigma_frames: float = 1.0,
    apex_direction: str | tuple[float, float] | None = "up",
    on_error: str = "nan",
    sigma: float = 0.7,
    min_area: int = 40,
) -> SequenceKeypoints:
    """The 40 keypoints of every frame of a mask sequence, with temporally smoothed landmarks.

    Parameters
    ----------
    masks : numpy.ndarray
        ``(T, H, W)`` binary masks, 1 = LV blood pool, consecutive frames of one clip (smoothing
        assumes equal time steps; split a clip at gaps between labelled frames).
    smooth_sigma_frames : float
        Standard deviation in frames of the Gaussian applied to the apex and hinge trajectories
        (NaN-aware, edge mode ``"nearest"``). ``0`` gives each frame's own landmarks, i.e. the
        result of :func:`~echokdm.geometry.keypoints.mask_keypoints` per frame.
    apex_direction : {"up", "down", "left", "right"} or (dx, dy) or None
        As in :func:`~echokdm.geometry.keypoints.mask_keypoints`.
    on_error : {"nan", "raise"}
        A frame whose keypoints cannot be derived (empty, too small, no flat base) gives NaN rows
        and a ``"failed: <reason>"`` flag, or raises :class:`KeypointError` naming the frame.
    sigma, min_area
        Boundary smoothing (px) and smallest blood pool (px), as in ``mask_keypoints``.

    Returns
    -------
    SequenceKeypoints

    Examples
    --------
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> masks = np.stack([((((xx - 32) / (12 - 0.2 * t)) ** 2 + ((yy - 45) / 30) ** 2) < 1) & (yy <= 45)
    ...                   for t in range(6)]).astype(np.uint8)
    >>> seq = sequence_keypoints(masks)
    >>> seq.keypoints.shape, seq.flags[0]
    ((6, 40, 2), '')
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (T, H, W), got {masks.shape}")
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    direction = _resolve_direction(apex_direction)
    frames, flags = _detect_all(masks, direction, sigma, min_area, on_error)
    n = len(frames)
    raw = np.full((n, N_KEYPOINTS, 2), np.nan, dtype=np.float32)
    apex = np.full((n, 2), np.nan)
    annulus = np.full((n, 2, 2), np.nan)
    for t, lm in enumerate(frames):
        if lm is not None:
            raw[t], apex[t], annulus[t] = lm.keypoints, lm.apex, lm.annulus
    apex_s = smooth_trajectory(apex, smooth_sigma_frames)
    annulus_s = smooth_trajectory(annulus, smooth_sigma_frames)
    keypoints = _recut(frames, apex_s, annulus_s, flags)
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
    )


def _recut(frames, apex_s: np.ndarray, annulus_s: np.ndarray, flags: list[list[str]]) -> np.ndarray:
    """Chords of each frame's own wall with the smoothed landmarks; ``float32`` ``(T, 40, 2)``."""
    out = np.full((len(frames), N_KEYPOINTS, 2), np.nan, dtype=np.float32)
    for t, lm in enumerate(frames):
        if lm is None:
            continue
        try:
            kp, _, missed = keypoints_from_landmarks(lm.wall, annulus_s[t, 0], annulus_s[t, 1], apex_s[t], closed=False)
        except KeypointError as exc:  # pragma: no cover - smoothed apex on the basal centre
            flags[t].append(f"failed: {exc}")
            continue
        if missed:
            flags[t].append(f"chord missed boundary ({missed} keypoint(s) NaN)")
        out[t] = kp
    return out
