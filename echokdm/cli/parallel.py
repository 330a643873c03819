"""Preprocessing at scale: per-clip work over a manifest in worker processes, resumable.

What ``echokdm keypoints``, ``ef``, ``segment`` and ``flow --workers N`` run:

* :func:`keypoints_table_parallel` — :func:`~echokdm.metrics.lv_function.keypoints_table`;
* :func:`segment_manifest_parallel` — :func:`~echokdm.echo.segmentation_training.segment_manifest`;
* :func:`cache_flows_parallel` — :func:`~echokdm.training.flow.cache_flows`;

each the same outputs as the function it wraps, computed clip by clip by :func:`map_clips`.

:func:`map_clips` calls ``task(rows)`` once per clip of a loaded manifest, ``rows`` being that clip's
one-row manifest DataFrame (so any function that takes a manifest DataFrame can be the task). Each
result is written to ``parts/<clip>-<hash>.json`` (a temporary name, then renamed), together with
the clip it belongs to and the ``settings`` it was computed with. A later call with the same parts
folder and the same settings loads those results instead of recomputing them: an interrupted or
crashed run is continued by running the same command again. A task that raises does not stop the
others; its clip is listed with the reason and retried by the next call.

Parts are data, never code: JSON, with numeric arrays and table columns as raw little-endian
bytes (exact: a resumed run gives the results of an uninterrupted one bit for bit), never pickles, so
that a file planted in an output folder cannot run anything. Each part is signed (HMAC-SHA256)
with a key private to the user (``$XDG_CACHE_HOME/echokdm/parts.key``, else
``~/.cache/echokdm/parts.key``, mode 0600): a part that is corrupt, belongs to another clip or
other settings, was written by someone else or was edited is not trusted; its clip is computed
again.

With ``workers > 1`` the tasks run in that many *spawned* processes (a fresh interpreter each: safe
with torch and OpenMP, whose thread pools do not survive ``fork``), each with ``cores // workers``
torch threads (fewer when ``OMP_NUM_THREADS`` says so), so that the workers do not fight over the
cores. The workers end with the command: SIGTERM, SIGHUP or Ctrl-C to it stops them (the finished
parts stay for the next run), and a worker whose parent has died (``kill -9``) exits by itself
within a second. The task must be picklable: a module-level function, or a ``functools.partial``
of one. As with any spawning ``multiprocessing`` code, a *script* that calls these functions with
``workers > 1`` must do so under ``if __name__ == "__main__":`` (each worker imports the script);
the ``echokdm`` command and notebooks need nothing. A worker takes a few seconds to start (it
imports torch and the package), so ``workers > 1`` pays off from a few dozen clips on.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.data.manifest import clip_file_stem
from echokdm.io.atomic import atomic_output, atomic_write_bytes, atomic_write_text

__all__ = [
    "ClipResults",
    "cache_flows_parallel",
    "keypoints_table_parallel",
    "map_clips",
    "part_path",
    "segment_manifest_parallel",
    "worker_threads",
]


@dataclasses.dataclass
class ClipResults:
    """What :func:`map_clips` returns.

    Attributes
    ----------
    results : list
        One entry per manifest row, in manifest order: the task's result, or None where it failed.
    failed : list of (str, str)
        ``(dataset/clip_id (path), reason)`` of every clip whose task raised (or whose worker died).
    reused : int
        Clips whose result was loaded from an earlier call's part instead of computed.
    seconds : float
        Wall time of the call.
    """

    results: list[Any]
    failed: list[tuple[str, str]]
    reused: int
    seconds: float


def _row_key(row: pd.Series | dict) -> str:
    return "\0".join(str(row[c]) for c in ("dataset", "clip_id", "path"))


def part_path(parts: str | os.PathLike, row: pd.Series | dict) -> Path:
    """The part file of one manifest row: ``<clip_file_stem>-<8 hex>.json``, the hash of dataset,
    clip ID and path (clip IDs of two datasets may coincide, and a stem may not be unique)."""
    digest = hashlib.sha1(_row_key(row).encode()).hexdigest()[:8]
    return Path(parts) / f"{clip_file_stem(str(row['clip_id']))[:80]}-{digest}.json"


def worker_threads(workers: int) -> int:
    """Torch / OpenMP threads per worker: ``cores // workers``, at most ``OMP_NUM_THREADS``, at least 1
    (cores: those this process may run on)."""
    from echokdm.runtime import available_cores

    threads = max(1, available_cores() // max(1, workers))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return max(1, min(threads, int(env))) if env.isdigit() and int(env) > 0 else threads


# --------------------------------------------------------------------------------------------
# workers that end with their parent
# --------------------------------------------------------------------------------------------


def _init_worker(threads: int, parent: int | None = None) -> None:
    """Runs first in every worker: thread counts before torch is imported (and after, if it was);
    Ctrl-C left to the parent (which stops the pool); exit when the parent ``parent`` is gone."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="echokdm-parent-watch").start()


