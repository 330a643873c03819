"""Generate, compare and export loops for the app with the functions ``echokdm generate`` uses.

* models: :func:`load_models` resolves ``--pipeline`` / ``--segmentation`` as every command does
  (:func:`echokdm.pretrained.resolve_checkpoint`: a folder, else a packaged name) and keeps them loaded;
* source: :func:`~echokdm.generation.loop.source_from_file` and the ultrasound fan
  (:func:`~echokdm.io.fan.source_fan`), outputs masked to it as in the CLI;
* motions: :func:`~echokdm.generation.motion.own_motion` on :func:`~echokdm.generation.loop.clip_keypoints`
  (the clip's own beat), :func:`~echokdm.generation.motion.transfer_motion` (another clip's beat from its
  ED frame), :func:`~echokdm.generation.ef_control.generate_ef_loop` (EF and heart rate) and
  :func:`~echokdm.generation.motion.drag_motion` (keypoints dragged);
* loops: :func:`~echokdm.generation.loop.generate_loop` with a
  :class:`~echokdm.generation.settings.SamplingSettings`;
* files: :func:`~echokdm.generation.export.write_loop` for the real | generated video and for every export
  (MP4, GIF, synthetic DICOM, NIfTI), the CLI's writer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from echokdm.generation.settings import DEFAULT_FPS, SamplingSettings

__all__ = ["MOTIONS", "LoopRequest", "Models", "export_loop", "generate", "load_models", "side_by_side_video"]

#: Motions the app offers, by the name ``generate.json`` gives them.
MOTIONS = {"own": "the clip's own beat", "transfer": "another clip's beat", "synthetic": "EF and heart rate",
           "drag": "keypoints dragged"}


@dataclasses.dataclass
class Models:
    """The loaded KDM pipeline and segmentation model (``None`` when not given) and their folders."""

    pipeline: object
    segmentation: object | None
    pipeline_folder: Path
    segmentation_folder: Path | None


_LOADED: dict[tuple, Models] = {}


def load_models(pipeline: str | os.PathLike, segmentation: str | os.PathLike | None = None, *,
                device: str | None = None) -> Models:
    """The models named by ``pipeline`` and ``segmentation`` (folders or packaged names, see
    :func:`echokdm.pretrained.resolve_checkpoint`), loaded once per process."""
    import torch

    from echokdm.generation.loop import load_segmentation
    from echokdm.pipelines.kdm import KDMPipeline
    from echokdm.pretrained import resolve_checkpoint

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe_folder = resolve_checkpoint(pipeline, "pipeline")
    seg_folder = None if not segmentation else resolve_checkpoint(segmentation, "segmentation")
    key = (str(pipe_folder), str(seg_folder), device)
    if key not in _LOADED:
        pipe = KDMPipeline.from_pretrained(pipe_folder).to(device)
        seg = None if seg_folder is None else load_segmentation(seg_folder)
        _LOADED[key] = Models(pipe, seg, Path(pipe_folder), None if seg_folder is None else Path(seg_folder))
    return _LOADED[key]


@dataclasses.dataclass(frozen=True)
class LoopRequest:
    """What to generate from one source frame: the motion and its options (the options of
    ``echokdm generate``, same defaults).

    ``motion`` one of :data:`MOTIONS`; ``frames``: at most this many frames (own / transfer), the loop
    length source → target → back (drag); ``other`` the clip whose beat is transferred and ``other_ed``
    its ED frame (default: the first ED ``echokdm ef`` finds); ``drags`` ``{keypoint: (dx, dy)}``
    pixels, spread to neighbours by ``drag_sigma`` keypoints.
    """

    motion: str = "own"
    frame: int = 0
    frames: int | None = None
    other: str | None = None
    other_ed: int | None = None
    ef: float = 55.0
    heart_rate: float = 70.0
    beats: float = 1.0
    ef_attempts: int = 3
    ef_tolerance: float = 2.0
    drags: Mapping[int, tuple[float, float]] = dataclasses.field(default_factory=dict)
    drag_sigma: float = 3.0
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {self.motion!r}")
        if self.frame < 0:
            raise ValueError(f"source frame must be >= 0, got {self.frame}")
        if self.frames is not None and self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.motion == "synthetic" and not 0 < self.ef < 100:
            raise ValueError(f"EF must be a percentage within (0, 100), got {self.ef:g}")
        if self.motion == "transfer" and not self.other:
            raise ValueError("another clip's beat: choose the other clip first")
        if self.motion == "drag" and not self.drags:
            raise ValueError("keypoints dragged: move at least one keypoint (click it, then its new place)")


def _stop(start: int, n_frames: int | None, total: int) -> int | None:
    """At most ``n_frames`` from ``start`` within the clip's ``total`` frames (None: to its end)."""
    return None if n_frames is None else min(start + n_frames, total)


def _own_targets(request: LoopRequest, source, seg):
    """The clip's own beat from the source frame on (:class:`~echokdm.generation.tracking.OwnBeat`)."""
    from echokdm.generation.loop import clip_keypoints
    from echokdm.generation.tracking import own_beat_motion

    seq = clip_keypoints(source.cine, seg)
    # as echokdm generate --own: speckle tracking when the keypoints come from the segmentation model
    beat = own_beat_motion(source.cine, seq, request.frame, _stop(request.frame, request.frames, len(seq)),
                           source_keypoints=source.keypoints, spacing_mm=source.spacing_mm)
    return beat


