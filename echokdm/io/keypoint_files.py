"""Keypoint files: the package's one set of keypoint readers and writers (echo, face, pose), numpy only.

Every reader returns ``float64`` keypoints ``(N, 2)`` (one frame) or ``(T, N, 2)`` (a sequence) of
``(x, y)`` pixels in the package convention (shared/DESIGN.md): x = column, y = row, integer
values at pixel centres, origin top-left, **0-based**. A keypoint that is missing (not
annotated, not detected, confidence 0) is a row of NaN, never ``(0, 0)``. ``float64`` keeps the
numbers of the file exactly; callers that feed models cast (the echo loader
:func:`echokdm.generation.motion.load_keypoints_file` returns ``float32``, the DESIGN.md dtype).

Errors are the same for every format: :class:`FileNotFoundError` when the file does not exist,
and :class:`echokdm.errors.ReadError` (a :class:`ValueError`) naming the file for everything else
(a folder, an unknown suffix, a missing column, non-numeric or infinite values, a keypoint count
other than ``n_keypoints``).

Formats
-------
``.pts`` (iBUG / 300-W)
    ``version: 1``, ``n_points: N``, ``{``, one ``x y`` line per point, ``}``. These files
    are 1-based (Matlab convention, as menpo assumes): :func:`read_pts` subtracts 1 and
    :func:`write_pts` adds it back (``one_based=False`` reads or writes the numbers as they
    are). A missing point is written ``nan nan``.
CSV, wide (one row per frame)
    Columns ``x0 … x{N-1}, y0 … y{N-1}`` and optionally ``frame``, the layout of
    ``echokdm keypoints`` tables; other columns are ignored; empty cells are NaN.
CSV, long (one row per keypoint)
    Columns ``x, y`` and optionally ``keypoint`` (index, default the row order) and ``frame``.
JSON
    ``[[x, y], …]`` (entries may be ``[x, y, score]``, ``{"x": …, "y": …}`` or ``null``), or an
    object holding such a list under ``keypoints``, ``landmarks`` or ``points``; a sequence is
    a list of those, or ``{"frames": [...]}``.
OpenPose JSON
    ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, …]}, …]}``, one file per frame
    as OpenPose writes them (``--write_json``). Joints with confidence ``c <= min_confidence``
    (0 by default: OpenPose writes ``0, 0, 0`` for a joint it did not find) are NaN.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from echokdm.errors import ReadError
from echokdm.io.atomic import atomic_output

__all__ = [
    "KEYPOINT_SUFFIXES",
    "read_keypoint_file",
    "read_keypoints_csv",
    "read_keypoints_json",
    "read_openpose_json",
    "read_pts",
    "write_keypoints_csv",
    "write_keypoints_json",
    "write_openpose_json",
    "write_pts",
]

#: Suffixes :func:`read_keypoint_file` understands.
KEYPOINT_SUFFIXES = (".pts", ".csv", ".json", ".npy")
_JSON_KEYS = ("keypoints", "landmarks", "points")
_WIDE_X = re.compile(r"^x(\d+)$")
_WIDE_COLUMN = re.compile(r"^[xy](\d+)$")


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such keypoint file")
    if path.is_dir():
        raise ReadError(path, "is a folder, expected a keypoint file")
    return path


def _checked(keypoints: Any, path: Path, n_keypoints: int | None) -> np.ndarray:
    """``float64`` ``(..., N, 2)``; infinite values and a wrong ``N`` are errors naming ``path``."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-1] != 2:
        raise ReadError(path, f"keypoints must have shape (N, 2) or (T, N, 2), got {kp.shape}")
    if np.isinf(kp).any():
        raise ReadError(path, "keypoints must be finite numbers or NaN (missing), found inf")
    if n_keypoints is not None and kp.shape[-2] != n_keypoints:
        raise ReadError(path, f"keypoints must have shape ({n_keypoints}, 2) or (T, {n_keypoints}, 2), got "
                              f"{kp.shape}: expected {n_keypoints} keypoints, found {kp.shape[-2]}")
    return kp


