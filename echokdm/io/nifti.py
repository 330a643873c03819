"""NIfTI cine loops: a generic 2D+t reader, a CAMUS reader, and writers.

Axis order
----------
A NIfTI volume is indexed ``data[i, j, ...]``. As in the CAMUS release and every ITK-based tool
(SimpleITK, ITK-SNAP, MITK), the first voxel axis ``i`` is the image **column** (x) and the
second ``j`` the **row** (y); for 2D+t data the last axis is time. Readers therefore transpose::

    (X, Y)        -> frames (1, H, W)     # H = Y (rows), W = X (columns)
    (X, Y, T)     -> frames (T, H, W)     # CAMUS and ITK 2D+t
    (X, Y, 1, T)  -> frames (T, H, W)     # NIfTI-standard 2D+t (time in the 4th dimension)

so that ``data[x, y, t] == frames[t, y, x]``. Nothing is flipped according to the sign of the
affine (CAMUS affines are identity-like, and echo images are displayed as stored); the affine's
axis codes (:func:`nibabel.aff2axcodes`, e.g. ``"RAS"``) are kept in ``metadata["axcodes"]`` so
a user can check a file from another source. The writers store ``frames[t, y, x]`` at
``data[x, y, t]``, the same convention.

Intensities
-----------
Integer voxels are divided by the dtype's maximum (``uint8`` / 255, ``uint16`` / 65535; signed
types are shifted by their minimum first); float voxels are kept when already in [0, 1], else
min-max scaled over the whole volume (:func:`echokdm.io._convert.to_unit_range`). A header
scale (``scl_slope``/``scl_inter``) makes nibabel return floats, which are then min-max scaled.

Pixel spacing
-------------
``spacing_mm = (dx, dy)`` comes from the header zooms ``(pixdim[1], pixdim[2])`` converted with
the header's spatial unit (``"mm"``, ``"micron"``, ``"meter"``). When the unit is ``"unknown"``
the zooms are taken as millimetres (ITK's convention) unless both are exactly 1.0, the value a
tool writes when it knows no calibration: spacing is then ``None`` (lengths in pixels). Zooms
are stored as float32, so they are rounded to 7 significant digits (0.308 reads back as 0.308).

Frame rate
----------
The ``fps`` argument wins. Otherwise, following the NIfTI standard, ``fps = 1 / pixdim[4]`` for
4-D ``(X, Y, 1, T)`` data whose temporal unit is ``"sec"``, ``"msec"`` or ``"usec"``. The third
zoom of a 3-D file is, by the standard, spatial (ITK writes 1.0 there for CAMUS), so a 3-D
``(X, Y, T)`` file has no frame rate, except files written by :func:`write_nifti`: they carry
``descrip = "echokdm cine (x, y, t)"``, and for them ``pixdim[3]`` is the frame interval in the
temporal unit. The fps is rounded to 6 significant digits (the interval is stored as float32).

Personal data
-------------
The header's free-text fields (``descrip``, ``aux_file``, ``db_name``) are never copied into
``Cine.metadata``; the CAMUS ``Sex`` and ``Age`` entries are never read.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from echokdm.errors import ReadError
from echokdm.io._convert import to_unit_range
from echokdm.io.anonymise import pseudonymise
from echokdm.io.atomic import atomic_output
from echokdm.io.cine import Cine

__all__ = [
    "read_nifti",
    "read_camus",
    "read_camus_cfg",
    "read_label_frames",
    "write_nifti",
    "write_label_nifti",
    "write_camus_patient",
    "CAMUS_LABELS",
    "CAMUS_VIEWS",
]

#: CAMUS label values in the ``_gt`` files.
CAMUS_LABELS = {"background": 0, "lv_blood_pool": 1, "myocardium": 2, "left_atrium": 3}

#: CAMUS view names in file names -> echokdm view names.
CAMUS_VIEWS = {"2CH": "A2C", "4CH": "A4C"}

_CAMUS_NAME = re.compile(
    r"^(?P<patient>patient\d+)_(?P<view>2CH|4CH)_(?P<kind>half_sequence|sequence|ED|ES)"
    r"(?P<gt>_gt)?(?P<suffix>\.nii(?:\.gz)?)$"
)
_CAMUS_PATTERN_TEXT = "patientNNNN_{2CH,4CH}_{half_sequence,sequence,ED,ES}.nii.gz"

# header unit -> factor to millimetres / to seconds
_TO_MM = {"mm": 1.0, "micron": 1e-3, "meter": 1e3}
_TO_SECONDS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}

#: ``descrip`` written by :func:`write_nifti`: marks a 3-D file whose third zoom is the frame interval.
CINE_DESCRIP = "echokdm cine (x, y, t)"

_LOAD_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, ValueError)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _load_volume(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Load a NIfTI file and its voxels (scaled by the header's slope/intercept, if any).

    Raises ``FileNotFoundError`` for a missing file and :class:`ReadError` for anything that is
    not a readable NIfTI-1/-2 file (wrong format, truncated or corrupt data).
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ReadError(path, "is a folder, not a NIfTI file")
    try:
        img = nib.load(path, mmap=False)
    except _LOAD_ERRORS as exc:
        raise ReadError(path, f"not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ReadError(path, f"not a NIfTI file (nibabel read it as {type(img).__name__})")
    try:
        data = np.asanyarray(img.dataobj)
    except _LOAD_ERRORS as exc:
        raise ReadError(path, f"corrupt or truncated NIfTI data ({exc})") from exc
    return img, data


def _to_frames_layout(data: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """Voxels ``(X, Y)``, ``(X, Y, T)`` or ``(X, Y, 1, T)`` -> ``(T, Y, X)`` = ``(T, H, W)``.

    Trailing singleton dimensions beyond the 4th are dropped. Returns the array and the layout
    name, e.g. ``"(X, Y, T)"``. Raises :class:`ReadError` naming the shape otherwise.
    """
    if data.dtype.names is not None:  # NIfTI RGB24 / RGBA32 voxels
        raise ReadError(path, f"colour ({'/'.join(data.dtype.names)}) voxels of shape {data.shape} are not "
                              "supported; expected grayscale (X, Y), (X, Y, T) or (X, Y, 1, T)")
    shape = data.shape
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 4:
        raise ReadError(path, f"{len(shape)}-D data of shape {shape} (vector or colour components?) is not "
                              "supported; expected grayscale (X, Y), (X, Y, T) or (X, Y, 1, T)")
    if data.ndim < 2 or 0 in data.shape:
        raise ReadError(path, f"data of shape {shape} is not an image; expected (X, Y), (X, Y, T) or (X, Y, 1, T)")
    if data.ndim == 4 and data.shape[2] != 1:
        raise ReadError(path, f"4-D data of shape {shape} is a 3-D volume over time; expected (X, Y, 1, T) "
                              "(a 2-D cine with a singleton third axis)")
    if data.ndim == 2:
        return data.T[None], "(X, Y)"  # (1, H, W)
    if data.ndim == 3:
        return data.transpose(2, 1, 0), "(X, Y, T)"  # (T, H, W)
    return data[:, :, 0, :].transpose(2, 1, 0), "(X, Y, 1, T)"  # (T, H, W)


def read_label_frames(path: str | os.PathLike) -> np.ndarray:
    """The voxels of a NIfTI label (mask) file as frames ``(T, H, W)``, values as stored (no mapping).

    ``(X, Y)``, ``(X, Y, T)`` and ``(X, Y, 1, T)`` volumes are read as :func:`read_nifti` reads
    images (a 2-D file is one frame).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ReadError
        Not a readable NIfTI file, or a shape that is not a 2-D image or cine.
    """
    path = Path(path)
    _, data = _load_volume(path)
    frames, _ = _to_frames_layout(np.asarray(data), path)
    return frames


def _round_sig(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (undoes float32 storage noise)."""
    return float(f"{value:.{digits}g}")