def _exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Poll the parent process ID; once it is not ``parent`` (the parent died and this process was
    adopted) end this process at once: its results would have no one to go to."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(interval)


class _Stopped(SystemExit):
    """A termination signal received while worker processes ran (exit status 128 + signal)."""


@contextlib.contextmanager
def _signals_stop_the_pool():
    """SIGTERM / SIGHUP raise :class:`_Stopped` in the main thread (instead of ending the process
    on the spot), so that the pool's workers are stopped first. Handlers someone else installed
    are left alone; nothing is changed outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise _Stopped(128 + signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) == signal.SIG_DFL:
            previous[number] = signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the worker processes now (not after their current clip)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + 5.0
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


# --------------------------------------------------------------------------------------------
# parts: signed JSON, never code
# --------------------------------------------------------------------------------------------

_MAGIC = b"echokdm-part 1 "
_KEY: bytes | None = None


def _key_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "echokdm" / "parts.key"


def _parts_key() -> bytes:
    """The user's key that signs parts: read from (or created in) :func:`_key_file`, mode 0600. Where
    it cannot be kept, a key for this process only (its parts are then not reused by a later run)."""
    global _KEY
    if _KEY is not None:
        return _KEY
    path = _key_file()
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_bytes(32))
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)  # atomic: the first writer wins, the others read its key
            finally:
                tmp.unlink(missing_ok=True)
        info = path.stat()
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
            raise PermissionError(f"{path}: not private to this user (owner or mode); delete it")
        key = path.read_bytes()
        if len(key) < 16:
            raise ValueError(f"{path}: too short; delete it")
    except (OSError, ValueError) as exc:
        print(f"echokdm: cannot use a key for resumable parts ({exc}); parts of this run will not be reused "
              "by a later run", file=sys.stderr)
        key = secrets.token_bytes(32)
    _KEY = key
    return key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _array(values: np.ndarray) -> dict:
    values = np.asarray(values)
    if values.dtype.kind not in "biufcmM" or values.dtype.hasobject:
        raise TypeError(f"cannot store an array of dtype {values.dtype}")
    little = values.astype(values.dtype.newbyteorder("<"), copy=False) if values.dtype.byteorder == ">" else values
    data = _b64(np.ascontiguousarray(little).tobytes())
    return {"$array": little.dtype.str, "shape": list(values.shape), "data": data}


def _column(values: pd.Series) -> dict:
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype != np.dtype(object):
        return _array(values.to_numpy())
    if dtype == np.dtype(object):
        return {"$values": [_encode(v) for v in values.tolist()], "dtype": "object"}
    if pd.api.types.pandas_dtype(str(dtype)) != dtype:
        raise TypeError(f"cannot store a column of dtype {dtype!r}")
    return {"$values": [_encode(v) for v in values.tolist()], "dtype": str(dtype)}


def _index(index: pd.Index) -> dict:
    if isinstance(index, pd.RangeIndex):
        return {"$range": [index.start, index.stop, index.step], "name": _encode(index.name)}
    if isinstance(index, pd.MultiIndex):
        raise TypeError("cannot store a MultiIndex")
    return {"$index": _column(index.to_series(index=None)), "name": _encode(index.name)}


def _encode(value: Any) -> Any:
    """``value`` as JSON data; TypeError for anything that is not plain data (no objects, no code)."""
    if isinstance(value, np.generic):  # first: np.float64 is a float too
        return {"$scalar": _array(np.asarray(value))}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else {"$int": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if value is pd.NA:
        return {"$na": True}
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, Path):
        return {"$path": str(value)}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v) for v in value]}
    if isinstance(value, dict):
        return {"$dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, pd.DataFrame):
        if isinstance(value.columns, pd.MultiIndex):
            raise TypeError("cannot store a table with MultiIndex columns")
        return {"$frame": {"columns": _index(value.columns), "index": _index(value.index),
                           "data": [_column(value.iloc[:, i]) for i in range(value.shape[1])]}}
    if isinstance(value, pd.Series):
        return {"$series": _column(value), "index": _index(value.index), "name": _encode(value.name)}
    raise TypeError(f"cannot store a {type(value).__name__} in a part (plain data, arrays and tables only)")


def _from_array(item: dict) -> np.ndarray:
    dtype = np.dtype(item["$array"])
    if dtype.hasobject or dtype.kind not in "biufcmM":
        raise ValueError(f"array dtype {dtype} not allowed")
    data = base64.b64decode(item["data"], validate=True)
    return np.frombuffer(data, dtype=dtype).reshape(item["shape"]).copy()


def _from_column(item: dict) -> Any:
    if "$array" in item:
        return _from_array(item)
    values = [_decode(v) for v in item["$values"]]
    return pd.array(values, dtype=object) if item["dtype"] == "object" else pd.array(values, dtype=item["dtype"])


def _from_index(item: dict) -> pd.Index:
    if "$range" in item:
        return pd.RangeIndex(*item["$range"], name=_decode(item["name"]))
    return pd.Index(_from_column(item["$index"]), name=_decode(item["name"]))


def _decode(value: Any) -> Any:
    """The inverse of :func:`_encode` (builds data only: arrays, tables, containers, scalars)."""
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$int" in value:
        return int(value["$int"])
    if "$float" in value:
        return float(value["$float"])
    if "$na" in value:
        return pd.NA
    if "$scalar" in value:
        return _from_array(value["$scalar"])[()]
    if "$array" in value:
        return _from_array(value)
    if "$path" in value:
        return Path(value["$path"])
    if "$tuple" in value:
        return tuple(_decode(v) for v in value["$tuple"])
    if "$dict" in value:
        return {_decode(k): _decode(v) for k, v in value["$dict"]}
    if "$frame" in value:
        spec = value["$frame"]
        index = _from_index(spec["index"])
        columns = [pd.Series(_from_column(c), index=index, copy=False) for c in spec["data"]]
        frame = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=index)
        frame.columns = _from_index(spec["columns"])
        return frame
    if "$series" in value:
        return pd.Series(_from_column(value["$series"]), index=_from_index(value["index"]), name=_decode(value["name"]))
    raise ValueError(f"unknown item {sorted(value)[:3]}")


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def _settings_digest(settings: dict) -> str:
    return hashlib.sha256(_dumps(_encode(settings))).hexdigest()


def _write_part(path: Path, key: bytes, row_key: str, settings: dict, result: Any) -> None:
    """Write a signed part (TypeError, before anything is written, when ``result`` is not plain data)."""
    payload = _dumps({"clip": row_key, "settings": _settings_digest(settings), "result": _encode(result)})
    signature = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
    atomic_write_bytes(path, _MAGIC + signature + b"\n" + payload, overwrite=True)


def _read_part(path: Path, key: bytes, row_key: str, settings: dict) -> tuple[bool, Any]:
    """``(True, result)`` when ``path`` is a part this user's key signed, of the clip ``row_key``
    computed with ``settings``; else ``(False, None)`` (missing, corrupt, foreign or edited: recompute)."""
    if not path.is_file() or path.is_symlink():
        return False, None
    try:
        data = path.read_bytes()
        header, _, payload = data.partition(b"\n")
        if not header.startswith(_MAGIC):
            return False, None
        expected = hmac.new(key, payload, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(header[len(_MAGIC):], expected):
            return False, None
        record = json.loads(payload)
        if record.get("clip") != row_key or record.get("settings") != _settings_digest(settings):
            return False, None
        return True, _decode(record["result"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError):
        return False, None


def _run_task(task: Callable, rows: pd.DataFrame, path: Path, settings: dict, key: bytes) -> tuple[bool, Any]:
    """Run ``task`` on one clip and write its part; ``(True, result)`` or ``(False, reason)``."""
    try:
        result = task(rows)
    except Exception as exc:  # noqa: BLE001 - reported for this clip; the others go on
        return False, f"{type(exc).__name__}: {exc}"
    try:
        _write_part(path, key, _row_key(rows.iloc[0]), settings, result)
    except TypeError as exc:
        return False, f"the result cannot be kept as a part: {exc}"
    return True, result


def _item(row: pd.Series) -> str:
    return f"{row['dataset']}/{row['clip_id']} ({row['path']})"


def map_clips(manifest: pd.DataFrame, task: Callable[[pd.DataFrame], Any], parts: str | os.PathLike, *,
              workers: int = 1, settings: dict | None = None, progress: bool = True,
              desc: str = "clips") -> ClipResults:
    """``task(rows)`` for every clip of ``manifest``, in ``workers`` processes, resumable.

    Parameters
    ----------
    manifest : pandas.DataFrame
        A loaded manifest (:func:`~echokdm.data.manifest.load_manifest`: absolute paths).
    task : callable
        ``task(rows) -> result`` with ``rows`` the clip's one-row DataFrame (index kept). The
        result must be plain data: None, bool, int, float, str, Path, numpy arrays and scalars
        (not of object dtype), pandas DataFrames and Series, and lists, tuples and dicts of these
        (a clip whose result is anything else is reported as failed). Must be picklable itself
        when ``workers > 1``.
    parts : path
        Folder of the per-clip results (created). Delete it once its results are merged.
    workers : int
        Processes; 1 runs every task in this process, one after the other.
    settings : dict, optional
        What the results depend on besides the clip (options, model checkpoint), plain data as
        the results: a part is reused only when its settings are equal.
    progress : bool
        Show a tqdm bar over the clips.

    Returns
    -------
    ClipResults
    """
    from tqdm.auto import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    settings = dict(settings or {})
    _encode(settings)  # TypeError now, not in every worker
    key = _parts_key()
    parts = Path(parts)
    parts.mkdir(parents=True, exist_ok=True)
    rows = [manifest.iloc[[i]] for i in range(len(manifest))]
    paths = [part_path(parts, r.iloc[0]) for r in rows]
    results: list[Any] = [None] * len(rows)
    failed: dict[int, str] = {}
    todo = []
    for i, path in enumerate(paths):
        found, value = _read_part(path, key, _row_key(rows[i].iloc[0]), settings)
        if found:
            results[i] = value
        else:
            todo.append(i)
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc, unit="clip", disable=not progress)
    outcomes = (_serial(task, rows, paths, settings, key, todo) if workers == 1 or len(todo) <= 1
                else _pooled(task, rows, paths, settings, key, todo, workers))
    try:
        for i, ok, value in outcomes:
            if ok:
                results[i] = value
            else:
                failed[i] = value
            bar.update(1)
    except (KeyboardInterrupt, _Stopped):
        kept = len(list(parts.glob("*.json")))
        print(f"echokdm: stopped; {kept} finished clip(s) are kept in {parts}: run the same command again to go on",
              file=sys.stderr)
        raise
    finally:
        outcomes.close()  # stops the workers now when the loop ended early
        bar.close()
    return ClipResults(results=results, failed=[(_item(rows[i].iloc[0]), failed[i]) for i in sorted(failed)],
                       reused=len(rows) - len(todo), seconds=round(time.perf_counter() - started, 3))


def _serial(task, rows, paths, settings, key, todo):
    for i in todo:
        yield (i, *_run_task(task, rows[i], paths[i], settings, key))


def _pooled(task, rows, paths, settings, key, todo, workers):
    """Yield ``(index, ok, result or reason)`` as the worker processes finish the clips."""
    context = multiprocessing.get_context("spawn")
    with _signals_stop_the_pool():
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), mp_context=context, initializer=_init_worker,
            initargs=(worker_threads(workers), os.getpid()))
        try:
            futures = {pool.submit(_run_task, task, rows[i], paths[i], settings, key): i for i in todo}
            for future in concurrent.futures.as_completed(futures):
                try:
                    ok, value = future.result()
                except concurrent.futures.process.BrokenProcessPool as exc:
                    ok, value = False, f"worker process died ({exc}); run again to retry this clip"
                yield futures[future], ok, value
        except BaseException:  # Ctrl-C, SIGTERM, an early close: stop the workers; finished parts stay
            _stop_pool(pool)
            raise
        pool.shutdown(wait=True)


# --------------------------------------------------------------------------------------------
# the preprocessing commands, clip by clip
# --------------------------------------------------------------------------------------------


def _manifest(manifest: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    from echokdm.data.manifest import load_manifest

    return manifest if isinstance(manifest, pd.DataFrame) else load_manifest(manifest)


def _concat(tables: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Row-wise concatenation of the non-empty ``tables`` (``empty`` when there is none)."""
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else empty


