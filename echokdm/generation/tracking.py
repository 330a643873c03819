"""Keypoints carried through a clip by speckle tracking: a clip's own motion without segmenting
every frame.

:func:`track_keypoints` takes keypoints on one frame (from a segmentation, a tracing or a file)
and carries them frame by frame with TV-L1 optical flow (:func:`echokdm.baselines.flow.tvl1_flow`)
measured between consecutive frames, the way speckle-tracking echocardiography follows the wall.
Optical flow is learnt from nothing, so it has no gap between a phantom and a real scanner: on real
clips, where a phantom-trained segmentation network's per-frame masks wander (a leak through the
mitral valve at one frame, not at the next), the tracked keypoints follow the tissue that the
frames show. ``echokdm generate --own`` uses them by default when the keypoints would otherwise
come from the segmentation network (:func:`own_motion_keypoints`).

What it is for, and what not (``benchmarks/motion_tracking.py`` measures both):

* **For reproducing a clip's own beat.** KDM's own beat from tracked keypoints is closer to the
  real frames than from per-frame segmentation keypoints: on pydicom's real cine, LPIPS-Alex of
  the warp 0.124 → 0.101 (0.103 → 0.070 at 112×112), on held-out realistic-phantom patients
  0.104 → 0.091 (exact keypoints: 0.099).
* **Short on dim frames.** On the classic phantom the tracked keypoints are 0.3 px from the truth
  and their EF 1 point low; on the dim realistic phantom the tracked wall moves a third as far (EF
  31 points low), because TV-L1's data term shrinks with the contrast and its smoothness term does
  not (the classic phantom darkened 4×: EF 22 points low). Contrast-invariant trackers fix the
  phantom, but on pydicom's real cine they drag the basal septum into the cavity with the mitral
  leaflets (by eye; paired scores cannot tell, they reward a frame that moves less even on the
  phantom: ``benchmarks/motion_tracking.py --trackers`` and the README, "Own beats follow the
  clip's tissue"), so TV-L1 stays, and :func:`own_beat_motion` checks the tracked EF against the
  segmentation's.
* **Not for EF.** Measure EF from segmentation (``echokdm keypoints``, ``echokdm ef``), never
  from tracked keypoints; a tracked own beat's EF target is the segmentation's (:func:`clip_ef_target`).

Frames larger than ``max_size`` (128 px) are tracked at a reduced size (the keypoints are scaled
back), so a full-resolution DICOM takes seconds, not minutes. Any number of keypoints works (adapters).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["OWN_MOTIONS", "OwnBeat", "clip_ef_target", "own_beat_motion", "own_motion_keypoints",
           "phase_anchors", "track_keypoints"]

#: ``generate --own-motion`` choices: "auto" (tracking when the keypoints would come from the
#: segmentation network, else the given or labelled keypoints), "tracking", "segmentation".
OWN_MOTIONS = ("auto", "tracking", "segmentation")


def _sample(flow: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The flow ``(2, H, W)`` at ``points`` ``(N, 2)`` (x, y), bilinear, border values outside."""
    from scipy.ndimage import map_coordinates

    coords = [points[:, 1], points[:, 0]]
    return np.stack([map_coordinates(flow[c], coords, order=1, mode="nearest") for c in (0, 1)], axis=1)