def _spacing_from_header(header: Any) -> tuple[tuple[float, float] | None, str]:
    """``(dx, dy)`` in mm from ``pixdim[1:3]`` and the spatial unit; ``None`` when uncalibrated.

    Returns the spacing and the spatial unit name read from the header.
    """
    unit, _ = header.get_xyzt_units()
    dx, dy = (float(z) for z in header["pixdim"][1:3])
    if not (np.isfinite(dx) and np.isfinite(dy) and dx > 0 and dy > 0):
        return None, unit
    if unit not in _TO_MM:
        if dx == 1.0 and dy == 1.0:
            return None, unit  # the default of tools that know no calibration
        return (_round_sig(dx, 7), _round_sig(dy, 7)), unit  # unknown unit: mm, as ITK does
    scale = _TO_MM[unit]
    return (_round_sig(dx * scale, 7), _round_sig(dy * scale, 7)), unit


def _fps_from_header(header: Any, layout: str) -> float | None:
    """Frames per second from the header, or ``None`` (see the module docstring for the rules)."""
    _, t_unit = header.get_xyzt_units()
    if t_unit not in _TO_SECONDS:
        return None
    if layout == "(X, Y, 1, T)":
        interval = float(header["pixdim"][4])
    elif layout == "(X, Y, T)" and _header_descrip(header) == CINE_DESCRIP:
        interval = float(header["pixdim"][3])
    else:
        return None
    if not (np.isfinite(interval) and interval > 0):
        return None
    return _round_sig(1.0 / (interval * _TO_SECONDS[t_unit]), 6)


