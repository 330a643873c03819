"""Write generated cine loops where clinicians and researchers look: players, viewers, PACS.

A *loop* is any object with the attributes of ``echokdm.generation.loop.GeneratedLoop``, read
duck-typed by :func:`echokdm.io.loop_record.read_loop_record` (its docstring lists them), so
this module does not import the generator.

Writers
-------
:func:`write_loop` writes one loop as MP4 (H.264), GIF, synthetic DICOM and NIfTI, plus
``<stem>_keypoints.csv`` and a PNG preview strip, and optionally a real | generated MP4. It
refuses to replace an existing file unless ``overwrite=True`` and writes each file under a
temporary name renamed when complete.

The other writers of generated loops live where their format does:

* the synthetic DICOM file alone and its validator: :mod:`echokdm.io.dicom_write`
  (:func:`~echokdm.io.dicom_write.write_synthetic_dicom`,
  :func:`~echokdm.io.dicom_write.validate_dicom`), beside the DICOM reader;
* many loops in the EchoNet-Dynamic layout: :mod:`echokdm.generation.echonet_cohort`
  (:func:`~echokdm.generation.echonet_cohort.write_echonet_cohort`), on top of the EchoNet
  writer :func:`echokdm.io.echonet.write_echonet_dataset`;
* the EchoNet tracing of a keypoint set: :func:`echokdm.geometry.tracings.keypoints_to_tracing`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from echokdm.adapters.echo import (
    ANNULUS_COLOUR,
    LEFT_WALL_COLOUR,
    LONG_AXIS_COLOUR,
    RIGHT_WALL_COLOUR,
    long_axis_line,
)
from echokdm.errors import EchoKDMWarning
from echokdm.geometry.keypoints import N_CHORDS, N_KEYPOINTS
from echokdm.geometry.volumes import simpson_volume
from echokdm.io.atomic import atomic_output
from echokdm.io.dicom_write import check_synthetic_dicom_input, read_source_dataset, write_synthetic_dicom
from echokdm.io.keypoint_files import write_keypoints_csv
from echokdm.io.loop_record import LoopRecord, percent_text, read_loop_record
from echokdm.io.nifti import write_nifti
from echokdm.io.video import write_video

__all__ = [
    "KEYPOINTS_CSV_COLUMNS",
    "LOOP_FORMATS",
    "refuse_existing",
    "write_loop",
]

LOOP_FORMATS = ("mp4", "gif", "dicom", "nifti")
"""Formats :func:`write_loop` writes by default (and the only ones it accepts in ``formats``)."""

#: First columns of ``<stem>_keypoints.csv``: ``frame`` then the ``x0 … x39, y0 … y39`` of
#: :data:`echokdm.metrics.lv_function.KEYPOINT_COLUMNS` (pixels, x = column, y = row); then come
#: ``volume`` and ``volume_units``, as in ``echokdm keypoints`` tables.
KEYPOINTS_CSV_COLUMNS = ("frame", *(f"x{i}" for i in range(N_KEYPOINTS)), *(f"y{i}" for i in range(N_KEYPOINTS)))

_SUFFIXES = {"mp4": ".mp4", "gif": ".gif", "dicom": ".dcm", "nifti": ".nii.gz"}
_DIVIDER_PX = 2  # white columns between real and generated in the side-by-side video
_LABEL_PX = 14  # rows of the black band that labels the halves ("real" | "generated")


# --------------------------------------------------------------------------------------------
# write_loop
# --------------------------------------------------------------------------------------------


def write_loop(
    out_dir: str | os.PathLike,
    loop: Any,
    formats: Iterable[str] | str = LOOP_FORMATS,
    *,
    stem: str = "loop",
    overwrite: bool = False,
    side_by_side: np.ndarray | None = None,
    source_dataset: Dataset | str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write one generated loop in the formats clinicians and researchers open.

    Always writes ``<stem>_keypoints.csv`` (``frame, x0 … x39, y0 … y39, volume,
    volume_units``; read it with :func:`~echokdm.generation.motion.load_keypoints_file`) and
    ``<stem>_preview.png`` (first frame, the frame of smallest Simpson volume "ES", and the
    last frame, keypoints drawn in the colours of :mod:`echokdm.adapters.echo`; the contour re-detected
    by the segmentation dashed, when the loop was measured), plus:

    * ``"mp4"``: ``<stem>.mp4``, H.264 at ``loop.fps`` (:func:`~echokdm.io.video.write_video`);
    * ``"gif"``: ``<stem>.gif``, 256 gray levels (GIF rounds the frame delay to 1/100 s);
    * ``"dicom"``: ``<stem>.dcm``, see :func:`~echokdm.io.dicom_write.write_synthetic_dicom`;
    * ``"nifti"``: ``<stem>.nii.gz``, ``uint8`` voxels ``(X, Y, T)`` with spacing and frame
      interval (:func:`~echokdm.io.nifti.write_nifti`).

    DICOM, NIfTI and the videos store 8 bits per pixel: ``round(255 * frames)``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder for the files; created if missing.
    loop : GeneratedLoop or any object with its attributes
        See the module docstring.
    formats : iterable of str or str
        Any of :data:`LOOP_FORMATS`.
    stem : str
        Base name of every file (no folder separators).
    overwrite : bool
        Replace existing files. Otherwise every target is checked before anything is written
        and any existing one raises :class:`FileExistsError`.
    side_by_side : numpy.ndarray, optional
        Real reference frames ``(T_ref, H, W)`` in [0, 1], same ``H, W`` as the loop; written as
        ``<stem>_side_by_side.mp4``: real on the left, generated on the right, a 2-pixel white
        divider between, ``min(T_ref, T)`` frames (a :class:`~echokdm.errors.EchoKDMWarning`
        when the lengths differ).
    source_dataset : pydicom.dataset.Dataset or path, optional
        Source DICOM for :func:`~echokdm.io.dicom_write.write_synthetic_dicom` (allow-listed
        attributes only).

    Returns
    -------
    dict of str to pathlib.Path
        Written paths by name: the formats, ``"keypoints"``, ``"preview"`` and
        ``"side_by_side"`` when asked for.

    Raises
    ------
    FileExistsError
        A target exists and ``overwrite`` is false (all such targets are named).
    ValueError
        A bad loop attribute, format, stem or reference (named). When a writer fails midway the
        files this call created are removed (files it replaced with ``overwrite`` stay replaced).

    Examples
    --------
    >>> import tempfile, types
    >>> t = (np.arange(20) + 0.5) / 20
    >>> left = np.stack([np.full(20, 10.0), 28 - 20 * t], axis=1)
    >>> keypoints = np.concatenate([left, (left + [12, 0])[::-1]])[None].repeat(4, axis=0)
    >>> loop = types.SimpleNamespace(frames=np.full((4, 32, 32), 0.5, np.float32), fps=25.0,
    ...     spacing_mm=(0.3, 0.3), keypoints=keypoints, ef_target=55.0, ef_achieved=None,
    ...     source_frame=0, motion="demo", patient_id=None)
    >>> sorted(write_loop(tempfile.mkdtemp(), loop, formats=("gif", "dicom")))
    ['dicom', 'gif', 'keypoints', 'preview']
    """
    fields = read_loop_record(loop, n_keypoints=N_KEYPOINTS)
    targets = _loop_targets(Path(out_dir), stem, _checked_formats(formats), side_by_side is not None)
    reference = None if side_by_side is None else _checked_reference(side_by_side, fields)
    if "dicom" in targets:  # fail before writing anything
        source_dataset = read_source_dataset(source_dataset)
        check_synthetic_dicom_input(targets["dicom"], fields, source_dataset)
    refuse_existing(targets.values(), overwrite)
    created: list[Path] = []
    try:
        for name, path in targets.items():
            existed = path.exists()
            _write_one(name, path, loop, fields, reference, source_dataset, overwrite)
            if not existed:
                created.append(path)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return targets


