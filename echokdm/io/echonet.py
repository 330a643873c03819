"""The EchoNet-Dynamic release layout: ``FileList.csv``, ``Videos/*.avi``, ``VolumeTracings.csv``.

EchoNet-Dynamic (Ouyang et al., Nature 2020) ships 10,030 apical four-chamber clips, 112×112
MJPEG AVIs, with one row per clip in ``FileList.csv`` (EF in %, ESV and EDV in mL, frame size,
fps, frame count, split) and expert tracings of two frames per clip in ``VolumeTracings.csv``.
A traced frame is a block of rows ``(x1, y1, x2, y2)`` in pixels (x = column, y = row): the first
row is the long axis, the next ones the chords (discs of Simpson's method) perpendicular to it.

Quirks of the public files that the readers absorb:

* ``FileList.csv`` sometimes names a clip without ``.avi``; ``VolumeTracings.csv`` always with.
  Both readers return names with ``.avi``.
* ``Split`` may come in any case; it is returned upper case (``TRAIN``, ``VAL``, ``TEST``).
* Some traced frames have duplicated or missing rows. Such a frame is left out and reported,
  never guessed (:func:`read_echonet_tracings`).
* Some tracings name a frame beyond the end of the video; :func:`read_echonet_clip` drops it
  with a :class:`~echokdm.errors.TracingWarning`.

:func:`write_echonet_dataset` writes the same layout (used by the phantom and generated
cohorts), in the public files' column order.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skimage.draw

from echokdm.errors import EchoKDMWarning, ReadError, TracingWarning
from echokdm.io._text import check_utf8
from echokdm.io.atomic import atomic_output
from echokdm.io.cine import Cine
from echokdm.io.video import read_video, write_video

__all__ = [
    "COHORT_CSV_NAME",
    "FILELIST_COLUMNS",
    "TRACING_COLUMNS",
    "SPLITS",
    "read_echonet_filelist",
    "filelist_reference_problems",
    "read_echonet_tracings",
    "read_echonet_clip",
    "tracing_to_polygon",
    "tracing_to_mask",
    "write_echonet_dataset",
]

FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
SPLITS = ("TRAIN", "VAL", "TEST")
#: Side table of a synthetic cohort in this layout (written by
#: :func:`echokdm.generation.echonet_cohort.write_echonet_cohort`): what EchoNet has no column for,
#: among it each loop's source ``patient_id``, which :func:`echokdm.data.manifest.scan_folder` reads.
COHORT_CSV_NAME = "echokdm_cohort.csv"
_FILELIST_FLOATS = ("EF", "ESV", "EDV", "FPS")
_FILELIST_INTS = ("FrameHeight", "FrameWidth", "NumberOfFrames")
_MAX_LISTED = 20  # problems listed in one error message
_FPS_TOLERANCE = 0.01  # relative difference between video and FileList fps that is warned about


# --------------------------------------------------------------------------------------------
# FileList.csv
# --------------------------------------------------------------------------------------------


def read_echonet_filelist(path_or_root: str | os.PathLike) -> pd.DataFrame:
    """Read and validate an EchoNet-Dynamic ``FileList.csv``.

    Parameters
    ----------
    path_or_root : str or os.PathLike
        The CSV file, or the dataset folder that holds ``FileList.csv``.

    Returns
    -------
    pandas.DataFrame
        One row per clip, in file order, with every column of the file. ``FileName`` ends in
        ``.avi``; ``Split`` is ``"TRAIN"``, ``"VAL"`` or ``"TEST"``; ``EF`` (%), ``ESV``,
        ``EDV`` (mL) and ``FPS`` are ``float64``; ``FrameHeight``, ``FrameWidth`` and
        ``NumberOfFrames`` are ``int64``. ``df.attrs["source"]`` is the CSV path.

    Raises
    ------
    FileNotFoundError
        No such file.
    echokdm.errors.ReadError
        Missing columns (all named), a value that is not a number (file line and column named),
        an unknown split, or a clip listed twice.
    """
    path = _csv_path(path_or_root, "FileList.csv")
    table = _read_csv_as_text(path, FILELIST_COLUMNS)
    table["FileName"] = [_with_avi(name) for name in table["FileName"]]
    table["Split"] = table["Split"].str.strip().str.upper()
    _convert_numbers(table, path, floats=_FILELIST_FLOATS, ints=_FILELIST_INTS)
    _check_splits(table, path)
    duplicated = table["FileName"][table["FileName"].duplicated()].unique().tolist()
    if duplicated:
        raise ReadError(path, f"clip(s) listed more than once: {_listing(duplicated)}")
    table.attrs["source"] = str(path)
    return table


#: Largest difference (EF points) between FileList's EF and 100 (EDV - ESV) / EDV that is accepted.
EF_VOLUME_TOLERANCE = 5.0


def filelist_reference_problems(filelist: pd.DataFrame) -> dict[str, tuple[str, bool]]:
    """Rows of a :func:`read_echonet_filelist` table whose reference values look wrong.

    Impossible values (the row's references cannot be used): ``EF`` outside [0, 100], ``EDV``
    or ``ESV`` negative, ``ESV`` above ``EDV``. Doubtful values (the row can be kept, with a
    note): ``EF`` differing from ``100 (EDV - ESV) / EDV`` by more than
    :data:`EF_VOLUME_TOLERANCE` points (EchoNet-Dynamic's own rows agree to a thousandth;
    generated cohorts may measure EF and volumes differently).

    Returns
    -------
    dict
        File name (with ``.avi``) → ``("line N: reason; reason", impossible)`` (the header is
        line 1); rows without problems are absent.
    """
    out: dict[str, tuple[str, bool]] = {}
    for i, rec in enumerate(filelist.to_dict("records")):
        ef, esv, edv = (float(rec[k]) for k in ("EF", "ESV", "EDV"))
        impossible = []
        if not 0.0 <= ef <= 100.0:
            impossible.append(f"EF {ef:g} is outside [0, 100]")
        for name, value in (("EDV", edv), ("ESV", esv)):
            if value < 0:
                impossible.append(f"{name} {value:g} is negative")
        if esv > edv:
            impossible.append(f"ESV {esv:g} exceeds EDV {edv:g}")
        if impossible:
            out[str(rec["FileName"])] = (f"line {i + 2}: " + "; ".join(impossible), True)
        elif edv > 0:
            from_volumes = 100.0 * (edv - esv) / edv
            if abs(ef - from_volumes) > EF_VOLUME_TOLERANCE:
                out[str(rec["FileName"])] = (
                    f"line {i + 2}: EF {ef:g} disagrees with EDV {edv:g} and ESV {esv:g}, which give EF "
                    f"{from_volumes:.1f}", False)
    return out


def _check_splits(table: pd.DataFrame, path: Path) -> None:
    bad = [f"line {i + 2}: {value!r}" for i, value in enumerate(table["Split"]) if value not in SPLITS]
    if bad:
        raise ReadError(path, f"column Split must be one of {', '.join(SPLITS)} (any case); got {_listing(bad)}")


# --------------------------------------------------------------------------------------------
# VolumeTracings.csv
# --------------------------------------------------------------------------------------------


def read_echonet_tracings(
    path_or_root: str | os.PathLike, expected_chords: int | None = 20
) -> tuple[dict[str, dict[int, np.ndarray]], list[str]]:
    """Read an EchoNet-Dynamic ``VolumeTracings.csv``.

    Rows are grouped by ``(FileName, Frame)``, keeping the file's order (of clips, of frames
    within a clip, and of rows within a frame). The first row of a frame is the long axis, the
    following rows the chords.

    Parameters
    ----------
    path_or_root : str or os.PathLike
        The CSV file, or the dataset folder that holds ``VolumeTracings.csv``.
    expected_chords : int or None
        Chords per traced frame (20 in the public data). A frame with any other row count than
        ``1 + expected_chords`` (for instance a block of rows pasted twice) is left out and
        reported. ``None`` accepts any frame with at least 3 rows.

    Returns
    -------
    tracings : dict
        File name (with ``.avi``) → {frame index → ``float32`` ``(K, 4)`` array of
        ``(x1, y1, x2, y2)`` in pixels}. A clip whose every frame was left out is absent.
    problems : list of str
        One line per left-out frame, naming the file name, frame and row count.

    Warns
    -----
    echokdm.errors.TracingWarning
        When frames were left out, with their number.

    Raises
    ------
    FileNotFoundError
        No such file.
    echokdm.errors.ReadError
        Missing columns, or a value that is not a number (line and column named).
    """
    path = _csv_path(path_or_root, "VolumeTracings.csv")
    tracings, problems = _parse_tracings(path, expected_chords)
    _warn_left_out(path, problems)
    return tracings, [message for _, message in problems]


def _parse_tracings(
    path: Path, expected_chords: int | None
) -> tuple[dict[str, dict[int, np.ndarray]], list[tuple[str, str]]]:
    """Group and check the rows of ``path``; problems come as ``(file name, message)`` pairs."""
    if expected_chords is not None and (not isinstance(expected_chords, (int, np.integer)) or expected_chords < 2):
        raise ValueError(f"expected_chords must be an integer >= 2 or None, got {expected_chords!r}")
    table = _read_csv_as_text(path, TRACING_COLUMNS)
    table["FileName"] = [_with_avi(name) for name in table["FileName"]]
    _convert_numbers(table, path, floats=("X1", "Y1", "X2", "Y2"), ints=("Frame",), minimum={"Frame": 0})
    codes = table.groupby(["FileName", "Frame"], sort=False).ngroup().to_numpy()  # group number by first row
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    coords = table[["X1", "Y1", "X2", "Y2"]].to_numpy(np.float32)[order]  # (N, 4) grouped
    names, frames = table["FileName"].to_numpy()[order], table["Frame"].to_numpy()[order]
    tracings: dict[str, dict[int, np.ndarray]] = {}
    problems: list[tuple[str, str]] = []
    for block in np.split(np.arange(len(order)), starts[1:]) if len(order) else []:
        name, frame, segments = names[block[0]], int(frames[block[0]]), coords[block]
        problem = _row_count_problem(len(block), expected_chords)
        if problem:
            problems.append((name, f"{name} frame {frame}: {problem}; frame left out"))
        else:
            tracings.setdefault(name, {})[frame] = segments
    return tracings, problems


def _row_count_problem(n_rows: int, expected_chords: int | None) -> str | None:
    """Why a traced frame of ``n_rows`` rows is not usable, or ``None`` when it is."""
    if expected_chords is None:
        return None if n_rows >= 3 else f"{n_rows} rows, expected at least 3 (long axis + 2 chords)"
    expected = 1 + expected_chords
    if n_rows == expected:
        return None
    hint = f" ({n_rows // expected} blocks of {expected}: duplicated rows?)" if n_rows % expected == 0 else ""
    return f"{n_rows} rows, expected {expected} (1 long axis + {expected_chords} chords){hint}"


def _warn_left_out(path: Path, problems: list[tuple[str, str]]) -> None:
    if problems:
        n_clips = len({name for name, _ in problems})
        warnings.warn(
            f"{path}: left out {len(problems)} traced frame(s) of {n_clips} clip(s) with unexpected row "
            f"counts, e.g. {problems[0][1]}", TracingWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------
# Tracing geometry
# --------------------------------------------------------------------------------------------


def tracing_to_polygon(segments: np.ndarray) -> np.ndarray:
    """Outline of the LV from one traced frame, as EchoNet-Dynamic builds it.

    The left ends ``(x1, y1)`` of the chords (rows 1 … K-1) in order, then their right ends
    ``(x2, y2)`` in reverse order (rows K-1 … 1). The long axis (row 0) is not used.

    Parameters
    ----------
    segments : numpy.ndarray
        ``(K, 4)`` rows ``(x1, y1, x2, y2)`` in pixels, K >= 3.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(2 (K - 1), 2)`` vertices ``(x, y)`` in pixels (x = column, y = row).

    Examples
    --------
    >>> segments = np.array([[5, 0, 5, 9], [2, 3, 8, 3], [2, 6, 8, 6]], dtype=np.float32)
    >>> tracing_to_polygon(segments).tolist()
    [[2.0, 3.0], [2.0, 6.0], [8.0, 6.0], [8.0, 3.0]]
    """
    segments = np.asarray(segments, dtype=np.float32)
    if segments.ndim != 2 or segments.shape[1] != 4 or segments.shape[0] < 3:
        raise ValueError(f"segments must have shape (K, 4) with K >= 3, got {segments.shape}")
    left = segments[1:, 0:2]  # (K-1, 2) chord starts (x1, y1)
    right = segments[:0:-1, 2:4]  # (K-1, 2) chord ends (x2, y2), rows K-1 … 1
    return np.concatenate([left, right]).astype(np.float32)


def tracing_to_mask(segments: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled LV mask of one traced frame.

    The polygon of :func:`tracing_to_polygon` is filled with :func:`skimage.draw.polygon`: a
    pixel is inside when its centre (integer ``(row, col)``) lies in the polygon. Vertices are
    not rounded (EchoNet's own loader rounds them first, which moves the outline by up to half
    a pixel).

    Parameters
    ----------
    segments : numpy.ndarray
        ``(K, 4)`` rows ``(x1, y1, x2, y2)`` in pixels, K >= 3.
    shape : tuple of int
        ``(H, W)`` of the frame; the polygon is clipped to it.

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(H, W)``, 1 inside the LV.
    """
    polygon = tracing_to_polygon(segments)  # (P, 2) (x, y)
    height, width = (int(v) for v in shape)
    rows, cols = skimage.draw.polygon(polygon[:, 1], polygon[:, 0], shape=(height, width))
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[rows, cols] = 1
    return mask


