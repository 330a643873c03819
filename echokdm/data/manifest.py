"""Manifests: one CSV row per clip, patient-level splits, validated on load.

Everything downstream of the readers takes a manifest, so a change of dataset format touches only
a reader. ``data_manifests/README.md`` documents every column.

Paths inside a manifest file are relative to the manifest's own folder when the data lies under
it (so a dataset folder with its manifest can be moved as one), absolute otherwise.
:func:`load_manifest` returns them absolute.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.errors import ManifestError, ReadError
from echokdm.io._text import check_utf8
from echokdm.io.atomic import atomic_output
from echokdm.io.cine import Cine
from echokdm.io.dispatch import CAMUS_NAME, FORMATS, NIFTI_SUFFIXES, VIDEO_SUFFIXES, is_dicom_file, read_cine

__all__ = [
    "cohort_patients",
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "ScanResult",
    "scan_folder",
    "assign_splits",
    "validate_fractions",
    "CLINICAL_KEY_COLUMNS",
    "CLINICAL_VALUE_COLUMNS",
    "read_clinical_csv",
    "check_manifest",
    "load_manifest",
    "write_manifest",
    "write_table",
    "load_table",
    "read_table",
    "table_to_check",
    "row_problems",
    "is_blank",
    "read_clip",
    "clip_file_stem",
    "mask_sibling",
]

#: Columns of a manifest, in the order they are written.
COLUMNS = (
    "patient_id", "clip_id", "dataset", "view", "path", "format", "mask_path", "tracings_path",
    "fps", "n_frames", "height", "width", "spacing_mm", "spacing_y_mm",
    "ef_reference", "edv_reference", "esv_reference", "split",
)
#: Columns a manifest must have; the others may be absent or empty.
REQUIRED_COLUMNS = ("patient_id", "clip_id", "dataset", "path", "format", "split")
#: Allowed values of the ``split`` column.
SPLITS = ("train", "val", "test")
_PATH_COLUMNS = ("path", "mask_path", "tracings_path")
_MASK_SUFFIX = re.compile(r"_(gt|mask|seg|label|labels)$", re.IGNORECASE)


@dataclasses.dataclass
class ScanResult:
    """What :func:`scan_folder` found.

    Attributes
    ----------
    manifest : pandas.DataFrame
        One row per readable clip, columns :data:`COLUMNS`, absolute paths.
    skipped : list of (str, str)
        ``(path, reason)`` for every file that was not included.
    """

    manifest: pd.DataFrame
    skipped: list[tuple[str, str]]


@dataclasses.dataclass
class _Candidate:
    """A file to read during a scan, with its reader options and known columns."""

    path: Path
    reader_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def validate_fractions(fractions: Sequence[float], *, name: str = "fractions") -> tuple[float, float, float]:
    """``fractions`` as three floats when they are three finite non-negative numbers summing to 1
    (within 0.001), else a :class:`ValueError` saying what is wrong (used by ``--fractions``)."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three numbers train,val,test, got {fractions!r}") from None
    if len(values) != 3:
        raise ValueError(f"{name} must be three numbers train,val,test, got {len(values)}: {values}")
    if any(not math.isfinite(f) or f < 0 for f in values):
        raise ValueError(f"{name} must be non-negative numbers, got {','.join(f'{f:g}' for f in values)}")
    if abs(sum(values) - 1.0) > 1e-3:
        raise ValueError(f"{name} must sum to 1 (train + val + test), got {','.join(f'{f:g}' for f in values)} "
                         f"= {sum(values):g}")
    return values  # type: ignore[return-value]


