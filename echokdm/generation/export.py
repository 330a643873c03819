"""Write generated cine loops where clinicians and researchers look: viewers, PACS, EchoNet tools.

A *loop* is any object with the attributes of ``echokdm.generation.loop.GeneratedLoop`` (read
duck-typed, so this module does not import it):

=================  ==============================================================================
attribute          meaning
=================  ==============================================================================
``frames``         ``float32`` ``(T, H, W)`` in [0, 1], grayscale
``fps``            frames per second (> 0)
``spacing_mm``     ``(dx, dy)`` mm per pixel along columns and rows, or ``None``
``keypoints``      ``(T, 40, 2)`` ``(x, y)`` pixels (x = column, y = row), NaN rows where missing
``ef_target``      EF (%) the motion was built for (``None`` or NaN when unknown)
``ef_achieved``    EF (%) measured on the generated loop (``None`` or NaN when unknown)
``source_frame``   index of the real frame the loop was generated from
``motion``         name of the keypoint motion (free text written by the generator)
``patient_id``     pseudonym of the source patient, or ``None``
=================  ==============================================================================

Writers
-------
:func:`write_loop` writes one loop as MP4 (H.264), GIF, synthetic DICOM and NIfTI, plus
``<stem>_keypoints.csv`` and a PNG preview strip, and optionally a real | generated MP4.
:func:`write_synthetic_dicom` writes the DICOM file alone, :func:`validate_dicom` checks one,
and :func:`write_echonet_cohort` writes many loops in the EchoNet-Dynamic layout. Every writer
refuses to replace an existing file unless ``overwrite=True`` and writes each file under a
temporary name renamed when complete.

Synthetic DICOM: choices
------------------------
* SOP class *Ultrasound Multi-frame Image Storage*, written by
  :func:`echokdm.io.dicom.write_dicom` (Frame Time, Cine Rate, Frame Increment Pointer, one
  calibration region from ``spacing_mm``), with fresh Study, Series and SOP Instance UIDs.
  Nothing references the source instance (no *Source Image Sequence*): its UIDs identify a
  real examination.
* *Image Type* ``DERIVED\\SECONDARY``. The US Image Module (PS3.3 C.8.5.6.1.1) specialises
  only Values 3 and 4 (optional); Values 1 and 2 keep the enumerated values of the General
  Image Module (C.7.6.1.1.2): DERIVED = pixel values derived from another image (the source
  frame), SECONDARY = created after the examination, not as its direct result.
* *Synthetic Data* (0008,001C) ``YES`` (SOP Common Module, the standard's own flag for
  artificially made content), a *Contributing Equipment Sequence* item with purpose
  (109100, DCM, "Synthesizing Equipment"), *Derivation Description*, *Series* and *Study
  Description* starting with ``SYNTHETIC``, *Image Comments*.
* *Burned In Annotation* says what the pixels hold: ``NO`` only when every frame was masked to
  the source's ultrasound fan (``loop.metadata["fan_masked"]``, set by
  :func:`~echokdm.generation.loop.generate_loop` with a ``fan_mask``), else ``YES``: the pixels
  around the fan came from the source frame and may hold its burned-in text.
* *Derivation Code Sequence*: its context group CID 7203 "Image Derivation" is extensible and
  has no concept for generative synthesis, so the item is a local code
  (``KDM-SYNTH``, ``99ECHOKDM``) declared in the *Coding Scheme Identification Sequence*, as
  PS3.3 8.2 asks of private coding schemes (designators beginning with ``99``).
* Personal data: *Patient Name* ``SYNTHETIC^ECHOKDM``, *Patient ID* the loop's pseudonym (or
  ``SYNTHETIC``), *Patient Identity Removed* ``YES``; birth date, sex and the other type 2
  patient and study attributes are present and empty. From a source dataset only the
  attributes of :data:`SOURCE_ATTRIBUTES_ALLOWED` are copied (an allow-list): technique facts
  that identify nobody. The source's *Manufacturer* and model are not copied: the General
  Equipment Module describes the equipment that made this instance, which is echokdm, and
  site-specific fields (institution, station, serial number) are quasi-identifiers.

External validators
-------------------
:func:`validate_dicom` also runs ``dicom-validator`` (``pip install dicom-validator``; its
first run downloads the DICOM standard into ``~/dicom-validator``, later runs work offline) or
``dciodvfy`` (dicom3tools) when either is installed. By hand::

    validate_iods generated.dcm        # dicom-validator
    dciodvfy generated.dcm             # dicom3tools
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from echokdm import __version__
from echokdm.adapters.echo import (
    ANNULUS_COLOUR,
    LEFT_WALL_COLOUR,
    LONG_AXIS_COLOUR,
    RIGHT_WALL_COLOUR,
    long_axis_line,
)
from echokdm.errors import EchoKDMWarning, ReadError
from echokdm.geometry.keypoints import CHORD_FRACTIONS, N_CHORDS, N_KEYPOINTS
from echokdm.geometry.volumes import simpson_volume
from echokdm.io._atomic import atomic_output
from echokdm.io.dicom import US_MULTIFRAME_IMAGE_STORAGE, write_dicom
from echokdm.io.echonet import write_echonet_dataset
from echokdm.io.nifti import write_nifti
from echokdm.io.video import write_video

__all__ = [
    "COHORT_CSV_NAME",
    "KEYPOINTS_CSV_COLUMNS",
    "LOOP_FORMATS",
    "SOURCE_ATTRIBUTES_ALLOWED",
    "SYNTHETIC_PATIENT_ID",
    "SYNTHETIC_PATIENT_NAME",
    "keypoints_to_tracing",
    "read_keypoints_csv",
    "validate_dicom",
    "write_echonet_cohort",
    "write_echonet_items",
    "write_loop",
    "write_synthetic_dicom",
]

LOOP_FORMATS = ("mp4", "gif", "dicom", "nifti")
"""Formats :func:`write_loop` writes by default (and the only ones it accepts in ``formats``)."""

#: First columns of ``<stem>_keypoints.csv``: ``frame`` then the ``x0 … x39, y0 … y39`` of
#: :data:`echokdm.metrics.lv_function.KEYPOINT_COLUMNS` (pixels, x = column, y = row); then come
#: ``volume`` and ``volume_units``, as in ``echokdm keypoints`` tables.
KEYPOINTS_CSV_COLUMNS = ("frame", *(f"x{i}" for i in range(N_KEYPOINTS)), *(f"y{i}" for i in range(N_KEYPOINTS)))

#: Side table that :func:`write_echonet_cohort` writes next to ``FileList.csv``.
COHORT_CSV_NAME = "echokdm_cohort.csv"

SOURCE_ATTRIBUTES_ALLOWED = (
    "BodyPartExamined",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
)
"""Attributes copied from a source dataset into a synthetic DICOM file; nothing else is.

