"""Parallel, resumable preprocessing (echokdm.cli.parallel and the --workers option of the commands): two
worker processes give the sequential results; finished clips are reused after an interruption."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.cli.parallel import (
    cache_flows_parallel,
    keypoints_table_parallel,
    map_clips,
    part_path,
    segment_manifest_parallel,
    worker_threads,
)
from echokdm.data.manifest import load_manifest
from echokdm.data.phantom.export import write_cohort

CHECKPOINTS = Path(__file__).resolve().parents[1] / "echokdm" / "checkpoints"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three short phantom patients (NIfTI with masks, 112×112): the manifest path."""
    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, 3, "nifti", seed=5, fps=20.0, n_beats=1.0, progress=False)
    return out / "manifest.csv"


def _clip_id(rows):
    if rows.iloc[0]["clip_id"].endswith("1"):
        raise RuntimeError("this clip fails")
    return str(rows.iloc[0]["clip_id"])


def _manifest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "d", "clip_id": [f"c{i}" for i in range(n)], "path": [f"/x/{i}" for i in range(n)]})


def test_map_clips_lists_failures_and_reuses_finished_parts(tmp_path):
    manifest = _manifest(3)
    first = map_clips(manifest, _clip_id, tmp_path / "parts", settings={"a": 1}, progress=False)
    assert first.results == ["c0", None, "c2"] and first.reused == 0
    assert first.failed == [("d/c1 (/x/1)", "RuntimeError: this clip fails")]
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == sorted(
        part_path(tmp_path / "parts", manifest.iloc[i]).name for i in (0, 2))
    again = map_clips(manifest, _clip_id, tmp_path / "parts", settings={"a": 1}, progress=False)
    assert again.reused == 2 and again.results == first.results  # the failed clip is tried again
    other = map_clips(manifest, str, tmp_path / "parts", settings={"a": 2}, progress=False)
    assert other.reused == 0 and other.failed == []  # other settings: nothing reused
    with pytest.raises(ValueError, match="workers"):
        map_clips(manifest, str, tmp_path / "parts", workers=0)


def test_two_workers_run_every_clip_and_report_failures(tmp_path):
    manifest = _manifest(4)
    done = map_clips(manifest, _clip_id, tmp_path / "parts", workers=2, progress=False)
    assert done.results == ["c0", None, "c2", "c3"] and len(done.failed) == 1