def _normalise_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any((not math.isfinite(f)) or f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {tuple(fractions)}")
    total = float(sum(fractions))
    return tuple(float(f) / total for f in fractions)  # type: ignore[return-value]


def assign_splits(
    patient_ids: Iterable[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Assign each patient to ``train``, ``val`` or ``test``, deterministically.

    Patients are ranked by a seeded hash of their ID (so the order does not depend on the order
    they were found in) and cut into consecutive groups whose sizes follow ``fractions``
    (largest-remainder rounding, so 20 patients at 0.7/0.15/0.15 give 14/3/3).

    Parameters
    ----------
    patient_ids : iterable of str
        Patient identifiers; duplicates are ignored.
    fractions : sequence of three floats
        Relative sizes of train, val and test (normalised to sum to one).
    seed : int
        Changes the assignment; the same seed and patients always give the same splits.

    Returns
    -------
    dict
        Patient ID → split name.

    Examples
    --------
    >>> s = assign_splits([f"p{i}" for i in range(20)], seed=1)
    >>> sorted(list(s.values()).count(k) for k in ("train", "val", "test"))
    [3, 3, 14]
    """
    fr = _normalise_fractions(fractions)
    unique = sorted(set(str(p) for p in patient_ids))
    ranked = sorted(unique, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    n = len(ranked)
    exact = [f * n for f in fr]
    counts = [int(math.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    out: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, counts, strict=True):
        for pid in ranked[start : start + count]:
            out[pid] = split
        start += count
    return out


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------


def _relative_id(path: Path, root: Path) -> str:
    """Clip identifier from the path below ``root`` without suffixes, '/'-separated."""
    rel = path.relative_to(root).as_posix()
    for suffix in (".nii.gz", *VIDEO_SUFFIXES, ".nii", ".dcm", ".dicom"):
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return rel


def mask_sibling(path: str | os.PathLike) -> Path | None:
    """The label file next to a NIfTI image, if any: ``<stem>_gt``, ``_mask``, ``_seg``, ``_label`` or
    ``_labels`` with ``.nii.gz`` or ``.nii``, tried in this order (``scan_folder`` and
    :func:`echokdm.generation.read_source` pair an image with it); ``None`` when there is none."""
    path = Path(path)
    stem = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    for tag in ("_gt", "_mask", "_seg", "_label", "_labels"):
        for ext in (".nii.gz", ".nii"):
            candidate = path.with_name(stem + tag + ext)
            if candidate.exists():
                return candidate
    return None


def _echonet_candidates(root: Path, skipped: list[tuple[str, str]]) -> tuple[list[_Candidate], bool]:
    """The clips of ``FileList.csv``. Rows with impossible reference values (EF outside [0, 100],
    negative volumes, ESV > EDV) are left out and listed, so that the manifest written is one that
    :func:`load_manifest` accepts; doubtful ones (EF disagreeing with the volumes) are kept and
    listed. Tracings of clips that ``FileList.csv`` does not list are listed too."""
    from echokdm.io.echonet import filelist_reference_problems, read_echonet_filelist, read_echonet_tracings

    filelist = read_echonet_filelist(root)
    filelist_csv = Path(filelist.attrs.get("source", root / "FileList.csv"))
    flagged = filelist_reference_problems(filelist)
    tracings_csv = root / "VolumeTracings.csv"
    tracings = None
    if tracings_csv.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # problems are listed in the skipped report instead
            tracings, problems = read_echonet_tracings(tracings_csv)
        skipped.extend((str(tracings_csv), p) for p in problems)
        in_filelist = set(filelist["FileName"].astype(str))
        for name in sorted(set(tracings) - in_filelist):
            skipped.append((str(tracings_csv), f"tracings of {name} ({len(tracings[name])} traced frame(s)) ignored: "
                                               "the clip is not listed in FileList.csv"))
    sources = cohort_patients(root, skipped)
    listed = set()
    out = []
    for rec in filelist.to_dict("records"):
        name = rec["FileName"]
        listed.add(name)
        if name in flagged:
            reason, impossible = flagged[name]
            if impossible:
                skipped.append((str(root / "Videos" / name), f"{filelist_csv.name} {reason}; clip left out"))
                continue
            skipped.append((str(root / "Videos" / name), f"warning (clip kept): {filelist_csv.name} {reason}"))
        split = str(rec.get("Split", "")).lower()
        out.append(_Candidate(
            path=root / "Videos" / name,
            reader_kwargs={"filelist": filelist, "tracings": tracings},
            columns={
                "ef_reference": rec.get("EF"), "edv_reference": rec.get("EDV"), "esv_reference": rec.get("ESV"),
                "split": split, "view": "A4C",
                "tracings_path": str(tracings_csv) if tracings_csv.exists() else "",
                "patient_id": sources.get(Path(name).stem),
            },
        ))
    videos = root / "Videos"
    if videos.is_dir():
        for extra in sorted(p for p in videos.iterdir() if p.name not in listed and p.suffix.lower() == ".avi"):
            skipped.append((str(extra), "video not listed in FileList.csv"))
    return out, True


def cohort_patients(root: str | os.PathLike, skipped: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """Source patient of each loop of a synthetic cohort in the EchoNet layout (clip stem → patient),
    from the side table that ``echokdm synthesize`` writes beside ``FileList.csv``
    (:data:`~echokdm.io.echonet.COHORT_CSV_NAME`); empty for EchoNet-Dynamic itself.

    EchoNet has no patient column, so without it every loop would count as its own patient and a
    patient-level split or bootstrap would treat loops of one source heart as independent patients."""
    from echokdm.io.echonet import COHORT_CSV_NAME

    skipped = [] if skipped is None else skipped
    side = Path(root) / COHORT_CSV_NAME
    if not side.is_file():
        return {}
    try:
        table = pd.read_csv(side, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        skipped.append((str(side), f"not read ({type(exc).__name__}: {exc}); each clip counts as its own patient"))
        return {}
    if not {"FileName", "patient_id"} <= set(table.columns):
        skipped.append((str(side), "no FileName and patient_id columns; each clip counts as its own patient"))
        return {}
    return {Path(f).stem: p.strip() for f, p in zip(table["FileName"], table["patient_id"], strict=True) if p.strip()}


def _camus_candidates(root: Path) -> list[_Candidate]:
    images = sorted(p for p in root.rglob("patient*_*.nii*") if CAMUS_NAME.match(p.name))
    by_view: dict[tuple[Path, str], list[Path]] = {}
    for p in images:
        patient, view = p.name.split("_")[:2]
        by_view.setdefault((p.parent / patient, view), []).append(p)
    out = []
    for files in by_view.values():
        sequences = [p for p in files if "sequence" in p.name]
        for p in sequences or files:  # the cine when present, else the single ED/ES frames
            out.append(_Candidate(p, columns={"mask_path": str(mask_sibling(p) or "")}))
    return out


def _file_candidates(root: Path, fmt: str, patient_from: str) -> list[_Candidate]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    out = []
    for p in files:
        name = p.name.lower()
        if fmt == "video" and not name.endswith(VIDEO_SUFFIXES):
            continue
        if fmt == "nifti":
            stem = p.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else p.stem
            if not name.endswith(NIFTI_SUFFIXES) or _MASK_SUFFIX.search(stem):
                continue
        if fmt == "dicom" and (p.name.upper() == "DICOMDIR" or not is_dicom_file(p)):
            continue
        kwargs: dict[str, Any] = {}
        columns: dict[str, Any] = {}
        if fmt in ("video", "nifti"):
            kwargs["clip_id"] = _relative_id(p, root)
            if patient_from == "folder" and p.parent != root:
                kwargs["patient_id"] = p.parent.relative_to(root).as_posix()
        if fmt == "nifti":
            mask = mask_sibling(p)
            if mask is not None:
                kwargs["mask_path"] = mask
            columns["mask_path"] = str(mask or "")
        out.append(_Candidate(p, kwargs, columns))
    return out


def _row_from_cine(cine: Cine, candidate: _Candidate, fmt: str, dataset: str | None) -> dict[str, Any]:
    meta = cine.metadata
    row: dict[str, Any] = {
        "patient_id": cine.patient_id,
        "clip_id": cine.clip_id,
        "dataset": dataset or cine.dataset or fmt,
        "view": cine.view or "",
        "path": str(candidate.path),
        "format": fmt,
        "mask_path": "",
        "tracings_path": "",
        "fps": cine.fps,
        "n_frames": cine.n_frames,
        "height": cine.height,
        "width": cine.width,
        "spacing_mm": cine.spacing_mm[0] if cine.spacing_mm else None,
        "spacing_y_mm": cine.spacing_mm[1] if cine.spacing_mm else None,
        "ef_reference": meta.get("ef_percent"),
        "edv_reference": meta.get("edv_ml"),
        "esv_reference": meta.get("esv_ml"),
        "split": "",
    }
    row.update({k: v for k, v in candidate.columns.items() if v is not None})
    return row


# --------------------------------------------------------------------------------------------
# values the files do not carry: --fps and --clinical-csv
# --------------------------------------------------------------------------------------------

#: Columns of a clinical CSV that identify what a row is about, most specific first.
CLINICAL_KEY_COLUMNS = ("clip_id", "file", "patient_id")
#: Columns of a clinical CSV that give values for the manifest.
CLINICAL_VALUE_COLUMNS = ("fps", "ef_reference", "edv_reference", "esv_reference")
_CLINICAL_ALIASES = {"ef": "ef_reference", "edv": "edv_reference", "esv": "esv_reference", "frame_rate": "fps"}
_REL_TOLERANCE = 0.01  # a clinical value this close to the file's is not reported as a disagreement


def read_clinical_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a clinical CSV for :func:`scan_folder` (``echokdm manifest --clinical-csv``).

    One row per clip or per patient. Key columns (:data:`CLINICAL_KEY_COLUMNS`, at least one;
    each row uses its first non-empty one): ``clip_id`` (the manifest's clip ID), ``file`` (the
    clip's path relative to the scanned folder, or its file name) or ``patient_id`` (the
    manifest's pseudonym or the source's own ID, e.g. CAMUS ``patient0001``, pseudonymised with
    the scan's salt; the row then applies to every clip of the patient). Value columns
    (:data:`CLINICAL_VALUE_COLUMNS`, at least one; empty cells give nothing): ``fps``,
    ``ef_reference`` (%), ``edv_reference``, ``esv_reference`` (mL). Column names are matched
    without regard to case; ``ef``, ``edv``, ``esv`` and ``frame_rate`` are accepted too; other
    columns are ignored.

    Returns
    -------
    pandas.DataFrame
        Columns ``line`` (file line, header = 1), ``key`` (the key column used), ``value`` (its
        text) and the value columns as floats (NaN when empty).

    Raises
    ------
    FileNotFoundError
        No such file.
    echokdm.errors.ReadError
        Not UTF-8 (line named), not a CSV, no key or value column, a row without a key, a key
        given twice, or a bad value (fps <= 0, EF outside [0, 100], negative volume, ESV > EDV),
        every problem listed with its line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such clinical CSV file")
    check_utf8(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # pandas raises many parser errors
        raise ReadError(path, f"not a readable CSV file ({exc})") from exc
    rename = {}
    for column in table.columns:
        name = str(column).strip().lower()
        name = _CLINICAL_ALIASES.get(name, name)
        if name in CLINICAL_KEY_COLUMNS + CLINICAL_VALUE_COLUMNS and name not in rename.values():
            rename[column] = name
    table = table[list(rename)].rename(columns=rename)
    keys = [c for c in CLINICAL_KEY_COLUMNS if c in table.columns]
    values = [c for c in CLINICAL_VALUE_COLUMNS if c in table.columns]
    if not keys or not values:
        raise ReadError(path, f"needs a column naming the clip or patient ({', '.join(CLINICAL_KEY_COLUMNS)}) and "
                              f"at least one of {', '.join(CLINICAL_VALUE_COLUMNS)}; found "
                              f"{', '.join(rename.values()) or 'neither'}")
    problems: list[str] = []
    rows = []
    seen: dict[tuple[str, str], int] = {}
    for i, rec in enumerate(table.to_dict("records")):
        line = i + 2
        key = next((k for k in keys if str(rec[k]).strip()), None)
        if key is None:
            problems.append(f"line {line}: no {' / '.join(keys)} given")
            continue
        value = str(rec[key]).strip()
        if (key, value) in seen:
            problems.append(f"line {line}: {_shown(key, value)} already given on line {seen[key, value]}")
            continue
        seen[key, value] = line
        where = f"line {line} ({_shown(key, value)})"
        row: dict[str, Any] = {"line": line, "key": key, "value": value}
        for col in values:
            _check_number(problems, where, col, rec[col], low=0, strict_low=(col == "fps"),
                          high=100 if col == "ef_reference" else None)
            try:
                row[col] = float(rec[col]) if str(rec[col]).strip() else math.nan
            except ValueError:
                row[col] = math.nan
        edv, esv = row.get("edv_reference", math.nan), row.get("esv_reference", math.nan)
        if esv > edv:  # False when either is NaN
            problems.append(f"{where}: esv_reference {esv:g} exceeds edv_reference {edv:g}")
        rows.append(row)
    if problems:
        raise ReadError(path, f"{len(problems)} problem(s): " + "; ".join(problems[:10])
                        + (f"; … and {len(problems) - 10} more" if len(problems) > 10 else ""))
    return pd.DataFrame(rows, columns=["line", "key", "value", *values])


def _shown(key: str, value: str) -> str:
    """A clinical CSV key for a message: patient IDs are not repeated (they may be the source's own)."""
    return "patient_id (value not shown)" if key == "patient_id" else f"{key} {value!r}"


def _apply_clinical(rows: list[dict[str, Any]], root: Path, clinical: pd.DataFrame, source: str,
                    salt: str | None, skipped: list[tuple[str, str]]) -> None:
    """Fill ``rows`` (manifest rows, absolute paths) from a :func:`read_clinical_csv` table.

    Patient rows apply first, then file rows, then clip rows, so the most specific wins. A value
    replaces the file's own; a replaced value that differs is listed in ``skipped`` as a note.
    Rows of the CSV that match no clip are listed too.
    """
    from echokdm.io.anonymise import pseudonymise

    names: dict[str, int] = {}
    for row in rows:
        names[Path(row["path"]).name] = names.get(Path(row["path"]).name, 0) + 1
    value_columns = [c for c in CLINICAL_VALUE_COLUMNS if c in clinical.columns]
    lookup: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in CLINICAL_KEY_COLUMNS}
    for rec in clinical.to_dict("records"):
        lookup[rec["key"]][rec["value"]] = rec
        if rec["key"] == "patient_id":  # the source's own ID, as the reader pseudonymises it
            lookup["patient_id"].setdefault(pseudonymise(rec["value"], salt), rec)
    used: set[int] = set()
    for row in rows:
        path = Path(row["path"])
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.as_posix()
        candidates = {
            "patient_id": [str(row["patient_id"])],
            "file": [rel] + ([path.name] if names[path.name] == 1 else []),
            "clip_id": [str(row["clip_id"])],
        }
        origin = {col: "the file's" for col in value_columns}
        for key in ("patient_id", "file", "clip_id"):  # least specific first: later rows win
            rec = next((lookup[key][v] for v in candidates[key] if v in lookup[key]), None)
            if rec is not None:
                used.add(int(rec["line"]))
                here = f"{Path(source).name} line {rec['line']}"
                for col in value_columns:
                    new = rec[col]
                    if isinstance(new, float) and math.isnan(new):
                        continue
                    old = row.get(col)
                    if not is_blank(old) and abs(float(old) - new) > _REL_TOLERANCE * max(abs(float(old)), 1e-9):
                        skipped.append((str(path), f"warning (clip kept): {col} {new:g} from {here} replaces "
                                                   f"{origin[col]} {float(old):g}"))
                    row[col], origin[col] = new, here
    for rec in clinical.to_dict("records"):
        if int(rec["line"]) not in used:
            shown = _shown(rec["key"], rec["value"])
            skipped.append((source, f"line {rec['line']}: {shown} matches no clip; row unused"))


def scan_folder(
    root: str | os.PathLike,
    format: str,
    *,
    dataset: str | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    patient_from: str = "file",
    reader_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    on_item: Callable[[Path], None] | None = None,
    fps: float | None = None,
    clinical: str | os.PathLike | None = None,
    skip_non_cardiac: bool = False,
) -> ScanResult:
    """Build a manifest by reading every clip of a folder.

    Each clip is read in full with its reader, so a truncated or undecodable file is caught
    here rather than during training. Bad files do not stop the scan: they are listed in
    :attr:`ScanResult.skipped` with the reason.

    Parameters
    ----------
    root : path
        The folder. For ``"echonet"`` the release folder holding ``FileList.csv``.
    format : str
        One of :data:`~echokdm.io.dispatch.FORMATS`.
    dataset : str, optional
        Value of the ``dataset`` column (default: the format's name).
    seed, fractions
        Patient-level split assignment (:func:`assign_splits`) for datasets that define no split.
        EchoNet-Dynamic's own ``Split`` column is kept.
    patient_from : {"file", "folder"}
        For videos and generic NIfTI: the patient is the file itself, or the folder holding it
        (one folder per patient). DICOM and CAMUS files name their patient themselves.
    reader_kwargs : dict, optional
        Extra options for the reader (e.g. ``{"salt": "..."}`` for DICOM and CAMUS).
    progress : bool
        Show a progress bar.
    fps : float, optional
        Frame rate of the clips whose files state none (CAMUS, most NIfTI, some DICOM).
        Applied after ``clinical``.
    clinical : path, optional
        A clinical CSV (:func:`read_clinical_csv`) with per-clip or per-patient ``fps`` and
        reference EF/volumes. Its values replace the files' own (a differing value is noted in
        :attr:`ScanResult.skipped`), and its rows that match no clip are listed there too. The
        CSV is checked before any clip is read.
    skip_non_cardiac : bool
        Leave out (and list) the files whose DICOM header says they are not echocardiograms
        (:func:`echokdm.io.dicom.non_cardiac_reason`: another exam, or a linear or curved-array probe);
        by default they are kept, with the reader's warning listed.

    Returns
    -------
    ScanResult
    """
    root = Path(root)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if patient_from not in ("file", "folder"):
        raise ValueError(f"patient_from must be 'file' or 'folder', got {patient_from!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    fractions = validate_fractions(fractions)
    if fps is not None and (isinstance(fps, bool) or not math.isfinite(float(fps)) or float(fps) <= 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    clinical_table = read_clinical_csv(clinical) if clinical is not None else None
    skipped: list[tuple[str, str]] = []
    keep_splits = False
    if format == "echonet":
        candidates, keep_splits = _echonet_candidates(root, skipped)
    elif format == "camus":
        candidates = _camus_candidates(root)
    else:
        candidates = _file_candidates(root, format, patient_from)

    rows = _read_candidates(candidates, format, dataset, reader_kwargs or {}, progress, on_item, skipped,
                            skip_non_cardiac)
    if clinical_table is not None:
        _apply_clinical(rows, root, clinical_table, str(clinical), (reader_kwargs or {}).get("salt"), skipped)
    if fps is not None:
        for row in rows:
            if is_blank(row["fps"]):
                row["fps"] = float(fps)
    if clinical_table is not None:  # volumes from two sources may now contradict each other
        rows = _drop_contradicting_volumes(rows, Path(str(clinical)).name, skipped)
    manifest = pd.DataFrame(rows, columns=list(COLUMNS))
    if not keep_splits and len(manifest):
        keys = manifest["dataset"].astype(str) + "\x00" + manifest["patient_id"].astype(str)
        splits = assign_splits(keys, fractions, seed)
        manifest["split"] = keys.map(splits)
    if not len(candidates):
        skipped.append((str(root), f"no {format} files found"))
    return ScanResult(manifest=manifest, skipped=skipped)


def _read_candidates(candidates: list[_Candidate], format: str, dataset: str | None, reader_kwargs: dict[str, Any],
                     progress: bool, on_item: Callable[[Path], None] | None,
                     skipped: list[tuple[str, str]], skip_non_cardiac: bool = False) -> list[dict[str, Any]]:
    """Read every candidate clip in full: its manifest row, or its failure (and warnings) in ``skipped``."""
    from tqdm.auto import tqdm

    from echokdm.errors import NonCardiacWarning
    from echokdm.io.dicom import cine_non_cardiac_reason

    rows = []
    for cand in tqdm(candidates, desc=f"reading {format} clips", unit="clip", disable=not progress):
        if on_item is not None:
            on_item(cand.path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cine = read_cine(cand.path, format, **cand.reader_kwargs, **reader_kwargs)
        except Exception as exc:  # noqa: BLE001 - a batch scan lists every failure and goes on
            skipped.append((str(cand.path), f"{type(exc).__name__}: {exc}"))
            continue
        not_heart = cine_non_cardiac_reason(cine)
        if skip_non_cardiac and not_heart:
            skipped.append((str(cand.path), f"not an echocardiogram by its header ({not_heart}); clip left out"))
            continue
        for w in caught:
            if not (skip_non_cardiac and issubclass(w.category, NonCardiacWarning)):
                skipped.append((str(cand.path), f"warning (clip kept): {w.message}"))
        rows.append(_row_from_cine(cine, cand, format, dataset))
    return rows


def _drop_contradicting_volumes(rows: list[dict[str, Any]], clinical_name: str,
                                skipped: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The rows whose ESV does not exceed their EDV; the others are listed in ``skipped``."""
    kept = []
    for row in rows:
        edv, esv = row.get("edv_reference"), row.get("esv_reference")
        if not is_blank(edv) and not is_blank(esv) and float(esv) > float(edv):
            skipped.append((row["path"], f"esv_reference {float(esv):g} exceeds edv_reference {float(edv):g} "
                                         f"after applying {clinical_name}; clip left out"))
        else:
            kept.append(row)
    return kept


# --------------------------------------------------------------------------------------------
# validation, load and write
# --------------------------------------------------------------------------------------------


def is_blank(value: Any) -> bool:
    """Whether a manifest cell is empty: None, NaN (pandas' empty cell) or only whitespace."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def row_problems(where: str, rec: dict, *, required: tuple[str, ...], formats: tuple[str, ...],
                 path_columns: tuple[str, ...], base: Path | None, check_files: bool) -> list[str]:
    """The checks every manifest row gets (clip and sequence manifests): required cells filled,
    ``format`` and ``split`` known, referenced files present (``check_files``), ``fps`` positive,
    ``n_frames`` / ``height`` / ``width`` positive integers. Messages start with ``where``."""
    problems = [f"{where}: {col} is empty" for col in required if is_blank(rec.get(col))]
    if str(rec.get("format", "")) not in formats:
        problems.append(f"{where}: format {rec.get('format')!r} is not one of {', '.join(formats)}")
    if str(rec.get("split", "")) not in SPLITS:
        problems.append(f"{where}: split {rec.get('split')!r} is not one of {', '.join(SPLITS)}")
    if check_files:
        for col in path_columns:
            p = _resolve(rec.get(col), base)
            if p is not None and not p.exists():
                problems.append(f"{where}: {col} {p} does not exist")
    _check_number(problems, where, "fps", rec.get("fps"), low=0, strict_low=True)
    for col in ("n_frames", "height", "width"):
        _check_number(problems, where, col, rec.get(col), low=1, integer=True)
    return problems


def _check_number(problems: list[str], where: str, column: str, value: Any, *, low: float | None = None,
                  high: float | None = None, integer: bool = False, strict_low: bool = False) -> None:
    if is_blank(value):
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: {column} is not a number: {value!r}")
        return
    if not math.isfinite(number):
        problems.append(f"{where}: {column} is not finite: {value!r}")
        return
    if integer and number != int(number):
        problems.append(f"{where}: {column} must be a whole number, got {value!r}")
    if low is not None and (number <= low if strict_low else number < low):
        problems.append(f"{where}: {column} must be {'>' if strict_low else '>='} {low:g}, got {value!r}")
    if high is not None and number > high:
        problems.append(f"{where}: {column} must be <= {high:g}, got {value!r}")


def _resolve(value: Any, base: Path | None) -> Path | None:
    if is_blank(value):
        return None
    p = Path(str(value))
    return p if p.is_absolute() or base is None else base / p


def table_to_check(manifest: pd.DataFrame | str | os.PathLike,
                   base_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, Path | None]:
    """The table a manifest checker validates, and the folder its relative paths are relative to.

    A DataFrame is taken as it is (with ``base_dir``); a path is read as a CSV of strings, with
    ``base_dir`` defaulting to the CSV's folder. Shared by :func:`check_manifest` and the sequence
    manifests' checker.

    Raises
    ------
    FileNotFoundError
        When the CSV does not exist.
    echokdm.errors.ReadError
        When it is not UTF-8 text or not a CSV; its ``problem`` is the line a checker reports.
    """
    if not isinstance(manifest, pd.DataFrame):
        csv = Path(manifest)
        if not csv.exists():
            raise FileNotFoundError(f"{csv}: no such manifest file")
        check_utf8(csv)
        try:
            manifest = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas raises many parser errors
            raise ReadError(csv, f"cannot parse as CSV: {exc}") from exc
        base_dir = base_dir if base_dir is not None else csv.parent
    return manifest, Path(base_dir) if base_dir is not None else None


def check_manifest(
    manifest: pd.DataFrame | str | os.PathLike, *, base_dir: str | os.PathLike | None = None, check_files: bool = True
) -> list[str]:
    """Validate a manifest and return one line per problem (empty when valid).

    Checks: required columns; known ``format`` and ``split`` values; non-empty IDs; files that
    exist (``path``, and ``mask_path`` / ``tracings_path`` when given); duplicate clip IDs within
    a dataset; a patient in two splits; numbers in range (fps > 0, n_frames/height/width >= 1
    integers, spacing > 0, EF in [0, 100], volumes >= 0 and ESV <= EDV).

    Parameters
    ----------
    manifest : DataFrame or path
        The manifest, or the CSV file holding it.
    base_dir : path, optional
        Folder that relative paths are relative to (default: the CSV's folder, or the current one).
    check_files : bool
        Whether to check that the files exist.
    """
    try:
        manifest, base = table_to_check(manifest, base_dir)
    except ReadError as exc:
        return [exc.problem]
    problems: list[str] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        return [f"missing column(s): {', '.join(missing)}"]
    unknown = [c for c in manifest.columns if c not in COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) (misspelt?): {', '.join(map(str, unknown))}")

    records = manifest.to_dict("records")
    for i, rec in enumerate(records):
        where = f"line {i + 2} (clip {rec.get('clip_id', '')!r})"
        problems += row_problems(where, rec, required=("patient_id", "clip_id", "dataset", "path"), formats=FORMATS,
                                 path_columns=_PATH_COLUMNS, base=base, check_files=check_files)
        for col in ("spacing_mm", "spacing_y_mm"):
            _check_number(problems, where, col, rec.get(col), low=0, strict_low=True)
        _check_number(problems, where, "ef_reference", rec.get("ef_reference"), low=0, high=100)
        for col in ("edv_reference", "esv_reference"):
            _check_number(problems, where, col, rec.get(col), low=0)
        try:
            if not is_blank(rec.get("edv_reference")) and not is_blank(rec.get("esv_reference")):
                if float(rec["esv_reference"]) > float(rec["edv_reference"]):
                    problems.append(f"{where}: esv_reference {rec['esv_reference']} exceeds "
                                    f"edv_reference {rec['edv_reference']}")
        except (TypeError, ValueError):
            pass  # already reported as not a number

    frame = manifest.astype({"dataset": str, "clip_id": str, "patient_id": str, "split": str})
    dups = frame[frame.duplicated(["dataset", "clip_id"], keep=False)]
    for (dataset, clip), group in dups.groupby(["dataset", "clip_id"], sort=True):
        lines = ", ".join(str(i + 2) for i in group.index)
        problems.append(f"clip {clip!r} of dataset {dataset!r} appears more than once (lines {lines})")
    splits = frame.groupby(["dataset", "patient_id"])["split"].unique()
    for (dataset, patient), values in splits.items():
        if len(values) > 1:
            problems.append(
                f"patient {patient!r} of dataset {dataset!r} is in several splits ({', '.join(sorted(values))}): "
                "splits must be by patient"
            )
    return problems


_NUMERIC = ("fps", "n_frames", "height", "width", "spacing_mm", "spacing_y_mm",
            "ef_reference", "edv_reference", "esv_reference")


def load_manifest(path: str | os.PathLike, *, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a manifest CSV.

    Returns a DataFrame with every column of :data:`COLUMNS` (missing optional ones empty),
    numbers as floats (NaN when empty), and paths made absolute.

    Raises
    ------
    FileNotFoundError
        When the CSV does not exist.
    ManifestError
        Listing every problem :func:`check_manifest` finds.
    """
    return load_table(path, check_manifest, COLUMNS, _NUMERIC, _PATH_COLUMNS, check_files=check_files)


def load_table(path: str | os.PathLike, check: Callable[..., list[str]], columns, numeric_columns, path_columns, *,
               check_files: bool = True) -> pd.DataFrame:
    """A manifest CSV checked by ``check(path, check_files=check_files)``, then read by
    :func:`read_table`; shared by :func:`load_manifest` and the sequence manifests' loader.

    Raises
    ------
    FileNotFoundError
        When the CSV does not exist.
    ManifestError
        Listing every problem ``check`` finds.
    """
    path = Path(path)
    problems = check(path, check_files=check_files)
    if problems:
        raise ManifestError(path, problems)
    return read_table(path, columns, numeric_columns, path_columns)


def read_table(path: Path, columns, numeric_columns, path_columns) -> pd.DataFrame:
    """A checked manifest CSV as a table: ``columns`` in order (missing ones empty), numbers as
    floats (NaN when empty), paths resolved against the CSV's folder. The reading half of
    :func:`write_table`, shared by the clip and sequence manifests."""
    check_utf8(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in columns:
        if col not in frame.columns:
            frame[col] = ""
    frame = frame[list(columns)].copy()
    for col in numeric_columns:
        frame[col] = pd.to_numeric(frame[col].replace("", np.nan), errors="raise").astype(float)
    for col in path_columns:
        frame[col] = [str(_resolve(v, path.parent)) if not is_blank(v) else "" for v in frame[col]]
    return frame


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a manifest CSV atomically; paths under its folder are stored relative to it.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    return write_table(manifest, path, COLUMNS, _PATH_COLUMNS, overwrite=overwrite)


def write_table(table: pd.DataFrame, path: str | os.PathLike, columns, path_columns, *,
                overwrite: bool = False) -> Path:
    """Write ``table``'s ``columns`` (missing ones empty) as CSV atomically, with the file paths in
    ``path_columns`` stored relative to the CSV's folder when they lie under it.

    Shared by the clip manifest and the sequence manifest. Raises ``FileExistsError`` when
    ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = table.copy()
    for col in columns:
        if col not in frame.columns:
            frame[col] = ""
    frame = frame[list(columns)]
    base = path.parent.resolve()

    def relative(value: Any) -> str:
        if is_blank(value):
            return ""
        p = Path(str(value)).resolve()
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            return str(p)

    for col in path_columns:
        frame[col] = [relative(v) for v in frame[col]]
    with atomic_output(path, overwrite=overwrite) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def clip_file_stem(clip_id: str) -> str:
    """A file name for per-clip outputs (masks, flow caches): ``clip_id`` with every run of
    characters outside ``[A-Za-z0-9._-]`` replaced by ``_`` (clip IDs may hold ``/``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(clip_id))


def read_clip(row: pd.Series | dict[str, Any], **reader_kwargs: Any) -> Cine:
    """Read the clip of one row of a loaded manifest (absolute paths, see :func:`load_manifest`)."""
    fmt = str(row["format"])
    kwargs = dict(reader_kwargs)
    if fmt == "nifti" and not is_blank(row.get("mask_path")):
        kwargs.setdefault("mask_path", row["mask_path"])
    if fmt in ("nifti", "video"):
        kwargs.setdefault("clip_id", str(row["clip_id"]))
        kwargs.setdefault("patient_id", str(row["patient_id"]))
    return read_cine(row["path"], fmt, **kwargs)