def track_keypoints(frames: Any, keypoints: Any, start: int = 0, stop: int | None = None, *,
                    anchors: Any = (), attachment: float = 10.0, max_size: int | None = 128, batch: int = 16,
                    progress: bool = False) -> np.ndarray:
    """Keypoints of ``frames[start]`` carried to every frame of ``frames[start:stop]``.

    Between each pair of consecutive frames the TV-L1 flow is measured on frame ``t``'s grid
    pointing into frame ``t + 1``, and every keypoint moves by the flow at its position
    (bilinear): ``p[t + 1] = p[t] + flow_t(p[t])``. Errors add up along the clip (a small drift over
    many beats: 0.6 px a beat at 50 fps on the classic phantom); for one beat they stay below the
    per-frame noise of a segmentation network's masks. ``anchors`` removes it: frames at the
    source's phase in later beats (the heart has the source's shape there, so the flow measured
    directly from the source is small and sure) where the keypoints are measured directly, and the
    sequential track's drift there is subtracted, interpolated linearly in time between anchors
    and held after the last (3 beats of the classic phantom: last-beat error 1.6 → 0.4 px).

    Parameters
    ----------
    frames : array_like
        ``(T, H, W)`` grayscale in [0, 1] (any real dtype).
    keypoints : array_like
        ``(N, 2)`` ``(x, y)`` pixels on ``frames[start]``; a NaN row stays NaN.
    start, stop : int
        The first frame (where ``keypoints`` are) and one past the last (default: the clip's end).
    anchors : sequence of int
        Frame indices (of ``frames``) at the phase of ``start`` in later beats, for the drift
        correction; those outside ``start + 1 .. stop - 1`` are ignored.
    attachment : float
        TV-L1 data weight (:func:`~echokdm.baselines.flow.tvl1_flow`; lower is smoother). 10 tracks
        best on the phantom and the real cine (``benchmarks/motion_tracking.py``).
    max_size : int or None
        Track on frames resized (with antialiasing) so their longer side is at most this; None
        tracks at full size. On the real cine (189×259) tracking at 96, 128, 192 or full size gives
        the same own beat (LPIPS 0.101 ± 0.001), at 0.04, 0.07, 0.13 and 0.27 s per frame.
    batch : int
        Frame pairs per TV-L1 call.
    progress : bool
        A progress bar with an ETA.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(stop - start, N, 2)``; row 0 is ``keypoints``.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> base = gaussian_filter(np.random.default_rng(0).random((48, 64)), 1.5)
    >>> base = (base - base.min()) / (base.max() - base.min())
    >>> frames = np.stack([np.roll(base, t, axis=1) for t in range(4)])  # moves 1 px right per frame
    >>> kp = np.array([[20.0, 20.0], [40.0, 30.0]])
    >>> track_keypoints(frames, kp, max_size=None)[-1].round(0)
    array([[23., 20.],
           [43., 30.]], dtype=float32)
    """
    from tqdm.auto import tqdm

    from echokdm.baselines.flow import tvl1_flow

    stack = np.asarray(frames)
    if stack.ndim != 3 or not np.issubdtype(stack.dtype, np.number):
        raise ValueError(f"frames must be a (T, H, W) array of numbers, got shape {stack.shape}, dtype {stack.dtype}")
    points = np.asarray(keypoints, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"keypoints must be (N, 2) (x, y) pixels, got shape {points.shape}")
    n_frames = len(stack)
    end = n_frames if stop is None else int(stop)
    if not 0 <= int(start) < end <= n_frames:
        raise ValueError(f"start={start}, stop={stop} must satisfy 0 <= start < stop <= {n_frames} (the clip's frames)")
    start = int(start)
    if attachment <= 0 or batch < 1:
        raise ValueError(f"attachment must be > 0 and batch >= 1, got {attachment} and {batch}")
    work, scale_xy = _working_frames(stack[start:end].astype(np.float32), max_size)
    finite = np.isfinite(points).all(axis=1)
    current = np.where(finite[:, None], points * scale_xy, 0.0)
    out = np.full((end - start, len(points), 2), np.nan, dtype=np.float64)
    out[0] = current
    bar = tqdm(total=end - start - 1, desc="speckle tracking", unit="frame", disable=not progress)
    for first in range(0, end - start - 1, batch):
        last = min(first + batch, end - start - 1)
        flows = tvl1_flow(work[first + 1:last + 1], work[first:last], attachment=attachment)
        for i, flow in enumerate(flows.reshape(-1, *flows.shape[-3:])):
            current = current + _sample(flow, current)
            out[first + i + 1] = current
        bar.update(last - first)
    bar.close()
    marks = sorted({int(a) - start for a in np.atleast_1d(np.asarray(anchors, dtype=np.int64))
                    if start < int(a) < end})
    if marks:
        _remove_drift(out, work, marks, attachment)
    out /= scale_xy
    out[:, ~finite] = np.nan
    out[0] = points
    return out.astype(np.float32)