def _as_points(keypoints: Any, name: str = "keypoints") -> np.ndarray:
    """Writers' input: ``float64`` ``(N, 2)``."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 2 or kp.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) (x, y pixels), got {kp.shape}")
    return kp


# ---------------------------------------------------------------------------------------------
# iBUG .pts
# ---------------------------------------------------------------------------------------------


def read_pts(path: str | os.PathLike, *, n_keypoints: int | None = None, one_based: bool = True) -> np.ndarray:
    """Read an iBUG / 300-W ``.pts`` file.

    Parameters
    ----------
    path : str or os.PathLike
    n_keypoints : int, optional
        Expected number of points (68 for the face adapter); another count is an error.
    one_based : bool
        The file's coordinates start at 1 (the 300-W convention): subtract 1.

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(N, 2)`` ``(x, y)`` pixels, 0-based; ``nan`` entries stay NaN.

    Raises
    ------
    FileNotFoundError
    echokdm.errors.ReadError
        No ``{ … }`` block, a line that is not two numbers, or a count that disagrees with
        the ``n_points`` header or with ``n_keypoints``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.pts"
    >>> _ = p.write_text("version: 1\\nn_points: 2\\n{\\n1 1\\n10.5 3\\n}\\n")
    >>> read_pts(p).tolist()
    [[0.0, 0.0], [9.5, 2.0]]
    """
    path = _existing(path)
    text = path.read_text(errors="replace")
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ReadError(path, "not a .pts file: no '{ ... }' block of points")
    header = re.search(r"n_points\s*:\s*(\d+)", text[:start])
    rows = []
    first_line = text[:start].count("\n")  # the line of "{" is first_line + 1
    for number, line in enumerate(text[start + 1:end].splitlines(), first_line + 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            values = [float(v) for v in parts]
        except ValueError:
            values = []
        if len(values) != 2:
            raise ReadError(path, f"line {number} is not two numbers 'x y': {line.strip()!r}")
        rows.append(values)
    kp = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    if header is not None and int(header.group(1)) != len(kp):
        raise ReadError(path, f"header says n_points: {header.group(1)} but the file holds {len(kp)} points")
    kp = _checked(kp, path, n_keypoints)
    return kp - 1.0 if one_based else kp


def write_pts(path: str | os.PathLike, keypoints: Any, *, one_based: bool = True, overwrite: bool = False) -> Path:
    """Write ``(N, 2)`` ``(x, y)`` 0-based pixels as an iBUG ``.pts`` file (1-based), atomically.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    kp = _as_points(keypoints) + (1.0 if one_based else 0.0)
    lines = ["version: 1", f"n_points: {len(kp)}", "{"]
    lines += [f"{x:.3f} {y:.3f}" if math.isfinite(x) and math.isfinite(y) else "nan nan" for x, y in kp]
    lines.append("}")
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------


def _wide_count(columns) -> int | None:
    """``N`` when ``x0 … x{N-1}`` and ``y0 … y{N-1}`` are all columns, else None."""
    indices = sorted(int(m.group(1)) for c in columns if (m := _WIDE_X.match(str(c))))
    n = len(indices)
    if n == 0 or indices != list(range(n)) or any(f"y{i}" not in columns for i in range(n)):
        return None
    return n


def _missing_wide_columns(columns, n_keypoints: int | None) -> list[str]:
    """The wide columns ``x0 … y{N-1}`` a table lacks when it holds some of them but not all (else
    ``[]``); ``N`` is ``n_keypoints``, or one more than the largest index found."""
    indices = [int(m.group(1)) for c in columns if (m := _WIDE_COLUMN.match(str(c)))]
    if not indices:
        return []
    n = n_keypoints if n_keypoints is not None else max(indices) + 1
    return [c for c in (*(f"x{i}" for i in range(n)), *(f"y{i}" for i in range(n))) if c not in columns]


def _frame_column(table, path: Path) -> np.ndarray | None:
    """``int64`` ``(rows,)`` of the ``frame`` column, or None without one."""
    if "frame" not in table.columns:
        return None
    try:
        return table["frame"].to_numpy(np.int64)
    except (ValueError, TypeError) as exc:
        raise ReadError(path, f"the frame column must hold integer frame indices ({exc})") from exc


