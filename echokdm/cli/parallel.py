"""The batch commands clip by clip on the engine of :mod:`echokdm.distributed`.

What ``echokdm keypoints``, ``ef``, ``segment`` and ``flow`` run, in one process, with
``--workers N``, or under ``accelerate launch --num_processes N -m echokdm <command>``:

* :func:`keypoints_table_parallel` — :func:`~echokdm.metrics.lv_function.keypoints_table`;
* :func:`segment_manifest_parallel` — :func:`~echokdm.echo.segmentation_training.segment_manifest`;
* :func:`cache_flows_parallel` — :func:`~echokdm.training.flow.cache_flows`;

each the same outputs as the function it wraps, computed clip by clip by
:func:`echokdm.distributed.map_clips` (sharded across the processes, resumable from signed parts,
merged by the main process). Under a distributed launcher they return None in every process but
the main one, which writes the outputs.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from echokdm.distributed import ClipResults, map_clips, part_path, worker_threads
from echokdm.io.atomic import atomic_output, atomic_write_text

__all__ = [
    "ClipResults",
    "cache_flows_parallel",
    "keypoints_table_parallel",
    "map_clips",
    "part_path",
    "segment_manifest_parallel",
    "worker_threads",
]


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


def _absolute(folder_or_name: str | os.PathLike) -> str:
    """A folder by its absolute path (workers may run elsewhere); a packaged checkpoint name (no such folder
    here) as it is, for ``resolve_checkpoint`` to find. (Resolving the name against the working directory
    made ``segment --checkpoint seg_phantom_112`` look for ./seg_phantom_112.)"""
    path = Path(folder_or_name)
    return str(path.resolve()) if path.exists() else str(folder_or_name)


def keypoints_table_parallel(manifest: pd.DataFrame | str | os.PathLike, parts: str | os.PathLike, *,
                             workers: int = 1, smooth_sigma_frames: float = 1.0,
                             apex_direction: str | tuple[float, float] | None = "auto",
                             segmentation: str | os.PathLike | None = None, progress: bool = True):
    """:func:`~echokdm.metrics.lv_function.keypoints_table`, one clip per task, sharded across processes.

    The same :class:`~echokdm.metrics.lv_function.KeypointsTable` (frames ``(x, y)`` pixels,
    volumes, flags; clip table; skipped items with reasons). Per-clip results stay in ``parts``
    (reused by a later call with the same options; the caller deletes the folder once the table
    is written). None in every launched process but the main one.
    """
    import functools

    from echokdm.metrics.lv_function import KeypointsTable, keypoints_table

    frame = _manifest(manifest)
    options = {"smooth_sigma_frames": smooth_sigma_frames, "apex_direction": apex_direction,
               "segmentation": _absolute(segmentation) if segmentation else None}
    task = functools.partial(_keypoints_clip, **options)
    done = map_clips(frame, task, parts, workers=workers, settings={"keypoints": 2, **options}, progress=progress,
                     desc="keypoints")
    if done is None:  # another process merges
        return None
    tables = [KeypointsTable(**t) for t in done.results if t is not None]
    empty = keypoints_table(frame.iloc[:0], progress=False)
    return KeypointsTable(frames=_concat([t.frames for t in tables], empty.frames),
                          clips=_concat([t.clips for t in tables], empty.clips),
                          skipped=[item for t in tables for item in t.skipped] + done.failed)


def _segment_clip(rows: pd.DataFrame, checkpoint: str, out: str, batch_size: int,
                  device: str, repair: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``segment_manifest`` of one clip in a private folder; its mask file then moved into ``out/masks``."""
    import tempfile

    from echokdm.data.manifest import write_manifest
    from echokdm.echo.segmentation_training import segment_manifest

    with tempfile.TemporaryDirectory(dir=Path(out) / ".segment.parts", prefix=".work-") as work:
        write_manifest(rows, Path(work) / "manifest.csv")
        table, skipped = segment_manifest(Path(work) / "manifest.csv", checkpoint, Path(work) / "out",
                                          progress=False, batch_size=batch_size, device=device, repair=repair)
        for relative in table["masks"] if len(table) else []:
            os.replace(Path(work) / "out" / relative, Path(out) / relative)
    return table, skipped


