"""The learning-rate schedule (make_lr_scheduler) gives, step by step, exactly the learning rates of
the formula the loop used before it moved onto diffusers' schedulers, for every shipped config."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from echokdm.training.flow import load_flow_config
from echokdm.training.kdm import load_kdm_config
from echokdm.training.loop import LoopConfig, make_lr_scheduler

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def reference_factor(config, step):
    """The loop's schedule before issue 19 (echokdm.training.loop._lr_lambda), verbatim."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _loop_configs():
    found = {"defaults": LoopConfig(), "flow defaults": load_flow_config(None).train}
    for path in sorted(CONFIGS.glob("*/flow*.yaml")):
        found[path.name] = load_flow_config(path).train
    for path in sorted(CONFIGS.glob("*/kdm_*.yaml")):
        config = load_kdm_config(path)
        for stage in ("autoencoder", "k2f", "f2i"):
            found[f"{path.parent.name}/{path.name}:{stage}"] = getattr(config, stage).train
    found["cosine, no warm-up"] = LoopConfig(steps=500, lr_schedule="cosine", min_lr_ratio=0.0)
    found["cosine, warm-up past the end"] = LoopConfig(steps=20, warmup_steps=30, lr_schedule="cosine")
    found["constant, warm-up"] = LoopConfig(steps=300, warmup_steps=7, lr=1e-3)
    return found


LOOP_CONFIGS = _loop_configs()


def test_every_kind_of_schedule_is_covered():
    kinds = {(c.lr_schedule, c.warmup_steps > 0) for c in LOOP_CONFIGS.values()}
    assert kinds == {("constant", False), ("constant", True), ("cosine", False), ("cosine", True)}


@pytest.mark.parametrize("name", sorted(LOOP_CONFIGS))
def test_learning_rates_match_the_previous_formula_step_by_step(name):
    config = LOOP_CONFIGS[name]
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = make_lr_scheduler(optimizer, config)
    # past the end of the run (a resumed run with more steps); long constant runs: well past the warm-up
    last = config.steps + 10 if config.lr_schedule == "cosine" else min(config.steps, 3 * config.warmup_steps + 50)
    for step in range(last):
        assert optimizer.param_groups[0]["lr"] == config.lr * reference_factor(config, step), (name, step)
        optimizer.step()
        scheduler.step()


def test_scheduler_state_round_trips_between_kinds():
    """A checkpoint's scheduler state (LambdaLR either way) loads into a fresh scheduler and continues."""
    config = dataclasses.replace(LoopConfig(), steps=50, warmup_steps=5, lr_schedule="cosine")
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = make_lr_scheduler(optimizer, config)
    for _ in range(12):
        optimizer.step()
        scheduler.step()
    again = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    resumed = make_lr_scheduler(again, config)
    again.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    assert again.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == config.lr * reference_factor(config, 12)