def _checked_formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    """``formats`` as a tuple without repeats; :class:`ValueError` naming unknown ones."""
    names = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [name for name in names if name not in LOOP_FORMATS]
    if unknown:
        raise ValueError(f"formats: unknown {unknown}; choose from {list(LOOP_FORMATS)}")
    return tuple(dict.fromkeys(names))


def _loop_targets(out_dir: Path, stem: str, formats: tuple[str, ...], with_reference: bool) -> dict[str, Path]:
    """Output path of every file :func:`write_loop` writes, by name."""
    if not stem or stem in (".", "..") or any(char in stem for char in "/\\"):
        raise ValueError(f"stem must be a plain file name without folders, got {stem!r}")
    targets = {name: out_dir / f"{stem}{_SUFFIXES[name]}" for name in formats}
    targets["keypoints"] = out_dir / f"{stem}_keypoints.csv"
    targets["preview"] = out_dir / f"{stem}_preview.png"
    if with_reference:
        targets["side_by_side"] = out_dir / f"{stem}_side_by_side.mp4"
    return targets


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """Check every output of a writer before it writes any: :class:`FileExistsError` naming each
    existing path in ``paths``, unless ``overwrite``."""
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)}: file(s) exist; pass overwrite=True to replace them")


def _write_one(name: str, path: Path, loop: Any, fields: LoopRecord, reference: np.ndarray | None,
               source_dataset: Any, overwrite: bool) -> None:
    """Write the file ``name`` of :func:`write_loop` to ``path``."""
    if name in ("mp4", "gif"):
        write_video(path, fields.frames, fields.fps, overwrite=overwrite)
    elif name == "dicom":
        write_synthetic_dicom(path, loop, source_dataset=source_dataset, overwrite=overwrite)
    elif name == "nifti":
        write_nifti(path, fields.frames, spacing_mm=fields.spacing_mm, fps=fields.fps, overwrite=overwrite)
    elif name == "keypoints":
        _write_keypoints_csv(path, fields, overwrite)
    elif name == "preview":
        _write_preview_strip(path, fields, overwrite)
    elif name == "side_by_side":
        write_video(path, _side_by_side_frames(reference, fields.frames), fields.fps, overwrite=overwrite)
    else:  # pragma: no cover - _loop_targets makes only the names above
        raise AssertionError(name)


