"""Generation for any keypoint adapter: one frame + target keypoints → frames, with the same KDMPipeline.

The echo path (:mod:`echokdm.generation.loop`) adds what only hearts have (EF, Simpson volumes,
segmentation, DICOM); this module is what every adapter shares, used by ``echokdm generate`` when
the pipeline's adapter is not ``echo`` (faces, poses):

* :func:`read_edit_source` — the source frame of an image, a folder of frames or a video, and its
  keypoints from the adapter's files (or the adapter's detector);
* :func:`generate_keypoint_edit` — :class:`~echokdm.pipelines.KDMPipeline` on the source and a
  ``(T, N, 2)`` target trajectory (given keypoints, drag edits of
  :func:`~echokdm.generation.motion.drag_motion`, a sequence's own motion), at the pipeline's
  size and back (as :func:`~echokdm.generation.loop.generate_loop` does), with the keypoint
  distance MD of keypoints re-detected on the generated frames when a detector is given;
* :func:`write_keypoint_edit` — MP4, GIF, PNG frames, keypoints (wide CSV and the adapter's own
  per-frame files), flows, a preview with the conditioning image drawn over the frames, settings.

Keypoints are ``(x, y)`` pixels of the source frame (shared/DESIGN.md); frames grayscale ``(H, W)``
or, for a colour pipeline, RGB ``(H, W, 3)``, in [0, 1]; flows ``(T, 2, H, W)`` on each frame's grid pointing
into the source.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from echokdm.generation.settings import DEFAULT_FPS, SamplingSettings, sampling_from_keywords

__all__ = [
    "EDIT_FORMATS",
    "EditSource",
    "GeneratedEdit",
    "generate_keypoint_edit",
    "keypoint_distance",
    "read_edit_source",
    "read_keypoint_sequence",
    "write_keypoint_edit",
]

#: Formats :func:`write_keypoint_edit` writes.
EDIT_FORMATS = ("mp4", "gif", "png")


class EditSource(NamedTuple):
    """``frame`` ``float32`` ``(H, W)``; ``keypoints`` ``(N, 2)``; ``sequence`` ``(T, N, 2)`` of every
    frame when the source is a sequence with keypoint files for every frame (else None); ``frames``
    ``(T, H, W)`` of the whole source; ``keypoints_source`` ``"given"`` or ``"detected"``."""

    frame: np.ndarray
    keypoints: np.ndarray
    sequence: np.ndarray | None
    frames: np.ndarray
    keypoints_source: str


@dataclasses.dataclass
class GeneratedEdit:
    """Generated frames and what a writer needs.

    ``frames`` ``float32`` ``(T, H, W)``; ``keypoints`` ``(T, N, 2)`` target keypoints of each frame
    (the source keypoints on the source frame); ``flows`` ``(T, 2, H, W)``; ``gammas`` ``(T,)`` or
    None; ``detected`` ``(T, N, 2)`` re-detected keypoints and ``kp_md`` ``(T,)`` their mean
    distance to the targets (px, NaN without a detector); ``adapter`` name; ``fps``; ``metadata``.
    """

    frames: np.ndarray
    keypoints: np.ndarray
    flows: np.ndarray
    gammas: np.ndarray | None
    adapter: str
    fps: float
    detected: np.ndarray | None = None
    kp_md: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frames)


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------


def _source_frames(path: Path, channels: int = 1) -> np.ndarray:
    """``(T, H, W)`` (``channels=1``) or ``(T, H, W, 3)`` of an image, a folder of images or a video."""
    from echokdm.data.sequences import IMAGE_SUFFIXES, frame_files, read_image

    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise FileNotFoundError(f"{path}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        return np.stack([read_image(f, channels) for f in files])
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path, channels)[None]
    from echokdm.io.video import read_video

    frames = read_video(path).frames
    return frames if channels == 1 else np.repeat(frames[..., None], channels, axis=-1)


def read_keypoint_sequence(path: str | os.PathLike, adapter) -> np.ndarray:
    """``(T, N, 2)`` keypoints of one file, or of a folder with one file per frame (natural name order)."""
    from echokdm.data.sequences import natural_sort_key

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such keypoint file or folder")
    if path.is_dir():
        files = [p for p in sorted(path.iterdir(), key=natural_sort_key) if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise FileNotFoundError(f"{path}: no keypoint files in the folder")
        return np.concatenate([adapter.read_keypoints(f) for f in files]).astype(np.float32)
    return np.asarray(adapter.read_keypoints(path), dtype=np.float32)


def read_edit_source(path: str | os.PathLike, frame: int, adapter, keypoints: str | os.PathLike | None = None,
                     detector_model: Any = None, channels: int = 1) -> EditSource:
    """The source frame ``frame`` of ``path`` (image, folder of frames, video) and its keypoints.

    ``keypoints``: a file (one set, or one per frame) or a folder with one file per frame; without
    it the adapter's detector finds them (optional packages, see the adapter). ``channels``: 1
    reads grayscale ``(H, W)`` frames, 3 RGB ``(H, W, 3)`` (the pipeline's ``vae.config.in_channels``;
    a video is read gray and repeated).
    """
    from echokdm.adapters import get_adapter

    adapter = get_adapter(adapter)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such source image, folder or video")
    frames = _source_frames(path, channels)
    if not 0 <= frame < len(frames):
        raise ValueError(f"{path}: frame {frame} is outside its {len(frames)} frame(s)")
    if keypoints is None:
        kp = adapter.detect_keypoints(frames[frame:frame + 1], detector_model)[0]
        return EditSource(frames[frame], np.asarray(kp, np.float32), None, frames, "detected")
    seq = read_keypoint_sequence(keypoints, adapter)
    if len(seq) == 1:
        return EditSource(frames[frame], seq[0], None, frames, "given")
    if len(seq) != len(frames):
        raise ValueError(f"{keypoints}: {len(seq)} keypoint sets for the {len(frames)} frames of {path} "
                         "(give one set, or one per frame)")
    return EditSource(frames[frame], seq[frame], seq, frames, "given")


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------


def keypoint_distance(detected: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean distance (px) per frame between ``(T, N, 2)`` keypoint sets over the keypoints found in
    both; NaN for a frame with none."""
    with np.errstate(invalid="ignore"):
        d = np.linalg.norm(np.asarray(detected, np.float64) - np.asarray(target, np.float64), axis=-1)  # (T, N)
    out = np.full(len(d), np.nan)
    found = np.isfinite(d).any(axis=1)
    out[found] = np.nanmean(d[found], axis=1)
    return out