*Body Part Examined* says what the loop shows; the lossy-compression trio says that the
source pixels went through lossy compression, which PS3.3 C.7.6.1.1.5 asks derived images to
keep saying."""

SYNTHETIC_PATIENT_NAME = "SYNTHETIC^ECHOKDM"
SYNTHETIC_PATIENT_ID = "SYNTHETIC"

_SUFFIXES = {"mp4": ".mp4", "gif": ".gif", "dicom": ".dcm", "nifti": ".nii.gz"}
_IMAGE_TYPE = ("DERIVED", "SECONDARY")
_LOCAL_SCHEME = "99ECHOKDM"
_DERIVATION_CODE = ("KDM-SYNTH", _LOCAL_SCHEME, "Synthetic cine generated by keypoint-guided diffusion")
_SYNTHESIZING_EQUIPMENT = ("109100", "DCM", "Synthesizing Equipment")
_DIVIDER_PX = 2  # white columns between real and generated in the side-by-side video
_LABEL_PX = 14  # rows of the black band that labels the halves ("real" | "generated")

# Attributes that hold personal or site data and must be absent or empty in a synthetic file.
_IDENTIFYING_KEYWORDS = (
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge", "PatientWeight", "PatientSize",
    "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "MedicalRecordLocator",
    "IssuerOfPatientID", "EthnicGroup", "Occupation", "PatientComments", "AdditionalPatientHistory",
    "MilitaryRank", "BranchOfService", "CountryOfResidence", "RegionOfResidence",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "AccessionNumber", "StudyID", "RequestAttributesSequence",
    "ReferencedPatientSequence", "ReferencedStudySequence", "SourceImageSequence",
)


# --------------------------------------------------------------------------------------------
# the loop, read duck-typed
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Loop:
    """Validated fields of a generated loop (see the module docstring)."""

    frames: np.ndarray  # (T, H, W) float32
    fps: float
    spacing_mm: tuple[float, float] | None
    keypoints: np.ndarray  # (T, 40, 2) float32 (x, y)
    ef_target: float | None
    ef_achieved: float | None
    source_frame: int | None
    motion: str
    patient_id: str | None
    detected_keypoints: np.ndarray | None = None  # (T, 40, 2) re-detected on the frames, if measured
    fan_masked: bool = False  # every frame is 0 outside the source's ultrasound fan (metadata["fan_masked"])


def _loop_fields(loop: Any, what: str = "loop") -> _Loop:
    """Read and check the attributes of ``loop``; errors name ``what`` and the attribute."""
    missing = [name for name in ("frames", "fps", "keypoints") if not hasattr(loop, name)]
    if missing:
        raise ValueError(f"{what}: missing attribute(s) {', '.join(missing)} (expected a GeneratedLoop)")
    frames = np.asarray(loop.frames)
    if frames.ndim != 3 or 0 in frames.shape:
        raise ValueError(f"{what}: frames must be a non-empty (T, H, W) array, got shape {frames.shape}")
    if not np.issubdtype(frames.dtype, np.floating) or not np.isfinite(frames).all() \
            or frames.min() < 0.0 or frames.max() > 1.0:
        raise ValueError(f"{what}: frames must be finite floats in [0, 1] (dtype {frames.dtype})")
    keypoints = np.asarray(loop.keypoints, dtype=np.float32)
    if keypoints.shape != (frames.shape[0], N_KEYPOINTS, 2):
        raise ValueError(f"{what}: keypoints must have shape (T, 40, 2) = {(frames.shape[0], N_KEYPOINTS, 2)}, "
                         f"got {keypoints.shape}")
    detected = getattr(loop, "detected_keypoints", None)
    if detected is not None:
        detected = np.asarray(detected, dtype=np.float32)
        if detected.shape != keypoints.shape:
            raise ValueError(f"{what}: detected_keypoints must have the keypoints' shape {keypoints.shape}, "
                             f"got {detected.shape}")
    metadata = getattr(loop, "metadata", None)
    return _Loop(
        detected_keypoints=detected,
        fan_masked=bool(isinstance(metadata, Mapping) and metadata.get("fan_masked") is True),
        frames=frames.astype(np.float32, copy=False),
        fps=_positive(loop.fps, f"{what}: fps"),
        spacing_mm=_spacing(getattr(loop, "spacing_mm", None), what),
        keypoints=keypoints,
        ef_target=_ef(getattr(loop, "ef_target", None), f"{what}: ef_target"),
        ef_achieved=_ef(getattr(loop, "ef_achieved", None), f"{what}: ef_achieved"),
        source_frame=None if getattr(loop, "source_frame", None) is None else int(loop.source_frame),
        motion=str(getattr(loop, "motion", "") or ""),
        patient_id=None if getattr(loop, "patient_id", None) is None else str(loop.patient_id),
    )


def _positive(value: Any, name: str) -> float:
    """``float(value)``, or a :class:`ValueError` naming ``name`` unless finite and > 0."""
    number = _optional_number(value, name)
    if number is None or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def _optional_number(value: Any, name: str) -> float | None:
    """``None`` or a finite float; :class:`ValueError` naming ``name`` otherwise."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _ef(value: Any, name: str) -> float | None:
    """An EF in percent, ``None`` when unknown (``None`` or NaN, as GeneratedLoop writes it)."""
    if value is not None and isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    return _optional_number(value, name)


