"""DICOM ultrasound cine loops: read any echo DICOM file into a :class:`Cine`, write one back.

Reading goes through pydicom's pixel data decoders, so every transfer syntax that pydicom and
its plugins decode is supported: implicit/explicit VR little endian, explicit VR big endian,
deflated, RLE lossless (pydicom itself or ``pylibjpeg-rle``), JPEG baseline/extended/lossless
(``pylibjpeg-libjpeg`` or Pillow), JPEG-LS (``pyjpegls``) and JPEG 2000 (``pylibjpeg-openjpeg``
or Pillow). Every photometric interpretation an ultrasound machine writes (MONOCHROME1/2, RGB,
YBR_FULL, YBR_FULL_422, YBR_PARTIAL_*, PALETTE COLOR, and the YBR_RCT/YBR_ICT of JPEG 2000)
ends as grayscale ``float32`` ``(T, H, W)`` in [0, 1] (BT.601 luma for colour).

Calibration comes from the *Sequence of Ultrasound Regions* (region deltas in cm, converted to
mm), else from *Pixel Spacing*. Identifiers are pseudonymised; :attr:`Cine.metadata` holds
technical fields only (never names, dates or free-text descriptions).

Boxes in this module are half-open pixel boxes ``(x0, y0, x1, y1)``: columns ``x0 … x1 - 1``
and rows ``y0 … y1 - 1``, so ``frames[:, y0:y1, x0:x1]`` is the box. DICOM's region corners
(*Region Location Max X1/Y1*) are inclusive and are converted with ``+ 1``.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)
from scipy import ndimage

from echokdm.errors import EchoKDMWarning, MissingDecoderError, NonCardiacWarning, NonUltrasoundWarning, ReadError
from echokdm.io._convert import to_gray_frames
from echokdm.io.anonymise import pseudonymise
from echokdm.io.atomic import atomic_output
from echokdm.io.cine import Cine

__all__ = [
    "read_dicom",
    "write_dicom",
    "largest_region_hull",
    "cine_non_cardiac_reason",
    "non_cardiac_note",
    "non_cardiac_reason",
    "NON_CARDIAC_ANATOMY",
    "NON_CARDIAC_TRANSDUCERS",
    "motion_fan_mask",
    "calibration_region_box",
    "WRITABLE_TRANSFER_SYNTAXES",
    "US_IMAGE_STORAGE",
    "US_MULTIFRAME_IMAGE_STORAGE",
]

US_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
"""SOP Class UID of *Ultrasound Image Storage* (single frame)."""
US_MULTIFRAME_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
"""SOP Class UID of *Ultrasound Multi-frame Image Storage*."""

MOTION_THRESHOLD = 0.001
"""Temporal standard deviation (frames in [0, 1]) above which a pixel counts as moving.

About a quarter of one 8-bit grey level: burned-in text of DICOM cines (uncompressed or coded
frame by frame) does not vary at all, while the dim far field of a real fan barely does
(0.005 already loses parts of it in pydicom's ``ybr_color`` example)."""

# PS3.3 C.8.5.5.1: Region Spatial Format 1 = 2-D tissue or flow image, Region Data Type 1 =
# tissue, Physical Units 3 = cm.
_SPATIAL_2D, _DATA_TISSUE, _UNITS_CM = 1, 1, 3

# PyPI packages that provide a decoder, by transfer syntax (the first choice comes first).
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg and pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg and pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg and pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls (or pylibjpeg and pylibjpeg-libjpeg)",
    "1.2.840.10008.1.2.4.81": "pyjpegls (or pylibjpeg and pylibjpeg-libjpeg)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg and pylibjpeg-openjpeg (or pillow with OpenJPEG)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg and pylibjpeg-openjpeg (or pillow with OpenJPEG)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg and pylibjpeg-rle",
}

WRITABLE_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
)
"""Transfer syntaxes :func:`write_dicom` can write (8-bit pixels, so big endian needs no swap)."""