def test_worker_threads_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("echokdm.runtime.available_cores", lambda: 8)
    assert (worker_threads(1), worker_threads(3), worker_threads(16)) == (8, 2, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert worker_threads(2) == 1


def _keypoints(argv):
    from echokdm.cli.keypoints import register

    parser = argparse.ArgumentParser(prog="echokdm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_keypoints_with_two_workers_equals_one_and_resumes(cohort, tmp_path):
    from echokdm.metrics.lv_function import keypoints_table

    sequential = keypoints_table(cohort, progress=False)
    assert _keypoints(["keypoints", str(cohort), "-o", str(tmp_path / "kp.csv"), "--workers", "2",
                       "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "kp.csv"), pd.read_csv(_csv(sequential.frames, tmp_path)))
    assert not (tmp_path / ".kp.csv.parts").exists()  # merged, then removed
    # an interrupted run left its parts: the next run reuses them (here, a marked result, signed as parts are)
    parts = tmp_path / ".again.csv.parts"
    keypoints_table_parallel(cohort, parts, progress=False)
    first = part_path(parts, load_manifest(cohort).iloc[0])
    result = _resign(first, lambda r: r["frames"].__setitem__("volume", -1.0))
    assert _keypoints(["keypoints", str(cohort), "-o", str(tmp_path / "again.csv"), "--no-progress"]) == 0
    again = pd.read_csv(tmp_path / "again.csv")
    assert (again["volume"] == -1).sum() == len(result["frames"]) and (again["volume"] > 0).any()
    with pytest.raises(SystemExit):
        _keypoints(["keypoints", str(cohort), "-o", str(tmp_path / "x.csv"), "--workers", "0"])


def _resign(path: Path, edit):
    """``edit`` the result in the part ``path`` and sign it again with this user's key (as a worker would)."""
    import hashlib
    import hmac

    from echokdm.distributed import _MAGIC, _decode, _dumps, _encode, _parts_key  # the parts live in the engine

    record = json.loads(path.read_bytes().partition(b"\n")[2])
    result = _decode(record["result"])
    edit(result)
    payload = _dumps({**record, "result": _encode(result)})
    path.write_bytes(_MAGIC + hmac.new(_parts_key(), payload, hashlib.sha256).hexdigest().encode() + b"\n" + payload)
    return result


def _csv(frame: pd.DataFrame, folder: Path) -> Path:
    path = folder / "sequential.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_segment_with_two_workers_equals_sequential(cohort, tmp_path):
    from echokdm.echo.segmentation_training import segment_manifest

    checkpoint = CHECKPOINTS / "seg_phantom_112"
    expected, _ = segment_manifest(cohort, checkpoint, tmp_path / "one", progress=False)
    from echokdm.cli import build_parser

    args = build_parser().parse_args(["segment", str(cohort), "--checkpoint", str(checkpoint), "-o",
                                      str(tmp_path / "two"), "--workers", "2", "--no-progress"])
    assert args.func(args) == 0  # echokdm segment --workers 2
    assert not (tmp_path / "two" / ".segment.parts").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / "segmentation.csv"),
                                  pd.read_csv(tmp_path / "one" / "segmentation.csv"))
    for relative in expected["masks"]:
        np.testing.assert_array_equal(np.load(tmp_path / "two" / relative)["masks"],
                                      np.load(tmp_path / "one" / relative)["masks"])
    with pytest.raises(FileExistsError, match="segmentation.csv"):
        segment_manifest_parallel(cohort, checkpoint, tmp_path / "two", progress=False)


@pytest.mark.slow
def test_flow_cache_with_two_workers_equals_sequential_and_resumes(cohort, tmp_path):
    from echokdm.training.flow import cache_flows

    checkpoint = CHECKPOINTS / "ofnet_phantom_112"
    expected, _ = cache_flows(cohort, checkpoint, tmp_path / "one", gaps=(1,), progress=False)
    from echokdm.cli.flow import register

    parser = argparse.ArgumentParser(prog="echokdm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["flow", str(cohort), "--checkpoint", str(checkpoint), "-o", str(tmp_path / "two"),
                              "--gaps", "1", "--workers", "2", "--no-progress"])
    assert args.func(args) == 0  # echokdm flow --workers 2
    table = pd.read_csv(tmp_path / "two" / "flows.csv")
    assert set(table["status"]) == {"computed"}
    columns = ["clip_id", "file", "n_frames", "n_pairs", "status"]
    pd.testing.assert_frame_equal(table[columns], expected[columns])
    assert (tmp_path / "two" / "cache.json").read_text() == (tmp_path / "one" / "cache.json").read_text()
    for relative in expected["file"]:
        np.testing.assert_allclose(np.load(tmp_path / "two" / relative)["flows"].astype(np.float32),
                                   np.load(tmp_path / "one" / relative)["flows"].astype(np.float32), atol=2e-3)
    first = tmp_path / "two" / expected["file"].iloc[0]
    stamp = first.stat().st_mtime_ns
    broken = tmp_path / "two" / expected["file"].iloc[1]
    broken.write_bytes(broken.read_bytes()[:100])  # an interrupted, incomplete file
    again, _ = cache_flows_parallel(cohort, checkpoint, tmp_path / "two", workers=1, gaps=(1,), progress=False)
    assert again["status"].tolist() == ["cached", "computed", "cached"] and first.stat().st_mtime_ns == stamp
    assert np.load(broken)["flows"].shape[0] == expected["n_pairs"].iloc[1]
    with pytest.raises(FileExistsError, match="overwrite"):
        cache_flows_parallel(cohort, checkpoint, tmp_path / "two", gaps=(1,), resume=False, progress=False)
    assert not list((tmp_path / "two").glob(".*")) and not list((tmp_path / "two" / "flows").glob(".*"))
