"""Synthetic DICOM cine: the writer of generated loops and its validator (beside :mod:`echokdm.io.dicom`).

:func:`write_synthetic_dicom` writes a generated loop (any object with the attributes of
``GeneratedLoop``, read duck-typed by :func:`~echokdm.io.loop_record.read_loop_record`) as an
*Ultrasound Multi-frame Image Storage* file marked as synthetic; :func:`validate_dicom` checks
one. The writer refuses to replace an existing file unless ``overwrite=True`` and writes under a
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
import datetime
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from echokdm import __version__
from echokdm.errors import EchoKDMWarning, ReadError
from echokdm.io.dicom import US_MULTIFRAME_IMAGE_STORAGE, write_dicom
from echokdm.io.loop_record import LoopRecord, percent_text, read_loop_record

__all__ = [
    "IDENTIFYING_KEYWORDS",
    "SOURCE_ATTRIBUTES_ALLOWED",
    "SYNTHETIC_PATIENT_ID",
    "SYNTHETIC_PATIENT_NAME",
    "check_synthetic_dicom_input",
    "read_source_dataset",
    "validate_dicom",
    "write_synthetic_dicom",
]

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

#: *Patient Name* of every synthetic file.
SYNTHETIC_PATIENT_NAME = "SYNTHETIC^ECHOKDM"
#: *Patient ID* of a synthetic file whose loop has no pseudonym.
SYNTHETIC_PATIENT_ID = "SYNTHETIC"

_IMAGE_TYPE = ("DERIVED", "SECONDARY")
_LOCAL_SCHEME = "99ECHOKDM"
_DERIVATION_CODE = ("KDM-SYNTH", _LOCAL_SCHEME, "Synthetic cine generated by keypoint-guided diffusion")
_SYNTHESIZING_EQUIPMENT = ("109100", "DCM", "Synthesizing Equipment")

#: Attributes that hold personal or site data and must be absent or empty in a synthetic file
#: (:func:`validate_dicom` checks them).
IDENTIFYING_KEYWORDS = (
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
# write_synthetic_dicom
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
    fields = read_loop_record(loop, what=f"{path}: loop")
    source = read_source_dataset(source_dataset)
    check_synthetic_dicom_input(path, fields, source)
    extra = {**_copied_source_attributes(source), **_synthetic_attributes(fields)}
    return write_dicom(path, fields.frames, fps=fields.fps, spacing_mm=fields.spacing_mm,
                       patient_id=fields.patient_id or SYNTHETIC_PATIENT_ID, overwrite=overwrite, extra=extra)


def read_source_dataset(source: Dataset | str | os.PathLike | None) -> Dataset | None:
    """The source DICOM of a synthetic file as a dataset: a path is read without pixel data.

    Raises
    ------
    FileNotFoundError
        ``source`` is a path that does not exist.
    echokdm.errors.ReadError
        The file cannot be read as DICOM.
    """
    if source is None or isinstance(source, Dataset):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such source DICOM file")
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on bad files
        raise ReadError(path, f"cannot read the source DICOM ({type(exc).__name__}: {exc})") from exc


def check_synthetic_dicom_input(path: Path, fields: LoopRecord, source: Dataset | None) -> None:
    """Check a loop before :func:`write_synthetic_dicom` writes it to ``path`` (errors name ``path``).

    At least 2 frames, and a ``patient_id`` that repeats no identifier of ``source`` (*Patient
    ID*, *Other Patient IDs*, *Accession Number*, *Patient Name*): it must be a pseudonym.
    :func:`~echokdm.generation.export.write_loop` calls it before writing any file.

    Raises
    ------
    ValueError
        Fewer than 2 frames, or a patient ID of the source.
    """
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


def _synthetic_attributes(fields: LoopRecord) -> dict[str, Any]:
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


def _derivation_description(fields: LoopRecord) -> str:
    """Free text (ST, at most 1024 characters) saying how the loop was made."""
    source = "one source frame" if fields.source_frame is None else f"one source frame (frame {fields.source_frame})"
    text = (f"Synthetic cine loop generated by echokdm {__version__} (KDM, keypoint-guided diffusion) from "
            f"{source}; motion: {fields.motion or 'n/a'}; EF target {percent_text(fields.ef_target)}; "
            f"EF achieved {percent_text(fields.ef_achieved)}. "
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
        attributes of :data:`IDENTIFYING_KEYWORDS` and *Patient ID*) may
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
    source = None if source_dataset is None else read_source_dataset(source_dataset)
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
    declared = (_integer(ds.get("NumberOfFrames", 1)), _integer(ds.get("Rows", None)),
                _integer(ds.get("Columns", None)))
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
                for keyword in IDENTIFYING_KEYWORDS if keyword in ds and ds[keyword].value not in ("", None, [])]
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
        elif element.VR == "PN" or element.keyword in (*IDENTIFYING_KEYWORDS, "PatientID"):
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