# --------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------


def read_echonet_clip(
    root: str | os.PathLike,
    file_name: str,
    *,
    filelist: pd.DataFrame | None = None,
    tracings: Mapping[str, Mapping[int, np.ndarray]] | None = None,
) -> Cine:
    """Read one EchoNet-Dynamic clip with its reference values and tracings.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder holding ``Videos/``, ``FileList.csv`` and ``VolumeTracings.csv``.
    file_name : str
        Clip name, with or without ``.avi``.
    filelist : pandas.DataFrame, optional
        The result of :func:`read_echonet_filelist`; read from ``root`` when omitted. Pass it
        when reading many clips.
    tracings : dict, optional
        The first element returned by :func:`read_echonet_tracings`; read from ``root`` when
        omitted (no tracings when ``root`` has no ``VolumeTracings.csv``). Pass it when reading
        many clips.

    Returns
    -------
    Cine
        ``dataset="echonet"``, ``view="A4C"``, ``clip_id`` the name without ``.avi`` and
        ``patient_id`` the same (EchoNet names are already de-identified, one clip per
        patient), ``fps`` from the video (from ``FileList.csv`` if the video has none),
        ``spacing_mm`` ``None``. ``tracings`` holds the traced frames within the video,
        ``masks`` their filled outlines (zeros on other frames) and ``labelled_frames`` their
        indices; all three are ``None`` for a clip without tracings. ``metadata`` adds to
        :func:`~echokdm.io.video.read_video`'s: ``ef_percent``, ``edv_ml``, ``esv_ml``,
        ``split``, ``fps_video``, ``fps_filelist`` and ``tracing_problems`` (list of str: frames
        dropped here, plus frames left out for their row count when ``tracings`` is read here).

    Warns
    -----
    echokdm.errors.TracingWarning
        Traced frames beyond the end of the video (dropped), or left out for their row count
        (only when ``tracings`` is read here).
    echokdm.errors.EchoKDMWarning
        The video's fps, frame count or frame size differs from ``FileList.csv``.

    Raises
    ------
    FileNotFoundError
        The video (or ``FileList.csv`` when needed) does not exist.
    echokdm.errors.ReadError
        The video cannot be read, or ``FileList.csv`` has no row for the clip.
    """
    root = Path(root)
    name = _with_avi(file_name)
    video_path = root / "Videos" / name
    if not video_path.is_file():
        raise FileNotFoundError(f"{video_path}: no such EchoNet video")
    row = _filelist_row(root, name, filelist)
    clip_tracings, problems = _clip_tracings(root, name, tracings)
    video = read_video(video_path, clip_id=name[:-4], dataset="echonet")
    clip_tracings, dropped = _drop_frames_beyond(clip_tracings, video.n_frames)
    if dropped:
        problems += [f"{name} frame {frame}: traced frame is beyond the video's {video.n_frames} frames; dropped"
                     for frame in dropped]
        warnings.warn(f"{video_path}: dropped traced frame(s) {dropped} beyond the video's "
                      f"{video.n_frames} frames", TracingWarning, stacklevel=2)
    _warn_filelist_mismatch(video_path, video, row)
    metadata = {**video.metadata, "ef_percent": float(row["EF"]), "edv_ml": float(row["EDV"]),
                "esv_ml": float(row["ESV"]), "split": str(row["Split"]), "fps_video": video.fps,
                "fps_filelist": float(row["FPS"]), "tracing_problems": problems}
    return dataclasses.replace(
        video, view="A4C", fps=video.fps if video.fps is not None else float(row["FPS"]),
        metadata=metadata, **_tracing_fields(clip_tracings, video.frames.shape))


