"""Issue 23: the batch commands on one distributed engine (echokdm.distributed). Two processes give the
one-process outputs: ``accelerate launch --cpu --num_processes 2 -m echokdm <command>`` and ``--workers 2``.

Compared byte for byte (CSV files, mask files) where the work is integer or exact; flows value for value
with ``atol=2e-3`` px (float16 files; the same as the --workers test of tests/test_parallel.py: OF-net's
float sums may differ with the number of torch threads a process gets)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.data.phantom.export import write_cohort
from echokdm.distributed import launch_environment, map_clips, shard

CHECKPOINTS = Path(__file__).resolve().parents[2] / "echokdm" / "checkpoints"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three short phantom patients (NIfTI with masks, 112×112, one beat at 20 fps): the manifest path."""
    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, 3, "nifti", seed=5, fps=20.0, n_beats=1.0, progress=False)
    return out / "manifest.csv"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _plain(*argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "echokdm", *argv, "--no-progress"], env=_env(), capture_output=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def _launched(*argv: str, cpu_flag: bool = False) -> str:
    """``accelerate launch ... -m echokdm <argv>`` with 2 processes. accelerate's ``--cpu`` starts *one*
    process unless MPI is set up (its simple launcher); on a machine without CUDA ``--multi_gpu`` starts two
    CPU processes (gloo), which is what the default here runs."""
    import socket

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    how = ["--cpu"] if cpu_flag else ["--multi_gpu", "--main_process_port", str(port)]
    command = [accelerate, "launch", *how, "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "echokdm", *argv, "--no-progress"]
    done = subprocess.run(command, env=_env(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout.decode()


needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="--multi_gpu on CUDA wants 2 GPUs")


def _same_files(one: Path, two: Path) -> None:
    """Every file of ``one`` is in ``two`` with the same bytes (videos: the same pictures), and nothing else (no
    parts left)."""
    first = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    second = sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert first == second
    for relative in first:
        if relative.suffix == ".mp4":  # H.264 bytes depend on the encoder's threads: the same pictures, decoded
            import imageio.v3 as iio

            a, b = iio.imread(one / relative).astype(float), iio.imread(two / relative).astype(float)
            assert a.shape == b.shape and abs(a - b).mean() < 2.0, relative
            continue
        assert (one / relative).read_bytes() == (two / relative).read_bytes(), relative


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------


def test_shards_are_deterministic_and_cover_every_item_once():
    items = list(range(11))
    shards = [shard(items, rank, 3) for rank in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shards, [])) == items
    with pytest.raises(ValueError):
        shard(items, 3, 3)


def test_workers_get_the_variables_accelerate_sets():
    env = launch_environment(1, 2, 29511)
    assert env["RANK"] == "1" and env["WORLD_SIZE"] == "2" and env["LOCAL_RANK"] == "1"
    assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"] == "29511"


def _rank_and_id(rows):
    return [os.environ.get("RANK", "-"), str(rows.iloc[0]["clip_id"])]


def test_workers_share_the_clips_round_robin_and_merge_in_order(tmp_path):
    manifest = pd.DataFrame({"dataset": "d", "clip_id": [f"c{i}" for i in range(5)],
                             "path": [f"/x/{i}" for i in range(5)]})
    done = map_clips(manifest, _rank_and_id, tmp_path / "parts", workers=2, progress=False)
    assert [r[1] for r in done.results] == [f"c{i}" for i in range(5)]  # manifest order
    assert [r[0] for r in done.results] == ["0", "1", "0", "1", "0"]  # clip i by process i % 2
    assert not list((tmp_path / "parts").glob(".failed-*"))


def test_python_m_echokdm_is_the_command():
    done = subprocess.run([sys.executable, "-m", "echokdm", "--version"], capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stdout.decode().startswith("echokdm ")


# --------------------------------------------------------------------------------------------
# the batch commands, 2 processes vs 1
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_no_cuda
def test_accelerate_launch_segment_gives_the_plain_segmentation(cohort, tmp_path):
    checkpoint = "seg_phantom_112"
    argv = ("segment", str(cohort), "--checkpoint", checkpoint)
    _plain(*argv, "-o", str(tmp_path / "one"))
    printed = _launched(*argv, "-o", str(tmp_path / "two"))  # two processes
    assert printed.count("segmented 3 clip(s)") == 1  # the main process reports, once
    _same_files(tmp_path / "one", tmp_path / "two")  # segmentation.csv and masks/*.npz, byte for byte
    table = pd.read_csv(tmp_path / "two" / "segmentation.csv")
    assert len(table) == 3 and not (tmp_path / "two" / ".segment.parts").exists()
    _launched(*argv, "-o", str(tmp_path / "cpu"), cpu_flag=True)  # the command (accelerate: one process)
    _same_files(tmp_path / "one", tmp_path / "cpu")


@pytest.mark.slow
@needs_no_cuda
def test_accelerate_launch_keypoints_and_ef_give_the_plain_tables(cohort, tmp_path):
    _plain("keypoints", str(cohort), "-o", str(tmp_path / "one" / "kp.csv"))
    _launched("keypoints", str(cohort), "-o", str(tmp_path / "two" / "kp.csv"))
    _same_files(tmp_path / "one", tmp_path / "two")
    _plain("ef", str(cohort), "-o", str(tmp_path / "ef1"))
    _launched("ef", str(cohort), "-o", str(tmp_path / "ef2"))
    for name in ("ef_per_clip.csv", "ef_summary.csv"):
        assert (tmp_path / "ef1" / name).read_bytes() == (tmp_path / "ef2" / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("how", ["accelerate", "workers"])
def test_two_processes_cache_the_plain_flows(cohort, tmp_path, how):
    argv = ("flow", str(cohort), "--checkpoint", "ofnet_phantom_112", "--gaps", "1")
    _plain(*argv, "-o", str(tmp_path / "one"))
    if how == "accelerate":
        if torch.cuda.is_available():
            pytest.skip("--multi_gpu on CUDA wants 2 GPUs")
        _launched(*argv, "-o", str(tmp_path / "two"))
    else:
        _plain(*argv, "-o", str(tmp_path / "two"), "--workers", "2")
    one, two = pd.read_csv(tmp_path / "one" / "flows.csv"), pd.read_csv(tmp_path / "two" / "flows.csv")
    columns = ["clip_id", "file", "n_frames", "n_pairs", "status"]
    pd.testing.assert_frame_equal(one[columns], two[columns])
    assert (tmp_path / "one" / "cache.json").read_bytes() == (tmp_path / "two" / "cache.json").read_bytes()
    for relative in one["file"]:
        with np.load(tmp_path / "one" / relative) as a, np.load(tmp_path / "two" / relative) as b:
            assert sorted(a.files) == sorted(b.files)
            for name in a.files:
                if name == "flows":
                    np.testing.assert_allclose(a[name].astype(np.float32), b[name].astype(np.float32), atol=2e-3)
                else:
                    np.testing.assert_array_equal(a[name], b[name])
    assert not (tmp_path / "two" / ".flow.parts").exists()


@pytest.mark.slow
@needs_no_cuda
def test_accelerate_launch_synthesize_writes_the_plain_cohort(cohort, tmp_path):
    argv = ("synthesize", str(cohort), "--n", "3", "--split", "all", "--steps", "3", "--k", "2")
    _plain(*argv, "-o", str(tmp_path / "one"))
    printed = _launched(*argv, "-o", str(tmp_path / "two"))  # loop i made by process i % 2
    lines = printed.splitlines()
    assert sum(line.startswith("cohort: ") for line in lines) == 1  # the main process reports, once
    assert sum(line.startswith("pipeline: ") for line in lines) == 1
    _same_files(tmp_path / "one", tmp_path / "two")  # videos, FileList, VolumeTracings, cohort, memorisation ...


@pytest.mark.slow
@needs_no_cuda
def test_accelerate_launch_evaluate_gives_the_plain_scores(cohort, tmp_path, monkeypatch):
    """Every score identical; only the measured ``seconds_per_frame`` columns (wall time) differ."""
    lpips = Path("/work/shared/weights/lpips")
    if "ECHOKDM_LPIPS_WEIGHTS" not in os.environ and lpips.is_dir():
        monkeypatch.setenv("ECHOKDM_LPIPS_WEIGHTS", str(lpips))
    argv = ("evaluate", str(cohort), "--pipeline", "kdm_phantom_112", "--split", "all", "--methods", "kdm",
            "no_edit", "tps", "--max-targets", "2", "--lpips-nets", "alex", "--steps", "2", "--k", "1")
    _plain(*argv, "-o", str(tmp_path / "one"))
    printed = _launched(*argv, "-o", str(tmp_path / "two"))  # clip i evaluated by process i % 2
    assert printed.count("results: ") == 1
    one, two = tmp_path / "one", tmp_path / "two"
    for name in ("per_frame.csv", "per_patient.csv", "table3.md", "evaluate.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    for path in sorted((one / "generated").glob("*.npz")):
        assert path.read_bytes() == (two / "generated" / path.name).read_bytes()
    for name in ("per_clip.csv", "summary.csv"):
        a, b = pd.read_csv(one / name), pd.read_csv(two / name)
        timing = [c for c in a.columns if c.startswith("seconds_per_frame")]
        pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing), check_exact=True)