def _spacing(value: Any, what: str) -> tuple[float, float] | None:
    """``None`` or ``(dx, dy)`` positive floats in mm."""
    if value is None:
        return None
    values = tuple(value)
    if len(values) != 2:
        raise ValueError(f"{what}: spacing_mm must be (dx, dy) in mm or None, got {value!r}")
    return (_positive(values[0], f"{what}: spacing_mm dx"), _positive(values[1], f"{what}: spacing_mm dy"))


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
    volume_units``; :func:`read_keypoints_csv`) and
    ``<stem>_preview.png`` (first frame, the frame of smallest Simpson volume "ES", and the
    last frame, keypoints drawn in the colours of :mod:`echokdm.adapters.echo`), plus:

    * ``"mp4"``: ``<stem>.mp4``, H.264 at ``loop.fps`` (:func:`~echokdm.io.video.write_video`);
    * ``"gif"``: ``<stem>.gif``, 256 gray levels (GIF rounds the frame delay to 1/100 s);
    * ``"dicom"``: ``<stem>.dcm``, see :func:`write_synthetic_dicom`;
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
        Source DICOM for :func:`write_synthetic_dicom` (allow-listed attributes only).

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
    fields = _loop_fields(loop)
    targets = _loop_targets(Path(out_dir), stem, _checked_formats(formats), side_by_side is not None)
    reference = None if side_by_side is None else _checked_reference(side_by_side, fields)
    if "dicom" in targets:  # fail before writing anything
        source_dataset = _source_dataset(source_dataset)
        _check_dicom_input(targets["dicom"], fields, source_dataset)
    _refuse_existing(targets.values(), overwrite)
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


def _refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """:class:`FileExistsError` naming every existing path, unless ``overwrite``."""
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)}: file(s) exist; pass overwrite=True to replace them")


