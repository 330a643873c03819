"""Open one clip for the app: read it, find the LV, and measure it as the commands do.

:func:`open_clip` reads a file (DICOM, AVI/MP4, NIfTI, CAMUS, EchoNet, a still image) or one clip of
a manifest, then measures it the way ``echokdm segment``, ``echokdm keypoints`` and ``echokdm ef``
would: the clip's own masks or tracings when it has them, else the masks of the segmentation model
(:meth:`~echokdm.echo.segmentation.LVSegmentationNet.predict_masks`, as ``segment``), the 40 keypoints,
Simpson volumes and flags of every frame (:func:`~echokdm.metrics.lv_function.keypoints_table`, as
``keypoints``) and ED/ES and EF (:func:`~echokdm.metrics.lv_function.ef_table`, as ``ef``).
Nothing here measures anything itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from echokdm.geometry.keypoints import N_KEYPOINTS

__all__ = ["ClipView", "clip_summary", "is_manifest", "manifest_clips", "open_clip", "problem_line"]


@dataclasses.dataclass
class ClipView:
    """One opened clip and what the commands measure on it.

    Attributes
    ----------
    cine : echokdm.io.cine.Cine
        The clip as read (``frames`` ``float32`` ``(T, H, W)`` in [0, 1]).
    path : pathlib.Path
        The file it was read from.
    format : str or None
        Reader format (``None``: guessed from the file).
    masks : numpy.ndarray or None
        ``uint8`` ``(T, H, W)`` LV masks shown (the clip's own or the model's), ``None`` without any.
    mask_source : str
        ``"mask"``, ``"tracing"``, ``"segmentation"`` or ``""`` (nothing to measure with).
    keypoints : numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels, NaN on frames without keypoints.
    volumes : numpy.ndarray
        ``float64`` ``(T,)`` Simpson volumes (``volume_units``), NaN where unknown.
    volume_units : str
        ``"mL"`` or ``"px^3"``.
    frame_flags : list of str
        Per frame, ``""`` or the keypoints command's flags.
    ef : float
        EF in percent (NaN when not measurable).
    ed_frames, es_frames : list of int
        End-diastolic and end-systolic frames (the ``ef`` command's).
    flags : str
        The ``ef`` command's flags of the clip, ``"; "``-joined (``""`` when none).
    note : str
        Why nothing was measured, when ``mask_source`` is ``""``.
    """

    cine: object
    path: Path
    format: str | None
    masks: np.ndarray | None
    mask_source: str
    keypoints: np.ndarray
    volumes: np.ndarray
    volume_units: str
    frame_flags: list[str]
    ef: float
    ed_frames: list[int]
    es_frames: list[int]
    flags: str
    note: str = ""

    @property
    def n_frames(self) -> int:
        return int(self.cine.n_frames)

    @property
    def fps(self) -> float | None:
        return self.cine.fps


def is_manifest(path: str | os.PathLike) -> bool:
    """True for a manifest CSV (``echokdm manifest`` output), False for a clip file."""
    return Path(path).suffix.lower() == ".csv"


def manifest_clips(path: str | os.PathLike) -> pd.DataFrame:
    """The rows of a manifest (:func:`~echokdm.data.manifest.load_manifest`, paths made absolute)."""
    from echokdm.data.manifest import load_manifest

    return load_manifest(path)


def problem_line(path: str | os.PathLike | None, exc: BaseException) -> str:
    """One line for a file that cannot be opened: the file, then what is wrong with it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if path is None or str(path) in text or Path(str(path)).name in text:
        return text
    return f"{path}: {text}"


def _read(path: Path, clip_id: str | None, format: str | None):
    """``(cine, path, format)`` of a file, or of the clip ``clip_id`` of a manifest."""
    from echokdm.data.manifest import read_clip
    from echokdm.generation.loop import read_source

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not is_manifest(path):
        return read_source(path, format), path, format
    rows = manifest_clips(path)
    if clip_id is None:
        clip_id = str(rows["clip_id"].iloc[0])
    picked = rows[rows["clip_id"].astype(str) == str(clip_id)]
    if picked.empty:
        raise ValueError(f"{path}: no clip {clip_id!r} in the manifest")
    row = picked.iloc[0]
    return read_clip(row), Path(row["path"]), str(row["format"])


def _predicted_masks(cine, segmentation, predicted=None) -> tuple[np.ndarray, np.ndarray, str | tuple]:
    """``(shown, measured, apex side)``: the segmentation model's masks ``uint8`` ``(T, H, W)`` of every frame,
    inside the clip's ultrasound fan when one is found, repaired (a leak into the atrium cut at the annulus line)
    as ``echokdm segment`` writes them, and the network's own, which the keypoints measure as ``echokdm ef``
    does (:func:`echokdm.generation.loop.segment_clip`), with the apex on the sector's side (``"auto"`` without
    a fan), as ``ef`` reads a network's masks. ``predicted`` ``(shown, measured)``: masks already made."""
    from echokdm.generation.loop import load_segmentation, segment_clip
    from echokdm.io.fan import apex_direction_with_fan, fan_mask_or_none

    fan = fan_mask_or_none(cine)
    if predicted is None:
        predicted = segment_clip(load_segmentation(segmentation), cine.frames, fan)[:2]
    return predicted[0], predicted[1], apex_direction_with_fan(fan, "auto")


def _labelled_everywhere(cine) -> bool:
    return cine.masks is not None and (cine.labelled_frames is None or len(cine.labelled_frames) == cine.n_frames)


def _measured_cine(cine, segmentation, predicted=None):
    """``(cine to measure, masks shown, mask source, apex side)``: own masks on every frame, else the model's
    (``predicted`` ``(shown, network)`` when already segmented), else the clip's own labels (tracings, some
    masks); the apex side to measure them with (``"auto"``: from the masks' shape)."""
    if predicted is None and _labelled_everywhere(cine) and not cine.tracings:
        return cine, cine.masks, "mask", "auto"
    if segmentation is not None or predicted is not None:
        shown, network, side = _predicted_masks(cine, segmentation, predicted)
        measured = dataclasses.replace(cine, masks=network, labelled_frames=None, tracings=None)
        return measured, shown, "segmentation", side
    if cine.tracings:
        return cine, None, "tracing", "auto"
    if cine.masks is not None:
        return cine, cine.masks, "mask", "auto"
    return None, None, "", "auto"


def open_clip(path: str | os.PathLike, *, clip_id: str | None = None, segmentation=None,
              format: str | None = None, predicted: tuple[np.ndarray, np.ndarray] | None = None) -> ClipView:
    """Read a clip and measure it (module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A clip file, or a manifest CSV (then ``clip_id`` picks the clip; the first by default).
    segmentation : LVSegmentationNet or path, optional
        Model for clips that are not labelled on every frame.
    format : str, optional
        Reader format (:data:`echokdm.io.dispatch.FORMATS`); guessed by default.
    predicted : (numpy.ndarray, numpy.ndarray), optional
        The model's masks already made (``echokdm segment``'s ``masks`` and ``network``, ``(T, H, W)``), used
        instead of running ``segmentation`` and shown even on a clip with its own masks.

    Raises
    ------
    FileNotFoundError, echokdm.errors.ReadError, ValueError
        A missing or unreadable file, or a clip not in the manifest (the message names it).
    """
    from echokdm.metrics.lv_function import KEYPOINT_COLUMNS, ef_table, keypoints_table

    cine, source, fmt = _read(Path(path), clip_id, format)
    measured, masks, mask_source, side = _measured_cine(cine, segmentation, predicted)
    t = cine.n_frames
    keypoints = np.full((t, N_KEYPOINTS, 2), np.nan, np.float32)
    volumes = np.full(t, np.nan)
    frame_flags = [""] * t
    empty = ClipView(cine=cine, path=source, format=fmt, masks=masks, mask_source="", keypoints=keypoints,
                     volumes=volumes, volume_units="mL" if cine.spacing_mm else "px^3", frame_flags=frame_flags,
                     ef=math.nan, ed_frames=[], es_frames=[], flags="")
    if measured is None:
        return dataclasses.replace(empty, note="no LV masks or tracings in the clip: choose a segmentation model")
    manifest = pd.DataFrame([{"clip_id": cine.clip_id or source.stem, "patient_id": cine.patient_id or "",
                              "dataset": cine.dataset or "", "path": str(source)}])
    table = keypoints_table(manifest, read_clip=lambda row: measured, progress=False, apex_direction=side)
    if table.clips.empty:
        reason = table.skipped[0][1] if table.skipped else "not measured"
        return dataclasses.replace(empty, note=reason)
    rows = table.frames
    index = rows["frame"].to_numpy(int)
    xy = rows[KEYPOINT_COLUMNS].to_numpy(np.float32)  # (n, 80): x0 … x39, y0 … y39
    keypoints[index] = np.stack([xy[:, :N_KEYPOINTS], xy[:, N_KEYPOINTS:]], axis=-1)  # (n, 40, 2)
    volumes[index] = rows["volume"].to_numpy(float)
    for i, flag in zip(index, rows["flags"].astype(str), strict=True):
        frame_flags[i] = flag
    ef_row = ef_table(table).clips.iloc[0]

    def frames_of(text) -> list[int]:
        return [int(v) for v in str(text).split()] if isinstance(text, str) else []

    return dataclasses.replace(empty, mask_source=mask_source, ef=float(ef_row["ef"]),
                               volume_units=str(ef_row["volume_units"]), ed_frames=frames_of(ef_row["ed_frames"]),
                               es_frames=frames_of(ef_row["es_frames"]),
                               flags=str(ef_row["flags"]) if isinstance(ef_row["flags"], str) else "")


def clip_summary(view: ClipView) -> str:
    """Markdown lines: the clip, its EF, ED/ES frames and flags."""
    cine = view.cine
    h, w = cine.frames.shape[1:]
    fps = f"{cine.fps:.3g} fps" if cine.fps else "fps unknown"
    lines = [f"**{view.path.name}**{f' (clip {cine.clip_id})' if cine.clip_id else ''}: {view.n_frames} frames "
             f"{w}×{h}, {fps}"]
    from echokdm.io.dicom import cine_non_cardiac_reason

    not_heart = cine_non_cardiac_reason(cine)
    if not_heart:
        lines.append(f"**Not an echocardiogram by its header** ({not_heart}): the LV drawn below is not there")
    if not view.mask_source:
        lines.append(f"LV not measured: {view.note}")
        return "  \n".join(lines)
    ef = "not measurable" if not math.isfinite(view.ef) else f"{view.ef:.1f} %"
    found = int(np.isfinite(view.volumes).sum())
    lines.append(f"**EF {ef}** · ED frame(s) {', '.join(map(str, view.ed_frames)) or '–'} · ES frame(s) "
                 f"{', '.join(map(str, view.es_frames)) or '–'} · LV from {view.mask_source} · keypoints on "
                 f"{found}/{view.n_frames} frames (volumes in {view.volume_units})")
    flagged = [f"frame {i}: {f}" for i, f in enumerate(view.frame_flags) if f]
    flags = [f for f in (view.flags, *flagged[:5]) if f]
    if len(flagged) > 5:
        flags.append(f"… {len(flagged) - 5} more flagged frame(s)")
    lines.append("Flags: " + ("; ".join(flags) if flags else "none"))
    return "  \n".join(lines)