def _filelist_row(root: Path, name: str, filelist: pd.DataFrame | None) -> pd.Series:
    """The ``FileList.csv`` row of clip ``name`` (with ``.avi``)."""
    if filelist is None:
        filelist = read_echonet_filelist(root)
    names = filelist["FileName"].astype(str)
    matches = filelist[(names == name) | (names == name[:-4])]
    if matches.empty:
        source = filelist.attrs.get("source", root / "FileList.csv")
        raise ReadError(source, f"no row for clip {name}")
    return matches.iloc[0]


def _clip_tracings(
    root: Path, name: str, tracings: Mapping[str, Mapping[int, np.ndarray]] | None
) -> tuple[dict[int, np.ndarray], list[str]]:
    """The traced frames of clip ``name`` and the problems found reading them."""
    if tracings is not None:
        return dict(tracings.get(name, {})), []
    path = root / "VolumeTracings.csv"
    if not path.is_file():
        return {}, []
    all_tracings, problems = _parse_tracings(path, expected_chords=20)
    mine = [(clip, message) for clip, message in problems if clip == name]
    _warn_left_out(path, mine)
    return dict(all_tracings.get(name, {})), [message for _, message in mine]


def _drop_frames_beyond(
    clip_tracings: dict[int, np.ndarray], n_frames: int
) -> tuple[dict[int, np.ndarray], list[int]]:
    """Split off traced frames with index >= ``n_frames``; return the kept ones and the dropped indices."""
    kept = {frame: seg for frame, seg in clip_tracings.items() if 0 <= frame < n_frames}
    dropped = [frame for frame in clip_tracings if frame not in kept]
    return kept, dropped


