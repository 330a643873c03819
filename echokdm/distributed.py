"""One engine for batch work over clips: sharded across processes, resumable, merged exactly.

Why here (``echokdm.distributed``, beside the package's other top-level services) and not under
``echokdm.cli``: the batch commands (``segment``, ``keypoints``, ``ef``, ``flow``), the synthetic
cohort and the evaluation all run on it, and training runs on the same primitives (accelerate's
process state, :mod:`echokdm.training.distributed`). One mechanism, three ways to start it:

* **one process** (``echokdm segment ...``): every clip here, one after the other;
* **accelerate** (``accelerate launch [--cpu] --num_processes N [--multi_gpu] [--num_machines M ...]
  -m echokdm segment ...``, or ``torchrun``): every process sees ``RANK`` / ``WORLD_SIZE`` (and
  ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and joins accelerate's
  :class:`~accelerate.PartialState` (a gloo process group on CPUs, NCCL on GPUs);
* **``--workers N``** on one machine: a thin wrapper that spawns N processes with the environment
  variables accelerate sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
  ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``, ``ACCELERATE_USE_CPU``), each of which runs
  the same sharded code as an accelerate process; the spawning process only waits, shows the
  progress and merges.

:func:`map_clips` is the engine. Every process reads the parts folder (below), waits for the others
(``wait_for_everyone``: so that all see the same clips left to do), takes every ``N``-th clip left,
in manifest order, starting at its ``process_index`` (deterministic), and writes each finished
clip's result as a part. After a second ``wait_for_everyone`` the main process (rank 0; with
``--workers``, the spawning process) reads every part back in manifest order and returns the
results, exactly those of a one-process run (a clip's result depends on the clip only: the same
seeds, the same files, the same row order); the other processes get None and end. Outputs are
written by the main process only, so the folders must be shared by all processes (one machine, or
a shared file system across machines).

Parts (``parts/<clip>-<hash>.json``, written under a temporary name, then renamed) keep the clip
they belong to and the ``settings`` they were computed with: a later call with the same parts
folder and settings loads them instead of recomputing, so an interrupted or crashed run — with any
number of processes — is continued by running the same command again. A task that raises does not
stop the others; its clip is listed with the reason (``parts/.failed-<rank>.json`` between the
processes) and retried by the next call.

Parts are data, never code: JSON, with numeric arrays and table columns as raw little-endian
bytes (exact: a resumed run gives the results of an uninterrupted one bit for bit), never pickles, so
that a file planted in an output folder cannot run anything. Each part is signed (HMAC-SHA256)
with a key private to the user (``$XDG_CACHE_HOME/echokdm/parts.key``, else
``~/.cache/echokdm/parts.key``, mode 0600): a part that is corrupt, belongs to another clip or
other settings, was written by someone else or was edited is not trusted; its clip is computed
again.

``--workers`` processes are *spawned* (a fresh interpreter each: safe with torch and OpenMP,
whose thread pools do not survive ``fork``), each with ``cores // workers`` torch threads (fewer
when ``OMP_NUM_THREADS`` says so). They end with the command: SIGTERM, SIGHUP or Ctrl-C to it stops
them (the finished parts stay for the next run), and a process whose parent has died (``kill -9``)
exits by itself within a second. The task must be picklable: a module-level function, or a
``functools.partial`` of one; a *script* that calls :func:`map_clips` with ``workers > 1`` must do
so under ``if __name__ == "__main__":`` (each process imports the script). A process takes a few
seconds to start (torch, the package, the process group), so ``workers > 1`` pays off from a few
dozen clips on. Under accelerate, ``workers`` is ignored: the launcher made the processes.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import json
import math
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
from echokdm.io.atomic import atomic_write_bytes

__all__ = [
    "ClipResults",
    "is_main_process",
    "launched",
    "map_clips",
    "part_path",
    "process_state",
    "shard",
    "shard_then_merge",
    "worker_threads",
]

#: How long a process waits for the others at a barrier (a shard can take hours on a big dataset).
BARRIER_TIMEOUT = datetime.timedelta(hours=48)


# --------------------------------------------------------------------------------------------
# the processes
# --------------------------------------------------------------------------------------------


def launched() -> bool:
    """Whether this process is one of several started by a distributed launcher (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _end_process_group() -> None:
    """Leave the process group before the interpreter exits (gloo aborts the process otherwise)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()


def process_state():
    """accelerate's :class:`~accelerate.PartialState` of this process (its process group joined on
    first use when launched; ``process_index``, ``num_processes``, ``is_main_process``,
    ``wait_for_everyone``). One per process, shared with training's :class:`accelerate.Accelerator`."""
    import torch
    from accelerate import PartialState

    if not launched():
        return PartialState()
    # as accelerate.Accelerator does: the CPU (gloo) when asked (accelerate launch --cpu) or without a GPU
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
    atexit_register(_end_process_group)
    if state.num_processes != int(os.environ["WORLD_SIZE"]):
        raise RuntimeError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but accelerate sees {state.num_processes} "
                           "process(es); launch with accelerate launch or torchrun")
    return state