# Elements write_dicom derives from the frames; ``extra`` may not override them.
_PIXEL_KEYWORDS = frozenset({
    "PixelData", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation",
    "PlanarConfiguration", "SOPClassUID", "TransferSyntaxUID",
})


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_dicom(
    path: str | os.PathLike,
    *,
    crop_to_fan: bool = False,
    salt: str | None = None,
    allow_non_ultrasound: bool = True,
) -> Cine:
    """Read a single- or multi-frame DICOM ultrasound file.

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM file.
    crop_to_fan : bool, optional
        Crop the frames to the ultrasound image, removing burned-in text, ECG trace and
        labels around it. The box is the calibration region (*Sequence of Ultrasound
        Regions*) when there is one, else the bounding box of the largest connected region of
        pixels that change over time (see :func:`motion_fan_mask`); in the second case the
        static pixels inside the box but outside the fan are set to 0. The box
        ``(x0, y0, x1, y1)`` (half-open, pixels of the original image) is stored in
        ``metadata["crop_box"]``. Keypoints, spacing and everything else are not shifted:
        spacing per pixel does not change, and the caller adds ``(x0, y0)`` to go back to
        the original image. A single frame without a calibration region cannot be cropped by
        motion: a warning is issued and the frame is returned uncropped.
    salt : str, optional
        Salt of the pseudonyms (:func:`~echokdm.io.anonymise.pseudonymise`).
    allow_non_ultrasound : bool, optional
        Read files whose *Modality* is not ``"US"`` with a :class:`NonUltrasoundWarning`
        (default); when false, raise :class:`ReadError` instead.

    Returns
    -------
    Cine
        ``frames`` ``float32`` ``(T, H, W)`` in [0, 1] (grayscale; MONOCHROME1 inverted so
        that bright is echo-dense; integers scaled by ``2**BitsStored - 1``), ``fps`` (or
        ``None``), ``spacing_mm`` ``(dx, dy)`` in mm (or ``None``), pseudonymous
        ``patient_id`` (``"P…"``) and ``clip_id`` (``"C…"``), ``dataset="dicom"``,
        ``source=Path(path)`` and technical ``metadata``: ``transfer_syntax`` (UID),
        ``transfer_syntax_name``, ``photometric``, ``modality``, ``manufacturer``,
        ``manufacturer_model``, ``bits_stored``, ``n_frames``, ``rows``, ``columns`` (of the
        file, before cropping), ``frame_time_ms`` (``1000 / fps``), ``fps_source``,
        ``spacing_source``, ``crop_box``, ``crop_method`` (``"region"``, ``"motion"`` or
        ``None``), ``patient_id_source``, ``clip_id_source``, ``exam_anatomy`` (*Image Type* value 3, e.g.
        ``"EPICARDIAL"``, ``"OBSTETRICAL"``) and ``transducer_type`` (e.g. ``"CURVED LINEAR"``), ``None``
        when the file does not say. A file whose header says it is not of the heart
        (:func:`non_cardiac_note`) is read with a :class:`~echokdm.errors.NonCardiacWarning`.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ReadError
        Not a DICOM file, no pixel data, undecodable pixel data, or (with
        ``allow_non_ultrasound=False``) a modality other than US.
    MissingDecoderError
        The transfer syntax needs a decoder plugin that is not installed; the message names
        the PyPI package(s) to install.

    Examples
    --------
    >>> from pydicom import examples
    >>> cine = read_dicom(examples.get_path("ybr_color"))
    >>> cine.frames.shape, round(cine.fps)
    ((30, 240, 320), 30)
    """
    path = Path(path)
    ds = _open_dataset(path)
    _check_modality(ds, path, allow_non_ultrasound)
    anatomy, transducer = _check_cardiac(ds, path)
    frames = _decode_gray_frames(ds, path)  # (T, H, W) float32 in [0, 1]
    fps, fps_source = _frame_rate(ds)
    region = _calibration_region(ds)
    spacing_mm, spacing_source = _pixel_spacing_mm(ds, region)
    crop_box, crop_method = None, None
    if crop_to_fan:
        frames, crop_box, crop_method = _crop_to_fan(frames, region, path)
    patient_id, patient_id_source = _patient_pseudonym(ds, path, salt)
    clip_id, clip_id_source = _clip_pseudonym(ds, path, salt)
    metadata = _technical_metadata(ds, fps)
    metadata.update(
        exam_anatomy=anatomy,
        transducer_type=transducer,
        fps_source=fps_source,
        spacing_source=spacing_source,
        crop_box=crop_box,
        crop_method=crop_method,
        patient_id_source=patient_id_source,
        clip_id_source=clip_id_source,
    )
    return Cine(
        frames=frames,
        fps=fps,
        spacing_mm=spacing_mm,
        patient_id=patient_id,
        clip_id=clip_id,
        view=None,
        source=path,
        dataset="dicom",
        metadata=metadata,
    )