def _header_descrip(header: Any) -> str:
    """The header's ``descrip`` field as text (used only to recognise echokdm's own files)."""
    raw = np.asarray(header["descrip"]).item()
    return raw.decode("latin-1").rstrip("\x00").strip() if isinstance(raw, bytes) else str(raw).strip()


def _axcodes(img: nib.Nifti1Image) -> str:
    """Axis codes of the affine, e.g. ``"RAS"``; ``"?"`` for an axis nibabel cannot name."""
    try:
        codes = nib.aff2axcodes(img.affine)
    except (ValueError, np.linalg.LinAlgError):
        return "???"
    return "".join(code if code is not None else "?" for code in codes)


def _read_lv_mask(mask_path: Path, image_path: Path, shape: tuple[int, ...], lv_label: int) -> np.ndarray:
    """Read a label volume as ``uint8`` ``(T, H, W)``: 1 where label == ``lv_label``, else 0.

    ``shape`` is the ``(T, H, W)`` shape of the image's frames; a different shape is a
    :class:`ReadError` naming both files.
    """
    _, labels = _load_volume(mask_path)
    labels, _ = _to_frames_layout(labels, mask_path)
    if labels.shape != shape:
        raise ReadError(mask_path, f"mask frames of shape (T, H, W) = {labels.shape} do not match the frames "
                                   f"{shape} of image {image_path}")
    return (labels == lv_label).astype(np.uint8)


def _checked_fps(fps: float | None) -> float | None:
    """Validate the ``fps`` argument."""
    if fps is None:
        return None
    fps = float(fps)
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return fps