def read_keypoints_csv(path: str | os.PathLike, *, n_keypoints: int | None = None,
                       return_frames: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Read a keypoint table, wide (``x0 … y{N-1}`` per frame) or long (``x, y`` per keypoint).

    The wide layout is that of ``echokdm keypoints`` tables and of the ``<stem>_keypoints.csv`` of
    :func:`echokdm.generation.export.write_loop` (other columns, such as ``clip_id``, ``volume``
    or ``score``, are ignored).

    Parameters
    ----------
    path : str or os.PathLike
    n_keypoints : int, optional
        Expected keypoint count ``N`` (40 for echo); another count is an error.
    return_frames : bool
        Also return the frame numbers of the keypoint sets.

    Returns
    -------
    keypoints : numpy.ndarray
        ``float64`` ``(T, N, 2)`` in file order (wide), or grouped by ``frame`` in increasing
        order (long; ``(1, N, 2)`` without a ``frame`` column). Empty cells are NaN.
    frames : numpy.ndarray or None
        Only with ``return_frames``: ``int64`` ``(T,)`` frame number of each set (the ``frame``
        column), or None when the table has no ``frame`` column.

    Raises
    ------
    FileNotFoundError
    echokdm.errors.ReadError
        Not a CSV, no rows, neither layout, missing wide columns (named), non-numeric values,
        a ``frame`` column that is not integers, frames with different counts, or a count other
        than ``n_keypoints``.
    """
    import pandas as pd

    path = _existing(path)
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ReadError(path, f"not a readable CSV file ({exc})") from exc
    if table.empty:
        raise ReadError(path, "the keypoint table has no rows")
    frames = _frame_column(table, path)
    try:
        keypoints = _wide_or_long(table, path, n_keypoints)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ReadError):
            raise
        raise ReadError(path, f"keypoint columns must hold numbers ({exc})") from exc
    keypoints = _checked(keypoints, path, n_keypoints)
    if not return_frames:
        return keypoints
    if frames is not None and _wide_count(table.columns) is None:  # long layout: one set per distinct frame
        frames = np.unique(frames)
    return keypoints, frames


def _wide_or_long(table, path: Path, n_keypoints: int | None) -> np.ndarray:
    """``(T, N, 2)`` of a wide or a long table."""
    n = _wide_count(table.columns)
    if n is not None:
        xs = table[[f"x{i}" for i in range(n)]].to_numpy(np.float64)
        ys = table[[f"y{i}" for i in range(n)]].to_numpy(np.float64)
        return np.stack([xs, ys], axis=-1)  # (T, N, 2)
    if {"x", "y"} <= set(table.columns):
        return _long_table(table, path)
    missing = _missing_wide_columns(table.columns, n_keypoints)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ReadError(path, f"missing keypoint column(s) {shown}; expected frame, x0..x{{N-1}}, y0..y{{N-1}} "
                              "(one row per frame, as written by echokdm keypoints)")
    raise ReadError(path, "expected columns x0..x{N-1}, y0..y{N-1} (one row per frame) or x, y "
                          "(one row per keypoint)")


def _long_table(table, path: Path) -> np.ndarray:
    """``(T, N, 2)`` of a long table (``x, y`` [, ``frame``] [, ``keypoint``])."""
    frames = table["frame"].to_numpy(np.int64) if "frame" in table.columns else np.zeros(len(table), np.int64)
    out = []
    for f in np.unique(frames):
        part = table[frames == f]
        order = np.argsort(part["keypoint"].to_numpy(np.int64), kind="stable") if "keypoint" in part else None
        xy = part[["x", "y"]].to_numpy(np.float64)
        out.append(xy if order is None else xy[order])
    if len({len(o) for o in out}) != 1:
        raise ReadError(path, f"frames hold different numbers of keypoints: {sorted({len(o) for o in out})}")
    return np.stack(out)


def write_keypoints_csv(path: str | os.PathLike, keypoints: Any, *, frames: Any = None,
                        extra_columns: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write ``(T, N, 2)`` (or ``(N, 2)``) keypoints as a wide table ``frame, x0 … x{N-1}, y0 … y{N-1}``.

    ``frames`` are the frame numbers of the rows (default ``0 … T-1``); ``extra_columns`` are
    columns appended after ``y{N-1}`` in their order (one value per row, or one for every row),
    such as ``volume`` and ``volume_units``. Numbers are written with 4 decimals; NaN is an empty
    cell. Written atomically; ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    import pandas as pd

    kp = np.asarray(keypoints, dtype=np.float64)
    kp = kp[None] if kp.ndim == 2 else kp
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (T, N, 2) or (N, 2), got {kp.shape}")
    t, n = kp.shape[:2]
    index = np.arange(t) if frames is None else np.asarray(frames, dtype=np.int64)
    if index.shape != (t,):
        raise ValueError(f"frames must hold one number per keypoint set ({t}), got shape {index.shape}")
    table = pd.DataFrame({"frame": index, **{f"x{i}": kp[:, i, 0] for i in range(n)},
                          **{f"y{i}": kp[:, i, 1] for i in range(n)}})
    for name, values in (extra_columns or {}).items():
        if name in table.columns:
            raise ValueError(f"extra_columns: {name!r} is a keypoint column")
        table[name] = values
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return path


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def _json_point(value: Any) -> tuple[float, float]:
    if value is None:
        return math.nan, math.nan
    if isinstance(value, dict):
        value = [value.get("x"), value.get("y")]
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ValueError(f"a keypoint must be [x, y], [x, y, score], {{'x': x, 'y': y}} or null, got {value!r}")
    x, y = value[0], value[1]
    return (math.nan if x is None else float(x)), (math.nan if y is None else float(y))


def _json_frame(value: Any) -> list[tuple[float, float]] | None:
    """One frame's points, or None when ``value`` is not one frame."""
    if isinstance(value, dict):
        key = next((k for k in _JSON_KEYS if k in value), None)
        return None if key is None else [_json_point(p) for p in value[key]]
    if isinstance(value, list) and value and all(_json_point_like(v) for v in value):
        return [_json_point(p) for p in value]
    return None


def _json_point_like(value: Any) -> bool:
    """``value`` is one point: ``null``, an object, or a flat ``[x, y, …]`` list."""
    return value is None or isinstance(value, dict) or (
        isinstance(value, (list, tuple)) and bool(value) and not isinstance(value[0], (list, dict)))


def read_keypoints_json(path: str | os.PathLike, *, n_keypoints: int | None = None) -> np.ndarray:
    """Read keypoints from a JSON file (see the module docstring for the accepted layouts).

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(T, N, 2)`` (``T = 1`` for a single frame).
    """
    path = _existing(path)
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadError(path, f"not valid JSON ({exc})") from exc
    if isinstance(data, dict) and "people" in data:
        raise ReadError(path, "this is an OpenPose file; read it with read_openpose_json (adapter pose)")
    try:
        frames = data["frames"] if isinstance(data, dict) and "frames" in data else None
        one = _json_frame(data) if frames is None else None
        if one is not None:
            points = [one]
        else:
            items = frames if frames is not None else data
            if not isinstance(items, list) or not items:
                raise ValueError("expected a list of keypoints, an object with 'keypoints', or a list of frames")
            points = [_json_frame(item) for item in items]
            if any(p is None for p in points):
                raise ValueError("a frame is not a list of [x, y] keypoints")
        if len({len(p) for p in points}) != 1:
            raise ValueError(f"frames hold different numbers of keypoints: {sorted({len(p) for p in points})}")
    except (ValueError, TypeError, KeyError) as exc:
        raise ReadError(path, str(exc)) from exc
    return _checked(np.asarray(points, dtype=np.float64), path, n_keypoints)


def write_keypoints_json(path: str | os.PathLike, keypoints: Any, *, overwrite: bool = False) -> Path:
    """Write ``(N, 2)`` as ``{"keypoints": [[x, y], …]}`` or ``(T, N, 2)`` as ``{"frames": [...]}``
    (NaN as ``null``), atomically."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim not in (2, 3) or kp.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (N, 2) or (T, N, 2), got {kp.shape}")

    def frame(points: np.ndarray) -> dict:
        return {"keypoints": [None if not np.isfinite(p).all() else [round(float(p[0]), 4), round(float(p[1]), 4)]
                              for p in points]}

    data = frame(kp) if kp.ndim == 2 else {"frames": [frame(f) for f in kp]}
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------
# OpenPose JSON
# ---------------------------------------------------------------------------------------------


def read_openpose_json(path: str | os.PathLike, *, person: int = 0, n_keypoints: int | None = None,
                       min_confidence: float = 0.0, key: str = "pose_keypoints_2d") -> np.ndarray:
    """Read one person's joints from an OpenPose ``--write_json`` file.

    Parameters
    ----------
    path : str or os.PathLike
    person : int
        Index into ``people`` (OpenPose's order).
    n_keypoints : int, optional
        Expected joint count (25 for BODY_25, 18 for COCO); another count is an error.
    min_confidence : float
        Joints whose confidence is ``<=`` this are missing (NaN); OpenPose writes ``0, 0, 0``
        for a joint it did not find, so the default 0 keeps every found joint.
    key : str
        The array to read (``pose_keypoints_2d``; ``face_keypoints_2d`` and
        ``hand_left_keypoints_2d`` … work the same way).

    Returns
    -------
    numpy.ndarray
        ``float64`` ``(N, 2)`` ``(x, y)`` pixels (0-based, as OpenPose writes them); all NaN
        when the file lists no person (a frame where nobody was detected).
    """
    path = _existing(path)
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReadError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise ReadError(path, "not an OpenPose file: no 'people' list")
    people = data["people"]
    if not people:
        if n_keypoints is None:
            raise ReadError(path, "no person in the file and no n_keypoints to size the empty result")
        return np.full((n_keypoints, 2), np.nan)
    if not 0 <= person < len(people):
        raise ReadError(path, f"person {person} requested but the file lists {len(people)}")
    values = people[person].get(key)
    if not isinstance(values, list) or len(values) % 3:
        raise ReadError(path, f"people[{person}].{key} must be a flat list of x, y, confidence triples")
    try:
        triples = np.asarray(values, dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError) as exc:
        raise ReadError(path, f"people[{person}].{key} must hold numbers ({exc})") from exc
    kp = triples[:, :2].copy()
    kp[triples[:, 2] <= min_confidence] = np.nan
    return _checked(kp, path, n_keypoints)


def write_openpose_json(path: str | os.PathLike, keypoints: Any, *, confidence: Any = None,
                        overwrite: bool = False) -> Path:
    """Write one person's ``(N, 2)`` joints as an OpenPose JSON file (``version 1.3``), atomically.

    A NaN joint is written ``0, 0, 0`` (OpenPose's "not found"); ``confidence`` ``(N,)``
    defaults to 1 for the others.
    """
    kp = _as_points(keypoints)
    conf = np.ones(len(kp)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    if conf.shape != (len(kp),):
        raise ValueError(f"confidence must have shape ({len(kp)},), got {conf.shape}")
    found = np.isfinite(kp).all(axis=1)
    triples = np.where(found[:, None], np.column_stack([kp, conf]), 0.0)
    data = {"version": 1.3, "people": [{"person_id": [-1],
                                        "pose_keypoints_2d": [round(float(v), 4) for v in triples.reshape(-1)]}]}
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------
# any file
# ---------------------------------------------------------------------------------------------


def read_keypoint_file(path: str | os.PathLike, *, n_keypoints: int | None = None,
                       openpose: bool = False) -> np.ndarray:
    """Keypoints ``(T, N, 2)`` of any supported file, chosen by suffix.

    ``.pts`` (one frame), ``.csv``, ``.json`` (OpenPose layout when ``openpose`` or when the file
    has a ``people`` list), or ``.npy`` holding ``(N, 2)`` or ``(T, N, 2)``.
    """
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".pts":
        return read_pts(path, n_keypoints=n_keypoints)[None]
    if suffix == ".csv":
        return read_keypoints_csv(path, n_keypoints=n_keypoints)
    if suffix == ".json":
        if openpose or '"people"' in path.read_text(errors="replace")[:4096]:
            return read_openpose_json(path, n_keypoints=n_keypoints)[None]
        return read_keypoints_json(path, n_keypoints=n_keypoints)
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ReadError(path, f"not a readable .npy file ({exc})") from exc
        if not np.issubdtype(array.dtype, np.number):
            raise ReadError(path, f"keypoints must be numbers, got dtype {array.dtype}")
        kp = _checked(array, path, n_keypoints)
        if kp.ndim > 3:
            raise ReadError(path, f"keypoints must have shape (N, 2) or (T, N, 2), got {kp.shape}")
        return kp[None] if kp.ndim == 2 else kp
    raise ReadError(path, f"unknown keypoint file type {path.suffix!r}; use one of {', '.join(KEYPOINT_SUFFIXES)}")
