"""Issue 17, item 18: fewer torch threads on a busy machine (said in one line; OMP_NUM_THREADS always
wins), and step-level progress with the time left inside KDM sampling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from echokdm.runtime import choose_threads, configure_threads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


@pytest.mark.parametrize(("load", "cores", "env", "threads"), [
    (0.0, 2, {}, 2),            # idle: every core
    (0.6, 2, {}, 2),            # less than a core busy: every core
    (1.2, 2, {}, 1),            # one core busy
    (5.0, 2, {}, 1),            # the report: load 4-6 on 2 cores -> one thread
    (4.0, 16, {}, 12),          # the cores left
    (40.0, 16, {}, 1),          # never below one
    (None, 8, {}, 8),           # no load average on this system
    (float("nan"), 4, {}, 4),
    (5.0, 2, {"OMP_NUM_THREADS": "2"}, 2),   # the user's choice wins, busy or not
    (0.0, 8, {"OMP_NUM_THREADS": "3"}, 3),
    (5.0, 2, {"OMP_NUM_THREADS": "x"}, 1),   # not a number: ignored
    (5.0, 2, {"OMP_NUM_THREADS": "0"}, 1),
])
def test_thread_choice_from_load_cores_and_environment(load, cores, env, threads):
    chosen, reason = choose_threads(load, cores, env)
    assert chosen == threads
    explicit = env.get("OMP_NUM_THREADS", "").isdigit() and int(env["OMP_NUM_THREADS"]) > 0
    assert ("busy machine" in reason) == (not explicit and chosen < cores)
    assert ("set by you" in reason) == explicit


def test_a_busy_machine_gets_fewer_threads_and_one_line(capsys):
    import io

    env, stream = {}, io.StringIO()
    assert configure_threads(env, load=5.0, cores=2, stream=stream)[0] == 1
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"  # what torch and the workers read
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "busy machine" in lines[0] and "OMP_NUM_THREADS" in lines[0]
    # set by the user: kept, nothing said
    env, stream = {"OMP_NUM_THREADS": "2"}, io.StringIO()
    assert configure_threads(env, load=5.0, cores=2, stream=stream)[0] == 2
    assert env == {"OMP_NUM_THREADS": "2"} and stream.getvalue() == ""
    # idle: nothing changed, nothing said
    env, stream = {}, io.StringIO()
    assert configure_threads(env, load=0.1, cores=2, stream=stream)[0] == 2
    assert env == {} and stream.getvalue() == ""


def test_the_command_configures_threads_once_at_start(monkeypatch, capsys, tmp_path):
    import torch

    import echokdm.runtime as runtime
    from echokdm.cli import main

    threads = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "current_load", lambda: 5.0)
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    try:
        with pytest.raises(SystemExit):  # a usage error still goes through parse_args only
            main(["info"])
        assert "busy machine" not in capsys.readouterr().err
        main(["info", str(tmp_path / "missing.dcm")])
        err = capsys.readouterr().err
        assert err.count("busy machine") == 1 and torch.get_num_threads() == 1
        import os

        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(threads)


def _generate(progress: bool, steps: int = 6, k: int = 4, mode: str = "gamma"):
    import torch

    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(0, 0), n_frames=6, size=SIZE, fps=25.0)
    return tiny_pipeline()(clip.frames[0], clip.keypoints[0], clip.keypoints[1:], mode=mode, k=k,
                           num_inference_steps=steps, batch_size=2, generator=torch.Generator().manual_seed(0),
                           progress=progress)


@pytest.mark.parametrize(("mode", "total"), [("gamma", 6 + 3 * 4), ("per_frame", 3 * 6 + 3 * 4)])
def test_kdm_sampling_shows_its_steps_and_the_time_left(capsys, mode, total):
    _generate(progress=True, mode=mode)
    err = capsys.readouterr().err
    assert "KDM sampling" in err and f"/{total}" in err and "step" in err
    assert "<" in err  # tqdm's [elapsed<remaining]
    _generate(progress=False, mode=mode)
    assert capsys.readouterr().err == ""


def test_progress_does_not_change_the_frames():
    a, b = _generate(progress=True), _generate(progress=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.flows, b.flows)


def test_load_is_the_average_unless_fewer_processes_run_now(monkeypatch):
    import echokdm.runtime as runtime

    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    monkeypatch.setattr(runtime, "_running_others", lambda: 6)
    assert runtime.current_load() == 5.0  # busy now and over the last minute
    monkeypatch.setattr(runtime, "_running_others", lambda: 0)
    assert runtime.current_load() == 0.0  # the average still counts a command that has just ended
    monkeypatch.setattr(runtime, "_running_others", lambda: None)
    assert runtime.current_load() == 5.0  # no /proc: the average
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (_ for _ in ()).throw(OSError()))
    assert runtime.current_load() is None