def _nifti_stem(path: Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_nifti(
    path: str | os.PathLike,
    mask_path: str | os.PathLike | None = None,
    *,
    fps: float | None = None,
    lv_label: int = 1,
    patient_id: str | None = None,
    clip_id: str | None = None,
    dataset: str = "nifti",
    view: str | None = None,
) -> Cine:
    """Read a 2-D image or a 2D+t cine from a NIfTI file (``.nii`` or ``.nii.gz``).

    Parameters
    ----------
    path : str or os.PathLike
        The image: voxels ``(X, Y)``, ``(X, Y, T)`` or ``(X, Y, 1, T)`` with the first axis the
        column (x) and the second the row (y), as in CAMUS and ITK (module docstring).
    mask_path : str or os.PathLike, optional
        A label volume of the same shape (``(X, Y, 1)`` also matches a 2-D image). Voxels equal
        to ``lv_label`` become 1 in ``Cine.masks``, every other label 0.
    fps : float, optional
        Frame rate; overrides the header (1 / ``pixdim[4]`` for 4-D data with a time unit).
    lv_label : int
        Label of the LV blood pool in the mask (CAMUS: 1; 2 is myocardium, 3 left atrium).
    patient_id : str, optional
        Used as given, so it must already be pseudonymous (see :func:`echokdm.io.pseudonymise`).
        Default: ``pseudonymise(clip_id)``, i.e. every file is its own patient; pass the real
        grouping when several files come from one patient, or patient-level splits will leak.
    clip_id : str, optional
        Default: the file name without ``.nii`` / ``.nii.gz``.
    dataset : str
        Stored in ``Cine.dataset``.
    view : str, optional
        Echo view (``"A4C"`` …), stored in ``Cine.view``.

    Returns
    -------
    Cine
        ``frames`` ``float32`` ``(T, H, W)`` in [0, 1] (``T == 1`` for a 2-D image),
        ``spacing_mm`` ``(dx, dy)`` or ``None``, ``fps`` or ``None``, ``masks`` ``uint8``
        ``(T, H, W)`` when ``mask_path`` is given. ``metadata`` holds ``nifti_layout``,
        ``nifti_shape``, ``nifti_dtype``, ``axcodes``, ``spatial_unit``, ``temporal_unit``
        and ``fps_source`` (``"argument"``, ``"header"`` or ``None``).

    Raises
    ------
    FileNotFoundError
        When ``path`` or ``mask_path`` does not exist.
    echokdm.errors.ReadError
        When a file is not NIfTI, is corrupt or truncated, has an unsupported shape (5-D,
        colour, a 3-D volume over time), holds NaN/inf, or when the mask's shape differs.

    Examples
    --------
    >>> cine = read_nifti("patient0001_4CH_half_sequence.nii.gz")  # doctest: +SKIP
    >>> cine.frames.shape  # doctest: +SKIP
    (20, 843, 549)
    """
    path = Path(path)
    fps = _checked_fps(fps)
    img, data = _load_volume(path)
    raw_frames, layout = _to_frames_layout(data, path)
    if np.issubdtype(raw_frames.dtype, np.floating) and not np.all(np.isfinite(raw_frames)):
        raise ReadError(path, "image holds NaN or infinite voxel values")
    frames = to_unit_range(raw_frames)
    header = img.header
    spacing, spatial_unit = _spacing_from_header(header)
    header_fps = _fps_from_header(header, layout)
    masks = None
    if mask_path is not None:
        masks = _read_lv_mask(Path(mask_path), path, frames.shape, int(lv_label))
    clip_id = clip_id if clip_id is not None else _nifti_stem(path)
    metadata = {
        "format": "nifti",
        "nifti_layout": layout,
        "nifti_shape": tuple(int(n) for n in data.shape),
        "nifti_dtype": str(data.dtype),
        "axcodes": _axcodes(img),
        "spatial_unit": spatial_unit,
        "temporal_unit": header.get_xyzt_units()[1],
        "fps_source": "argument" if fps is not None else ("header" if header_fps is not None else None),
    }
    return Cine(
        frames=frames,
        fps=fps if fps is not None else header_fps,
        spacing_mm=spacing,
        patient_id=patient_id if patient_id is not None else pseudonymise(clip_id),
        clip_id=clip_id,
        view=view,
        source=path,
        dataset=dataset,
        masks=masks,
        metadata=metadata,
    )


# --------------------------------------------------------------------------------------------
# CAMUS
# --------------------------------------------------------------------------------------------

# cfg key -> (metadata key, converter); other keys (Sex, Age, unknown ones) are ignored.
_CFG_KEYS = {
    "ED": ("ed_frame", int),
    "ES": ("es_frame", int),
    "NbFrame": ("n_frames", int),
    "ImageQuality": ("image_quality", str),
    "EF": ("ef_percent", float),
    "LVedv": ("edv_ml", float),
    "LVesv": ("esv_ml", float),
}


def _to_int(text: str) -> int:
    """``"12"`` or ``"12.0"`` -> 12; anything else raises ``ValueError``."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{text!r} is not a whole number")
    return int(value)


def _parse_cfg_value(key: str, text: str) -> Any:
    """Convert one known cfg value; raises ``ValueError`` when it does not parse."""
    _, kind = _CFG_KEYS[key]
    if kind is int:
        return _to_int(text)
    if kind is float:
        return float(text)
    return text


def read_camus_cfg(cfg_path: str | os.PathLike) -> dict[str, Any]:
    """Read a CAMUS ``Info_2CH.cfg`` / ``Info_4CH.cfg`` file into metadata entries.

    Parameters
    ----------
    cfg_path : str or os.PathLike
        A text file of ``Key: value`` lines (``ED: 1``, ``ES: 12``, ``NbFrame: 20``,
        ``ImageQuality: Good``, ``EF: 51.5``, ``LVedv: 100.2``, ``LVesv: 48.6`` …).

    Returns
    -------
    dict
        ``ed_frame`` and ``es_frame`` as **0-based** frame indices (CAMUS counts frames from 1:
        ``ED: 1`` is frame 0), ``n_frames``, ``image_quality``, ``ef_percent``, ``edv_ml`` and
        ``esv_ml``, each only when present (the same keys as the EchoNet reader). ``Sex``, ``Age``
        and unknown keys are ignored: metadata holds no personal data.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    echokdm.errors.ReadError
        For a line that is not ``Key: value``, a value that does not parse, or ED/ES outside
        1 … NbFrame; the message names the file and the line number.
    """
    cfg_path = Path(cfg_path)
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: no such file")
    out: dict[str, Any] = {}
    lines = cfg_path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, sep, text = line.partition(":")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ReadError(cfg_path, f"line {number}: expected 'Key: value', got {line.strip()!r}")
        if key not in _CFG_KEYS:
            continue
        try:
            value = _parse_cfg_value(key, text)
        except ValueError as exc:
            raise ReadError(cfg_path, f"line {number}: bad value for {key}: {text!r} ({exc})") from exc
        if key in ("ED", "ES"):
            if value < 1:
                raise ReadError(cfg_path, f"line {number}: {key} = {value}, but CAMUS frames count from 1")
            value -= 1  # CAMUS is 1-based; echokdm frame indices are 0-based
        out[_CFG_KEYS[key][0]] = value
    _check_cfg_frames(cfg_path, out)
    return out


def _check_cfg_frames(cfg_path: Path, cfg: dict[str, Any]) -> None:
    """ED/ES (0-based) must lie within NbFrame when NbFrame is given."""
    n = cfg.get("n_frames")
    if n is None:
        return
    for key in ("ed_frame", "es_frame"):
        if key in cfg and cfg[key] >= n:
            name = "ED" if key == "ed_frame" else "ES"
            raise ReadError(cfg_path, f"{name} = {cfg[key] + 1} is beyond NbFrame = {n} (frames count from 1)")


def _parse_camus_name(path: Path) -> re.Match:
    """Match a CAMUS image file name; :class:`ReadError` (a ValueError) for ``_gt`` or other names."""
    match = _CAMUS_NAME.match(path.name)
    if match is None:
        raise ReadError(path, f"not a CAMUS file name; expected {_CAMUS_PATTERN_TEXT} "
                              "(e.g. patient0001_4CH_half_sequence.nii.gz)")
    if match["gt"]:
        image = path.with_name(path.name.replace("_gt.nii", ".nii"))
        raise ReadError(path, f"this is a CAMUS label (_gt) file; pass the image file {image.name} "
                              "instead (its _gt file is read as the mask)")
    return match


def read_camus(path: str | os.PathLike, *, salt: str | None = None, with_mask: bool = True) -> Cine:
    """Read one CAMUS image file, with its ``_gt`` mask and ``Info_<view>.cfg`` when present.

    Parameters
    ----------
    path : str or os.PathLike
        ``patientNNNN_{2CH,4CH}_{half_sequence,sequence,ED,ES}.nii.gz`` (not the ``_gt`` file).
        The files are read with :func:`read_nifti` (first voxel axis = column x).
    salt : str, optional
        Salt of the patient pseudonym (:func:`echokdm.io.pseudonymise`).
    with_mask : bool
        Read the ``_gt`` file next to the image, when it exists, as ``masks``: 1 where the CAMUS
        label is 1 (LV blood pool); myocardium (2) and left atrium (3) become 0.

    Returns
    -------
    Cine
        ``dataset="camus"``, ``view`` ``"A2C"``/``"A4C"``, ``clip_id`` the file name without
        suffix (e.g. ``"patient0001_4CH_half_sequence"``), ``patient_id`` =
        ``pseudonymise("patient0001", salt)``. ``metadata`` adds ``camus_view``, ``has_gt``,
        ``phase`` (``"ED"``/``"ES"`` for single-frame files, ``T == 1``) and the cfg entries
        of :func:`read_camus_cfg` (``ed_frame``/``es_frame`` 0-based).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    echokdm.errors.ReadError
        When the name is not a CAMUS image name (or is a ``_gt`` file), when a file cannot be
        read (see :func:`read_nifti`), or when the cfg file is malformed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    match = _parse_camus_name(path)
    gt_path = path.with_name(f"{_nifti_stem(path)}_gt{match['suffix']}")
    has_gt = gt_path.is_file()
    cine = read_nifti(
        path,
        gt_path if (with_mask and has_gt) else None,
        patient_id=pseudonymise(match["patient"], salt),
        dataset="camus",
        view=CAMUS_VIEWS[match["view"]],
    )
    cine.metadata.update(camus_view=match["view"], has_gt=has_gt)
    if match["kind"] in ("ED", "ES"):
        cine.metadata["phase"] = match["kind"]
    cfg_path = path.with_name(f"Info_{match['view']}.cfg")
    if cfg_path.is_file():
        cine.metadata.update(read_camus_cfg(cfg_path))
    return cine


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

_WRITE_DTYPES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): None}