def _write_csv_atomically(table: pd.DataFrame, path: Path) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)


def _keypoints_clip(rows: pd.DataFrame, **options) -> dict:
    """:func:`~echokdm.metrics.lv_function.keypoints_table` of one clip, as a dict of its fields (plain data)."""
    from echokdm.metrics.lv_function import keypoints_table

    table = keypoints_table(rows, progress=False, **options)
    return {field.name: getattr(table, field.name) for field in dataclasses.fields(table)}


def keypoints_table_parallel(manifest: pd.DataFrame | str | os.PathLike, parts: str | os.PathLike, *,
                             workers: int = 1, smooth_sigma_frames: float = 1.0,
                             apex_direction: str | tuple[float, float] | None = "auto",
                             segmentation: str | os.PathLike | None = None, progress: bool = True):
    """:func:`~echokdm.metrics.lv_function.keypoints_table`, one clip per task in ``workers`` processes.

    The same :class:`~echokdm.metrics.lv_function.KeypointsTable` (frames ``(x, y)`` pixels,
    volumes, flags; clip table; skipped items with reasons). Per-clip results stay in ``parts``
    (reused by a later call with the same options; the caller deletes the folder once the table
    is written).
    """
    import functools

    from echokdm.metrics.lv_function import KeypointsTable, keypoints_table

    frame = _manifest(manifest)
    options = {"smooth_sigma_frames": smooth_sigma_frames, "apex_direction": apex_direction,
               "segmentation": str(Path(segmentation).resolve()) if segmentation else None}
    task = functools.partial(_keypoints_clip, **options)
    done = map_clips(frame, task, parts, workers=workers, settings={"keypoints": 2, **options}, progress=progress,
                     desc="keypoints")
    tables = [KeypointsTable(**t) for t in done.results if t is not None]
    empty = keypoints_table(frame.iloc[:0], progress=False)
    return KeypointsTable(frames=_concat([t.frames for t in tables], empty.frames),
                          clips=_concat([t.clips for t in tables], empty.clips),
                          skipped=[item for t in tables for item in t.skipped] + done.failed)