def _warn_filelist_mismatch(video_path: Path, cine: Cine, row: pd.Series) -> None:
    """Warn when the video disagrees with its ``FileList.csv`` row (fps, frame count, size)."""
    found = []
    if cine.fps is not None and abs(cine.fps - row["FPS"]) > _FPS_TOLERANCE * row["FPS"]:
        found.append(f"fps {cine.fps:g} vs FPS {row['FPS']:g}")
    if cine.n_frames != row["NumberOfFrames"]:
        found.append(f"{cine.n_frames} frames vs NumberOfFrames {row['NumberOfFrames']}")
    if (cine.height, cine.width) != (row["FrameHeight"], row["FrameWidth"]):
        found.append(f"size {cine.height}x{cine.width} vs FrameHeight x FrameWidth "
                     f"{row['FrameHeight']}x{row['FrameWidth']}")
    if found:
        warnings.warn(f"{video_path}: video differs from FileList.csv: {'; '.join(found)}",
                      EchoKDMWarning, stacklevel=3)


def _tracing_fields(clip_tracings: dict[int, np.ndarray], shape: tuple[int, int, int]) -> dict[str, Any]:
    """``tracings``, ``masks`` (``uint8`` ``shape`` = ``(T, H, W)``) and ``labelled_frames`` of a clip.

    All three are ``None`` when no frame is traced.
    """
    if not clip_tracings:
        return {"tracings": None, "masks": None, "labelled_frames": None}
    masks = np.zeros(shape, dtype=np.uint8)  # (T, H, W)
    for frame, segments in clip_tracings.items():
        masks[frame] = tracing_to_mask(segments, shape[1:])
    return {
        "tracings": {int(frame): np.asarray(seg, dtype=np.float32) for frame, seg in clip_tracings.items()},
        "masks": masks,
        "labelled_frames": np.array(sorted(clip_tracings), dtype=np.int64),
    }


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_echonet_dataset(
    root: str | os.PathLike, items: Iterable[Mapping[str, Any] | Any], *, overwrite: bool = False
) -> Path:
    """Write clips in the EchoNet-Dynamic release layout.

    Writes ``root/Videos/<file_name>.avi`` (MJPEG, :func:`~echokdm.io.video.write_video`),
    then ``root/FileList.csv`` (columns ``FileName`` without ``.avi``, ``EF``, ``ESV``,
    ``EDV``, ``FrameHeight``, ``FrameWidth``, ``FPS``, ``NumberOfFrames``, ``Split``) and
    ``root/VolumeTracings.csv`` (columns ``FileName`` with ``.avi``, ``X1``, ``Y1``, ``X2``,
    ``Y2``, ``Frame``; header only when nothing is traced), as in the public release. Rows
    follow the order of ``items``; traced frames follow each clip's ``tracings`` order, and
    rows within a frame the segment order (long axis first). EchoNet-Dynamic's own loader
    takes a clip's first listed traced frame as the small (ES) one and its last as the large
    (ED) one (the public file lists them by increasing area): list ES before ED.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder; created (with ``Videos/``) if missing.
    items : iterable of dict or object
        Each with keys or attributes ``file_name`` (str, without ``.avi``), ``frames``
        (``(T, H, W)`` float in [0, 1] or ``uint8``), ``fps``, ``ef`` (%), ``edv`` and ``esv``
        (mL), ``split`` (``TRAIN``/``VAL``/``TEST``, any case) and optionally ``tracings``
        ({frame → ``(K, 4)`` ``(x1, y1, x2, y2)`` in pixels}). Other keys are ignored. Items
        are consumed one at a time, so a generator keeps one clip in memory.
    overwrite : bool
        Replace existing files. Otherwise any existing output raises ``FileExistsError``
        (the CSVs are checked first; a video at the moment it would be written, so a failed
        run leaves the videos written so far but no CSVs).

    Returns
    -------
    pathlib.Path
        The dataset folder written (``root``).

    Raises
    ------
    FileExistsError
        An output file exists and ``overwrite`` is false.
    ValueError
        A clip with a missing or bad field (the clip is named), or a file name used twice.
    """
    root = Path(root)
    csv_paths = (root / "FileList.csv", root / "VolumeTracings.csv")
    for path in csv_paths:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it")
    (root / "Videos").mkdir(parents=True, exist_ok=True)
    filelist_rows: list[list[Any]] = []
    tracing_rows: list[list[Any]] = []
    seen: set[str] = set()
    for number, item in enumerate(items):
        clip = _clip_fields(item, number, seen)
        seen.add(clip["file_name"])
        write_video(root / "Videos" / f"{clip['file_name']}.avi", clip["frames"], clip["fps"], overwrite=overwrite)
        filelist_rows.append(_filelist_csv_row(clip))
        tracing_rows.extend(_tracing_csv_rows(clip))
    _write_csv(csv_paths[0], FILELIST_COLUMNS, filelist_rows, overwrite)
    _write_csv(csv_paths[1], TRACING_COLUMNS, tracing_rows, overwrite)
    return root