def _transfer_targets(request: LoopRequest, source, seg) -> tuple[np.ndarray, float | None, int]:
    """``(targets, fps of the other clip, its ED frame)``."""
    from echokdm.app.clip import open_clip
    from echokdm.generation.loop import clip_keypoints
    from echokdm.generation.motion import first_end_diastole, transfer_motion

    other = open_clip(request.other, segmentation=seg)
    seq = clip_keypoints(other.cine, seg)
    ed = request.other_ed
    if ed is None:  # as echokdm generate --transfer: the first end-diastole of the keypoints that drive the motion
        try:
            ed = first_end_diastole(seq, other.fps, str(request.other))
        except ValueError as err:
            raise ValueError(f"{err}; give its ED frame") from None
    return transfer_motion(source.keypoints, seq, ed, _stop(ed, request.frames, len(seq))), other.fps, ed


def _common(request: LoopRequest, source, models: Models, sampling: SamplingSettings, fan_mask,
            progress: bool) -> dict:
    return {"spacing_mm": source.spacing_mm, "sampling": sampling, "segmentation": models.segmentation,
            "progress": progress, "fan_mask": fan_mask, "source_index": request.frame,
            "patient_id": source.patient_id}


def generate(path: str | os.PathLike, request: LoopRequest, models: Models, sampling: SamplingSettings, *,
             format: str | None = None, progress: bool = True):
    """Generate one loop from frame ``request.frame`` of the clip at ``path``, as ``echokdm generate``.

    Returns ``(loop, real frames (T', H, W) for the side-by-side video (masked to the fan), fan mask)``;
    the loop is a :class:`~echokdm.generation.loop.GeneratedLoop` (``ef_achieved`` re-measured by the
    segmentation model when there is one).
    """
    from echokdm.generation.loop import generate_loop, source_from_file
    from echokdm.io.fan import apply_fan, source_fan

    seg = models.segmentation
    source = source_from_file(path, request.frame, segmentation=seg, format=format, apex_direction="auto")
    fan = source_fan(source.cine)
    fan.check(str(path))
    fan_mask = fan.mask
    common = _common(request, source, models, sampling, fan_mask, progress)
    metadata = {"motion": request.motion, "frame": request.frame, "fan_mask": fan.method}
    fps = request.fps or source.fps or DEFAULT_FPS
    if request.motion == "synthetic":
        from echokdm.generation.ef_control import generate_ef_loop

        loop = generate_ef_loop(models.pipeline, source.frame, source.keypoints, request.ef,
                                heart_rate_bpm=request.heart_rate, fps=request.fps or source.fps or DEFAULT_FPS,
                                n_beats=request.beats, calibrate=seg is not None and request.ef_attempts > 1,
                                tolerance=request.ef_tolerance, max_attempts=request.ef_attempts,
                                metadata={**metadata, "ef_requested": request.ef}, **common)
    else:
        beat = None
        if request.motion == "own":
            beat = _own_targets(request, source, seg)
            src_kp, targets = beat.source_keypoints, beat.targets
            metadata["own_motion"] = beat.method
        elif request.motion == "transfer":
            targets, other_fps, ed = _transfer_targets(request, source, seg)
            src_kp, fps = source.keypoints, request.fps or other_fps or fps
            metadata["transfer_ed"] = ed
        else:
            from echokdm.generation.motion import drag_motion

            src_kp = source.keypoints
            targets = drag_motion(src_kp, dict(request.drags), request.frames or 1, sigma=request.drag_sigma)
        loop = generate_loop(models.pipeline, source.frame, src_kp, targets, fps=fps, motion=request.motion,
                             metadata=metadata, **common)
        if beat is not None:
            from echokdm.generation.tracking import clip_ef_target

            loop = clip_ef_target(loop, beat)
    real = apply_fan(source.cine.frames[request.frame: request.frame + loop.n_frames], fan_mask)
    return loop, real, fan_mask


def side_by_side_video(folder: str | os.PathLike, loop, real: np.ndarray, *, stem: str = "loop") -> Path:
    """``<stem>_side_by_side.mp4`` in ``folder``: the real frames | the generated loop, labelled "real" and
    "generated" (:func:`~echokdm.generation.export.write_loop`, as ``echokdm generate --side-by-side``)."""
    from echokdm.generation.export import write_loop

    written = write_loop(folder, loop, formats=("mp4",), stem=stem, overwrite=True, side_by_side=real)
    return written["side_by_side"]


def export_loop(out: str | os.PathLike, loop, formats, *, stem: str, source: str | os.PathLike | None = None,
                source_format: str | None = None, overwrite: bool = False) -> dict[str, Path]:
    """Write a loop as ``echokdm generate`` does (:func:`~echokdm.generation.export.write_loop`): the
    ``formats`` (MP4, GIF, synthetic DICOM, NIfTI), keypoints CSV and preview; a DICOM source lends its
    allow-listed technical attributes to the synthetic DICOM."""
    from echokdm.generation.export import write_loop
    from echokdm.io.dispatch import guess_format

    extras = {}
    if source is not None and "dicom" in formats and (source_format or guess_format(source)) == "dicom":
        extras["source_dataset"] = Path(source)
    Path(out).mkdir(parents=True, exist_ok=True)
    return dict(write_loop(out, loop, formats=tuple(formats), stem=stem, overwrite=overwrite, **extras))