def _open_dataset(path: Path) -> Dataset:
    """Parse ``path`` with pydicom; errors name the file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    if path.is_dir():
        raise ReadError(path, "is a folder, not a DICOM file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except InvalidDicomError:
        ds = _read_without_preamble(path)
        caught = []
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise ReadError(path, f"cannot parse as DICOM ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        mislabelled = _byte_order_mismatch(ds, path)
        if mislabelled:
            raise ReadError(path, mislabelled)
        truncation = _truncation(ds, path, [str(w.message) for w in caught])
        if truncation:
            raise ReadError(path, truncation)
        if "Rows" in ds and "Columns" in ds:
            raise ReadError(path, "has image attributes (Rows, Columns) but no PixelData element: probably a file "
                                  f"cut short before its pixels ({path.stat().st_size} bytes); copy it again from "
                                  "the source")
        raise ReadError(path, "has no PixelData element (not an image: e.g. a report or DICOMDIR)")
    truncation = _truncation(ds, path, [str(w.message) for w in caught])
    if truncation:
        raise ReadError(path, truncation)
    return ds


def _truncation(ds: Dataset, path: Path, parse_warnings: list[str]) -> str | None:
    """Why ``ds`` looks cut short (the file ends inside an element), or ``None``.

    pydicom reads a value that the file ends inside without complaint (the value is just
    shorter than its declared length) and turns an end of file inside a sequence into a
    warning; both are caught here so that the error says "truncated" rather than "no pixel data".
    """
    size = path.stat().st_size if path.exists() else 0
    meta = getattr(ds, "file_meta", None)
    items = [(meta, tag) for tag in (meta.keys() if meta is not None else ())]
    items += [(ds, tag) for tag in ds.keys() if tag <= 0x7FE00010]  # trailing padding after the pixels is harmless
    if meta is not None and len(meta) and not len(ds) and getattr(ds, "preamble", None) is not None:
        return f"truncated file ({size} bytes): it ends after the file meta information, before the data set"
    for owner, tag in items:
        try:
            elem = owner.get_item(tag)
        except Exception:  # noqa: BLE001 - a garbled element is not a truncation
            continue
        length, value = getattr(elem, "length", None), getattr(elem, "value", None)
        if isinstance(value, (bytes, bytearray)) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            keyword = pydicom.datadict.keyword_for_tag(tag) or str(tag)
            return (f"truncated file ({size} bytes): it ends inside {keyword} {tag}, which declares {length} bytes "
                    f"but has {len(value)}; copy it again from the source")
    for message in parse_warnings:
        if "end of file" in message.lower() or "eof" in message.lower():
            return f"truncated file ({size} bytes): {message.split(' in file ')[0]}; copy it again from the source"
    return None


def _byte_order_mismatch(ds: Dataset, path: Path) -> str | None:
    """When the transfer syntax names one byte order / VR encoding and the data set is in another
    (a mislabelled file: its tags read as garbage, so pydicom finds no pixel data), say so."""
    meta = getattr(ds, "file_meta", None)
    declared = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    if declared is None or group_length is None or getattr(ds, "preamble", None) is None:
        return None
    start = 128 + 4 + 12 + int(group_length)
    pydicom_logger = logging.getLogger("pydicom")
    encodings = ((False, True, "Explicit VR Little Endian"), (True, True, "Implicit VR Little Endian"),
                 (False, False, "Explicit VR Big Endian"))
    for implicit, little, name in encodings:
        if declared.is_transfer_syntax and (declared.is_implicit_VR, declared.is_little_endian) == (implicit, little):
            continue
        level = pydicom_logger.level
        pydicom_logger.setLevel(logging.CRITICAL)  # trial parses in a wrong encoding log a warning per element
        try:
            with open(path, "rb") as fp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fp.seek(start)
                other = pydicom.filereader.read_dataset(fp, implicit, little)
                found = "PixelData" in other and int(other.get("Rows", 0) or 0) > 0
        except Exception:  # noqa: BLE001 - this encoding does not fit either
            continue
        finally:
            pydicom_logger.setLevel(level)
        if found:
            return (f"its TransferSyntaxUID says {declared.name} but the data set is encoded as {name} "
                    "(a mislabelled file: its elements, pixel data included, read as garbage); "
                    "fix its TransferSyntaxUID")
    return None


def _read_without_preamble(path: Path) -> Dataset:
    """Read a file lacking the 128-byte preamble and 'DICM' prefix (older exports) if it is one.

    Accepted only when the forced parse finds pixel data, so that other files are refused.
    """
    problem = "not a DICOM file (no 'DICM' prefix, and no dataset with pixel data)"
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise ReadError(path, problem) from exc
    try:
        has_pixels = "PixelData" in ds and int(ds.get("Rows", 0) or 0) > 0
    except Exception:  # noqa: BLE001 - a forced parse of garbage can fail lazily, with any error
        has_pixels = False
    if not has_pixels:
        raise ReadError(path, problem)
    return ds


#: *Image Type* value 3 (the anatomy of an ultrasound image, DICOM PS3.3 C.8.5.6.1.1) of exams that are not of
#: the heart. Terms not listed (cardiac ones such as TRANSTHORACIC, EPICARDIAL, TEE, FETAL HEART, and any vendor
#: term) raise nothing.
NON_CARDIAC_ANATOMY = frozenset({
    "ABDOMINAL", "BREAST", "ENDORECTAL", "ENDOVAGINAL", "GYNECOLOGY", "LAPAROSCOPIC", "MUSCULOSKELETAL",
    "NEONATAL HEAD", "OBSTETRICAL", "OPHTHALMIC", "PELVIC", "RETROPERITONEAL", "SCROTAL", "SMALL PARTS", "THYROID",
    "TRANSCRANIAL", "TRANSRECTAL", "TRANSVAGINAL", "UROLOGIC", "VASCULAR",
})
#: *Transducer Type* (0018,6031) of probes that do not make apical echocardiograms (a phased-array sector does).
NON_CARDIAC_TRANSDUCERS = frozenset({"LINEAR", "CURVED LINEAR", "ENDOCAV_LINEAR", "ENDOCAV_CLA", "ENDOCAV_MECH"})
_CARDIAC_WORDS = ("CARD", "ECHO", "HEART", "TEE", "TRANSESOPHAGEAL", "TRANSTHORACIC")


def _check_cardiac(ds: Dataset, path: Path) -> tuple[str | None, str | None]:
    """``(exam_anatomy, transducer_type)``; warns when they say the file is not of the heart."""
    anatomy, transducer = _exam_anatomy(ds), _transducer_type(ds)
    not_cardiac = non_cardiac_note(anatomy, transducer)
    if not_cardiac:
        warnings.warn(f"{path}: {not_cardiac}", NonCardiacWarning, stacklevel=3)
    return anatomy, transducer


def _exam_anatomy(ds: Dataset) -> str | None:
    """*Image Type* value 3 (upper case), the anatomy of an ultrasound image; ``None`` when absent."""
    values = ds.get("ImageType", None)
    values = [values] if isinstance(values, str) else list(values or [])
    return str(values[2]).strip().upper() or None if len(values) >= 3 else None


def _transducer_type(ds: Dataset) -> str | None:
    """*Transducer Type* (upper case), of the file or else of its first calibration region that says;
    ``None`` when absent."""
    for item in [ds, *(ds.get("SequenceOfUltrasoundRegions", None) or [])]:
        value = str(item.get("TransducerType", "") or "").strip().upper()
        if value:
            return value
    return None


def non_cardiac_note(anatomy: str | None, transducer: str | None) -> str:
    """Why a file's header says it is not an echocardiogram (``""`` when it does not say so).

    ``anatomy`` is *Image Type* value 3 (:data:`NON_CARDIAC_ANATOMY`), ``transducer`` the *Transducer Type*
    (:data:`NON_CARDIAC_TRANSDUCERS`, heeded only when the anatomy is not a cardiac term, so a fetal heart
    scanned with a curved array raises nothing). echokdm's models find the left ventricle of apical
    four-chamber views; on other images they draw one where there is none.
    """
    said = non_cardiac_reason(anatomy, transducer)
    if not said:
        return ""
    return (f"its header says this is not an echocardiogram ({said}): echokdm's models find the left "
            "ventricle of apical four-chamber views and on other images draw one where there is none, so its "
            "keypoints, EF and generated beats would mean nothing")


def cine_non_cardiac_reason(cine) -> str:
    """:func:`non_cardiac_reason` of a read clip (its ``metadata``'s ``exam_anatomy`` and ``transducer_type``;
    ``""`` for a clip whose reader records neither, e.g. a video or NIfTI)."""
    meta = getattr(cine, "metadata", None) or {}
    return non_cardiac_reason(meta.get("exam_anatomy"), meta.get("transducer_type"))


def non_cardiac_reason(anatomy: str | None, transducer: str | None) -> str:
    """The header's words against an echocardiogram, e.g. ``"Image Type says OBSTETRICAL; a CURVED LINEAR
    transducer"`` (``""`` when none; :func:`non_cardiac_note`)."""
    cardiac = anatomy is not None and any(word in anatomy for word in _CARDIAC_WORDS)
    said = []
    if anatomy in NON_CARDIAC_ANATOMY:
        said.append(f"Image Type says {anatomy}")
    if transducer in NON_CARDIAC_TRANSDUCERS and not cardiac:
        said.append(f"a {transducer} transducer")
    return "; ".join(said)