def _nifti_suffix(path: Path) -> str:
    """``".nii.gz"`` or ``".nii"``; ``ValueError`` for any other suffix."""
    name = path.name.lower()
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise ValueError(f"{path}: a NIfTI file name must end with .nii or .nii.gz")


def _check_target(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless ``overwrite``; the message names the path."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, cannot write a file there")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")


def _replace_atomically(path: Path, suffix: str, write) -> Path:
    """Call ``write(tmp)`` on a temporary name in ``path``'s folder, then rename it to ``path``.

    The temporary name keeps ``suffix`` (nibabel compresses according to ``.gz``). The caller has
    checked ``path`` (:func:`_check_target`).
    """
    with atomic_output(path, overwrite=True, suffix=suffix) as tmp:
        write(tmp)
    return path


def _as_tyx(array: np.ndarray, name: str) -> np.ndarray:
    """``(H, W)`` or ``(T, H, W)`` -> ``(T, H, W)``; ``ValueError`` naming ``name`` otherwise."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"{name} must have shape (T, H, W) or (H, W), got {array.shape}")
    return array


def _checked_spacing(spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
    """Validate ``spacing_mm``: ``None`` or two positive finite numbers ``(dx, dy)``."""
    if spacing_mm is None:
        return None
    values = tuple(float(v) for v in spacing_mm)
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing_mm must be two positive numbers (dx, dy) in mm, got {spacing_mm}")
    return values  # type: ignore[return-value]


def _volume_image(tyx: np.ndarray, spacing_mm: tuple[float, float] | None, fps: float | None) -> nib.Nifti1Image:
    """Build a NIfTI image from ``(T, H, W)`` voxels: ``(X, Y, T)``, or ``(X, Y)`` when ``T == 1``.

    Zooms are ``(dx, dy[, 1 / fps])`` (1.0 where unknown), units ``mm``/``sec`` when known,
    and ``descrip`` marks the third axis as time (:data:`CINE_DESCRIP`).
    """
    volume = tyx[0].T if tyx.shape[0] == 1 else tyx.transpose(2, 1, 0)  # (X, Y) or (X, Y, T)
    dx, dy = spacing_mm if spacing_mm is not None else (1.0, 1.0)
    interval = 1.0 / fps if (fps is not None and volume.ndim == 3) else 1.0
    affine = np.diag([dx, dy, interval, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(volume), affine)
    img.set_qform(affine, code="aligned")  # ITK reads the qform first
    header = img.header
    header.set_data_dtype(volume.dtype)
    header.set_zooms((dx, dy) if volume.ndim == 2 else (dx, dy, interval))
    header.set_xyzt_units("mm" if spacing_mm is not None else "unknown",
                          "sec" if (fps is not None and volume.ndim == 3) else "unknown")
    header["descrip"] = CINE_DESCRIP.encode("ascii")
    return img


def _checked_unit_frames(frames: np.ndarray, path: Path) -> np.ndarray:
    """``frames`` as ``float32`` ``(T, H, W)``; ``ValueError`` unless finite and within [0, 1]."""
    values = _as_tyx(frames, "frames").astype(np.float32)
    if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(f"{path}: frames must be finite values in [0, 1], got range "
                         f"[{np.nanmin(values):.4g}, {np.nanmax(values):.4g}]")
    return values


def _checked_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """``labels`` as ``(T, H, W)``; ``ValueError`` unless integer (or bool) values in 0 … 255."""
    tyx = _as_tyx(labels, "labels")
    if not (np.issubdtype(tyx.dtype, np.integer) or tyx.dtype == np.bool_):
        raise ValueError(f"{path}: labels must be integers, got dtype {tyx.dtype}")
    if tyx.min() < 0 or tyx.max() > 255:
        raise ValueError(f"{path}: labels must lie in 0 … 255, got [{tyx.min()}, {tyx.max()}]")
    return tyx


def _quantise(frames: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``[0, 1]`` floats -> ``dtype`` (rounded to the nearest level for integer types)."""
    top = _WRITE_DTYPES[dtype]
    if top is None:
        return frames.astype(dtype)
    return np.rint(frames * top).astype(dtype)


