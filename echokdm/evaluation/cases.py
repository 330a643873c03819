"""Evaluation cases: one source frame and the frames of one heart beat to reproduce, per clip.

For every clip of the evaluated split the source is the end-diastolic (ED) frame of the first
complete beat (the largest LV volume before the first end-systole) and the targets are frames of
the rest of that beat up to the next ED, evenly subsampled to at most ``max_targets`` and always
including the end-systolic (ES) frame, so that the generated loop has an ejection fraction to
compare. Everything is resized to the model's square frame size; keypoints follow the resize.

Keypoints come from the phantom's exact ones when the manifest is a phantom cohort, else from the
masks on every frame, else from ``echokdm segment`` masks; reference flows (for the flow EPE and the
temporal-consistency reference) are the phantom's exact flows when available, and absent
otherwise (the EPE columns are then NaN: no metric is invented from an estimate).

Beats without ground truth, for the realism tables (:mod:`echokdm.evaluation.realism`):
:func:`new_ef_case` (the source heart at another EF, as ``generate --ef``) and :func:`transfer_case`
(another patient's beat, as ``generate --transfer``) keep a case's source and replace its targets.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["BEATS", "EvalCase", "choose_frames", "load_case", "new_ef_case", "own_ef", "transfer_case"]

#: The beats an evaluation can ask for: the clip's own (with ground truth), one at a new EF, another
#: patient's motion.
BEATS = ("own", "new_ef", "transfer")


@dataclasses.dataclass
class EvalCase:
    """One clip's evaluation case, at the model's frame size ``S``.

    Attributes
    ----------
    clip_id, patient_id, dataset : str
        Identifiers (manifest columns).
    frames : numpy.ndarray
        ``float32`` ``(T, S, S)`` in [0, 1], the whole clip resized.
    keypoints : numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels at size ``S`` (NaN where unknown).
    source : int
        Source frame index (ED).
    targets : numpy.ndarray
        ``int64`` ``(K,)`` target frame indices, increasing, all after ``source``.
    reference_flows : numpy.ndarray or None
        ``float32`` ``(K, 2, S, S)`` exact source → target flows (target grid, pointing into the
        source, pixels), or None when the clip has no ground truth.
    step_flows : numpy.ndarray or None
        ``float32`` ``(K - 1, 2, S, S)`` exact flows between consecutive targets (for the
        temporal warping error), or None.
    spacing_mm : tuple of float or None
        ``(dx, dy)`` mm per pixel at size ``S`` (the clip's spacing times its resize factor).
    fps : float or None
        The clip's frame rate.
    beat : {"own", "new_ef", "transfer"}
        Whose motion the targets follow (:data:`BEATS`). For ``new_ef`` and ``transfer``
        (:func:`new_ef_case`, :func:`transfer_case`) there is no real target: ``frames`` holds the
        source only (``source`` 0), ``keypoints`` the source then the ``K`` target poses, and
        ``targets`` is ``1 … K``.
    motion : str
        What the targets are, for the tables: ``""`` (own beat), ``"ef=30"`` or ``"from=<clip_id>"``.
    ef_keypoints : numpy.ndarray or None
        ``(T, 40, 2)`` keypoints the EF target is read from when they are not ``keypoints``: the
        segmentation's, when the own beat's motion was speckle-tracked (whose EF reads low).
    keypoint_source : str
        Where the target keypoints came from: ``"phantom"``, ``"masks"`` (the clip's own or a
        segmentation's, every frame), ``"tracking"`` (the source frame's carried by speckle tracking).
    """

    clip_id: str
    patient_id: str
    dataset: str
    frames: np.ndarray
    keypoints: np.ndarray
    source: int
    targets: np.ndarray
    reference_flows: np.ndarray | None = None
    step_flows: np.ndarray | None = None
    spacing_mm: tuple[float, float] | None = None
    fps: float | None = None
    beat: str = "own"
    motion: str = ""
    ef_keypoints: np.ndarray | None = None
    keypoint_source: str = ""

    @property
    def size(self) -> int:
        return int(self.frames.shape[-1])


def choose_frames(volumes: np.ndarray, max_targets: int, fps: float | None = None) -> tuple[int, np.ndarray]:
    """Source (ED) and target frames of one beat from a volume curve.

    Parameters
    ----------
    volumes : numpy.ndarray
        ``(T,)`` LV volumes in any unit (NaN allowed).
    max_targets : int
        Most targets (>= 2); the ES frame is always among them.
    fps : float, optional
        Frame rate, for the beat detection of :func:`~echokdm.geometry.volumes.cardiac_cycle`.

    Returns
    -------
    source : int
    targets : numpy.ndarray
        ``int64`` ``(K,)``, ``2 <= K <= max_targets`` increasing indices after ``source``.
    """
    from echokdm.geometry.volumes import cardiac_cycle

    if max_targets < 2:
        raise ValueError(f"max_targets must be >= 2, got {max_targets}")
    v = np.asarray(volumes, dtype=np.float64)
    if len(v) < 3:
        raise ValueError(f"a clip needs at least 3 frames to evaluate, got {len(v)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cycle = cardiac_cycle(v, fps)
    filled = np.where(np.isfinite(v), v, np.nanmin(v) if np.isfinite(v).any() else 0.0)
    if len(cycle.ed_frames) and cycle.es_frames[0] > cycle.ed_frames[0]:
        source, es = int(cycle.ed_frames[0]), int(cycle.es_frames[0])
        later = cycle.ed_frames[cycle.ed_frames > es]
        end = int(later[0]) if len(later) else len(v) - 1
    elif len(cycle.ed_frames) and cycle.ed_frames[0] < len(v) - 1:
        # a clip read as a filling (its ES before its ED, e.g. pydicom's real cine: ES 0, ED 18): the beat from ED
        # runs to the clip's end (it had been cut to the two frames after ED)
        source, end = int(cycle.ed_frames[0]), len(v) - 1
        es = source + 1 + int(np.argmin(filled[source + 1:end + 1]))
    else:  # no beat found: largest volume, then up to the end of the clip
        source = int(np.argmax(filled[: max(1, len(v) - 2)]))
        end = len(v) - 1
        es = source + 1 + int(np.argmin(filled[source + 1:end + 1]))
    span = np.arange(source + 1, end + 1)
    if len(span) < 2:
        span = np.arange(source + 1, min(len(v), source + 3))
    if len(span) <= max_targets:
        return source, span.astype(np.int64)
    picks = span[np.round(np.linspace(0, len(span) - 1, max_targets)).astype(int)]
    if es not in picks and source < es <= end:
        picks[np.argmin(np.abs(picks - es))] = es
    return source, np.unique(picks).astype(np.int64)


def _own_motion(kp: np.ndarray, frames: np.ndarray, source: int, targets: np.ndarray, mode: str,
                networks: bool, own_motion: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(motion keypoints, EF keypoints or None, keypoint source)`` of an own-beat case; ``networks``: the
    keypoints come from a network's masks."""
    from echokdm.generation.tracking import OWN_MOTIONS, own_beat_motion

    if own_motion not in OWN_MOTIONS:
        raise ValueError(f"own_motion must be one of {OWN_MOTIONS}, got {own_motion!r}")
    if own_motion == "segmentation" or (own_motion == "auto" and not networks):
        return kp, None, mode
    end = int(targets[-1]) + 1
    beat = own_beat_motion(np.asarray(frames), kp, source, end, method=own_motion)
    if beat.method != "tracking":
        return kp, None, mode
    tracked = kp.copy()
    tracked[source:end] = beat.targets
    return tracked, kp.astype(np.float32), "tracking"


def load_case(row: pd.Series, manifest_path: str | Path, size: int, *, max_targets: int = 8,
              keypoints: str = "auto", segmentation: str | None = None,
              truth: dict[str, Path] | None = None, own_motion: str = "auto",
              segmentation_model=None) -> EvalCase:
    """Read one manifest row into an :class:`EvalCase` at frame size ``size``.

    Parameters
    ----------
    row : pandas.Series
        A manifest row.
    manifest_path : path
        The manifest (its folder holds ``ground_truth.csv`` for a phantom cohort).
    size : int
        Model frame size (square).
    max_targets : int
        Targets per clip.
    keypoints : {"auto", "phantom", "masks"}
        ``auto`` = phantom when the clip has ground truth, else masks (the clip's own on every
        frame, or ``segmentation``'s).
    segmentation : str, optional
        Output folder of ``echokdm segment`` (masks of unlabelled frames).
    segmentation_model : LVSegmentationNet or path, optional
        Without ``segmentation``, a clip that lacks a mask on some frame is segmented here by this
        model, inside its ultrasound fan (:func:`~echokdm.generation.loop.clip_keypoints`, as
        ``echokdm generate`` does), instead of being skipped.
    truth : dict, optional
        ``clip_id → ground-truth .npz`` (:func:`echokdm.data.ground_truth.ground_truth_files`), looked up
        when None.
    own_motion : {"auto", "tracking", "segmentation"}
        As ``echokdm generate --own-motion``: ``auto`` carries the source frame's keypoints through
        the beat by speckle tracking when the keypoints come from ``segmentation`` (a network's
        masks), unless the tracking lost the wall
        (:func:`~echokdm.generation.tracking.own_beat_motion`); the EF target stays the
        segmentation's (``ef_keypoints``).
    """
    from echokdm.data.echo_pairs import echo_clip_keypoints
    from echokdm.data.ground_truth import ground_truth_files
    from echokdm.data.manifest import read_clip
    from echokdm.data.pairs import scale_keypoints
    from echokdm.generation.loop import clip_keypoints, fully_labelled
    from echokdm.geometry.resize import resize_flow, resize_images
    from echokdm.geometry.volumes import simpson_volume

    truth = ground_truth_files(manifest_path) if truth is None else truth
    clip_id = str(row["clip_id"])
    has_truth = clip_id in truth
    mode = ("phantom" if has_truth else "masks") if keypoints == "auto" else keypoints
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_clip(row)
    networks = mode == "masks" and bool(segmentation)
    if mode == "masks" and not segmentation and segmentation_model is not None and not fully_labelled(cine):
        kp = scale_keypoints(clip_keypoints(cine, segmentation_model), cine.frames.shape[-2:], size)
        clip, networks = (echo_clip_keypoints(cine, row, "phantom", truth, size)[1] if has_truth else None), True
    else:
        kp, clip = echo_clip_keypoints(cine, row, mode, truth, size, segmentation=segmentation, need_truth=has_truth)
    frames = resize_images(cine.frames, size, dtype=np.uint8).astype(np.float32) / 255.0
    source, targets = choose_frames(simpson_volume(kp), max_targets, cine.fps)
    kp, ef_kp, kp_source = _own_motion(kp, frames, source, targets, mode, networks, own_motion)
    ref = steps = None
    if clip is not None:
        ref = np.stack([resize_flow(clip.flow(source, int(t)), size) for t in targets]).astype(np.float32)
        steps = np.stack([resize_flow(clip.flow(int(a), int(b)), size)
                          for a, b in itertools.pairwise(targets)]).astype(np.float32)
    dataset = row.get("dataset", "")
    return EvalCase(clip_id=clip_id, patient_id=str(row["patient_id"]),
                    dataset=str(dataset) if isinstance(dataset, str) and dataset else "default",
                    frames=frames, keypoints=kp.astype(np.float32), source=source, targets=targets,
                    ef_keypoints=ef_kp, keypoint_source=kp_source,
                    reference_flows=ref, step_flows=steps,
                    spacing_mm=None if cine.spacing_mm is None else (cine.spacing_mm[0] * cine.width / size,
                                                                     cine.spacing_mm[1] * cine.height / size),
                    fps=float(cine.fps) if cine.fps else None)


# ---------------------------------------------------------------------------------------------
# beats without ground truth: a new EF, another patient's motion
# ---------------------------------------------------------------------------------------------


def _motion_case(case: EvalCase, target_keypoints: np.ndarray, beat: str, motion: str) -> EvalCase:
    """``case``'s source frame with the target poses ``(K, 40, 2)`` (see :class:`EvalCase` ``beat``)."""
    keypoints = np.concatenate([case.keypoints[case.source][None], target_keypoints]).astype(np.float32)
    return EvalCase(clip_id=case.clip_id, patient_id=case.patient_id, dataset=case.dataset,
                    frames=case.frames[case.source][None], keypoints=keypoints, source=0,
                    targets=np.arange(1, len(target_keypoints) + 1, dtype=np.int64), spacing_mm=case.spacing_mm,
                    fps=case.fps, beat=beat, motion=motion)


def own_ef(case: EvalCase) -> float:
    """EF (%) of the case's own beat: Simpson volumes of its source and target keypoints."""
    from echokdm.geometry.volumes import simpson_volume

    v = simpson_volume(case.keypoints[[case.source, *case.targets]])
    return float(100.0 * (np.nanmax(v) - np.nanmin(v)) / np.nanmax(v))


def new_ef_case(case: EvalCase, ef: float) -> EvalCase:
    """The case's source heart beating at EF ``ef`` (%), as ``echokdm generate --ef`` makes it.

    :func:`~echokdm.generation.motion.synthetic_motion` from the source keypoints, with the heart
    rate that makes the beat last as long as the clip's own (source to the next ED), sampled at the
    same frame offsets as the own beat's targets, so the two beats have the same timing.
    """
    from echokdm.generation.motion import synthetic_motion

    offsets = (case.targets - case.source).astype(int)  # (K,), the last one is the next ED
    n = int(offsets[-1])
    fps = case.fps or 50.0
    heart_rate = 60.0 * fps / n
    beat = synthetic_motion(case.keypoints[case.source], ef, heart_rate, fps, (n + 1) / n)  # (n + 1, 40, 2)
    return _motion_case(case, beat[np.minimum(offsets, len(beat) - 1)], "new_ef", f"ef={ef:g}")


def transfer_case(case: EvalCase, donor: EvalCase) -> EvalCase:
    """The case's source heart moving as ``donor``'s own beat
    (:func:`~echokdm.generation.motion.transfer_motion`, as ``echokdm generate --transfer``), at the
    donor's target frames."""
    from echokdm.generation.motion import transfer_motion

    stop = int(donor.targets[-1]) + 1
    motion = transfer_motion(case.keypoints[case.source], donor.keypoints, donor.source, stop)  # (stop - source, 40, 2)
    return _motion_case(case, motion[donor.targets - donor.source], "transfer", f"from={donor.clip_id}")