def _check_modality(ds: Dataset, path: Path, allow_non_ultrasound: bool) -> None:
    """Warn (or raise :class:`ReadError`) when *Modality* is not ``"US"``."""
    modality = str(ds.get("Modality", "") or "").strip()
    if modality == "US":
        return
    problem = f"modality is {modality!r}, not 'US' (ultrasound)" if modality else "has no Modality"
    if not allow_non_ultrasound:
        raise ReadError(path, problem)
    warnings.warn(f"{path}: {problem}; reading it anyway", NonUltrasoundWarning, stacklevel=3)


def _transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax, inferred from its encoding when the file has no meta."""
    tsyntax = ds.get("file_meta", FileMetaDataset()).get("TransferSyntaxUID", None)
    if tsyntax:
        return UID(tsyntax)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if not little:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _decode_pixels(ds: Dataset, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Decoded pixel array (YBR_FULL* converted to RGB) and pydicom's pixel properties.

    Raises :class:`MissingDecoderError` when no installed plugin decodes the transfer syntax
    (pydicom 3 reports that as ``Decoder.is_available == False`` and, when decoding anyway, a
    ``RuntimeError`` saying the plugins are "missing dependencies").
    """
    tsyntax = _transfer_syntax(ds)
    _check_native_pixel_length(ds, path, tsyntax)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        problem = f"pixel data in unsupported transfer syntax {tsyntax.name} ({tsyntax})"
        raise ReadError(path, problem) from exc
    if not decoder.is_available:
        raise _missing_decoder_error(path, tsyntax, decoder.missing_dependencies)
    try:
        return decoder.as_array(ds, as_rgb=True)
    except RuntimeError as exc:
        if "missing dependencies" in str(exc):
            raise _missing_decoder_error(path, tsyntax, decoder.missing_dependencies) from exc
        raise ReadError(path, f"cannot decode {tsyntax.name} pixel data: {exc}") from exc
    except Exception as exc:
        problem = f"cannot decode {tsyntax.name} pixel data ({type(exc).__name__}: {exc})"
        raise ReadError(path, problem) from exc


_NATIVE_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian)


def _check_native_pixel_length(ds: Dataset, path: Path, tsyntax: UID) -> None:
    """Refuse uncompressed pixel data shorter than Rows × Columns × frames × samples × bits say."""
    if tsyntax not in _NATIVE_SYNTAXES or "PixelData" not in ds:
        return
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.BitsAllocated)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        got = len(ds.PixelData)
    except Exception:  # noqa: BLE001 - missing or garbled attributes are reported by the decoder
        return
    if photometric == "YBR_FULL_422":
        samples = 2  # two bytes per pixel: Y Y Cb Cr per pair
    expected = (rows * cols * frames * samples * bits + 7) // 8
    if got < expected:
        raise ReadError(
            path,
            f"pixel data length mismatch: expected {expected} bytes for {rows} rows × {cols} columns × {frames} "
            f"frame(s) × {samples} sample(s) × {bits} bits, got {got} (a truncated file, or wrong Rows/Columns/"
            "NumberOfFrames/BitsAllocated)",
        )


def _missing_decoder_error(path: Path, tsyntax: UID, missing: list[str]) -> MissingDecoderError:
    """The error naming the transfer syntax and the PyPI package(s) that decode it."""
    packages = _DECODER_PACKAGES.get(str(tsyntax), "a pydicom pixel data plugin for it")
    details = f" (pydicom: {'; '.join(missing)})" if missing else ""
    return MissingDecoderError(
        path,
        f"no decoder installed for transfer syntax {tsyntax.name} ({tsyntax}); "
        f"install {packages} with pip{details}",
    )


def _decode_gray_frames(ds: Dataset, path: Path) -> np.ndarray:
    """Pixel data as grayscale ``float32`` ``(T, H, W)`` in [0, 1]."""
    arr, props = _decode_pixels(ds, path)
    photometric = str(props.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    n_frames, rows, cols = int(props["number_of_frames"]), int(props["rows"]), int(props["columns"])
    samples = int(props.get("samples_per_pixel", 1))
    bits = int(props.get("bits_stored", ds.get("BitsStored", 8)))
    shape = (n_frames, rows, cols) if samples == 1 else (n_frames, rows, cols, samples)
    arr = arr.reshape(shape)  # (T, H, W) or (T, H, W, S)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        frames = _unit_gray(arr, bits, int(props.get("pixel_representation", 0)))
        return 1.0 - frames if photometric == "MONOCHROME1" else frames
    if photometric == "PALETTE COLOR":
        lut_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])  # LUT entries' bit depth
        return _colour_to_gray(arr, 2**lut_bits - 1, lambda frame: apply_color_lut(frame, ds))
    if photometric == "RGB":
        return _colour_to_gray(arr, 2**bits - 1)
    if photometric in ("YBR_FULL", "YBR_FULL_422", "YBR_ICT"):
        # Y of these colour spaces *is* the BT.601 luma of the RGB pixels
        return to_gray_frames(arr[..., 0], max_value=2**bits - 1)
    if photometric in ("YBR_PARTIAL_420", "YBR_PARTIAL_422"):
        scale = 2.0 ** (bits - 8)  # video range: Y in 16 … 235 at 8 bits
        luma = (arr[..., 0].astype(np.float32) - 16.0 * scale) / (219.0 * scale)
        return np.clip(luma, 0.0, 1.0).astype(np.float32)
    raise ReadError(path, f"unsupported photometric interpretation {photometric!r} after decoding")


