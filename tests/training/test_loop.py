"""The generic training loop: exact resume, interrupts, EMA, best/ selection, log.csv."""

import dataclasses
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from echokdm.training.loop import LoopConfig, Trainer, make_ema
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


def _assert_same_ema(a, b):
    assert a.optimization_step == b.optimization_step
    for i, (x, y) in enumerate(zip(a.shadow_params, b.shadow_params, strict=True)):
        assert torch.equal(x, y), i


def _interrupted_at_step_6(path):
    """A run of CONFIG interrupted by Ctrl-C at the start of step 7 (``last/`` holds step 6)."""
    calls = {"n": 0}

    def interrupting(generator):
        calls["n"] += 1
        if calls["n"] == 7:  # inside step 7: the batch generator has not drawn yet
            raise KeyboardInterrupt
        return batch_fn(generator)

    with pytest.raises(KeyboardInterrupt):
        _trainer(path, CONFIG, batch=interrupting).fit()


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
    _assert_same_ema(straight.ema, second.ema)
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
    ema = make_ema(model, decay=0.5)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.optimization_step = 999
    ema.step(model.parameters())  # the 1000th update: decay = min(0.5, ...) = 0.5: halfway
    for value, shadow in zip(start, ema.shadow_params, strict=True):
        torch.testing.assert_close(shadow, value + 0.5)
    assert not any(p.requires_grad for p in ema.shadow_params)


@pytest.mark.parametrize("decay", [0.9, 0.99, 0.995, 0.999, 0.9999])
def test_ema_decay_is_the_warm_up_capped_at_ema_decay(decay):
    """The n-th update (after optimiser step n) uses min(ema_decay, (1 + n) / (10 + n)), as before
    diffusers' EMAModel took over."""
    ema = make_ema(TinyNet(), decay=decay)
    for n in range(1, 3000):
        assert ema.get_decay(n) == min(decay, (1.0 + n) / (10.0 + n)), n


def test_ema_update_is_the_weighted_average():
    torch.manual_seed(0)
    model = TinyNet()
    ema = make_ema(model, decay=0.9)
    expected = [p.detach().clone() for p in model.parameters()]
    for n in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.1).add_(0.1)
        ema.step(model.parameters())
        d = min(0.9, (1 + n) / (10 + n))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)]
    for e, shadow in zip(expected, ema.shadow_params, strict=True):
        torch.testing.assert_close(shadow, e, rtol=1e-6, atol=1e-7)


def test_run_folders_from_before_emamodel_resume_exactly(tmp_path):
    """``trainer_state.pt`` written before the loop used diffusers' EMAModel kept the averaged model's
    state_dict under "ema"; such a run still resumes, and exactly."""
    straight = _trainer(tmp_path / "a", CONFIG)
    straight.fit()
    _interrupted_at_step_6(tmp_path / "b")
    path = tmp_path / "b" / "last" / "trainer_state.pt"
    state = torch.load(path, weights_only=True)
    averaged = TinyNet()
    ema = make_ema(averaged, 0.9)
    ema.load_state_dict(state["ema"])
    ema.copy_to(averaged.parameters())  # the shadow parameters ...
    state["ema"] = averaged.state_dict()  # ... as the old format held them: names → tensors
    assert "shadow_params" not in state["ema"]
    torch.save(state, path)
    second = _trainer(tmp_path / "b", CONFIG, resume=True)
    second.fit()
    for key, value in _state(straight.model).items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    _assert_same_ema(straight.ema, second.ema)


def test_a_run_folder_from_before_issue_19_resumes(tmp_path):
    """A run folder written by the loop before it used diffusers and accelerate (data/, see its
    README) resumes and ends where a straight run ends (exactly on the machine that wrote it)."""
    shutil.copytree(Path(__file__).parent / "data" / "run_before_issue19", tmp_path / "b")
    straight = _trainer(tmp_path / "a", CONFIG)
    straight.fit()
    second = _trainer(tmp_path / "b", CONFIG, resume=True)
    assert second.step == 6
    second.fit()
    for key, value in _state(straight.model).items():
        torch.testing.assert_close(second.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    for x, y in zip(straight.ema.shadow_params, second.ema.shadow_params, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6)
    assert list(pd.read_csv(tmp_path / "b" / "log.csv")["step"]) == [4, 8, 12]


def test_ema_weights_are_validated_and_restored(tmp_path):
    trainer = _trainer(tmp_path / "run", dataclasses.replace(CONFIG, steps=3))
    for _ in range(3):
        trainer.train_step()
    own = [p.detach().clone() for p in trainer.model.parameters()]
    with trainer.ema_weights() as model:
        assert not model.training
        for p, shadow in zip(model.parameters(), trainer.ema.shadow_params, strict=True):
            assert torch.equal(p, shadow)
    assert trainer.model.training
    assert all(torch.equal(p, q) for p, q in zip(trainer.model.parameters(), own, strict=True))


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