def _write_one(name: str, path: Path, loop: Any, fields: _Loop, reference: np.ndarray | None,
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


def _checked_reference(reference: np.ndarray, fields: _Loop) -> np.ndarray:
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


def _write_keypoints_csv(path: Path, fields: _Loop, overwrite: bool) -> None:
    """One row per frame: ``frame, x0 … x39, y0 … y39, volume, volume_units`` (empty cells for NaN).

    Coordinates with 4 decimals; ``volume`` is the Simpson volume in mL with a pixel spacing,
    else in pixel³ (``volume_units`` says which), as in ``echokdm keypoints`` tables.
    """
    keypoints = fields.keypoints  # (T, 40, 2)
    values = np.concatenate([keypoints[..., 0], keypoints[..., 1]], axis=1)  # (T, 80)
    table = pd.DataFrame(values, columns=list(KEYPOINTS_CSV_COLUMNS[1:]))
    table.insert(0, "frame", np.arange(keypoints.shape[0]))
    table["volume"] = simpson_volume(keypoints, fields.spacing_mm)
    table["volume_units"] = "mL" if fields.spacing_mm is not None else "px^3"
    with atomic_output(path, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f", na_rep="")


def read_keypoints_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a ``<stem>_keypoints.csv`` written by :func:`write_loop`.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels in frame order; NaN for empty cells.

    Raises
    ------
    FileNotFoundError
        No such file.
    echokdm.errors.ReadError
        Missing columns, or frames that are not 0 … T-1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such keypoints CSV")
    table = pd.read_csv(path)
    missing = [column for column in KEYPOINTS_CSV_COLUMNS if column not in table.columns]
    if missing:
        raise ReadError(path, f"missing column(s) {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    table = table.sort_values("frame")
    if not np.array_equal(table["frame"].to_numpy(), np.arange(len(table))):
        raise ReadError(path, "column frame must hold each of 0 … T-1 once")
    xs = table[list(KEYPOINTS_CSV_COLUMNS[1 : 1 + N_KEYPOINTS])].to_numpy(np.float32)  # (T, 40)
    ys = table[list(KEYPOINTS_CSV_COLUMNS[1 + N_KEYPOINTS :])].to_numpy(np.float32)  # (T, 40)
    return np.stack([xs, ys], axis=-1)  # (T, 40, 2)


def _preview_frames(keypoints: np.ndarray) -> list[tuple[int, str]]:
    """``(frame, label)`` of the first frame, the smallest-volume frame ("ES") and the last one."""
    n_frames = keypoints.shape[0]
    volumes = simpson_volume(keypoints)  # (T,) pixel³, NaN where keypoints are missing
    es = int(np.nanargmin(volumes)) if np.isfinite(volumes).any() else (n_frames - 1) // 2
    es_label = "ES (smallest volume)" if np.isfinite(volumes).any() else "middle"
    return [(0, "first"), (es, es_label), (n_frames - 1, "last")]


def _write_preview_strip(path: Path, fields: _Loop, overwrite: bool) -> None:
    """PNG of three frames side by side with their keypoints drawn (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    shown = _preview_frames(fields.keypoints)
    height, width = fields.frames.shape[1:]
    figure = Figure(figsize=(9.0, 3.0 * height / width + 0.5), dpi=100, layout="constrained")
    for k, (frame, label) in enumerate(shown):
        axes = figure.add_subplot(1, 3, k + 1)
        axes.imshow(fields.frames[frame], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        _draw_keypoints(axes, fields.keypoints[frame])
        axes.set_title(f"frame {frame}: {label}", fontsize=9)
        axes.set_axis_off()
    figure.suptitle(f"SYNTHETIC (echokdm) - motion: {fields.motion or 'n/a'}; EF target "
                    f"{_percent_text(fields.ef_target)}, achieved {_percent_text(fields.ef_achieved)}",
                    fontsize=9)
    with atomic_output(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png")


def _draw_keypoints(axes: Any, keypoints: np.ndarray) -> None:
    """Walls, annulus and long axis of one ``(40, 2)`` keypoint set (NaN breaks a line)."""
    axis_line = long_axis_line(keypoints)  # (2, 2) [basal centre, apex]
    axes.plot(axis_line[:, 0], axis_line[:, 1], color=LONG_AXIS_COLOUR, lw=0.8)
    axes.plot(keypoints[[0, -1], 0], keypoints[[0, -1], 1], color=ANNULUS_COLOUR, lw=0.8)
    axes.plot(keypoints[:N_CHORDS, 0], keypoints[:N_CHORDS, 1], ".-", color=LEFT_WALL_COLOUR, lw=0.8, ms=2)
    axes.plot(keypoints[N_CHORDS:, 0], keypoints[N_CHORDS:, 1], ".-", color=RIGHT_WALL_COLOUR, lw=0.8, ms=2)


def _percent_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


# --------------------------------------------------------------------------------------------
# synthetic DICOM
# --------------------------------------------------------------------------------------------


def write_synthetic_dicom(
    path: str | os.PathLike,
    loop: Any,
    *,
    source_dataset: Dataset | str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a loop as an *Ultrasound Multi-frame Image Storage* file marked as synthetic.

    A viewer plays it as a cine (Frame Time, Cine Rate, Recommended Display Frame Rate, Frame
    Increment Pointer); lengths are calibrated through a *Sequence of Ultrasound Regions*
    when ``loop.spacing_mm`` is known. The synthetic marking and the handling of personal data
    are described in the module docstring; :func:`validate_dicom` checks both.

    Parameters
    ----------
    path : str or os.PathLike
        Output file (``.dcm``); its folder is created if needed.
    loop : GeneratedLoop or any object with its attributes
        At least 2 frames. ``loop.patient_id`` is written as *Patient ID*: keep it a pseudonym
        (``None`` writes ``"SYNTHETIC"``).
    source_dataset : pydicom.dataset.Dataset or path, optional
        The source DICOM (a dataset, or a file read without its pixels). Only
        :data:`SOURCE_ATTRIBUTES_ALLOWED` are copied from it.
    overwrite : bool
        Replace an existing file; otherwise :class:`FileExistsError`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    ValueError
        A bad loop attribute, fewer than 2 frames, or a ``loop.patient_id`` equal to an
        identifier of ``source_dataset`` (it must be a pseudonym).
    """
    path = Path(path)
    fields = _loop_fields(loop, what=f"{path}: loop")
    source = _source_dataset(source_dataset)
    _check_dicom_input(path, fields, source)
    extra = {**_copied_source_attributes(source), **_synthetic_attributes(fields)}
    return write_dicom(path, fields.frames, fps=fields.fps, spacing_mm=fields.spacing_mm,
                       patient_id=fields.patient_id or SYNTHETIC_PATIENT_ID, overwrite=overwrite, extra=extra)


def _source_dataset(source: Dataset | str | os.PathLike | None) -> Dataset | None:
    """The source as a dataset (a path is read without pixel data)."""
    if source is None or isinstance(source, Dataset):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such source DICOM file")
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on bad files
        raise ReadError(path, f"cannot read the source DICOM ({type(exc).__name__}: {exc})") from exc


def _check_dicom_input(path: Path, fields: _Loop, source: Dataset | None) -> None:
    """At least 2 frames, and a patient ID that repeats no identifier of the source dataset."""
    if fields.frames.shape[0] < 2:
        raise ValueError(f"{path}: a cine loop needs at least 2 frames, got {fields.frames.shape[0]}")
    patient_id = fields.patient_id
    if patient_id is None or source is None:
        return
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientName"):
        if patient_id.strip() and patient_id.strip() in _text_values(source.get(keyword, None)):
            raise ValueError(f"{path}: loop.patient_id equals the source's {keyword}; pass a pseudonym "
                             "(echokdm.io.pseudonymise) or None")


def _copied_source_attributes(source: Dataset | None) -> dict[str, Any]:
    """The allow-listed attributes of the source that are present and not empty."""
    if source is None:
        return {}
    copied = {}
    for keyword in SOURCE_ATTRIBUTES_ALLOWED:
        value = source.get(keyword, None)
        if value is not None and value not in ("", []):
            copied[keyword] = copy.deepcopy(value)
    return copied


def _synthetic_attributes(fields: _Loop) -> dict[str, Any]:
    """Every attribute that marks the file as synthetic, and the dates of its creation."""
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    return {
        "PatientName": SYNTHETIC_PATIENT_NAME,
        "PatientIdentityRemoved": "YES",
        "DeidentificationMethod": "echokdm synthetic export: allow-list, new UIDs",
        "SyntheticData": "YES",
        "ImageType": list(_IMAGE_TYPE),
        "DerivationDescription": _derivation_description(fields),
        "DerivationCodeSequence": [_code_item(*_DERIVATION_CODE)],
        "CodingSchemeIdentificationSequence": [_local_coding_scheme()],
        "ContributingEquipmentSequence": [_synthesizing_equipment(now)],
        "BurnedInAnnotation": "NO" if fields.fan_masked else "YES",
        "RecognizableVisualFeatures": "NO",
        "StudyDescription": "SYNTHETIC echokdm",
        "SeriesDescription": _lo_text(f"SYNTHETIC echokdm KDM loop, motion {fields.motion or 'n/a'}"),
        "ImageComments": "SYNTHETIC image generated by echokdm; not acquired from a patient; not for diagnosis.",
        "ManufacturerModelName": "echokdm KDM",
        "SoftwareVersions": f"echokdm {__version__}",
        "RecommendedDisplayFrameRate": max(1, round(fields.fps)),
        "ContentDate": date, "ContentTime": time,
        "InstanceCreationDate": date, "InstanceCreationTime": time,
        "SeriesDate": date, "SeriesTime": time,
    }


def _derivation_description(fields: _Loop) -> str:
    """Free text (ST, at most 1024 characters) saying how the loop was made."""
    source = "one source frame" if fields.source_frame is None else f"one source frame (frame {fields.source_frame})"
    text = (f"Synthetic cine loop generated by echokdm {__version__} (KDM, keypoint-guided diffusion) from "
            f"{source}; motion: {fields.motion or 'n/a'}; EF target {_percent_text(fields.ef_target)}; "
            f"EF achieved {_percent_text(fields.ef_achieved)}. "
            + ("Pixels outside the source's ultrasound fan set to 0. " if fields.fan_masked else
               "Pixels outside the ultrasound fan come from the source frame (not masked). ")
            + "Not acquired from a patient.")
    return _ascii(text)[:1024]


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A *Code Sequence Macro* item."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _local_coding_scheme() -> Dataset:
    """*Coding Scheme Identification Sequence* item declaring the local scheme ``99ECHOKDM``."""
    item = Dataset()
    item.CodingSchemeDesignator = _LOCAL_SCHEME
    item.CodingSchemeName = "echokdm local codes"
    item.CodingSchemeResponsibleOrganization = "echokdm developers"
    return item


def _synthesizing_equipment(now: datetime.datetime) -> Dataset:
    """*Contributing Equipment Sequence* item: echokdm as (109100, DCM, "Synthesizing Equipment")."""
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = [_code_item(*_SYNTHESIZING_EQUIPMENT)]
    item.Manufacturer = "echokdm"
    item.ManufacturerModelName = "echokdm KDM"
    item.SoftwareVersions = f"echokdm {__version__}"
    item.ContributionDateTime = now.strftime("%Y%m%d%H%M%S")
    item.ContributionDescription = "Synthesized the cine loop by keypoint-guided diffusion"
    return item


def _ascii(text: str) -> str:
    """``text`` in the default DICOM repertoire (non-ASCII characters become '?')."""
    return text.encode("ascii", "replace").decode("ascii")


def _lo_text(text: str) -> str:
    """A valid LO value: ASCII, no backslash or control characters, at most 64 characters."""
    return re.sub(r"[\\\x00-\x1f]", "/", _ascii(text))[:64].rstrip()


# --------------------------------------------------------------------------------------------
# validate_dicom
# --------------------------------------------------------------------------------------------


def validate_dicom(
    path: str | os.PathLike,
    *,
    expected_shape: tuple[int, int, int] | None = None,
    expected_fps: float | None = None,
    source_dataset: Dataset | str | os.PathLike | None = None,
    external: bool = True,
) -> list[str]:
    """Check a synthetic DICOM cine written by :func:`write_synthetic_dicom`.

    Checks, each failure one line: SOP class (*Ultrasound Multi-frame Image Storage*, the same
    in the file meta), Modality ``US``, *Number of Frames*, *Frame Time* and the *Frame
    Increment Pointer*, pixel data decoding to ``(NumberOfFrames, Rows, Columns)``, the
    synthetic marking (*Image Type* ``DERIVED\\SECONDARY``, *Synthetic Data* ``YES``,
    *Series Description* ``SYNTHETIC…``, *Derivation Description*, *Burned In Annotation*
    ``YES`` or ``NO``, *Patient Name* ``SYNTHETIC^ECHOKDM``, the Synthesizing Equipment item), absence of
    personal data (identifying attributes absent or empty, no other person name anywhere, no
    private elements) and valid, distinct UIDs. Then, when installed, ``dicom-validator`` or
    ``dciodvfy`` (module docstring; their errors are prefixed with the tool's name).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    expected_shape : (T, H, W), optional
        Frames the file must hold.
    expected_fps : float, optional
        Frame rate the *Frame Time* must give (relative tolerance 1e-4).
    source_dataset : pydicom.dataset.Dataset or path, optional
        The source: none of its instance UIDs, person names or identifying values (the
        attributes listed in this module's ``_IDENTIFYING_KEYWORDS`` and *Patient ID*) may
        appear in the file.
    external : bool
        Run an installed external validator.

    Returns
    -------
    list of str
        The problems found; empty when the file passes.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (an unreadable file is a problem, not an error).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    source = None if source_dataset is None else _source_dataset(source_dataset)
    with warnings.catch_warnings():  # pydicom warns about invalid values as it parses them: reported below
        warnings.simplefilter("ignore", UserWarning)
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad files
            return [f"cannot be read as DICOM ({type(exc).__name__}: {exc})"]
        problems = _cine_problems(ds, expected_shape, expected_fps)
        problems += _pixel_problems(ds, expected_shape)
        problems += _marking_problems(ds)
        problems += _personal_data_problems(ds)
        problems += _uid_problems(ds)
        if source is not None:
            problems += _source_leak_problems(ds, source)
    if external:
        problems += _external_validator_problems(path)
    return problems


def _cine_problems(ds: Dataset, expected_shape: tuple | None, expected_fps: float | None) -> list[str]:
    """SOP class, modality, frame count and cine timing."""
    problems = []
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != US_MULTIFRAME_IMAGE_STORAGE:
        problems.append(f"SOPClassUID is {sop_class!r} ({UID(sop_class).name}), expected "
                        f"{US_MULTIFRAME_IMAGE_STORAGE} (Ultrasound Multi-frame Image Storage)")
    meta = ds.get("file_meta", Dataset())
    if str(meta.get("MediaStorageSOPClassUID", "")) != sop_class:
        problems.append("file meta MediaStorageSOPClassUID differs from SOPClassUID")
    if str(meta.get("MediaStorageSOPInstanceUID", "")) != str(ds.get("SOPInstanceUID", "")):
        problems.append("file meta MediaStorageSOPInstanceUID differs from SOPInstanceUID")
    if str(ds.get("Modality", "")) != "US":
        problems.append(f"Modality is {ds.get('Modality', None)!r}, expected 'US'")
    n_frames = _integer(ds.get("NumberOfFrames", None))
    if n_frames is None or n_frames < 2:
        problems.append(f"NumberOfFrames is {ds.get('NumberOfFrames', None)!r}, expected an integer >= 2")
    elif expected_shape is not None and n_frames != expected_shape[0]:
        problems.append(f"NumberOfFrames is {n_frames}, expected {expected_shape[0]}")
    return problems + _frame_time_problems(ds, expected_fps)


def _frame_time_problems(ds: Dataset, expected_fps: float | None) -> list[str]:
    """*Frame Time* positive, pointed to by the *Frame Increment Pointer*, matching ``expected_fps``."""
    problems = []
    frame_time = _number(ds.get("FrameTime", None))
    if frame_time is None or frame_time <= 0:
        problems.append(f"FrameTime is {ds.get('FrameTime', None)!r}, expected a positive number of ms")
    elif expected_fps is not None and abs(1000.0 / frame_time - expected_fps) > 1e-4 * expected_fps:
        problems.append(f"FrameTime {frame_time} ms gives {1000.0 / frame_time:.6g} fps, expected {expected_fps:g}")
    pointer = ds.get("FrameIncrementPointer", None)
    pointers = list(pointer) if isinstance(pointer, (list, MultiValue)) else [pointer]
    if tag_for_keyword("FrameTime") not in pointers:
        problems.append(f"FrameIncrementPointer is {pointer!r}, expected (0018,1063) Frame Time")
    return problems


def _pixel_problems(ds: Dataset, expected_shape: tuple | None) -> list[str]:
    """Pixel data decodes to ``(NumberOfFrames, Rows, Columns)`` (and ``expected_shape``)."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise many types
        return [f"pixel data does not decode ({type(exc).__name__}: {exc})"]
    declared = (_integer(ds.get("NumberOfFrames", 1)), _integer(ds.get("Rows", None)), _integer(ds.get("Columns", None)))
    problems = []
    if pixels.shape != declared:
        problems.append(f"pixel data decodes to shape {pixels.shape}, expected (NumberOfFrames, Rows, Columns) "
                        f"= {declared} grayscale")
    if expected_shape is not None and pixels.shape != tuple(expected_shape):
        problems.append(f"pixel data has shape {pixels.shape}, expected {tuple(expected_shape)}")
    return problems


def _marking_problems(ds: Dataset) -> list[str]:
    """The attributes that say "synthetic"."""
    problems = []
    image_type = [str(v) for v in _as_list(ds.get("ImageType", None))]
    if image_type[:2] != list(_IMAGE_TYPE):
        problems.append(f"ImageType is {image_type}, expected to start with {list(_IMAGE_TYPE)}")
    expected = {"SyntheticData": "YES", "PatientName": SYNTHETIC_PATIENT_NAME}
    for keyword, value in expected.items():
        if str(ds.get(keyword, "")) != value:
            problems.append(f"{keyword} is {str(ds.get(keyword, '')) or 'missing'!r}, expected {value!r}")
    if str(ds.get("BurnedInAnnotation", "")) not in ("YES", "NO"):
        problems.append(f"BurnedInAnnotation is {str(ds.get('BurnedInAnnotation', '')) or 'missing'!r}, "
                        "expected 'YES' or 'NO'")
    if not str(ds.get("SeriesDescription", "")).startswith("SYNTHETIC"):
        problems.append("SeriesDescription does not start with 'SYNTHETIC'")
    if not str(ds.get("DerivationDescription", "")).strip():
        problems.append("DerivationDescription is missing or empty")
    purposes = [(str(code.get("CodeValue", "")), str(code.get("CodingSchemeDesignator", "")))
                for item in ds.get("ContributingEquipmentSequence", []) or []
                for code in item.get("PurposeOfReferenceCodeSequence", []) or []]
    if _SYNTHESIZING_EQUIPMENT[:2] not in purposes:
        problems.append("ContributingEquipmentSequence has no (109100, DCM, 'Synthesizing Equipment') item")
    return problems


def _personal_data_problems(ds: Dataset) -> list[str]:
    """Identifying attributes with a value, person names other than the synthetic one, private tags."""
    problems = [f"{keyword} holds a value (personal or site data): {_short(ds[keyword].value)}"
                for keyword in _IDENTIFYING_KEYWORDS if keyword in ds and ds[keyword].value not in ("", None, [])]
    if not str(ds.get("PatientID", "")).strip():
        problems.append(f"PatientID is empty, expected a pseudonym or {SYNTHETIC_PATIENT_ID!r}")
    for element in ds.iterall():
        if element.tag.is_private:
            problems.append(f"private element {element.tag} is present (may carry personal data)")
        elif element.VR == "PN" and str(element.value or "") not in ("", SYNTHETIC_PATIENT_NAME):
            problems.append(f"{element.keyword or element.tag} holds a person name: {_short(element.value)}")
    return problems


def _uid_problems(ds: Dataset) -> list[str]:
    """Every UID valid; study, series and instance UIDs distinct."""
    problems = []
    elements = list(ds.get("file_meta", Dataset()).iterall()) + list(ds.iterall())
    for element in elements:
        if element.VR != "UI":
            continue
        for value in _as_list(element.value):
            if value and not UID(str(value)).is_valid:
                problems.append(f"{element.keyword or element.tag} is not a valid UID: {str(value)!r}")
    instance_uids = [str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    if "" in instance_uids or len(set(instance_uids)) != 3:
        problems.append("StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID must be present and distinct")
    return problems


def _source_leak_problems(ds: Dataset, source: Dataset) -> list[str]:
    """Values of the source's instance UIDs, names and identifiers found anywhere in ``ds``."""
    uids, texts = _source_identifiers(source)
    problems = []
    for element in ds.iterall():
        for value in _text_values(element):
            if element.VR == "UI" and value in uids:
                problems.append(f"{element.keyword or element.tag} repeats a UID of the source dataset")
            elif element.VR != "UI" and any(text in value.lower() for text in texts):
                problems.append(f"{element.keyword or element.tag} contains personal data of the source: {value!r}")
    return problems


def _source_identifiers(source: Dataset) -> tuple[set[str], set[str]]:
    """Instance UIDs (not ``1.2.840.10008.*``) and identifying texts (lower case, >= 3 characters)."""
    uids, texts = set(), set()
    for element in source.iterall():
        values = _text_values(element)
        if element.VR == "UI":
            uids.update(v for v in values if v and not v.startswith("1.2.840.10008."))
        elif element.VR == "PN" or element.keyword in (*_IDENTIFYING_KEYWORDS, "PatientID"):
            for value in values:
                parts = [value, *re.split(r"[\^=]", value)]  # a person name and its components
                texts.update(part.strip().lower() for part in parts if len(part.strip()) >= 3)
    return uids, texts


def _external_validator_problems(path: Path) -> list[str]:
    """Errors of ``dicom-validator`` or ``dciodvfy`` when one is installed, else nothing."""
    if importlib.util.find_spec("dicom_validator") is not None:
        command, name = [sys.executable, "-m", "dicom_validator.validate_iods", str(path)], "dicom-validator"
    elif shutil.which("dciodvfy"):
        command, name = [shutil.which("dciodvfy"), str(path)], "dciodvfy"
    else:
        return []
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        warnings.warn(f"{path}: {name} could not run ({exc}); skipped", EchoKDMWarning, stacklevel=3)
        return []
    return _parse_validator_output(path, name, result.returncode, result.stdout + result.stderr)


def _parse_validator_output(path: Path, name: str, returncode: int, output: str) -> list[str]:
    """Error lines of an external validator, prefixed with its name."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if name == "dciodvfy":
        return [f"dciodvfy: {line}" for line in lines if line.startswith("Error")]
    if returncode == 0:
        return []
    if any("Failed to get DICOM edition" in line for line in lines):
        warnings.warn(f"{path}: dicom-validator has no copy of the DICOM standard (it downloads one on its "
                      "first run); skipped", EchoKDMWarning, stacklevel=4)
        return []
    skipped = ("Processing DICOM file", "SOP class is")
    errors = [f"dicom-validator: {line}" for line in lines if not line.startswith(skipped)]
    return errors or [f"dicom-validator: exited with status {returncode}"]


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, MultiValue, Sequence)):
        return list(value)
    return [value]


def _text_values(element: Any) -> list[str]:
    """String values of a data element (or of a raw value), stripped; empty for sequences."""
    value = getattr(element, "value", element)
    if element is None or isinstance(value, (Sequence, bytes)):
        return []
    return [str(v).strip() for v in _as_list(value) if isinstance(v, (str, PersonName))]


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _short(value: Any) -> str:
    text = repr(str(value))
    return text if len(text) <= 40 else text[:37] + "…'"


# --------------------------------------------------------------------------------------------
# EchoNet-Dynamic cohort
# --------------------------------------------------------------------------------------------


def write_echonet_cohort(
    root: str | os.PathLike,
    loops: Mapping[str, Any] | Iterable[Any],
    *,
    split: str = "TEST",
    overwrite: bool = False,
) -> Path:
    """Write generated loops in the EchoNet-Dynamic layout, so EchoNet tools read them.

    Writes ``Videos/<name>.avi``, ``FileList.csv`` and ``VolumeTracings.csv`` through
    :func:`~echokdm.io.echonet.write_echonet_dataset`, and :data:`COHORT_CSV_NAME` with what
    EchoNet has no column for. Per loop:

    * ``EF`` = ``ef_achieved`` when known (not ``None`` or NaN), else ``ef_target`` (%);
    * the traced keypoints: those re-detected on the frames (``detected_keypoints``) when
      ``ef_achieved`` was measured from them, so that ``EF``, ``EDV``, ``ESV`` and the tracings
      all describe what the frames show (``EF`` = (EDV − ESV) / EDV); otherwise the loop's target
      keypoints;
    * ``EDV`` / ``ESV`` = largest / smallest Simpson volume of the traced keypoints
      (:func:`~echokdm.geometry.volumes.simpson_volume`): mL when ``spacing_mm`` is known, else
      pixel³ (then an :class:`~echokdm.errors.EchoKDMWarning` names the clips, and the side
      table's ``volume_units`` says ``px^3``);
    * tracings at the ES frame then the ED frame (EchoNet's loader takes the first listed frame
      as ES), each 21 rows ``(x1, y1, x2, y2)`` from :func:`keypoints_to_tracing`: the long
      axis, then the 20 chords from basal to apical. They are the discs of the traced keypoints,
      so :func:`~echokdm.geometry.keypoints.tracing_keypoints` gives them back.

    The side table has one row per clip: ``FileName``, ``patient_id`` (the source's pseudonym,
    for patient-level splits), ``source_frame``, ``motion``, ``ef_target``, ``ef_achieved``,
    ``ef_keypoints`` (the EF of the target keypoints), ``tracings_from`` (``frames`` or
    ``keypoints``), ``ed_frame``, ``es_frame``, ``edv``, ``esv``, ``volume_units``, ``fps``,
    ``spacing_dx_mm``, ``spacing_dy_mm``.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder; created if missing.
    loops : mapping of str to loop, or iterable of loops
        A mapping gives the clip names (plain names, no ``.avi``); otherwise clips are named
        ``synthetic_00000``, ``synthetic_00001`` … in order.
    split : {"TRAIN", "VAL", "TEST"}
        ``Split`` of every clip (any case).
    overwrite : bool
        Replace existing files. Otherwise every target (CSVs and videos) is checked before
        anything is written and any existing one raises :class:`FileExistsError`.

    Returns
    -------
    pathlib.Path
        ``root``.

    Raises
    ------
    FileExistsError
        An output exists and ``overwrite`` is false.
    ValueError
        A loop with a bad attribute, no EF, or no frame with all 40 keypoints (the clip is
        named).
    """
    root = Path(root)
    named = list(loops.items()) if isinstance(loops, Mapping) else [
        (f"synthetic_{number:05d}", loop) for number, loop in enumerate(loops)]
    targets = [root / "FileList.csv", root / "VolumeTracings.csv", root / COHORT_CSV_NAME]
    _refuse_existing([*targets, *(root / "Videos" / f"{name}.avi" for name, _ in named)], overwrite)
    return write_echonet_items(root, ((name, loop, split) for name, loop in named), overwrite=overwrite)


def write_echonet_items(root: str | os.PathLike, named_loops: Iterable[tuple[str, Any, str]], *,
                        overwrite: bool = False) -> Path:
    """Write ``(name, loop, split)`` triples in the EchoNet-Dynamic layout, one loop at a time.

    The streaming core of :func:`write_echonet_cohort` (which checks every target first): each
    video is written as its loop arrives (:func:`~echokdm.io.echonet.write_echonet_dataset`
    consumes a generator), so loops made one by one (``echokdm synthesize``) need not all be
    held in memory; ``FileList.csv``, ``VolumeTracings.csv`` and the side table follow.
    """
    root = Path(root)
    rows: list[dict[str, Any]] = []

    def items():
        for name, loop, split in named_loops:
            item, row = _echonet_item(str(name), _loop_fields(loop, what=f"loop {name!r}"), split)
            rows.append(row)
            yield item

    write_echonet_dataset(root, items(), overwrite=overwrite)
    with atomic_output(root / COHORT_CSV_NAME, overwrite=overwrite) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    _warn_pixel_volumes([row["FileName"] for row in rows if row["volume_units"] != "mL"])
    return root


def _traced_keypoints(fields: _Loop) -> tuple[np.ndarray, str]:
    """The keypoints EchoNet's EDV, ESV and tracings come from: those re-detected on the frames when
    ``ef_achieved`` was measured from them (at least two frames with all 40), so EF, volumes and
    tracings all describe what the frames show; else the target keypoints."""
    if fields.detected_keypoints is not None and fields.ef_achieved is not None:
        if np.isfinite(simpson_volume(fields.detected_keypoints, fields.spacing_mm)).sum() >= 2:
            return fields.detected_keypoints, "frames"
    return fields.keypoints, "keypoints"


def _echonet_item(name: str, fields: _Loop, split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The :func:`write_echonet_dataset` item of one loop, and its side-table row."""
    target_volumes = simpson_volume(fields.keypoints, fields.spacing_mm)  # (T,) mL or pixel³
    if not np.isfinite(target_volumes).any():
        raise ValueError(f"loop {name!r}: no frame has all 40 keypoints; cannot derive EDV, ESV and tracings")
    ef = fields.ef_achieved if fields.ef_achieved is not None else fields.ef_target
    if ef is None:
        raise ValueError(f"loop {name!r}: neither ef_achieved nor ef_target is known; EchoNet needs an EF")
    traced, traced_from = _traced_keypoints(fields)
    volumes = simpson_volume(traced, fields.spacing_mm)
    ed, es = int(np.nanargmax(volumes)), int(np.nanargmin(volumes))
    tracings = {es: keypoints_to_tracing(traced[es]), ed: keypoints_to_tracing(traced[ed])}
    edv, esv = float(volumes[ed]), float(volumes[es])
    t_edv, t_esv = float(np.nanmax(target_volumes)), float(np.nanmin(target_volumes))
    item = {"file_name": name, "frames": fields.frames, "fps": fields.fps, "ef": ef, "edv": edv, "esv": esv,
            "split": split, "tracings": tracings}
    dx, dy = fields.spacing_mm if fields.spacing_mm is not None else (None, None)
    row = {"FileName": name, "patient_id": fields.patient_id, "source_frame": fields.source_frame,
           "motion": fields.motion, "ef_target": fields.ef_target, "ef_achieved": fields.ef_achieved,
           "ef_keypoints": 100.0 * (t_edv - t_esv) / t_edv if t_edv > 0 else float("nan"),
           "tracings_from": traced_from, "ed_frame": ed,
           "es_frame": es, "edv": edv, "esv": esv, "volume_units": "mL" if fields.spacing_mm else "px^3",
           "fps": fields.fps, "spacing_dx_mm": dx, "spacing_dy_mm": dy}
    return item, row


def keypoints_to_tracing(keypoints: np.ndarray) -> np.ndarray:
    """EchoNet-style tracing of one keypoint set: the long axis, then the 20 chords.

    The long axis is rebuilt as DESIGN.md defines it: perpendicular to the chords (their mean
    direction), from the basal centre (midpoint of the hinge points, found by extending each
    wall's two basal-most segments to the annulus plane, as
    :func:`~echokdm.geometry.keypoints.tracing_keypoints` does) over the length ``L`` at which
    the chords sit at ``t_j = (j + 0.5) / 20``. So ``tracing_keypoints`` returns the keypoints
    (exactly when the chords are perpendicular to the axis, as
    :func:`~echokdm.geometry.keypoints.mask_keypoints` makes them, asymmetric ventricles
    included).

    Parameters
    ----------
    keypoints : numpy.ndarray
        ``(40, 2)`` ``(x, y)`` pixels, all present.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(21, 4)`` rows ``(x1, y1, x2, y2)``: row 0 from the apex to the basal
        centre; row ``1 + j`` from keypoint ``j`` (image-left) to keypoint ``39 - j``, basal
        (``j = 0``) to apical.

    Raises
    ------
    ValueError
        Wrong shape, a missing keypoint, or chords that do not progress towards an apex.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (N_KEYPOINTS, 2) or not np.isfinite(kp).all():
        raise ValueError(f"keypoints must be a finite (40, 2) array, got shape {kp.shape}")
    left, right = kp[:N_CHORDS], kp[::-1][:N_CHORDS]  # (20, 2) each, basal -> apical
    across = (right - left).sum(axis=0)  # mean chord direction, image-left -> image-right
    n = across / max(np.linalg.norm(across), 1e-12)
    a = np.array([n[1], -n[0]])  # apex direction: n is image-right of a (DESIGN.md)
    slope, s0 = np.polyfit(CHORD_FRACTIONS, ((left + right) / 2) @ a, 1)  # axial position = s0 + t_j L
    if slope <= 0:
        raise ValueError("keypoints: the chords do not progress from base to apex along an axis")
    hinges = [_hinge(side, a, s0) for side in (left, right)]
    base = (hinges[0] + hinges[1]) / 2
    apex = base + slope * a
    chords = np.concatenate([left, right], axis=1)  # (20, 4)
    return np.concatenate([np.concatenate([apex, base])[None], chords]).astype(np.float32)  # (21, 4)


def _hinge(side: np.ndarray, a: np.ndarray, s0: float) -> np.ndarray:
    """Wall ``side`` ``(20, 2)`` (basal first) extended to the annulus plane ``p @ a = s0``."""
    direction = side[0] - side[2]  # towards the base
    along = side[0] @ a - s0
    denom = direction @ a
    return side[0] - along / denom * direction if abs(denom) > 1e-9 else side[0] - along * a


def _warn_pixel_volumes(names: list[str]) -> None:
    if names:
        warnings.warn(f"EDV/ESV of {len(names)} clip(s) (e.g. {names[0]!r}) are in pixel³, not mL: their loops "
                      f"have no pixel spacing; see volume_units in {COHORT_CSV_NAME}", EchoKDMWarning, stacklevel=3)