def _checked(adapter, frame, source_keypoints, targets, channels: int = 1) -> tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray]:
    frame = np.asarray(frame, dtype=np.float32)
    layout = "(H, W)" if channels == 1 else f"(H, W, {channels})"
    ok = frame.shape[2:] == (() if channels == 1 else (channels,))
    if not ok or frame.ndim < 2 or min(frame.shape[:2]) < 2 or not np.isfinite(frame).all():
        raise ValueError(f"source_frame must be one finite frame {layout} for this {channels}-channel pipeline, "
                         f"got shape {frame.shape}")
    src = adapter.check_keypoints(source_keypoints, "source_keypoints")
    if src.ndim != 2:
        raise ValueError(f"source_keypoints must be one set ({adapter.n_keypoints}, 2), got {src.shape}")
    tgt = adapter.check_keypoints(targets, "target_keypoints")
    return frame, src, (tgt[None] if tgt.ndim == 2 else tgt)


def generate_keypoint_edit(pipeline, source_frame: np.ndarray, source_keypoints: np.ndarray,
                           target_keypoints: np.ndarray, *, fps: float = DEFAULT_FPS,
                           sampling: SamplingSettings | None = None, include_source: bool = True,
                           detector_model: Any = None, detect: bool = False, progress: bool = True,
                           metadata: dict | None = None, **deprecated: Any) -> GeneratedEdit:
    """Generate one frame per target keypoint set with a KDM pipeline of any adapter.

    Parameters
    ----------
    pipeline : KDMPipeline or path
        Its ``adapter`` (saved in the folder) gives the keypoint schema.
    source_frame : numpy.ndarray
        ``(H, W)`` grayscale (``(H, W, C)`` for a ``C``-channel pipeline) in [0, 1], any size (resized
        to the pipeline's and back).
    source_keypoints : numpy.ndarray
        ``(N, 2)`` ``(x, y)`` pixels of the source frame.
    target_keypoints : numpy.ndarray
        ``(T, N, 2)`` or ``(N, 2)`` in the source frame's grid.
    fps : float
        Frame rate of the written video (default :data:`~echokdm.generation.settings.DEFAULT_FPS`).
    sampling : SamplingSettings, optional
        As :func:`~echokdm.generation.loop.generate_loop`, except ``fit_keypoints`` and ``fit_region``,
        which are not used: K2F's flow is taken as it is (face and pose keypoints are too sparse for a
        local fit).
    include_source : bool
        Start with the real source frame (zero flow); a first target equal to the source
        keypoints (within 1e-3 px) is that frame rather than a generated copy.
    detect : bool
        Re-detect keypoints on the generated frames with the adapter's detector (``detector_model``)
        and fill ``detected`` and ``kp_md``.
    **deprecated
        The old separate settings (``mode``, ``k``, ``num_inference_steps``, ``seed``,
        ``batch_size``): mapped onto ``sampling`` with a FutureWarning (for one release).

    Returns
    -------
    GeneratedEdit
    """
    from echokdm.adapters import get_adapter
    from echokdm.generation.loop import loop_frames, pipeline_size

    sampling = sampling_from_keywords(sampling, deprecated, "generate_keypoint_edit")
    if isinstance(pipeline, (str, os.PathLike)):
        from echokdm.pipelines.kdm import KDMPipeline

        pipeline = KDMPipeline.from_pretrained(pipeline)
    adapter = get_adapter(pipeline.adapter)
    frame, src, targets = _checked(adapter, source_frame, source_keypoints, target_keypoints,
                                   pipeline.vae.config.in_channels)
    # K2F's flow as it is (fit_keypoints and fit_region off): face and pose keypoints are too sparse
    # for a local fit, and their regions are not a wall
    frames, flows, keypoints, gammas, _ = loop_frames(
        pipeline, frame, src, targets, include_source=include_source, progress=progress,
        sampling=sampling.replace(fit_keypoints=False, fit_region=False))
    h, w = frame.shape[:2]
    detected = kp_md = None
    if detect:
        detected = np.asarray(adapter.detect_keypoints(frames, detector_model), np.float32)
        kp_md = keypoint_distance(detected, keypoints)
    info = {"adapter": adapter.name, "mode": sampling.mode, "k": sampling.k,
            "num_inference_steps": sampling.num_inference_steps, "seed": sampling.seed, "input_size": [h, w],
            "pipeline_size": list(pipeline_size(pipeline)), "source_included": bool(include_source),
            **(metadata or {})}
    return GeneratedEdit(frames=frames.astype(np.float32), keypoints=keypoints.astype(np.float32),
                         flows=flows.astype(np.float32), gammas=gammas, adapter=adapter.name, fps=float(fps),
                         detected=detected, kp_md=kp_md, metadata=info)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def _targets(out: Path, stem: str, formats: tuple[str, ...], suffix: str, n: int) -> list[Path]:
    paths = [out / f"{stem}_{name}" for name in ("keypoints.csv", "flows.npz", "preview.png", "generate.json")]
    paths += [out / f"{stem}.{f}" for f in formats if f in ("mp4", "gif")]
    if "png" in formats:
        paths += [out / f"{stem}_frames" / f"{t:04d}.png" for t in range(n)]
    paths += [out / f"{stem}_keypoints" / f"{t:04d}{suffix}" for t in range(n)]
    return paths