_REQUIRED_FIELDS = ("file_name", "frames", "fps", "ef", "edv", "esv", "split")
_MISSING = object()


def _item_value(item: Mapping[str, Any] | Any, key: str) -> Any:
    """``item[key]`` for a mapping, ``item.key`` otherwise; :data:`_MISSING` when absent."""
    return item.get(key, _MISSING) if isinstance(item, Mapping) else getattr(item, key, _MISSING)


def _clip_fields(item: Mapping[str, Any] | Any, number: int, seen: set[str]) -> dict[str, Any]:
    """Validated fields of item ``number`` (from 0) of :func:`write_echonet_dataset`."""
    fields = {key: _item_value(item, key) for key in (*_REQUIRED_FIELDS, "tracings")}
    raw_name = fields["file_name"]
    name = f"item {number}" if raw_name is _MISSING else str(raw_name).strip()
    name = name[:-4] if name.lower().endswith(".avi") else name
    missing = [key for key in _REQUIRED_FIELDS if fields[key] is _MISSING]
    if missing:
        raise ValueError(f"clip {name!r}: missing field(s) {', '.join(repr(k) for k in missing)}")
    if not name or any(char in name for char in "/\\,"):
        raise ValueError(f"clip {name!r}: file_name must be a plain, non-empty name without '/', '\\' or ','")
    if name in seen:
        raise ValueError(f"clip {name!r}: file_name used twice")
    fields["file_name"] = name
    fields["frames"] = np.asarray(fields["frames"])
    if fields["frames"].ndim != 3:
        raise ValueError(f"clip {name!r}: frames must be grayscale (T, H, W), got shape {fields['frames'].shape}")
    for key in ("fps", "ef", "edv", "esv"):
        value = _finite_number(fields[key])
        if value is None:
            raise ValueError(f"clip {name!r}: {key} must be a finite number, got {fields[key]!r}")
        fields[key] = value
    split = str(fields["split"]).strip().upper()
    if split not in SPLITS:
        raise ValueError(f"clip {name!r}: split must be one of {SPLITS} (any case), got {fields['split']!r}")
    fields["split"] = split
    tracings = {} if fields["tracings"] is _MISSING or fields["tracings"] is None else fields["tracings"]
    fields["tracings"] = _checked_tracings(name, tracings, fields["frames"].shape[0])
    return fields