def atexit_register(function: Callable[[], None]) -> None:
    import atexit

    atexit.unregister(function)  # once, however many calls
    atexit.register(function)


def is_main_process() -> bool:
    """True in a single process and in rank 0 of a launched run (reads the environment only)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def shard(items: list, index: int, count: int) -> list:
    """The items process ``index`` of ``count`` takes: every ``count``-th, from ``index`` on (deterministic)."""
    if not 0 <= index < count:
        raise ValueError(f"process index {index} not in 0..{count - 1}")
    return list(items)[index::count]


def shard_then_merge(rows: pd.DataFrame, work: Callable[[pd.DataFrame], Any]) -> bool:
    """For a command with its own resumable per-clip files (``evaluate``): under a launcher, every
    process waits for the main one (which has prepared the output folder), runs ``work`` on its shard
    of ``rows`` (every N-th row from its index on), and waits for the others; then True in the main
    process, which goes on to merge by running the command on all rows (now read back from the
    files), False in the others. Without a launcher: True at once, nothing run."""
    if not launched():
        return True
    state = process_state()
    state.wait_for_everyone()
    work(rows.iloc[state.process_index::state.num_processes])
    state.wait_for_everyone()
    return bool(state.is_main_process)


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
def _signals_stop_the_workers():
    """SIGTERM / SIGHUP raise :class:`_Stopped` in the main thread (instead of ending the process
    on the spot), so that the worker processes are stopped first. Handlers someone else installed
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
              desc: str = "clips") -> ClipResults | None:
    """``task(rows)`` for every clip of ``manifest``, sharded across processes, resumable.

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
        Processes on this machine (module docstring); 1 runs every task in this process. Ignored
        when this process was started by a distributed launcher: the clips are then shared by the
        launched processes.
    settings : dict, optional
        What the results depend on besides the clip (options, model checkpoint), plain data as
        the results: a part is reused only when its settings are equal.
    progress : bool
        Show a tqdm bar over the clips (the main process only).

    Returns
    -------
    ClipResults or None
        None in every launched process but the main one (rank 0), whose results are all the clips'.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.perf_counter()
    settings = dict(settings or {})
    _encode(settings)  # TypeError now, not in every process
    key = _parts_key()
    parts = Path(parts)
    parts.mkdir(parents=True, exist_ok=True)
    rows = [manifest.iloc[[i]] for i in range(len(manifest))]
    paths = [part_path(parts, r.iloc[0]) for r in rows]
    job = _Job(task, rows, paths, parts, settings, key)
    if launched():
        return _as_launched_process(job, started, progress, desc)
    results, todo = job.scan()
    if workers == 1 or len(todo) <= 1:
        failed = job.compute(todo, _bar(len(rows), len(rows) - len(todo), desc, progress), results)
        return job.done(results, todo, failed, started)
    return _in_worker_processes(job, manifest, results, todo, workers, started, progress, desc)


@dataclasses.dataclass
class _Job:
    task: Callable
    rows: list[pd.DataFrame]
    paths: list[Path]
    parts: Path
    settings: dict
    key: bytes

    def scan(self) -> tuple[list[Any], list[int]]:
        """The results of the clips whose part is valid, and the indices of the others (to do)."""
        results: list[Any] = [None] * len(self.rows)
        todo = []
        for i, path in enumerate(self.paths):
            found, value = _read_part(path, self.key, _row_key(self.rows[i].iloc[0]), self.settings)
            if found:
                results[i] = value
            else:
                todo.append(i)
        return results, todo

    def compute(self, indices: list[int], bar, results: list[Any] | None = None) -> dict[int, str]:
        """Run the task on the clips ``indices`` here, one after the other (parts written); the failures."""
        failed: dict[int, str] = {}
        try:
            for i in indices:
                ok, value = _run_task(self.task, self.rows[i], self.paths[i], self.settings, self.key)
                if not ok:
                    failed[i] = value
                elif results is not None:
                    results[i] = value
                bar.update(1)
        except (KeyboardInterrupt, _Stopped):
            _say_stopped(self.parts)
            raise
        finally:
            bar.close()
        return failed

    def failures_file(self, rank: int) -> Path:
        return self.parts / f".failed-{rank}.json"

    def write_failures(self, rank: int, failed: dict[int, str]) -> None:
        """The failed clips of process ``rank`` (signed, as parts are), for the main process."""
        if failed:
            _write_part(self.failures_file(rank), self.key, "\0failed", self.settings,
                        [[i, _row_key(self.rows[i].iloc[0]), reason] for i, reason in sorted(failed.items())])

    def read_failures(self) -> dict[int, str]:
        """The failures every process wrote (then removed)."""
        failed: dict[int, str] = {}
        for path in sorted(self.parts.glob(".failed-*.json")):
            found, items = _read_part(path, self.key, "\0failed", self.settings)
            for i, row_key, reason in items if found else []:
                if 0 <= i < len(self.rows) and _row_key(self.rows[i].iloc[0]) == row_key:
                    failed[i] = str(reason)
            path.unlink(missing_ok=True)
        return failed

    def merge(self, todo: list[int], reason_missing: str) -> tuple[list[Any], dict[int, str]]:
        """Every clip's result from the parts, in manifest order, after the processes are done."""
        results, left = self.scan()
        failed = self.read_failures()
        for i in left:
            failed.setdefault(i, reason_missing)
        return results, {i: failed[i] for i in left}

    def done(self, results: list[Any], todo: list[int], failed: dict[int, str], started: float) -> ClipResults:
        return ClipResults(results=results, failed=[(_item(self.rows[i].iloc[0]), failed[i]) for i in sorted(failed)],
                           reused=len(self.rows) - len(todo), seconds=round(time.perf_counter() - started, 3))