def _checked_reference(reference: np.ndarray, fields: LoopRecord) -> np.ndarray:
    """Validate the real reference frames of the side-by-side video."""
    reference = np.asarray(reference)
    if reference.ndim != 3 or reference.shape[1:] != fields.frames.shape[1:]:
        raise ValueError(f"side_by_side must be real frames (T, H, W) with (H, W) = {fields.frames.shape[1:]} "
                         f"like the loop, got shape {reference.shape}")
    if reference.shape[0] != fields.frames.shape[0]:
        warnings.warn(f"side_by_side has {reference.shape[0]} frames and the loop {fields.frames.shape[0]}; "
                      "the side-by-side video keeps the first "
                      f"{min(reference.shape[0], fields.frames.shape[0])}", EchoKDMWarning, stacklevel=3)
    return reference


def _label_band(text_left: str, text_right: str, width_left: int, width_right: int) -> np.ndarray:
    """``(h, width_left + divider + width_right)`` black band with white labels centred over each
    half (PIL's built-in bitmap font, no font file needed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    height = _LABEL_PX
    band = Image.new("L", (width_left + _DIVIDER_PX + width_right, height), 0)
    draw = ImageDraw.Draw(band)
    for text, x0, w in ((text_left, 0, width_left), (text_right, width_left + _DIVIDER_PX, width_right)):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((x0 + max((w - (right - left)) // 2, 0), max((height - (bottom - top)) // 2 - top, 0)), text,
                  fill=255, font=font)
    return np.asarray(band, dtype=np.float32) / 255.0


def _side_by_side_frames(reference: np.ndarray, frames: np.ndarray,
                         labels: tuple[str, str] = ("real", "generated")) -> np.ndarray:
    """``(T, L + H, 2 W + 2)``: a band labelled "real" | "generated" over real | white divider |
    generated, over the shorter length."""
    n = min(len(reference), len(frames))
    divider = np.ones((n, frames.shape[1], _DIVIDER_PX), dtype=np.float32)
    body = np.concatenate([np.asarray(reference[:n], dtype=np.float32), divider, frames[:n]], axis=2)
    band = _label_band(labels[0], labels[1], reference.shape[2], frames.shape[2])
    return np.concatenate([np.broadcast_to(band, (n, *band.shape)), body], axis=1)


# --------------------------------------------------------------------------------------------
# keypoints CSV and preview
# --------------------------------------------------------------------------------------------


def _write_keypoints_csv(path: Path, fields: LoopRecord, overwrite: bool) -> None:
    """One row per frame: ``frame, x0 … x39, y0 … y39, volume, volume_units`` (empty cells for NaN).

    Written by :func:`echokdm.io.keypoint_files.write_keypoints_csv` (coordinates with 4
    decimals); ``volume`` is the Simpson volume in mL with a pixel spacing, else in pixel³
    (``volume_units`` says which), as in ``echokdm keypoints`` tables.
    """
    volume_units = "mL" if fields.spacing_mm is not None else "px^3"
    write_keypoints_csv(path, fields.keypoints, overwrite=overwrite,
                        extra_columns={"volume": simpson_volume(fields.keypoints, fields.spacing_mm),
                                       "volume_units": volume_units})


def _preview_frames(keypoints: np.ndarray) -> list[tuple[int, str]]:
    """``(frame, label)`` of the first frame, the smallest-volume frame ("ES") and the last one."""
    n_frames = keypoints.shape[0]
    volumes = simpson_volume(keypoints)  # (T,) pixel³, NaN where keypoints are missing
    es = int(np.nanargmin(volumes)) if np.isfinite(volumes).any() else (n_frames - 1) // 2
    es_label = "ES (smallest volume)" if np.isfinite(volumes).any() else "middle"
    return [(0, "first"), (es, es_label), (n_frames - 1, "last")]


#: Colour of the LV contour re-detected on the generated frames (dashed), beside the keypoints asked for.
DETECTED_COLOUR = "#ffd400"


def _preview_title(fields: LoopRecord) -> str:
    """The preview's title: the loop is synthetic, its motion, the EF asked for and the EF read on its frames
    (or that the segmentation did not read the generated LV)."""
    achieved = percent_text(fields.ef_achieved)
    from echokdm.generation.loop import UNREAD_NOTE

    if fields.ef_achieved is None and fields.ef_note.startswith(UNREAD_NOTE):
        achieved = "not read: the segmentation lost the LV (dashed)"
    return (f"SYNTHETIC (echokdm) - motion: {fields.motion or 'n/a'}; EF target {percent_text(fields.ef_target)}, "
            f"achieved {achieved}")


def _write_preview_strip(path: Path, fields: LoopRecord, overwrite: bool) -> None:
    """PNG of three frames side by side with their keypoints drawn (matplotlib, Agg), and the contour the
    segmentation re-detected on them (dashed) when the loop was measured."""
    from matplotlib.figure import Figure

    shown = _preview_frames(fields.keypoints)
    height, width = fields.frames.shape[1:]
    figure = Figure(figsize=(9.0, 3.0 * height / width + 0.5), dpi=100, layout="constrained")
    for k, (frame, label) in enumerate(shown):
        axes = figure.add_subplot(1, 3, k + 1)
        axes.imshow(fields.frames[frame], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        _draw_keypoints(axes, fields.keypoints[frame])
        if fields.detected_keypoints is not None:
            found = fields.detected_keypoints[frame]
            closed = np.concatenate([found, found[:1]])  # through the annulus
            axes.plot(closed[:, 0], closed[:, 1], "--", color=DETECTED_COLOUR, lw=0.8,
                      label="re-detected by the segmentation" if k == 0 else None)
        axes.set_title(f"frame {frame}: {label}", fontsize=9)
        axes.set_axis_off()
        if k == 0 and fields.detected_keypoints is not None:
            axes.legend(loc="lower left", fontsize=6, frameon=False, labelcolor=DETECTED_COLOUR)
    figure.suptitle(_preview_title(fields), fontsize=9)
    with atomic_output(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png")


def _draw_keypoints(axes: Any, keypoints: np.ndarray) -> None:
    """Walls, annulus and long axis of one ``(40, 2)`` keypoint set (NaN breaks a line)."""
    axis_line = long_axis_line(keypoints)  # (2, 2) [basal centre, apex]
    axes.plot(axis_line[:, 0], axis_line[:, 1], color=LONG_AXIS_COLOUR, lw=0.8)
    axes.plot(keypoints[[0, -1], 0], keypoints[[0, -1], 1], color=ANNULUS_COLOUR, lw=0.8)
    axes.plot(keypoints[:N_CHORDS, 0], keypoints[:N_CHORDS, 1], ".-", color=LEFT_WALL_COLOUR, lw=0.8, ms=2)
    axes.plot(keypoints[N_CHORDS:, 0], keypoints[N_CHORDS:, 1], ".-", color=RIGHT_WALL_COLOUR, lw=0.8, ms=2)
