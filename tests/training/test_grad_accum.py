"""Gradient accumulation in the Trainer: ``grad_accumulation_steps`` batches of ``batch_size`` give the
gradients and weights of one step on their concatenation, in one process and in two (DDP, where the
earlier batches of a step skip the gradient all-reduce)."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from echokdm.training.loop import LoopConfig, Trainer
from echokdm.training.run import RunFolder

DATA_X = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
DATA_Y = DATA_X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


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


def _slices(batch_size):
    """A batch function handing out consecutive slices of the data (so 2 × 4 samples = 1 × 8)."""
    start = [0]

    def batch_fn(generator):
        i = start[0]
        start[0] += batch_size
        return {"x": DATA_X[i:i + batch_size], "y": DATA_Y[i:i + batch_size]}
    return batch_fn


def _loss(model, batch, step):
    loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()
    return loss, {"mse": float(loss.detach())}


def _trainer(tmp_path, name, batch_size, accumulation, **overrides):
    config = LoopConfig(steps=3, batch_size=batch_size, grad_accumulation_steps=accumulation, lr=0.05,
                        val_every=100, checkpoint_every=100, device="cpu", **overrides)
    torch.manual_seed(0)
    run = RunFolder(tmp_path / name, Cfg(config))
    return Trainer(Tiny(), run, config, batch_fn=_slices(batch_size), loss_fn=_loss, progress=False)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_accumulated_step_equals_the_big_batch_step(tmp_path, grad_clip):
    big = _trainer(tmp_path, "big", 8, 1, grad_clip=grad_clip)
    small = _trainer(tmp_path, "small", 2, 4, grad_clip=grad_clip)
    for _ in range(2):
        logged_big, logged_small = big.train_step(), small.train_step()
        for p, q in zip(big.model.parameters(), small.model.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7)  # clipped once, on the sum
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
        assert logged_small["loss"] == pytest.approx(logged_big["loss"], rel=1e-5)  # mean of the 4 batch losses
    assert small.step == big.step == 2
    # and not what a step on the first small batch alone gives
    alone = _trainer(tmp_path, "alone", 2, 1, grad_clip=grad_clip)
    alone.train_step()
    first_big = _trainer(tmp_path, "first", 8, 1, grad_clip=grad_clip)
    first_big.train_step()
    assert not torch.allclose(next(alone.model.parameters()).grad, next(first_big.model.parameters()).grad)


def test_accumulation_steps_must_be_positive():
    with pytest.raises(ValueError, match="grad_accumulation_steps"):
        LoopConfig(grad_accumulation_steps=0)


def test_accumulation_is_a_config_key():
    from echokdm.training.flow import load_flow_config

    config = load_flow_config(None, {"train": {"grad_accumulation_steps": 3}})
    assert config.train.grad_accumulation_steps == 3


# Each of two processes takes, at each of 2 steps, 2 batches of 4 consecutive samples: rank r's
# m-th batch of step s is block 4 s + 2 r + m of the data. Its final weights must equal one
# process taking the 16 samples of each step at once. A communication hook counts the all-reduces.
# The model has a parameter that gets no gradient (as OF-net has).
SCRIPT = textwrap.dedent('''
    import dataclasses, json, os, sys
    from pathlib import Path

    import torch
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    sys.path.insert(0, sys.argv[2])
    from test_grad_accum import DATA_X, DATA_Y, Cfg, Tiny, _loss
    from echokdm.training.distributed import Processes
    from echokdm.training.loop import LoopConfig, Trainer
    from echokdm.training.run import RunFolder

    class WithUnused(Tiny):  # like OF-net, whose coarsest level gets no gradient
        def __init__(self, width: int = 8):
            super().__init__(width)
            self.unused = torch.nn.Linear(2, 2)

    ranks, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    accumulation, batch = (2, 4) if ranks == 2 else (1, 16)
    calls = {"n": 0}

    def batch_fn(generator):
        step, micro = divmod(calls["n"], accumulation)
        calls["n"] += 1
        block = 4 * step + 2 * rank + micro if ranks == 2 else step
        return {"x": DATA_X[block * batch:(block + 1) * batch], "y": DATA_Y[block * batch:(block + 1) * batch]}

    config = LoopConfig(steps=2, batch_size=batch, grad_accumulation_steps=accumulation, lr=0.05, val_every=100,
                        checkpoint_every=100, device="cpu", grad_clip=None)
    out = Path(sys.argv[1])
    processes = Processes.from_environment("cpu")
    run = RunFolder(out / "run", Cfg(config), overwrite=True) if processes.is_main else None
    processes.barrier()
    run = run or RunFolder(out / "run", Cfg(config), resume=True)
    torch.manual_seed(0)
    trainer = Trainer(WithUnused(), run, config, batch_fn=batch_fn, loss_fn=_loss, progress=False)
    reduces = {"n": 0}

    def counting_hook(state, bucket):
        reduces["n"] += 1
        return allreduce_hook(state, bucket)

    if trainer._ddp is not None:
        trainer._ddp.register_comm_hook(None, counting_hook)
    for _ in range(config.steps):
        trainer.train_step()
    weights = {k: v.tolist() for k, v in trainer.model.state_dict().items()}
    (out / f"rank{rank}.json").write_text(json.dumps({"weights": weights, "allreduces": reduces["n"]}))
    if torch.distributed.is_initialized():  # a clean exit: gloo's threads killed at interpreter exit can abort
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
''')


def _launch(script, out, processes):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    tests = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, str(script), str(out), tests] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
        str(script), str(out), tests]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_accumulate_without_syncing_every_batch(tmp_path):
    script = tmp_path / "accumulate.py"
    script.write_text(SCRIPT)
    for name, processes in (("ddp", 2), ("one", 1)):
        (tmp_path / name).mkdir()
        _launch(script, tmp_path / name, processes)
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        for key, value in one["weights"].items():
            torch.testing.assert_close(torch.tensor(rank["weights"][key]), torch.tensor(value), rtol=1e-5, atol=1e-6)
        # one all-reduce per optimiser step (the tiny model is one bucket), not one per batch
        assert rank["allreduces"] == 2