def _bar(total: int, initial: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="clip", disable=not progress)


def _say_stopped(parts: Path) -> None:
    kept = len(list(parts.glob("*.json")))
    print(f"echokdm: stopped; {kept} finished clip(s) are kept in {parts}: run the same command again to go on",
          file=sys.stderr)


def _as_launched_process(job: _Job, started: float, progress: bool, desc: str) -> ClipResults | None:
    """One launched process's share of the clips; the merged results in the main process, None elsewhere."""
    state = process_state()
    rank, count = state.process_index, state.num_processes
    if state.is_main_process:
        for stale in job.parts.glob(".failed-*.json"):  # an earlier run's
            stale.unlink(missing_ok=True)
    _, todo = job.scan()
    state.wait_for_everyone()  # every process has seen the same clips left, before any part is written
    mine = shard(todo, rank, count)
    failed = job.compute(mine, _bar(len(mine), 0, f"{desc} [process {rank}/{count}]",
                                    progress and state.is_main_process))
    job.write_failures(rank, failed)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    results, failed = job.merge(todo, "no result: its process stopped before finishing it; run again to retry")
    return job.done(results, todo, failed, started)


# --------------------------------------------------------------------------------------------
# --workers N: the launched processes, started here
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_environment(rank: int, count: int, port: int) -> dict[str, str]:
    """The variables ``accelerate launch --cpu --num_processes count`` gives process ``rank`` on one machine."""
    return {"RANK": str(rank), "WORLD_SIZE": str(count), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(count),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "ACCELERATE_USE_CPU": "true"}


def _worker(environment: dict[str, str], threads: int, parent: int, manifest: pd.DataFrame, task: Callable,
            parts: str, settings: dict) -> None:
    """A spawned ``--workers`` process: the launcher's variables, thread counts, an end with the parent;
    then the clips of its rank, as under ``accelerate launch``."""
    os.environ.update(environment)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops us)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="echokdm-parent-watch").start()
    map_clips(manifest, task, parts, settings=settings, progress=False)


def _count_parts(parts: Path) -> int:
    with contextlib.suppress(OSError):
        return sum(1 for _ in parts.glob("*.json"))
    return 0


def _in_worker_processes(job: _Job, manifest: pd.DataFrame, results: list[Any], todo: list[int], workers: int,
                         started: float, progress: bool, desc: str) -> ClipResults:
    """``workers`` spawned processes share the clips left (as launched processes would); here: wait, merge."""
    import multiprocessing
    from multiprocessing.connection import wait

    count = min(workers, len(todo))
    context = multiprocessing.get_context("spawn")
    port, threads = _free_port(), worker_threads(workers)
    processes = [context.Process(target=_worker, name=f"echokdm-worker-{rank}",
                                 args=(launch_environment(rank, count, port), threads, os.getpid(), manifest,
                                       job.task, str(job.parts), job.settings))
                 for rank in range(count)]
    done_before = len(job.rows) - len(todo)
    bar = _bar(len(job.rows), done_before, desc, progress)
    before = _count_parts(job.parts)
    died = None
    with _signals_stop_the_workers():
        try:
            for process in processes:
                process.start()
            running = list(processes)
            while running:
                wait([p.sentinel for p in running], timeout=0.5)
                for process in [p for p in running if p.exitcode is not None]:
                    running.remove(process)
                    if process.exitcode != 0 and died is None:
                        died = f"worker process died (exit code {process.exitcode}); run again to retry this clip"
                if died is not None and running:  # the others would wait for it forever
                    _stop(running)
                    running = []
                bar.n = min(len(job.rows), done_before + max(0, _count_parts(job.parts) - before))
                bar.refresh()
        except BaseException:  # Ctrl-C, SIGTERM: stop the processes; finished parts stay
            _stop(processes)
            _say_stopped(job.parts)
            raise
        finally:
            bar.close()
    merged, failed = job.merge(todo, died or "no result from the worker processes; run again to retry this clip")
    return job.done(merged, todo, failed, started)


def _stop(processes) -> None:
    """End the processes now (not after their current clip): SIGTERM, then SIGKILL after 5 s."""
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    deadline = time.monotonic() + 5.0
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
