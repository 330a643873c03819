"""The generic training loop: exact resume, interrupts, EMA, best/ selection, log.csv."""

import dataclasses
import random

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from echokdm.training.loop import EMA, LoopConfig, Trainer
from echokdm.training.run import RunFolder


class TinyNet(ModelMixin, ConfigMixin):
    """A two-layer regressor with dropout (so the global torch RNG matters)."""

    @register_to_config
    def __init__(self, width: int = 8):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                        torch.nn.Linear(width, 1))

    def forward(self, x):
        return self.body(x)


TRUE_W = torch.tensor([[1.0], [-2.0], [0.5]])


def batch_fn(generator):
    x = torch.randn(16, 3, generator=generator)
    return {"x": x, "y": x @ TRUE_W}


def loss_fn(model, batch, step):
    # numpy, python and global torch randomness all feed the loss, so all must be restored exactly
    jitter = 1.0 + 0.01 * float(np.random.rand()) + 0.01 * random.random() + 0.01 * float(torch.rand(()))
    loss = ((model(batch["x"]) - batch["y"]) ** 2).mean() * jitter
    return loss, {"mse": float(loss.detach())}


def validate_fn(model):
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 3, generator=g)
    with torch.no_grad():
        return {"val_mse": float(((model(x) - x @ TRUE_W) ** 2).mean()), "val_neg": -1.0}


@dataclasses.dataclass
class _Cfg:
    loop: LoopConfig


def _trainer(path, config, resume=False, batch=batch_fn):
    torch.manual_seed(config.seed)
    run = RunFolder(path, _Cfg(config), resume=resume, overwrite=not resume)
    return Trainer(TinyNet(), run, config, batch_fn=batch, loss_fn=loss_fn, validate_fn=validate_fn,
                   best_metric="val_mse", resume=resume, progress=False)


CONFIG = LoopConfig(steps=12, batch_size=16, lr=0.02, warmup_steps=3, lr_schedule="cosine", ema_decay=0.9,
                    val_every=4, checkpoint_every=4, seed=7, grad_clip=1.0)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_after_interrupt_is_exact(tmp_path):
    straight = _trainer(tmp_path / "a", CONFIG)
    straight.fit()

    calls = {"n": 0}

    def interrupting(generator):
        calls["n"] += 1
        if calls["n"] == 7:  # inside step 7: the batch generator has not drawn yet
            raise KeyboardInterrupt
        return batch_fn(generator)

    first = _trainer(tmp_path / "b", CONFIG, batch=interrupting)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert torch.load(tmp_path / "b" / "last" / "trainer_state.pt", weights_only=True)["step"] == 6
    second = _trainer(tmp_path / "b", CONFIG, resume=True)
    assert second.step == 6
    second.fit()
    for key, value in _state(straight.model).items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    for key, value in straight.ema.state_dict().items():
        assert torch.equal(value, second.ema.state_dict()[key]), key
    a = pd.read_csv(tmp_path / "a" / "log.csv")
    b = pd.read_csv(tmp_path / "b" / "log.csv")
    assert list(a["step"]) == [4, 8, 12] and list(b["step"]) == [4, 8, 12]
    np.testing.assert_allclose(a["val_mse"], b["val_mse"])


def test_resume_mid_step_interrupt_redraws_the_same_batch(tmp_path):
    """Interrupted after the batch was drawn (the loss raises): the saved generator state is the
    one from the start of that step, so the resumed run still matches a straight run."""
    config = dataclasses.replace(CONFIG, ema_decay=None, steps=6, val_every=3, checkpoint_every=3)
    straight = _trainer(tmp_path / "a", config)
    straight.fit()
    first = _trainer(tmp_path / "b", config)
    for _ in range(4):
        first.train_step()
    original = first.loss_fn

    def interrupted(model, batch, step):
        raise KeyboardInterrupt

    first.loss_fn = interrupted
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    first.loss_fn = original
    second = _trainer(tmp_path / "b", config, resume=True)
    assert second.step == 4
    second.fit()
    for key, value in _state(straight.model).items():
        assert torch.equal(value, second.model.state_dict()[key]), key


def test_training_learns_logs_and_keeps_best(tmp_path):
    config = dataclasses.replace(CONFIG, steps=60, val_every=20, checkpoint_every=30, ema_decay=None)
    trainer = _trainer(tmp_path / "run", config)
    before = validate_fn(trainer.model)["val_mse"]
    result = trainer.fit()
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert list(log["step"]) == [20, 40, 60]
    assert {"lr", "train_loss", "train_mse", "val_mse", "seconds"} <= set(log.columns)
    assert result["best"] == pytest.approx(log["val_mse"].min())
    assert log["val_mse"].iloc[-1] < 0.5 * before
    best = TinyNet.from_pretrained(tmp_path / "run" / "best")
    assert validate_fn(best)["val_mse"] == pytest.approx(result["best"], rel=1e-5)
    assert (tmp_path / "run" / "last" / "trainer_state.pt").exists()
    assert not list((tmp_path / "run").glob(".*tmp*"))


def test_best_mode_max_and_missing_metric(tmp_path):
    config = dataclasses.replace(CONFIG, steps=4, val_every=2, best_mode="max", ema_decay=None)
    torch.manual_seed(0)
    run = RunFolder(tmp_path / "run", _Cfg(config))
    trainer = Trainer(TinyNet(), run, config, batch_fn=batch_fn, loss_fn=loss_fn, validate_fn=validate_fn,
                      best_metric="val_neg", progress=False)
    assert trainer.fit()["best"] == -1.0
    run2 = RunFolder(tmp_path / "run2", _Cfg(config))
    bad = Trainer(TinyNet(), run2, config, batch_fn=batch_fn, loss_fn=loss_fn, validate_fn=validate_fn,
                  best_metric="val_dice", progress=False)
    with pytest.raises(KeyError, match="val_dice"):
        bad.fit()


def test_ema_averages_weights():
    torch.manual_seed(0)
    model = TinyNet()
    ema = EMA(model, decay=0.5)
    start = _state(ema.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=1000)  # decay = min(0.5, ...) = 0.5: halfway
    for (key, value), p in zip(start.items(), model.parameters()):
        torch.testing.assert_close(ema.model.state_dict()[key], value + 0.5)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_mixed_precision_on_cpu_warns_and_trains_in_float32(tmp_path):
    config = dataclasses.replace(CONFIG, steps=2, val_every=2, mixed_precision="bf16", device="cpu")
    with pytest.warns(UserWarning, match="GPU only"):
        trainer = _trainer(tmp_path / "run", config)
    assert trainer.amp_dtype is None
    trainer.fit()


def test_config_checks():
    with pytest.raises(ValueError, match="steps"):
        LoopConfig(steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        LoopConfig(ema_decay=1.5)


def test_non_finite_loss_is_reported(tmp_path):
    config = dataclasses.replace(CONFIG, steps=2)
    torch.manual_seed(0)
    run = RunFolder(tmp_path / "run", _Cfg(config))
    trainer = Trainer(TinyNet(), run, config, batch_fn=batch_fn, progress=False,
                      loss_fn=lambda m, b, s: (m(b["x"]).sum() * float("nan"), {}))
    with pytest.raises(FloatingPointError, match="loss is nan"):
        trainer.fit()
