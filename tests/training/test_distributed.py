"""The training loop in two CPU processes (torchrun, gloo): gradients are averaged across processes,
each process draws its own batches, only rank 0 writes, and resuming is exact per rank."""

import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.training.distributed import Processes, is_main_process, process_rank, world_size

# A script that each process runs: it trains a tiny regressor through Trainer into <out>/straight
# (6 steps) and <out>/split (3 steps, then a new Trainer resumes it to 6), and writes its final
# weights to <out>/rank<r>.json. Without a launcher it runs in one process; --two-streams then
# feeds one process the batches that ranks 0 and 1 would draw, concatenated (= averaged gradients).
SCRIPT = textwrap.dedent('''
    import dataclasses, json, os, sys
    from pathlib import Path

    import torch
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.configuration_utils import register_to_config

    from echokdm.training.distributed import Processes
    from echokdm.training.loop import LoopConfig, Trainer
    from echokdm.training.run import RunFolder

    TRUE_W = torch.tensor([[1.0], [-2.0], [0.5]])
    CONFIG = LoopConfig(steps=6, batch_size=8, lr=0.05, val_every=3, checkpoint_every=3, seed=7, ema_decay=0.9,
                        grad_clip=None, device="cpu")


    class Tiny(ModelMixin, ConfigMixin):
        @register_to_config
        def __init__(self, width: int = 8):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))

        def forward(self, x):
            return self.body(x)


    @dataclasses.dataclass
    class Cfg:
        loop: LoopConfig


    def draw(generator):
        x = torch.randn(CONFIG.batch_size, 3, generator=generator)
        return {"x": x, "y": x @ TRUE_W}


    def two_streams():
        """Rank 0's batch (the trainer's generator, seed) followed by rank 1's (seed + 1)."""
        second = torch.Generator().manual_seed(CONFIG.seed + 1)

        def batch_fn(generator):
            a, b = draw(generator), draw(second)
            return {k: torch.cat([a[k], b[k]]) for k in a}
        return batch_fn


    def loss_fn(model, batch, step):
        assert model.config.width == 8  # the plain model, not the DDP wrapper
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
        return loss, {"mse": float(loss.detach())}


    def validate_fn(model):
        x = torch.randn(32, 3, generator=torch.Generator().manual_seed(123))
        with torch.no_grad():
            return {"val_mse": float(((model(x) - x @ TRUE_W) ** 2).mean())}


    def run_folder(path, config, resume):
        """Rank 0 prepares the run folder first (RunFolder refuses a folder that holds a run unless told
        to resume or overwrite, so the others must not race it); the others then open the same folder."""
        processes = Processes.from_environment(config.device)
        run = RunFolder(path, Cfg(config), resume=resume, overwrite=not resume) if processes.is_main else None
        processes.barrier()
        return run or RunFolder(path, Cfg(config), resume=resume, overwrite=not resume)


    def train(path, steps, resume=False, batch_fn=draw):
        config = dataclasses.replace(CONFIG, steps=steps)
        torch.manual_seed(0)
        trainer = Trainer(Tiny(), run_folder(path, config, resume), config, batch_fn=batch_fn, loss_fn=loss_fn,
                          validate_fn=validate_fn, best_metric="val_mse", resume=resume, progress=False)
        trainer.fit()
        return {k: v.tolist() for k, v in trainer.model.state_dict().items()}


    if __name__ == "__main__":
        out = Path(sys.argv[1])
        batch_fn = two_streams() if "--two-streams" in sys.argv else draw
        weights = {"straight": train(out / "straight", 6, batch_fn=batch_fn)}
        train(out / "split", 3, batch_fn=batch_fn)
        weights["split"] = train(out / "split", 6, resume=True, batch_fn=batch_fn)
        (out / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(weights))
''')


def _launch(script, out, *extra, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    if processes == 1:
        command = [sys.executable, str(script), str(out), *extra]
    else:  # --standalone: a free port, so parallel test runs do not collide
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), str(script), str(out), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _weights(path, key):
    return {k: torch.tensor(v) for k, v in json.loads(path.read_text())[key].items()}


def _close(a, b, atol):
    return all(torch.allclose(a[k], b[k], atol=atol) for k in a)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    script = folder / "train_tiny.py"
    script.write_text(SCRIPT)
    (folder / "out").mkdir()
    (folder / "ref").mkdir()
    _launch(script, folder / "out")
    _launch(script, folder / "ref", "--two-streams", processes=1)
    return folder


@pytest.mark.slow
def test_two_processes_average_gradients_and_keep_ranks_identical(two_process_run):
    out = two_process_run / "out"
    rank0, rank1 = _weights(out / "rank0.json", "straight"), _weights(out / "rank1.json", "straight")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    # one process fed both ranks' batches (seed 7 and seed 8 streams) = the averaged gradient
    reference = _weights(two_process_run / "ref" / "rank0.json", "straight")
    assert _close(rank0, reference, atol=1e-5)
    # ... and not what rank 0's batches alone give (the check would fail without gradient averaging)
    script = runpy.run_path(str(two_process_run / "train_tiny.py"))
    alone = {k: torch.tensor(v) for k, v in script["train"](two_process_run / "alone", 6).items()}
    assert not _close(rank0, alone, atol=1e-3)


@pytest.mark.slow
def test_only_rank_zero_writes_and_last_loads(two_process_run):
    run = two_process_run / "out" / "straight"
    log = pd.read_csv(run / "log.csv")
    assert list(log["step"]) == [3, 6]  # one row per validation, not one per process
    assert np.isfinite(log["val_mse"]).all()
    script = runpy.run_path(str(two_process_run / "train_tiny.py"))
    last = script["Tiny"].from_pretrained(run / "last")
    rank0 = _weights(two_process_run / "out" / "rank0.json", "straight")
    assert all(torch.equal(last.state_dict()[k], rank0[k]) for k in rank0)
    state = torch.load(run / "last" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 6 and len(state["rank_states"]) == 2
    assert not torch.equal(state["rank_states"][0]["generator"], state["rank_states"][1]["generator"])
    assert (run / "best").is_dir() and not list(run.glob(".*tmp*"))


@pytest.mark.slow
def test_two_process_resume_is_exact(two_process_run):
    out = two_process_run / "out"
    for rank in (0, 1):
        straight, split = _weights(out / f"rank{rank}.json", "straight"), _weights(out / f"rank{rank}.json", "split")
        assert all(torch.equal(straight[k], split[k]) for k in straight), rank
    assert list(pd.read_csv(out / "split" / "log.csv")["step"]) == [3, 6]


@pytest.mark.slow
def test_resuming_with_another_number_of_processes_warns(two_process_run):
    run = two_process_run / "resumed_alone"
    shutil.copytree(two_process_run / "out" / "straight", run)  # the other tests read the original
    script = runpy.run_path(str(two_process_run / "train_tiny.py"))
    with pytest.warns(UserWarning, match="saved by 2 process"):
        script["train"](run, 8, resume=True)  # goes on with rank 0's streams
    assert list(pd.read_csv(run / "log.csv")["step"]) == [3, 6, 8]


def test_single_process_reads_the_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (world_size(), process_rank(), is_main_process()) == (1, 0, True)
    processes = Processes.from_environment("cpu")
    # one process still has an Accelerator (for gradient accumulation), but no DDP and no process group
    assert processes.accelerator.num_processes == 1 and processes.device == torch.device("cpu")
    assert processes.wrap(torch.nn.Linear(2, 2)) is None
    assert processes.gather({"a": 1}) == [{"a": 1}] and processes.from_main(3) == 3
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (world_size(), process_rank(), is_main_process()) == (2, 1, False)