def _colour_to_gray(
    pixels: np.ndarray, max_value: int, to_rgb: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """Luma ``float32`` ``(T, H, W)`` of colour frames, one frame at a time to bound memory.

    ``pixels`` is RGB ``(T, H, W, 3)``, or palette indices ``(T, H, W)`` with ``to_rgb``
    mapping one frame to RGB; ``max_value`` is the full-scale RGB value.
    """
    gray = np.empty(pixels.shape[:3], dtype=np.float32)  # (T, H, W)
    for t, frame in enumerate(pixels):
        rgb = frame if to_rgb is None else to_rgb(frame)  # (H, W, 3)
        gray[t] = to_gray_frames(rgb[None], max_value=max_value)[0]
    return gray


def _unit_gray(arr: np.ndarray, bits_stored: int, pixel_representation: int) -> np.ndarray:
    """Monochrome ``(T, H, W)`` values of ``bits_stored`` bits to [0, 1] (signed: shifted up)."""
    if np.issubdtype(arr.dtype, np.floating):  # Float Pixel Data: min-max over the cine
        return to_gray_frames(arr)
    full_scale = 2**bits_stored - 1
    if pixel_representation == 1:  # two's complement: -2**(b-1) … 2**(b-1) - 1
        shifted = (arr.astype(np.float32) + 2 ** (bits_stored - 1)) / full_scale
        return to_gray_frames(np.clip(shifted, 0.0, 1.0))
    return to_gray_frames(arr, max_value=full_scale)


def _positive_float(value: Any) -> float | None:
    """``float(value)`` when it is a finite positive number, else ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _frame_rate(ds: Dataset) -> tuple[float | None, str | None]:
    """Frames per second and the keyword it came from.

    Priority: *Frame Time* (ms per frame), *Frame Time Vector* (ms since the previous frame;
    the mean of the positive entries), *Cine Rate*, *Recommended Display Frame Rate*.
    """
    frame_time = _positive_float(ds.get("FrameTime", None))
    if frame_time is not None:
        return 1000.0 / frame_time, "FrameTime"
    vector = ds.get("FrameTimeVector", None)
    if vector is not None:
        values = vector if isinstance(vector, (MultiValue, list, tuple)) else [vector]
        increments = [v for v in (_positive_float(x) for x in values) if v is not None]
        if increments:
            return 1000.0 / float(np.mean(increments)), "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive_float(ds.get(keyword, None))
        if rate is not None:
            return rate, keyword
    return None, None


def _calibration_region(ds: Dataset) -> Dataset | None:
    """The 2-D image region of *Sequence of Ultrasound Regions*, or ``None``.

    Among the regions with *Region Spatial Format* 1 (2-D), prefer those calibrated in cm,
    then tissue regions (*Region Data Type* 1), then the largest by area.
    """
    candidates = [r for r in ds.get("SequenceOfUltrasoundRegions", []) or []
                  if r.get("RegionSpatialFormat", None) == _SPATIAL_2D and _region_box(r) is not None]
    if not candidates:
        return None

    def rank(region: Dataset) -> tuple[bool, bool, int]:
        x0, y0, x1, y1 = _region_box(region)
        return (_is_cm_region(region), region.get("RegionDataType", None) == _DATA_TISSUE,
                (x1 - x0) * (y1 - y0))

    return max(candidates, key=rank)


def calibration_region_box(ds: Dataset) -> tuple[int, int, int, int] | None:
    """Pixel box of the image region the reader calibrates from, or ``None`` without one.

    The region is the one :func:`read_dicom` takes its pixel spacing from (the 2-D region of
    *Sequence of Ultrasound Regions*, preferring cm calibration, tissue, then the largest); the
    box is half-open ``(x0, y0, x1, y1)`` in the coordinates of the stored frames.
    """
    region = _calibration_region(ds)
    return None if region is None else _region_box(region)


def _region_box(region: Dataset) -> tuple[int, int, int, int] | None:
    """Half-open box ``(x0, y0, x1, y1)`` of a region (DICOM corners are inclusive)."""
    try:
        x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
        x1, y1 = int(region.RegionLocationMaxX1) + 1, int(region.RegionLocationMaxY1) + 1
    except (AttributeError, TypeError, ValueError):
        return None
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _is_cm_region(region: Dataset) -> bool:
    """Whether the region is calibrated in cm along both axes with positive deltas."""
    return (region.get("PhysicalUnitsXDirection", None) == _UNITS_CM
            and region.get("PhysicalUnitsYDirection", None) == _UNITS_CM
            and _positive_float(region.get("PhysicalDeltaX", None)) is not None
            and _positive_float(region.get("PhysicalDeltaY", None)) is not None)


def _pixel_spacing_mm(ds: Dataset, region: Dataset | None) -> tuple[tuple[float, float] | None, str | None]:
    """``(dx, dy)`` in mm per pixel and the source keyword, or ``(None, None)``.

    Region deltas are cm per pixel (x, y); *Pixel Spacing* is mm as ``(row, column)``
    spacing, i.e. ``(dy, dx)``.
    """
    if region is not None and _is_cm_region(region):
        dx, dy = float(region.PhysicalDeltaX) * 10.0, float(region.PhysicalDeltaY) * 10.0
        return (dx, dy), "SequenceOfUltrasoundRegions"
    spacing = ds.get("PixelSpacing", None)
    if spacing is not None and len(spacing) == 2:
        dy, dx = (_positive_float(v) for v in spacing)
        if dx is not None and dy is not None:
            return (dx, dy), "PixelSpacing"
    return None, None


# --------------------------------------------------------------------------------------------
# cropping to the fan
# --------------------------------------------------------------------------------------------


def motion_fan_mask(frames: np.ndarray, threshold: float = MOTION_THRESHOLD) -> np.ndarray:
    """The ultrasound fan of a cine, found as the pixels that change over time.

    Pixels whose standard deviation over time exceeds ``threshold`` are cleaned with a
    morphological opening (removes thin moving lines such as the ECG trace or a sweeping
    cursor, before they can be joined to the fan) then a closing (joins the speckle), radius
    ``max(2, min(H, W) / 100)`` pixels; the largest connected region is kept and
    replaced by its convex hull (a sector or a linear probe's rectangle is convex; the hull
    fills the fan's holes and the dark regions along its edges that do not change). Static
    burned-in text outside the fan is therefore outside the mask.

    Parameters
    ----------
    frames : numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1], ``T >= 2``.
    threshold : float, optional
        Temporal standard deviation above which a pixel moves (in [0, 1] units).

    Returns
    -------
    numpy.ndarray
        ``bool`` ``(H, W)``, indexed ``[row, col]``; all false when nothing moves.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"motion_fan_mask needs (T, H, W) frames with T >= 2, got shape {frames.shape}")
    return largest_region_hull(frames.std(axis=0) > threshold)


