"""Issue 17, item 4: an interrupted ``echokdm segment --workers 2`` leaves no process behind (workers,
multiprocessing's resource tracker), and running the same command again finishes the job exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.data.phantom.export import write_cohort

CHECKPOINT = Path(__file__).resolve().parents[2] / "echokdm" / "checkpoints" / "seg_phantom_112"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Six short phantom patients (NIfTI, 112×112): the manifest path."""
    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, 6, "nifti", seed=11, fps=20.0, n_beats=1.0, progress=False)
    return out / "manifest.csv"


@pytest.fixture(scope="module")
def expected(cohort, tmp_path_factory) -> Path:
    """The uninterrupted, sequential segmentation's output folder."""
    from echokdm.echo.segmentation_training import segment_manifest

    out = tmp_path_factory.mktemp("expected")
    segment_manifest(cohort, CHECKPOINT, out, progress=False)
    return out


def _alive(pid: int, started: float | None) -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs (a zombie does not)."""
    try:
        import psutil

        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and (started is None or process.create_time() == started)
    except ImportError:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[0] != "Z" and (started is None or float(fields[19]) == started)
    except Exception:  # noqa: BLE001 - psutil.NoSuchProcess and friends: gone
        return False


def _descendants(pid: int) -> dict[int, float | None]:
    """Every process below ``pid`` now: ``{pid: start time}``."""
    try:
        import psutil

        found = {}
        for child in psutil.Process(pid).children(recursive=True):
            try:
                found[child.pid] = child.create_time()
            except psutil.Error:
                pass
        return found
    except ImportError:
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry.name)] = (int(fields[1]), float(fields[19]))
        found, frontier = {}, [pid]
        while frontier:
            parent = frontier.pop()
            for child, (ppid, started) in parents.items():
                if ppid == parent and child not in found:
                    found[child] = started
                    frontier.append(child)
        return found
    except Exception:  # noqa: BLE001 - the parent has just ended
        return {}


def _finished(out: Path) -> list[Path]:
    """The part files of the clips finished so far (``.pkl`` before issue 17, ``.json`` now); a part being
    written is a hidden ``.<name>.tmp.json`` until it is renamed, and is not finished (CI once interrupted
    the run while the first part was half written, and counted it)."""
    parts = out / ".segment.parts"
    return sorted(p for p in parts.iterdir() if p.suffix in (".json", ".pkl") and not p.name.startswith(".")
                  ) if parts.is_dir() else []


def _command(cohort: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "echokdm", "segment", str(cohort), "--checkpoint", str(CHECKPOINT), "-o", str(out),
            "--workers", "2", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C", "kill -9"])
def test_an_interrupted_parallel_run_leaves_no_process_and_resumes(cohort, expected, tmp_path, how):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(_command(cohort, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    seen: dict[int, float | None] = {}
    deadline = time.monotonic() + 240
    try:
        # mid-run: the workers run and at least one clip is finished, not all
        while not _finished(out) or len(seen) < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run did not get going"
            seen.update(_descendants(process.pid))
            time.sleep(0.05)
        seen.update(_descendants(process.pid))
        if how == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        elif how == "Ctrl-C":  # the terminal sends SIGINT to the whole foreground group
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.kill()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert len(seen) >= 3  # two workers and the resource tracker
    assert process.returncode != 0
    if how != "kill -9":
        assert b"run the same command again" in stderr
    survivors = seen
    for _ in range(100):  # a worker orphaned by kill -9 notices within a second
        survivors = {pid: started for pid, started in survivors.items() if _alive(pid, started)}
        if not survivors:
            break
        time.sleep(0.1)
    leftover = dict(survivors)
    for pid in leftover:
        _kill(pid)
    assert leftover == {}, f"processes left running after {how}: {sorted(leftover)}"

    finished = _finished(out)
    masks = {p.name: p.stat().st_mtime_ns for p in (out / "masks").glob("*.npz")}
    # After kill -9 the orphaned workers finish the clip in hand before they notice (within a second), so on
    # a fast machine every clip may be finished; the merged table is still missing and the rerun must
    # build it from the parts without recomputing any. The signals stop the workers between clips.
    most = 6 if how == "kill -9" else 5
    assert 1 <= len(finished) <= most and len(masks) >= len(finished)
    if how == "kill -9":
        assert not (out / "segmentation.csv").exists()  # the parent died before merging
    rerun = subprocess.run(_command(cohort, out), env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert not (out / ".segment.parts").exists()
    pd.testing.assert_frame_equal(pd.read_csv(out / "segmentation.csv"), pd.read_csv(expected / "segmentation.csv"))
    table = pd.read_csv(expected / "segmentation.csv")
    for relative in table["masks"]:
        np.testing.assert_array_equal(np.load(out / relative)["masks"], np.load(expected / relative)["masks"])
    reused = [name for name, stamp in masks.items() if (out / "masks" / name).stat().st_mtime_ns == stamp]
    assert len(reused) >= len(finished)  # the clips finished before the interruption were not computed again


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