def _checked_tracings(name: str, tracings: Mapping[int, np.ndarray], n_frames: int) -> dict[int, np.ndarray]:
    checked = {}
    for frame, segments in tracings.items():
        segments = np.asarray(segments, dtype=np.float64)
        if not (isinstance(frame, (int, np.integer)) and 0 <= frame < n_frames):
            raise ValueError(f"clip {name!r}: traced frame {frame!r} is not an index in 0..{n_frames - 1}")
        if segments.ndim != 2 or segments.shape[1] != 4 or segments.shape[0] < 3 or not np.isfinite(segments).all():
            raise ValueError(f"clip {name!r} frame {frame}: tracing must be a finite (K, 4) array with K >= 3, "
                             f"got shape {segments.shape}")
        checked[int(frame)] = segments.astype(np.float32)
    return checked


def _filelist_csv_row(clip: dict[str, Any]) -> list[Any]:
    n_frames, height, width = clip["frames"].shape
    return [clip["file_name"], _number_text(clip["ef"]), _number_text(clip["esv"]), _number_text(clip["edv"]),
            height, width, _number_text(clip["fps"]), n_frames, clip["split"]]


def _tracing_csv_rows(clip: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for frame, segments in clip["tracings"].items():
        for x1, y1, x2, y2 in segments:
            rows.append([f"{clip['file_name']}.avi", *(_number_text(v) for v in (x1, y1, x2, y2)), frame])
    return rows


def _write_csv(path: Path, header: tuple[str, ...], rows: list[list[Any]], overwrite: bool) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)