def largest_region_hull(pixels: np.ndarray, textured: np.ndarray | None = None) -> np.ndarray:
    """The convex hull of the largest region of a binary image ``(H, W)``, after an opening (thin
    lines and small text touching it go) and a closing with a disk of about 1 % of the image side;
    all false when nothing is set. How a fan is found from the pixels that move or are bright.

    With ``textured`` (``bool`` ``(H, W)``), the largest of the regions of which at least half the
    pixels are textured, when there is one (:func:`echokdm.io.fan.still_fan_mask`: a flat grey banner
    with text, larger than the image, is not the fan)."""
    radius = max(2, int(round(min(pixels.shape) / 100)))
    disk = _disk(radius)
    padded = np.pad(np.asarray(pixels, dtype=bool), radius + 1)  # so that closing does not erode at the border
    padded = ndimage.binary_closing(ndimage.binary_opening(padded, structure=disk), structure=disk)
    region = padded[radius + 1:-radius - 1, radius + 1:-radius - 1]
    labels, n_regions = ndimage.label(region)
    if n_regions == 0:
        return region
    from skimage.morphology import convex_hull_image  # imported here: slow to import

    sizes = np.bincount(labels.ravel())[1:].astype(float)
    if textured is not None:
        share = np.bincount(labels.ravel(), weights=np.asarray(textured, float).ravel())[1:] / np.maximum(sizes, 1)
        if (share >= 0.5).any():
            sizes = np.where(share >= 0.5, sizes, -1.0)
    largest = 1 + int(np.argmax(sizes))
    return convex_hull_image(labels == largest, offset_coordinates=False)


def _disk(radius: int) -> np.ndarray:
    """``bool`` ``(2r+1, 2r+1)`` disk structuring element."""
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy**2 + xx**2 <= radius**2


def _crop_to_fan(
    frames: np.ndarray, region: Dataset | None, path: Path
) -> tuple[np.ndarray, tuple[int, int, int, int] | None, str | None]:
    """Cropped frames, the half-open box ``(x0, y0, x1, y1)`` and the method used."""
    height, width = frames.shape[1:]
    if region is not None:
        box = _clip_region_box(_region_box(region), width, height, path)
        if box is not None:
            x0, y0, x1, y1 = box
            return np.ascontiguousarray(frames[:, y0:y1, x0:x1]), box, "region"
    if frames.shape[0] < 2:
        warnings.warn(f"{path}: single frame without a calibration region cannot be cropped to "
                      "the fan by motion; returned uncropped", EchoKDMWarning, stacklevel=3)
        return frames, None, None
    mask = motion_fan_mask(frames)  # (H, W) bool
    if not mask.any():
        warnings.warn(f"{path}: no moving pixels, cannot find the fan; returned uncropped",
                      EchoKDMWarning, stacklevel=3)
        return frames, None, None
    rows, cols = np.nonzero(mask)
    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    x0, y0, x1, y1 = box
    cropped = frames[:, y0:y1, x0:x1] * mask[y0:y1, x0:x1]  # static pixels off the fan -> 0
    return cropped.astype(np.float32, copy=False), box, "motion"


def _clip_region_box(
    box: tuple[int, int, int, int], width: int, height: int, path: Path
) -> tuple[int, int, int, int] | None:
    """The region box clipped to the image (warns when it overshoots by more than one pixel)."""
    x0, y0, x1, y1 = box
    clipped = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
    overshoot = max(-x0, -y0, x1 - width, y1 - height)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        warnings.warn(f"{path}: calibration region {box} lies outside the {width}x{height} image; "
                      "cropping by motion instead", EchoKDMWarning, stacklevel=4)
        return None
    if overshoot > 1:  # one pixel is common (a corner written as exclusive): clip silently
        # the region was drawn for another image size (e.g. the image was downsampled after
        # calibration), so its box would cut the fan: find the fan by motion instead
        warnings.warn(f"{path}: calibration region {box} extends beyond the {width}x{height} image "
                      "(it may belong to another image size, and so may its spacing); cropping by "
                      "motion instead", EchoKDMWarning, stacklevel=4)
        return None
    return clipped


# --------------------------------------------------------------------------------------------
# identifiers and metadata
# --------------------------------------------------------------------------------------------