def segment_manifest_parallel(manifest: str | os.PathLike, checkpoint: str | os.PathLike,
                              out: str | os.PathLike, *, workers: int = 1, overwrite: bool = False,
                              progress: bool = True, batch_size: int = 32, device: str = "auto",
                              repair: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """:func:`~echokdm.echo.segmentation_training.segment_manifest`, one clip per task, sharded across processes.

    Same outputs: ``out/masks/<clip>.npz`` (``masks`` uint8 ``(T, H, W)``, repaired unless ``repair`` is
    False, and ``network``: the network's own masks; written as each clip is
    done) and ``out/segmentation.csv`` (one row per clip, written at the end). Resumable: run
    again after an interruption, the clips already segmented (``out/.segment.parts``) are skipped.
    None in every launched process but the main one.
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
    checkpoint = _absolute(checkpoint)
    task = functools.partial(_segment_clip, checkpoint=checkpoint, out=str(out.resolve()), batch_size=batch_size,
                             device=device, repair=repair)
    done = map_clips(frame, task, parts, workers=workers,
                     settings={"segment": 1, "checkpoint": checkpoint, "repair": bool(repair)},
                     progress=progress, desc="segmenting")
    if done is None:  # another process merges
        return None
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
               overwrite: bool, pool: int = 1) -> tuple[pd.DataFrame, list[tuple[str, str]], str]:
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
                                     device=device, resume=True, overwrite=overwrite, pool=pool, progress=False)
        if len(table) and table["status"].iloc[0] == "computed":
            os.replace(work / "out" / relative, Path(out) / relative)
        return table, skipped, (work / "out" / "cache.json").read_text()


def cache_flows_parallel(manifest: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                         workers: int = 2, gaps: tuple[int, ...] = (1, 2, 4), splits: list[str] | None = None,
                         batch_size: int = 32, device: str = "auto", resume: bool = True, overwrite: bool = False,
                         pool: int | None = None,
                         progress: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]] | None:
    """:func:`~echokdm.training.flow.cache_flows`, one clip per task, sharded across processes.

    Same files (``out/flows/<clip>.npz`` flows float16 ``(N, 2, S, S)`` px, ``out/flows.csv``,
    ``out/cache.json``) and the same resume rules: a clip whose file is complete is ``cached``,
    ``overwrite`` recomputes every clip, and without ``resume`` or ``overwrite`` an existing file
    is an error (raised before any work). Clips finished by an interrupted call of this function
    (``out/.flow.parts``) are not looked at again. None in every launched process but the main one.
    """
    import functools
    import shutil

    from echokdm.data.manifest import clip_file_stem
    from echokdm.training.flow import DEFAULT_CACHE_POOL

    pool = DEFAULT_CACHE_POOL if pool is None else int(pool)
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
    checkpoint = _absolute(checkpoint)
    task = functools.partial(_flow_clip, checkpoint=checkpoint, out=str(out.resolve()), gaps=tuple(gaps),
                             batch_size=batch_size, device=device, overwrite=overwrite, pool=pool)
    settings = {"flow": 1, "checkpoint": checkpoint, "gaps": list(gaps), "overwrite": overwrite, "pool": pool}
    done = map_clips(frame, task, parts, workers=workers, settings=settings, progress=progress, desc="caching flows")
    if done is None:  # another process merges
        return None
    finished = [r for r in done.results if r is not None]
    table = _concat([t for t, _, _ in finished], pd.DataFrame(columns=[
        "clip_id", "patient_id", "dataset", "split", "file", "n_frames", "n_pairs", "status", "seconds"]))
    skipped = [item for _, s, _ in finished for item in s] + done.failed
    _write_csv_atomically(table, out / "flows.csv")
    if finished:
        atomic_write_text(out / "cache.json", finished[-1][2], overwrite=True)
    shutil.rmtree(parts, ignore_errors=True)
    return table, skipped