def write_nifti(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    spacing_mm: tuple[float, float] | None = None,
    fps: float | None = None,
    overwrite: bool = False,
    dtype: Any = np.uint8,
) -> Path:
    """Write a cine as a NIfTI file that :func:`read_nifti` (and ITK tools) read back.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.nii.gz`` (compressed) or ``.nii`` file; missing folders are created.
    frames : numpy.ndarray
        ``(T, H, W)`` (or ``(H, W)``) values in [0, 1], stored as ``(X, Y, T)`` voxels with
        ``data[x, y, t] = frames[t, y, x]``, or ``(X, Y)`` when ``T == 1``.
    spacing_mm : tuple of float, optional
        ``(dx, dy)`` in mm, stored as ``pixdim[1:3]`` with unit mm; ``None`` writes 1.0 with
        unit unknown (read back as ``None``).
    fps : float, optional
        Stored as the third zoom ``pixdim[3] = 1 / fps`` seconds (ITK's 2D+t convention),
        marked by ``descrip`` (module docstring). Not stored for a single frame.
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.
    dtype : numpy dtype
        ``uint8`` (``round(255 * v)``, default), ``uint16`` (``round(65535 * v)``) or ``float32``.

    Returns
    -------
    pathlib.Path
        ``path``. The file is written under a temporary name in the same folder and renamed
        when complete.

    Raises
    ------
    FileExistsError
        When ``path`` exists and ``overwrite`` is false.
    ValueError
        For a bad suffix, shape, dtype, spacing, fps, or values outside [0, 1] / not finite.
    """
    path = Path(path)
    suffix = _nifti_suffix(path)
    dtype = np.dtype(dtype)
    if dtype not in _WRITE_DTYPES:
        raise ValueError(f"dtype must be uint8, uint16 or float32, got {dtype}")
    values = _checked_unit_frames(frames, path)
    spacing_mm, fps = _checked_spacing(spacing_mm), _checked_fps(fps)
    _check_target(path, overwrite)
    img = _volume_image(_quantise(values, dtype), spacing_mm, fps)
    return _replace_atomically(path, suffix, lambda tmp: nib.save(img, tmp))