def _number_text(value: float | np.floating) -> str:
    """Shortest text that reads back as the same number (``50`` for whole numbers; float32 stays short)."""
    if float(value).is_integer():
        return str(int(value))
    return str(value) if isinstance(value, np.floating) else repr(float(value))


def _finite_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


# --------------------------------------------------------------------------------------------
# CSV helpers
# --------------------------------------------------------------------------------------------


def _csv_path(path_or_root: str | os.PathLike, default_name: str) -> Path:
    """``path_or_root`` itself, or ``default_name`` inside it when it is a folder; must exist."""
    path = Path(path_or_root)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def _read_csv_as_text(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read ``path`` with every cell as stripped text and check that ``required`` columns exist."""
    check_utf8(path)  # names the line of a latin-1 byte, where pandas names a buffer position
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReadError(path, f"not a readable CSV file ({exc})") from exc
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ReadError(path, f"missing column(s) {', '.join(missing)}; found {', '.join(table.columns)}")
    for column in table.columns:
        table[column] = table[column].str.strip()
    return table


def _convert_numbers(
    table: pd.DataFrame, path: Path, *, floats: tuple[str, ...], ints: tuple[str, ...],
    minimum: Mapping[str, float] | None = None,
) -> None:
    """Convert columns in place to ``float64`` / ``int64``; one :class:`ReadError` lists every bad cell.

    Cells are located by file line (the header is line 1) and column name.
    """
    bad: list[str] = []
    minimum = minimum or {}
    for column in (*floats, *ints):
        values = pd.to_numeric(table[column], errors="coerce").astype("float64")
        ok = np.isfinite(values)
        if column in ints:
            ok &= values == np.round(values)
        if column in minimum:
            ok &= values >= minimum[column]
        for index in np.flatnonzero(~ok.to_numpy()):
            kind = "a whole number" if column in ints else "a number"
            limit = f" >= {minimum[column]:g}" if column in minimum else ""
            bad.append(f"line {index + 2}, column {column}: {table[column].iloc[index]!r} is not {kind}{limit}")
        table[column] = values.astype("int64") if column in ints and ok.all() else values
    if bad:
        raise ReadError(path, f"{len(bad)} bad value(s): {_listing(bad)}")


def _listing(items: list[str]) -> str:
    """``items`` joined by '; ', at most :data:`_MAX_LISTED` of them."""
    shown = "; ".join(str(item) for item in items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f"; … and {more} more" if more > 0 else "")


def _with_avi(name: Any) -> str:
    """File name with the ``.avi`` extension (added when missing; any case kept)."""
    name = str(name).strip()
    return name if name.lower().endswith(".avi") else f"{name}.avi"