def _preview(edit: GeneratedEdit, adapter) -> np.ndarray:
    """``(H, W·K, 3)`` uint8: first, middle and last frames with the conditioning image drawn over them."""
    picks = sorted({0, (edit.n_frames - 1) // 2, edit.n_frames - 1})
    tiles = []
    for t in picks:
        frame = edit.frames[t]
        gray = np.repeat(frame[..., None], 3, axis=-1) if frame.ndim == 2 else frame  # (H, W, 3)
        lines = adapter.render(edit.keypoints[t], edit.frames.shape[1:3]).transpose(1, 2, 0)
        alpha = lines.max(axis=-1, keepdims=True)
        tiles.append(gray * (1 - alpha) + lines * alpha)
    return np.round(np.clip(np.concatenate(tiles, axis=1), 0, 1) * 255).astype(np.uint8)


def write_keypoint_edit(out: str | os.PathLike, edit: GeneratedEdit, *, stem: str = "edit",
                        formats: tuple[str, ...] | str = ("mp4", "gif", "png"), settings: dict | None = None,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write a :class:`GeneratedEdit` into ``out``; returns the paths by name.

    Files: ``<stem>.mp4`` / ``<stem>.gif`` / ``<stem>_frames/0000.png …`` (``formats``),
    ``<stem>_keypoints.csv`` (``frame, x0 … x{N-1}, y0 … y{N-1}``), ``<stem>_keypoints/0000<suffix> …``
    (the adapter's own format: ``.pts`` for faces, OpenPose JSON for poses), ``<stem>_flows.npz``
    (``flows``, ``keypoints``, ``gammas``, ``fps``), ``<stem>_preview.png`` and
    ``<stem>_generate.json`` (settings and the MD per frame). Every target is checked before
    anything is written: an existing one raises ``FileExistsError`` unless ``overwrite``.
    """
    from PIL import Image

    from echokdm.adapters import get_adapter
    from echokdm.io.atomic import atomic_output
    from echokdm.io.keypoint_files import write_keypoints_csv
    from echokdm.io.preview import write_png
    from echokdm.io.video import write_video

    formats = tuple(f.strip().lower() for f in formats.split(",")) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in EDIT_FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats {formats!r}: choose one or more of {', '.join(EDIT_FORMATS)} for adapter "
                         f"{edit.adapter!r} (DICOM and NIfTI are echo formats)")
    adapter = get_adapter(edit.adapter)
    out = Path(out)
    clashes = [p for p in _targets(out, stem, formats, adapter.keypoint_suffix, edit.n_frames) if p.exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, clashes[:3]))}: already exist(s); pass --overwrite to replace, "
                              "or choose another --out or --stem")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in ("mp4", "gif"):
        if fmt in formats:
            written[fmt] = write_video(out / f"{stem}.{fmt}", edit.frames, edit.fps, overwrite=overwrite)
    if "png" in formats:
        for t, frame in enumerate(edit.frames):
            write_png(out / f"{stem}_frames" / f"{t:04d}.png", frame, overwrite=overwrite)
        written["png"] = out / f"{stem}_frames"
    written["keypoints"] = write_keypoints_csv(out / f"{stem}_keypoints.csv", edit.keypoints, overwrite=overwrite)
    for t, kp in enumerate(edit.keypoints):
        adapter.write_keypoints(out / f"{stem}_keypoints" / f"{t:04d}{adapter.keypoint_suffix}", kp,
                                overwrite=overwrite)
    written["keypoint_files"] = out / f"{stem}_keypoints"
    with atomic_output(out / f"{stem}_flows.npz", overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, flows=edit.flows, keypoints=edit.keypoints, fps=np.float64(edit.fps),
                            gammas=np.zeros(0) if edit.gammas is None else np.asarray(edit.gammas, np.float64))
    written["flows"] = out / f"{stem}_flows.npz"
    with atomic_output(out / f"{stem}_preview.png", overwrite=overwrite) as tmp:
        Image.fromarray(_preview(edit, adapter), mode="RGB").save(tmp, format="PNG")
    written["preview"] = out / f"{stem}_preview.png"
    md = None if edit.kp_md is None else [None if not np.isfinite(v) else round(float(v), 4) for v in edit.kp_md]
    record = {**(settings or {}), **edit.metadata, "n_frames": edit.n_frames, "fps": edit.fps, "kp_md": md,
              "outputs": {k: str(v) for k, v in written.items()}}
    with atomic_output(out / f"{stem}_generate.json", overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    written["settings"] = out / f"{stem}_generate.json"
    return written