def write_label_nifti(
    path: str | os.PathLike,
    labels: np.ndarray,
    *,
    spacing_mm: tuple[float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a ``uint8`` label volume (CAMUS ``_gt`` style) that :func:`read_nifti` reads as a mask.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.nii.gz`` or ``.nii`` file; missing folders are created.
    labels : numpy.ndarray
        Integer (or bool) labels 0 … 255, ``(T, H, W)`` or ``(H, W)``, stored like
        :func:`write_nifti` (``(X, Y, T)``, or ``(X, Y)`` when ``T == 1``) as ``uint8``.
    spacing_mm : tuple of float, optional
        ``(dx, dy)`` in mm.
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.

    Returns
    -------
    pathlib.Path
        ``path``, written atomically (temporary name, then rename).
    """
    path = Path(path)
    suffix = _nifti_suffix(path)
    tyx = _checked_labels(labels, path)
    spacing_mm = _checked_spacing(spacing_mm)
    _check_target(path, overwrite)
    img = _volume_image(tyx.astype(np.uint8), spacing_mm, None)
    return _replace_atomically(path, suffix, lambda tmp: nib.save(img, tmp))


def _camus_cfg_text(ed_frame: int, es_frame: int, n_frames: int, ef: float | None,
                    edv: float | None, esv: float | None) -> str:
    """CAMUS ``Info_<view>.cfg`` content; ED/ES converted to CAMUS's 1-based numbering."""
    lines = [f"ED: {ed_frame + 1}", f"ES: {es_frame + 1}", f"NbFrame: {n_frames}"]
    for key, value in (("EF", ef), ("LVedv", edv), ("LVesv", esv)):
        if value is not None:
            lines.append(f"{key}: {float(value)!r}")
    return "\n".join(lines) + "\n"


def _check_camus_inputs(patient_name: str, view: str, frames: np.ndarray, labels: np.ndarray,
                        ed_frame: int, es_frame: int) -> str:
    """Validate :func:`write_camus_patient`'s inputs; returns the CAMUS view (``"2CH"``/``"4CH"``)."""
    if not re.fullmatch(r"patient\d+", patient_name):
        raise ValueError(f"patient_name must look like 'patient0001' (CAMUS naming), got {patient_name!r}")
    camus_view = {"A2C": "2CH", "A4C": "4CH"}.get(view, view)
    if camus_view not in CAMUS_VIEWS:
        raise ValueError(f"view must be '2CH' or '4CH' (or 'A2C'/'A4C'), got {view!r}")
    if frames.shape != labels.shape:
        raise ValueError(f"labels shape {labels.shape} differs from frames shape {frames.shape}")
    for name, index in (("ed_frame", ed_frame), ("es_frame", es_frame)):
        if not 0 <= index < frames.shape[0]:
            raise ValueError(f"{name} must be a 0-based frame index in 0 … {frames.shape[0] - 1}, got {index}")
    return camus_view


def write_camus_patient(
    folder: str | os.PathLike,
    patient_name: str,
    view: str,
    frames: np.ndarray,
    labels: np.ndarray,
    *,
    spacing_mm: tuple[float, float] | None,
    fps: float | None = None,
    ed_frame: int,
    es_frame: int,
    ef: float | None = None,
    edv: float | None = None,
    esv: float | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one patient's view in the CAMUS layout, readable by :func:`read_camus`.

    Files go to ``folder / patient_name`` (the CAMUS ``database_nifti/patientNNNN`` layout)::

        <patient>_<view>_half_sequence.nii.gz   <patient>_<view>_half_sequence_gt.nii.gz
        <patient>_<view>_ED.nii.gz              <patient>_<view>_ED_gt.nii.gz
        <patient>_<view>_ES.nii.gz              <patient>_<view>_ES_gt.nii.gz
        Info_<view>.cfg

    Parameters
    ----------
    folder : str or os.PathLike
        Dataset root (e.g. ``.../database_nifti``); the patient folder is created in it.
    patient_name : str
        CAMUS-style name ``patientNNNN``.
    view : str
        ``"2CH"`` or ``"4CH"`` (``"A2C"``/``"A4C"`` accepted).
    frames : numpy.ndarray
        ``(T, H, W)`` values in [0, 1], written as ``uint8``.
    labels : numpy.ndarray
        ``(T, H, W)`` integer labels (CAMUS: 1 LV blood pool, 2 myocardium, 3 left atrium).
    spacing_mm : tuple of float or None
        ``(dx, dy)`` in mm.
    fps : float, optional
        Stored in the half-sequence image (see :func:`write_nifti`).
    ed_frame, es_frame : int
        **0-based** indices of the ED and ES frames; the cfg stores them 1-based, as CAMUS does.
    ef, edv, esv : float, optional
        Ejection fraction (percent) and LV volumes (mL) for the cfg.
    overwrite : bool
        Replace existing files; otherwise ``FileExistsError`` before anything is written.

    Returns
    -------
    dict of str to pathlib.Path
        Keys ``"half_sequence"``, ``"half_sequence_gt"``, ``"ED"``, ``"ED_gt"``, ``"ES"``,
        ``"ES_gt"`` and ``"cfg"``.
    """
    out_dir = Path(folder) / patient_name
    frames, labels = _checked_unit_frames(frames, out_dir), _checked_labels(labels, out_dir)
    camus_view = _check_camus_inputs(patient_name, view, frames, labels, int(ed_frame), int(es_frame))
    spacing_mm, fps = _checked_spacing(spacing_mm), _checked_fps(fps)
    base = f"{patient_name}_{camus_view}"
    paths = {key: out_dir / f"{base}_{key}.nii.gz"
             for key in ("half_sequence", "half_sequence_gt", "ED", "ED_gt", "ES", "ES_gt")}
    paths["cfg"] = out_dir / f"Info_{camus_view}.cfg"
    for target in paths.values():
        _check_target(target, overwrite)
    common = {"spacing_mm": spacing_mm, "overwrite": overwrite}
    write_nifti(paths["half_sequence"], frames, fps=fps, **common)
    write_label_nifti(paths["half_sequence_gt"], labels, **common)
    for phase, index in (("ED", int(ed_frame)), ("ES", int(es_frame))):
        write_nifti(paths[phase], frames[index], **common)
        write_label_nifti(paths[f"{phase}_gt"], labels[index], **common)
    text = _camus_cfg_text(int(ed_frame), int(es_frame), frames.shape[0], ef, edv, esv)
    _replace_atomically(paths["cfg"], ".cfg", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return paths