def _first_present(ds: Dataset, keywords: tuple[str, ...]) -> tuple[str, str] | None:
    """``(value, keyword)`` of the first non-empty keyword of ``ds``."""
    for keyword in keywords:
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return value, keyword
    return None


def _patient_pseudonym(ds: Dataset, path: Path, salt: str | None) -> tuple[str, str]:
    """Pseudonym of *Patient ID* (else *Study Instance UID*, else the file path) and its source.

    A file marked *Patient Identity Removed* ``YES`` whose Patient ID is already an echokdm
    pseudonym (``P`` + 12 hex digits, as echokdm's synthetic DICOMs carry) keeps it, so a
    patient has one pseudonym through a run (source, generated files, and those read back)."""
    found = _first_present(ds, ("PatientID", "StudyInstanceUID"))
    if (found and found[1] == "PatientID" and re.fullmatch(r"P[0-9a-f]{12}", found[0])
            and str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() == "YES"):
        return found[0], "PatientID"
    value, source = found if found else (str(path.resolve()), "path")
    return pseudonymise(value, salt=salt, prefix="P"), source


def _clip_pseudonym(ds: Dataset, path: Path, salt: str | None) -> tuple[str, str]:
    """Pseudonym of *SOP Instance UID* (else the file path) and its source."""
    found = _first_present(ds, ("SOPInstanceUID",))
    value, source = found if found else (str(path.resolve()), "path")
    return pseudonymise(value, salt=salt, prefix="C"), source


def _technical_metadata(ds: Dataset, fps: float | None) -> dict[str, Any]:
    """Technical, non-personal facts about the file (no names, dates, IDs or descriptions)."""
    tsyntax = _transfer_syntax(ds)

    def text(keyword: str) -> str | None:
        value = str(ds.get(keyword, "") or "").strip()
        return value or None

    def integer(keyword: str) -> int | None:
        value = ds.get(keyword, None)
        return None if value in (None, "") else int(value)

    return {
        "transfer_syntax": str(tsyntax),
        "transfer_syntax_name": tsyntax.name,
        "photometric": text("PhotometricInterpretation"),
        "modality": text("Modality"),
        "manufacturer": text("Manufacturer"),
        "manufacturer_model": text("ManufacturerModelName"),
        "bits_stored": integer("BitsStored"),
        "n_frames": integer("NumberOfFrames") or 1,
        "rows": integer("Rows"),
        "columns": integer("Columns"),
        "frame_time_ms": None if fps is None else 1000.0 / fps,
    }


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_dicom(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    fps: float | None = None,
    spacing_mm: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    patient_id: str | None = None,
    overwrite: bool = False,
    extra: Mapping[str, Any] | None = None,
    encoding_options: Mapping[str, Any] | None = None,
) -> Path:
    """Write frames as an ultrasound DICOM file (8 bits per sample).

    ``T > 1`` frames give an *Ultrasound Multi-frame Image Storage* instance
    (1.2.840.10008.5.1.4.1.1.3.1), one frame an *Ultrasound Image Storage* instance
    (1.2.840.10008.5.1.4.1.1.6.1). Study, series and instance UIDs are new. The file is
    written to a temporary name in the same folder and renamed when complete.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its folder is created if needed.
    frames : numpy.ndarray
        ``(T, H, W)`` for MONOCHROME2 or ``(T, H, W, 3)`` for RGB, either ``uint8`` or float
        in [0, 1] (scaled by 255 and rounded).
    fps : float, optional
        Frame rate; written as *Frame Time* (ms), *Cine Rate* (rounded) and *Frame Increment
        Pointer* → Frame Time. Ignored for a single frame (that IOD has no Cine module).
    spacing_mm : tuple of float, optional
        ``(dx, dy)`` mm per pixel along columns and rows; written as one 2-D tissue region of
        *Sequence of Ultrasound Regions* covering the whole image, deltas in cm.
    photometric : {"MONOCHROME2", "RGB"}
        Photometric interpretation; must match the frames' shape.
    transfer_syntax : str
        One of :data:`WRITABLE_TRANSFER_SYNTAXES` (UID). Compressed syntaxes are encoded by
        ``Dataset.compress``: RLE lossless, JPEG-LS lossless and near-lossless (``jls_error``,
        default 0), JPEG 2000 lossless and lossy (needs ``j2k_cr`` or ``j2k_psnr``). JPEG 2000
        needs images of at least 32x32 pixels.
    patient_id : str, optional
        Written as *Patient ID* (keep it a pseudonym); empty when ``None``.
    overwrite : bool, optional
        Replace an existing ``path``; otherwise raise :class:`FileExistsError`.
    extra : mapping, optional
        Additional top-level DICOM keywords and values (e.g. ``{"ImageComments": "synthetic"}``),
        set last. Unknown keywords and the pixel module keywords derived from ``frames`` raise
        :class:`ValueError`.
    encoding_options : mapping, optional
        Keyword arguments for ``Dataset.compress`` (``jls_error``, ``j2k_cr``, ``j2k_psnr``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "clip.dcm"
    >>> write_dicom(out, np.zeros((4, 32, 32), np.float32), fps=50.0, spacing_mm=(0.3, 0.3)).name
    'clip.dcm'
    >>> read_dicom(out).fps
    50.0
    """
    path = Path(path)
    _refuse_overwrite(path, overwrite)
    try:
        tsyntax = _writable_transfer_syntax(transfer_syntax)
        pixels = _frames_to_uint8(frames, photometric)  # (T, H, W) or (T, H, W, 3) uint8
        ds = _new_us_dataset(pixels, photometric, patient_id)
        n_frames, height, width = pixels.shape[:3]
        if fps is not None and n_frames > 1:
            _set_cine(ds, fps)
        if spacing_mm is not None:
            _set_calibration_region(ds, spacing_mm, width, height)
        _set_extra(ds, extra)
        _encode(ds, tsyntax, dict(encoding_options or {}))
    except ValueError as exc:  # name the file the bad input was meant for
        raise ValueError(f"{path}: {exc}") from exc
    _save_atomically(ds, path, overwrite)
    return path


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Raise :class:`FileExistsError` naming ``path`` when it exists and ``overwrite`` is false."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it")


