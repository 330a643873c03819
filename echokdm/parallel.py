"""Preprocessing at scale: per-clip work over a manifest in worker processes, resumable.

What ``echokdm keypoints``, ``ef``, ``segment`` and ``flow --workers N`` run:

* :func:`keypoints_table_parallel` — :func:`~echokdm.metrics.lv_function.keypoints_table`;
* :func:`segment_manifest_parallel` — :func:`~echokdm.echo.segmentation_training.segment_manifest`;
* :func:`cache_flows_parallel` — :func:`~echokdm.training.flow.cache_flows`;

each the same outputs as the function it wraps, computed clip by clip by :func:`map_clips`.

:func:`map_clips` calls ``task(rows)`` once per clip of a loaded manifest, ``rows`` being that clip's
one-row manifest DataFrame (so any function that takes a manifest DataFrame can be the task). Each
result is pickled to ``parts/<clip>-<hash>.pkl``, written to a temporary name and renamed, together
with the ``settings`` it was computed with. A later call with the same parts folder and the same
settings loads those results instead of recomputing them: an interrupted or crashed run is
continued by running the same command again. A task that raises does not stop the others; its clip
is listed with the reason and retried by the next call.

With ``workers > 1`` the tasks run in that many *spawned* processes (a fresh interpreter each: safe
with torch and OpenMP, whose thread pools do not survive ``fork``), each with ``cpu_count //
workers`` torch threads (fewer when ``OMP_NUM_THREADS`` says so), so that the workers do not fight
over the cores. The task must be picklable: a module-level function, or a ``functools.partial``
of one. As with any spawning ``multiprocessing`` code, a *script* that calls these functions with
``workers > 1`` must do so under ``if __name__ == "__main__":`` (each worker imports the script);
the ``echokdm`` command and notebooks need nothing. A worker takes a few seconds to start (it
imports torch and the package), so ``workers > 1`` pays off from a few dozen clips on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from echokdm.data.manifest import clip_file_stem

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


def part_path(parts: str | os.PathLike, row: pd.Series | dict) -> Path:
    """The part file of one manifest row: ``<clip_file_stem>-<8 hex>.pkl``, the hash of dataset,
    clip ID and path (clip IDs of two datasets may coincide, and a stem may not be unique)."""
    key = "\0".join(str(row[c]) for c in ("dataset", "clip_id", "path"))
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Path(parts) / f"{clip_file_stem(str(row['clip_id']))[:80]}-{digest}.pkl"


def worker_threads(workers: int) -> int:
    """Torch / OpenMP threads per worker: ``cpu_count // workers``, at most ``OMP_NUM_THREADS``, at least 1."""
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    env = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(threads, int(env))) if env.isdigit() and int(env) > 0 else threads


def _init_worker(threads: int) -> None:
    """Runs first in every worker: thread counts before torch is imported (and after, if it was)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _write_part(path: Path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            pickle.dump(record, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_part(path: Path, settings: dict) -> tuple[bool, Any]:
    """``(True, result)`` when ``path`` holds a part computed with ``settings``, else ``(False, None)``."""
    if not path.exists():
        return False, None
    try:
        with open(path, "rb") as handle:
            record = pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return False, None  # unreadable (or from another version): recompute
    if not isinstance(record, dict) or record.get("settings") != settings:
        return False, None
    return True, record.get("result")


def _run_task(task: Callable, rows: pd.DataFrame, path: Path, settings: dict) -> tuple[bool, Any]:
    """Run ``task`` on one clip and write its part; ``(True, result)`` or ``(False, reason)``."""
    try:
        result = task(rows)
    except Exception as exc:  # noqa: BLE001 - reported for this clip; the others go on
        return False, f"{type(exc).__name__}: {exc}"
    _write_part(path, {"settings": settings, "result": result})
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
        ``task(rows) -> result`` with ``rows`` the clip's one-row DataFrame (index kept); the
        result must be picklable. Must be picklable itself when ``workers > 1``.
    parts : path
        Folder of the per-clip results (created). Delete it once its results are merged.
    workers : int
        Processes; 1 runs every task in this process, one after the other.
    settings : dict, optional
        What the results depend on besides the clip (options, model checkpoint): a part is reused
        only when its settings are equal.
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
    parts = Path(parts)
    parts.mkdir(parents=True, exist_ok=True)
    rows = [manifest.iloc[[i]] for i in range(len(manifest))]
    paths = [part_path(parts, r.iloc[0]) for r in rows]
    results: list[Any] = [None] * len(rows)
    failed: dict[int, str] = {}
    todo = []
    for i, path in enumerate(paths):
        found, value = _read_part(path, settings)
        if found:
            results[i] = value
        else:
            todo.append(i)
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc, unit="clip", disable=not progress)
    try:
        outcomes = (_serial(task, rows, paths, settings, todo) if workers == 1 or len(todo) <= 1
                    else _pooled(task, rows, paths, settings, todo, workers))
        for i, ok, value in outcomes:
            if ok:
                results[i] = value
            else:
                failed[i] = value
            bar.update(1)
    finally:
        bar.close()
    return ClipResults(results=results, failed=[(_item(rows[i].iloc[0]), failed[i]) for i in sorted(failed)],
                       reused=len(rows) - len(todo), seconds=round(time.perf_counter() - started, 3))


def _serial(task, rows, paths, settings, todo):
    for i in todo:
        yield (i, *_run_task(task, rows[i], paths[i], settings))


def _pooled(task, rows, paths, settings, todo, workers):
    """Yield ``(index, ok, result or reason)`` as the worker processes finish the clips."""
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                                  initializer=_init_worker, initargs=(worker_threads(workers),))
    try:
        futures = {pool.submit(_run_task, task, rows[i], paths[i], settings): i for i in todo}
        for future in concurrent.futures.as_completed(futures):
            try:
                ok, value = future.result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                ok, value = False, f"worker process died ({exc}); run again to retry this clip"
            yield futures[future], ok, value
    except BaseException:  # KeyboardInterrupt included: the finished parts stay for the next run
        pool.shutdown(wait=False, cancel_futures=True)
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
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)


def keypoints_table_parallel(manifest: pd.DataFrame | str | os.PathLike, parts: str | os.PathLike, *,
                             workers: int = 1, smooth_sigma_frames: float = 1.0,
                             apex_direction: str | tuple[float, float] | None = "up",
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
    task = functools.partial(keypoints_table, progress=False, **options)
    done = map_clips(frame, task, parts, workers=workers, settings={"keypoints": 1, **options}, progress=progress,
                     desc="keypoints")
    tables = [t for t in done.results if t is not None]
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
        tmp = out / ".cache.json.tmp"
        tmp.write_text(finished[-1][2])
        os.replace(tmp, out / "cache.json")
    shutil.rmtree(parts, ignore_errors=True)
    return table, skipped