def _working_frames(frames: np.ndarray, max_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` resized (antialiased) so the longer side is at most ``max_size``, and the ``(x, y)``
    scale from the original pixels to the working ones."""
    height, width = frames.shape[1:]
    if max_size is None or max(height, width) <= max_size:
        return frames, np.ones(2)
    from echokdm.geometry.resize import resize_images

    scale = max_size / max(height, width)
    size = (max(8, round(height * scale)), max(8, round(width * scale)))
    return resize_images(frames, size, antialias=True), np.array([size[1] / width, size[0] / height])


def _remove_drift(track: np.ndarray, frames: np.ndarray, marks: list[int], attachment: float) -> None:
    """Subtract, in place, the drift of ``track`` ``(T, N, 2)`` measured at the frames ``marks`` (the
    source's phase in later beats) by flow taken directly from ``frames[0]``, interpolated in time."""
    from echokdm.baselines.flow import tvl1_flow

    origin = track[0]
    flows = tvl1_flow(frames[marks], np.broadcast_to(frames[0], frames[marks].shape), attachment=attachment)
    flows = flows.reshape(-1, *flows.shape[-3:])
    drift = np.stack([track[m] - (origin + _sample(flows[i], origin)) for i, m in enumerate(marks)])
    times = np.arange(len(track))
    for k in range(track.shape[1]):
        for c in (0, 1):
            track[:, k, c] -= np.interp(times, [0, *marks], [0.0, *drift[:, k, c]])


def own_motion_keypoints(frames: Any, sequence: np.ndarray, source_index: int, stop: int | None = None, *,
                         method: str = "tracking", source_keypoints: np.ndarray | None = None,
                         anchors: Any = (), progress: bool = False) -> np.ndarray:
    """The clip's own keypoint sequence for an own beat from ``source_index``, by ``method``.

    ``"segmentation"`` returns ``sequence`` (keypoints of every frame) unchanged. ``"tracking"``
    returns a copy of it whose frames ``source_index .. stop - 1`` are the source frame's keypoints
    (``source_keypoints`` when given, else ``sequence[source_index]``) carried by
    :func:`track_keypoints` (drift removed at ``anchors``); the frames before the source keep their own.
    Feed the result to
    :func:`~echokdm.generation.motion.own_beat`.
    """
    if method not in ("tracking", "segmentation"):
        raise ValueError(f"method must be 'tracking' or 'segmentation', got {method!r}")
    seq = np.asarray(sequence, dtype=np.float32)
    if method == "segmentation":
        return seq
    start_kp = seq[source_index] if source_keypoints is None else np.asarray(source_keypoints, np.float32)
    if not np.isfinite(start_kp).all():
        raise ValueError(f"frame {source_index} has no keypoints to track from (its segmentation failed); "
                         "pick another --frame, give --keypoints, or use --own-motion segmentation")
    tracked = track_keypoints(frames, start_kp, source_index, stop, anchors=anchors, progress=progress)
    out = seq.copy()
    out[source_index:source_index + len(tracked)] = tracked
    return out


def phase_anchors(sequence: np.ndarray, source_index: int, stop: int | None = None,
                  fps: float | None = None) -> list[int]:
    """Frames at the source frame's phase in the later beats, for :func:`track_keypoints`' drift
    correction: each later end-diastole (:func:`~echokdm.geometry.volumes.cardiac_cycle` on the
    sequence's Simpson volumes) plus the source's offset from the end-diastole before it (or the
    first one after it). Empty when fewer than two beats are found."""
    import warnings

    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

    seq = np.asarray(sequence, dtype=np.float32)
    end = len(seq) if stop is None else int(stop)
    volumes = simpson_volume(seq)
    if np.isfinite(volumes).sum() < 3:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eds = [int(e) for e in cardiac_cycle(volumes, fps).ed_frames]
    if len(eds) < 2:
        return []
    before = [e for e in eds if e <= source_index]
    offset = source_index - (before[-1] if before else eds[0])
    return [e + offset for e in eds if source_index + 2 < e + offset < end]


class OwnBeat(NamedTuple):
    """What :func:`own_beat_motion` returns: ``source_keypoints`` ``(40, 2)``, ``targets``
    ``(T, 40, 2)`` (``targets[0]`` is the source), ``method`` ("tracking" or "segmentation") and
    ``ef_segmentation``: the EF (%) of the clip's per-frame keypoints over the same frames (NaN
    when not measurable), the figure to report for the beat, whatever drove it; ``note`` why
    "auto" fell back to the segmentation ("" otherwise)."""

    source_keypoints: np.ndarray
    targets: np.ndarray
    method: str
    ef_segmentation: float
    note: str = ""


def own_beat_motion(cine, sequence: np.ndarray, source_index: int, stop: int | None = None, *,
                    method: str = "auto", given_sequence: bool = False, source_keypoints: np.ndarray | None = None,
                    prefer_source: bool = False, spacing_mm: tuple[float, float] | None = None,
                    max_ef_drop: float = 10.0, progress: bool = False) -> OwnBeat:
    """A clip's own beat from ``source_index``: what ``echokdm generate --own``, the app and the
    demo use.

    ``method="auto"`` tracks (:func:`track_keypoints`) when ``sequence`` came from a segmentation
    network, and uses ``sequence`` as it is when it was given (``given_sequence``) or when the clip
    is labelled on every frame (``cine.masks``). The source keypoints are ``source_keypoints`` when
    ``prefer_source`` (keypoints the user gave) or when the source frame has none of its own, else
    ``sequence[source_index]`` (:func:`~echokdm.generation.motion.own_beat`). ``cine`` is the clip
    (its ``frames``, ``masks``, ``labelled_frames`` and ``fps`` are read) or, for frames alone
    without labels or frame rate, a ``(T, H, W)`` array.

    On the classic phantom tracked keypoints are 0.3 px from the truth with an EF bias of -1
    point; on the dim realistic phantom TV-L1 moves the wall a third as far (EF bias -31: its data
    term shrinks with the contrast). So "auto" checks the tracked beat against the segmentation: when the
    tracked keypoints' EF is more than ``max_ef_drop`` points below the segmentation's over the
    same frames, the tracking lost the wall and the segmentation's keypoints drive the beat
    (``note`` says so). An explicit ``method="tracking"`` never falls back.
    """
    from echokdm.generation.loop import fully_labelled, loop_ef
    from echokdm.generation.motion import own_beat

    if method not in OWN_MOTIONS:
        raise ValueError(f"own motion must be one of {OWN_MOTIONS}, got {method!r}")
    seq = np.asarray(sequence, dtype=np.float32)
    bare = isinstance(cine, np.ndarray)
    frames, fps = (cine, None) if bare else (cine.frames, getattr(cine, "fps", None))
    checked = method == "auto"
    if method == "auto":
        method = "segmentation" if given_sequence or (not bare and fully_labelled(cine)) else "tracking"
    end = len(seq) if stop is None else int(stop)
    ef = loop_ef(seq[source_index:end], spacing_mm)
    note = ""
    if method == "tracking":
        start = seq[source_index] if 0 <= source_index < len(seq) else None
        has_given = source_keypoints is not None and np.isfinite(np.asarray(source_keypoints, np.float64)).all()
        if has_given and (prefer_source or start is None or not np.isfinite(start).all()):
            start = np.asarray(source_keypoints, np.float32)
        anchors = phase_anchors(seq, source_index, stop, fps)
        tracked = own_motion_keypoints(frames, seq, source_index, stop, source_keypoints=start, anchors=anchors,
                                       progress=progress)
        ef_tracked = loop_ef(tracked[source_index:end], spacing_mm)
        if checked and np.isfinite(ef) and not ef_tracked >= ef - max_ef_drop:
            method = "segmentation"
            note = (f"speckle tracking lost the wall (EF {ef_tracked:.1f} % against the segmentation's {ef:.1f} %), "
                    "so the segmentation's keypoints drive the beat")
        else:
            seq = tracked
    src, targets = own_beat(seq, source_index, stop, source_keypoints=source_keypoints, prefer_source=prefer_source)
    return OwnBeat(src, targets, method, float(ef), note)


def clip_ef_target(loop, beat: OwnBeat):
    """``loop`` (a :class:`~echokdm.generation.loop.GeneratedLoop`) with its EF target set to the
    clip's segmented EF when ``beat`` was tracked (returned as is otherwise).

    Tracked keypoints follow the tissue and their own EF reads low, so the EF to hold the generated
    frames against is the clip's, measured by the segmentation as the generated frames are. The
    tracked keypoints' EF stays in ``loop.metadata["ef_tracked_keypoints"]``.
    """
    if beat.method != "tracking":
        return loop
    loop.metadata["ef_tracked_keypoints"] = loop.ef_target
    loop.metadata["ef_target_from"] = "the clip's segmentation keypoints (the motion was speckle-tracked)"
    loop.ef_target = None if np.isnan(beat.ef_segmentation) else float(beat.ef_segmentation)
    return loop