def _writable_transfer_syntax(transfer_syntax: str) -> UID:
    """``transfer_syntax`` as a UID, or a :class:`ValueError` listing the writable ones."""
    tsyntax = UID(str(transfer_syntax))
    if tsyntax not in WRITABLE_TRANSFER_SYNTAXES:
        names = ", ".join(f"{uid.name} ({uid})" for uid in WRITABLE_TRANSFER_SYNTAXES)
        raise ValueError(f"transfer_syntax {tsyntax.name} ({tsyntax}) cannot be written; use one of: {names}")
    return tsyntax


def _frames_to_uint8(frames: np.ndarray, photometric: str) -> np.ndarray:
    """Validate frames against ``photometric`` and convert them to ``uint8``."""
    frames = np.asarray(frames)
    expected = {"MONOCHROME2": 3, "RGB": 4}
    if photometric not in expected:
        raise ValueError(f"photometric must be 'MONOCHROME2' or 'RGB', got {photometric!r}")
    if frames.ndim != expected[photometric] or (photometric == "RGB" and frames.shape[-1] != 3):
        layout = "(T, H, W)" if photometric == "MONOCHROME2" else "(T, H, W, 3)"
        raise ValueError(f"{photometric} frames must have shape {layout}, got {frames.shape}")
    if 0 in frames.shape:
        raise ValueError(f"frames is empty, shape {frames.shape}")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    if not np.all(np.isfinite(frames)):
        raise ValueError("float frames must be finite, found NaN or infinity")
    if frames.min() < 0.0 or frames.max() > 1.0:
        raise ValueError(f"float frames must be in [0, 1], got range [{frames.min()}, {frames.max()}]")
    return np.round(frames * 255.0).astype(np.uint8)


def _new_us_dataset(pixels: np.ndarray, photometric: str, patient_id: str | None) -> Dataset:
    """A US (multi-frame) image dataset holding ``pixels`` natively, with fresh UIDs."""
    single = pixels.shape[0] == 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = US_IMAGE_STORAGE if single else US_MULTIFRAME_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    now = datetime.datetime.now()
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.StudyDate, ds.StudyTime = ds.ContentDate, ds.ContentTime
    for keyword in ("PatientName", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                    "StudyID", "AccessionNumber", "PatientOrientation"):
        setattr(ds, keyword, "")  # type 2: present, may be empty
    ds.PatientID = patient_id or ""
    ds.Modality = "US"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Manufacturer = "echokdm"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.set_pixel_data(pixels[0] if single else pixels, photometric, 8, generate_instance_uid=False)
    return ds


def _set_cine(ds: Dataset, fps: float) -> None:
    """Cine module: *Frame Time* (ms), *Cine Rate* and the *Frame Increment Pointer*."""
    rate = _positive_float(fps)
    if rate is None:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    ds.FrameTime = f"{1000.0 / rate:.6g}"
    ds.CineRate = max(1, int(round(rate)))
    ds.FrameIncrementPointer = tag_for_keyword("FrameTime")


def _set_calibration_region(ds: Dataset, spacing_mm: tuple[float, float], width: int, height: int) -> None:
    """One 2-D tissue region over the whole image with deltas in cm per pixel."""
    dx, dy = (_positive_float(v) for v in spacing_mm)
    if dx is None or dy is None:
        raise ValueError(f"spacing_mm must be two positive numbers (dx, dy) in mm, got {spacing_mm!r}")
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = _SPATIAL_2D, _DATA_TISSUE, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = width - 1, height - 1  # inclusive
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = _UNITS_CM
    region.PhysicalDeltaX, region.PhysicalDeltaY = dx / 10.0, dy / 10.0
    ds.SequenceOfUltrasoundRegions = [region]


def _set_extra(ds: Dataset, extra: Mapping[str, Any] | None) -> None:
    """Set the user's extra top-level keywords (not those derived from the frames)."""
    for keyword, value in (extra or {}).items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"extra: {keyword!r} is not a DICOM keyword")
        if keyword in _PIXEL_KEYWORDS:
            raise ValueError(f"extra: {keyword!r} is derived from the frames and cannot be set")
        setattr(ds, keyword, value)


def _encode(ds: Dataset, tsyntax: UID, options: dict[str, Any]) -> None:
    """Set the transfer syntax, compressing the pixel data when it is a compressed one."""
    if not tsyntax.is_compressed:
        ds.file_meta.TransferSyntaxUID = tsyntax
        return
    if tsyntax == JPEG2000 and not ({"j2k_cr", "j2k_psnr"} & options.keys()):
        raise ValueError("lossy JPEG 2000 needs encoding_options with 'j2k_cr' "
                         "(compression ratios, e.g. [10]) or 'j2k_psnr' (dB, e.g. [50])")
    try:
        ds.compress(tsyntax, generate_instance_uid=False, **options)
    except Exception as exc:  # pydicom wraps encoder failures in RuntimeError / ValueError
        raise ValueError(f"cannot encode the frames as {tsyntax.name}: {exc}") from exc
    if tsyntax == JPEG2000 or (tsyntax == JPEGLSNearLossless and options.get("jls_error", 0)):
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_15444_1" if tsyntax == JPEG2000 else "ISO_14495_1"


def _save_atomically(ds: Dataset, path: Path, overwrite: bool) -> None:
    """Write to a temporary file next to ``path``, then rename it over ``path`` (:func:`atomic_output`)."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