def _segment_clip(rows: pd.DataFrame, checkpoint: str, out: str, batch_size: int,
                  device: str) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``segment_manifest`` of one clip in a private folder; its mask file then moved into ``out/masks``."""
    import tempfile

    from echokdm.data.manifest import write_manifest
    from echokdm.echo.segmentation_training import segment_manifest

    with tempfile.TemporaryDirectory(dir=Path(out) / ".segment.parts", prefix=".work-") as work:
        write_manifest(rows, Path(work) / "manifest.csv")
        table, skipped = segment_manifest(Path(work) / "manifest.csv", checkpoint, Path(work) / "out",
                                          progress=False, batch_size=batch_size, device=device)
        for relative in table["masks"] if len(table) else []:
            os.replace(Path(work) / "out" / relative, Path(out) / relative)
    return table, skipped


def segment_manifest_parallel(manifest: str | os.PathLike, checkpoint: str | os.PathLike,
                              out: str | os.PathLike, *, workers: int = 1, overwrite: bool = False,
                              progress: bool = True, batch_size: int = 32,
                              device: str = "auto") -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """:func:`~echokdm.echo.segmentation_training.segment_manifest`, one clip per task in ``workers`` processes.

    Same outputs: ``out/masks/<clip>.npz`` (``masks`` uint8 ``(T, H, W)``, written as each clip is
    done) and ``out/segmentation.csv`` (one row per clip, written at the end). Resumable: run
    again after an interruption, the clips already segmented (``out/.segment.parts``) are skipped.
    """
    import functools
    import shutil

    out = Path(out)
    report = out / "segmentation.csv"
    if report.exists() and not overwrite:
        raise FileExistsError(f"{report}: already exists; pass --overwrite to replace it")
    frame = _manifest(manifest)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    parts = out / ".segment.parts"
    checkpoint = str(Path(checkpoint).resolve())
    task = functools.partial(_segment_clip, checkpoint=checkpoint, out=str(out.resolve()), batch_size=batch_size,
                             device=device)
    done = map_clips(frame, task, parts, workers=workers, settings={"segment": 1, "checkpoint": checkpoint},
                     progress=progress, desc="segmenting")
    finished = [r for r in done.results if r is not None]
    table = _concat([t for t, _ in finished], pd.DataFrame())
    skipped = [item for _, s in finished for item in s] + done.failed
    _write_csv_atomically(table, report)
    shutil.rmtree(parts, ignore_errors=True)
    return table, skipped


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copy2(source, target)


def _flow_clip(rows: pd.DataFrame, checkpoint: str, out: str, gaps: tuple[int, ...], batch_size: int, device: str,
               overwrite: bool) -> tuple[pd.DataFrame, list[tuple[str, str]], str]:
    """``cache_flows`` of one clip in a private folder, which sees the clip's existing cache file (a
    hard link) so that its own completeness check decides; a computed file is moved into ``out/flows``."""
    import tempfile

    from echokdm.data.manifest import clip_file_stem, write_manifest
    from echokdm.training.flow import cache_flows

    relative = Path("flows") / f"{clip_file_stem(str(rows.iloc[0]['clip_id']))}.npz"
    with tempfile.TemporaryDirectory(dir=Path(out) / ".flow.parts", prefix=".work-") as work:
        work = Path(work)
        write_manifest(rows, work / "manifest.csv")
        (work / "out" / "flows").mkdir(parents=True)
        if (Path(out) / relative).exists() and not overwrite:
            _link_or_copy(Path(out) / relative, work / "out" / relative)
        table, skipped = cache_flows(work / "manifest.csv", checkpoint, work / "out", gaps=gaps, batch_size=batch_size,
                                     device=device, resume=True, overwrite=overwrite, progress=False)
        if len(table) and table["status"].iloc[0] == "computed":
            os.replace(work / "out" / relative, Path(out) / relative)
        return table, skipped, (work / "out" / "cache.json").read_text()


def cache_flows_parallel(manifest: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                         workers: int = 2, gaps: tuple[int, ...] = (1, 2, 4), splits: list[str] | None = None,
                         batch_size: int = 32, device: str = "auto", resume: bool = True, overwrite: bool = False,
                         progress: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """:func:`~echokdm.training.flow.cache_flows`, one clip per task in ``workers`` processes.

    Same files (``out/flows/<clip>.npz`` flows float16 ``(N, 2, S, S)`` px, ``out/flows.csv``,
    ``out/cache.json``) and the same resume rules: a clip whose file is complete is ``cached``,
    ``overwrite`` recomputes every clip, and without ``resume`` or ``overwrite`` an existing file
    is an error (raised before any work). Clips finished by an interrupted call of this function
    (``out/.flow.parts``) are not looked at again.
    """
    import functools
    import shutil

    from echokdm.data.manifest import clip_file_stem

    out = Path(out)
    frame = _manifest(manifest)
    if splits is not None:
        frame = frame[frame["split"].isin(list(splits))]
    existing = [out / "flows" / f"{clip_file_stem(str(c))}.npz" for c in frame["clip_id"]]
    existing = [p for p in existing if p.exists()]
    if existing and not resume and not overwrite:
        raise FileExistsError(f"{existing[0]}: already exists (and {len(existing) - 1} more); pass overwrite=True "
                              "(--overwrite) or resume")
    (out / "flows").mkdir(parents=True, exist_ok=True)
    parts = out / ".flow.parts"
    checkpoint = str(Path(checkpoint).resolve())
    task = functools.partial(_flow_clip, checkpoint=checkpoint, out=str(out.resolve()), gaps=tuple(gaps),
                             batch_size=batch_size, device=device, overwrite=overwrite)
    settings = {"flow": 1, "checkpoint": checkpoint, "gaps": list(gaps), "overwrite": overwrite}
    done = map_clips(frame, task, parts, workers=workers, settings=settings, progress=progress, desc="caching flows")
    finished = [r for r in done.results if r is not None]
    table = _concat([t for t, _, _ in finished], pd.DataFrame(columns=[
        "clip_id", "patient_id", "dataset", "split", "file", "n_frames", "n_pairs", "status", "seconds"]))
    skipped = [item for _, s, _ in finished for item in s] + done.failed
    _write_csv_atomically(table, out / "flows.csv")
    if finished:
        atomic_write_text(out / "cache.json", finished[-1][2], overwrite=True)
    shutil.rmtree(parts, ignore_errors=True)
    return table, skipped
