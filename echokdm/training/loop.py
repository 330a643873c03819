"""One training loop for the echokdm stages: OF-net and KDM's autoencoder, K2F and F2I.

A stage supplies three plain functions and the loop does the rest:

* ``batch_fn(generator) -> batch``: draws one batch on the CPU using only ``generator`` (a CPU
  ``torch.Generator`` owned and checkpointed by the loop), so that resuming replays the same data;
* ``loss_fn(model, batch, step) -> (loss, parts)``: the scalar loss and a dict of floats to log;
* ``validate_fn(model) -> metrics`` (optional): floats written to ``log.csv``; one of them picks
  ``best/``. It runs on the EMA weights when EMA is on, in eval mode, with the training RNG
  states untouched.

The loop: AdamW (paper), optional linear warm-up and cosine decay (:func:`make_lr_scheduler`),
gradient accumulation over several batches, gradient clipping, optional EMA weights (diffusers'
``EMAModel``, :func:`make_ema`), mixed precision on GPU (bf16 or fp16
autocast; off on the CPU), a tqdm bar showing the loss, validation every ``val_every`` steps,
checkpoints every ``checkpoint_every`` steps, at the end and on ``KeyboardInterrupt``, and *exact*
resume: model, optimiser, scheduler, grad scaler, EMA, step, best value, the torch / CUDA / numpy /
python RNG states and the data generator state are all restored, so ``N`` steps straight and ``N/2 +
resume + N/2`` give the same weights on the CPU.

Run folder (:class:`~echokdm.training.run.RunFolder`): ``last/`` holds the raw weights
(``save_pretrained``) and ``trainer_state.pt``; ``best/`` the weights (EMA ones when EMA is on)
with the best validation metric; ``log.csv`` one row per validation.

Several processes (``accelerate launch --num_processes N`` or ``torchrun``, see
:mod:`echokdm.training.distributed` and ``docs/training.md``): the loss is computed inside the DDP
forward, so the gradients of the N processes are averaged before each optimiser step and the weights
stay identical; ``loss_fn`` still receives the plain model (attribute access such as
``model.config`` or ``model.encode`` works). Process ``r`` draws its batches with its own generator
seeded ``seed + r`` (and seeds the global RNGs with ``seed + r``), so the processes see different
batches and rank 0 behaves exactly as a single-process run; the effective batch is ``N · batch_size
· grad_accumulation_steps``; with accumulation the gradients are averaged across processes once per
optimiser step (the earlier batches run under DDP's ``no_sync``). Only rank 0 validates (the others
wait), writes ``log.csv``, ``best/`` and ``last/`` and shows the progress bar;
``last/trainer_state.pt`` keeps every rank's data generator and RNG states, so resuming with the
same number of processes is exact, and with a different number it continues with a warning (not
exactly). Interrupted, a multi-process run keeps its last periodic checkpoint (saving needs all
processes, which may already have stopped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from echokdm.io.atomic import atomic_output
from echokdm.training.distributed import Processes
from echokdm.training.run import RunFolder

if TYPE_CHECKING:
    from diffusers.training_utils import EMAModel

__all__ = ["LoopConfig", "Trainer", "lr_factor", "make_ema", "make_lr_scheduler", "resolve_device", "to_device"]


@dataclasses.dataclass
class LoopConfig:
    """Optimisation settings shared by every stage (the ``train:`` section of a stage config).

    ``steps`` optimiser steps of ``batch_size`` samples; AdamW with ``lr``, ``weight_decay``,
    ``betas``; ``warmup_steps`` of linear warm-up then ``lr_schedule`` (constant or cosine to
    ``min_lr_ratio · lr``); ``grad_accumulation_steps`` batches per optimiser step, their
    gradients summed with each loss divided by that number (for a mean loss: the step on their
    concatenation; ``steps`` counts optimiser steps, the effective batch is ``batch_size ·
    grad_accumulation_steps · processes``); gradient norm clipped at ``grad_clip`` (null = off);
    EMA of the weights with ``ema_decay`` (null = off); ``mixed_precision`` on GPU only; validation every
    ``val_every`` and checkpoints every ``checkpoint_every`` steps; ``best_mode`` says whether
    the stage's validation metric is better low or high; ``seed`` seeds everything; ``device``
    ``auto`` = CUDA when available.
    """

    steps: int = 2000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    grad_accumulation_steps: int = 1
    ema_decay: float | None = None
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    val_every: int = 250
    checkpoint_every: int = 250
    best_mode: Literal["min", "max"] = "min"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accumulation_steps", "val_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay}")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested dict / list / tuple) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def make_ema(model: torch.nn.Module, decay: float) -> EMAModel:
    """diffusers' :class:`~diffusers.training_utils.EMAModel` of ``model``'s parameters, updated after
    each optimiser step with ``ema.step(model.parameters())``.

    The ``n``-th update (``n`` = the optimiser step just taken, from 1) applies
    ``ema ← d · ema + (1 - d) · weights`` with ``d = min(decay, (1 + n) / (10 + n))``, a warm-up so
    that early weights do not linger. That is diffusers' schedule without its power warm-up
    (``use_ema_warmup=False``) and with ``update_after_step=-1``: diffusers counts ``n - 1 -
    update_after_step`` (its first update copies the weights), echokdm has always counted ``n``.
    Buffers are not averaged: validation and ``best/`` use the live model's buffers with the
    averaged parameters (:meth:`Trainer.ema_weights`).
    """
    from diffusers.training_utils import EMAModel  # here: diffusers takes seconds to import

    return EMAModel(model.parameters(), decay=float(decay), min_decay=0.0, update_after_step=-1,
                    use_ema_warmup=False)


def _ema_state(state: dict[str, Any], model: torch.nn.Module, step: int, path: Path) -> dict[str, Any]:
    """``trainer_state.pt``'s ``"ema"`` as :meth:`EMAModel.load_state_dict` takes it.

    Checkpoints written before echokdm used diffusers' EMAModel hold the averaged model's
    ``state_dict`` (parameter and buffer names → tensors): its parameters, in the model's order,
    become the shadow parameters, and the update count is the step.
    """
    if "shadow_params" in state:
        return state
    names = [name for name, _ in model.named_parameters()]
    missing = [name for name in names if name not in state]
    if missing:
        raise ValueError(f"{path}: the EMA weights in trainer_state.pt lack {missing[:3]}: not this model's run")
    return {"shadow_params": [state[name] for name in names], "optimization_step": int(step)}


def lr_factor(config: LoopConfig) -> Callable[[int], float]:
    """The learning rate of optimiser step ``s`` (from 0) as a fraction of ``config.lr``.

    ``(s + 1) / warmup_steps`` during the warm-up, then 1 (``constant``) or a half cosine from 1 down
    to ``min_lr_ratio`` at ``config.steps`` (``cosine``).
    """
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        span = max(1, config.steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_lr_scheduler(optimizer: torch.optim.Optimizer, config: LoopConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of :func:`lr_factor`, stepped once per optimiser step.

    diffusers' ``get_scheduler("constant")`` when there is no warm-up. diffusers' other schedules give
    other learning rates, so echokdm's factor drives a plain ``LambdaLR`` there: its warm-up starts at
    0 (``s / warmup_steps``; the first step would not move the weights) where echokdm's starts at
    ``lr / warmup_steps``, and its cosine decays to 0 where echokdm's stops at ``min_lr_ratio · lr``.
    Both are ``LambdaLR``, so checkpoints hold the same scheduler state either way.
    """
    if config.lr_schedule == "constant" and config.warmup_steps == 0:
        from diffusers.optimization import get_scheduler  # here: diffusers takes seconds to import

        return get_scheduler("constant", optimizer)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config))


# The RNG states are echokdm's own, not accelerate's save_state/load_state (accelerate 1.16), because
# resuming must be exact and must not unpickle: (1) load_state swallows a failed RNG load (an info
# log, "Could not load random states"), so a resume could quietly stop being exact; (2) the data
# generator, as an object registered for checkpointing, would be loaded with weights_only=False
# (pickle); (3) its RNG file holds numpy arrays, which weights_only reads only with numpy's
# _reconstruct allowed, and its loader clears the process's torch safe globals; (4) it captures the
# states when called, where an interrupt inside a step must save those from the step's start (so the
# resumed run redraws that batch); (5) it writes one file per rank, where trainer_state.pt keeps every
# rank's states (resuming with another number of processes warns). Seeding is accelerate's set_seed.
def _rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states, in types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      gauss), "python": (version, list(internal), py_gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = state["python"]
    random.setstate((version, tuple(internal), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load_rank_state(state: dict[str, Any], processes: Processes, path: Path) -> dict[str, Any] | None:
    """This process's saved ``{"generator", "rng"}`` (None for a rank the checkpoint lacks).

    Warns when the checkpoint was written by a different number of processes: the run then
    continues, but not exactly as an uninterrupted one would.
    """
    ranks = state.get("rank_states") or [{"generator": state["generator"], "rng": state["rng"]}]
    if len(ranks) != processes.world_size:
        warnings.warn(f"{path}: saved by {len(ranks)} process(es), resumed with {processes.world_size}; the data "
                      "order and random draws will not continue exactly as in an uninterrupted run", stacklevel=3)
    return ranks[processes.rank] if processes.rank < len(ranks) else None


class _LossModule(torch.nn.Module):
    """Holds the model so that DDP can wrap the whole loss computation: DDP only averages the
    gradients of a backward that follows its own forward, and loss functions may call methods other
    than ``forward`` (``model.encode``) or read ``model.config``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, loss_fn: Callable, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return loss_fn(self.model, batch, step)


def _save_model_atomically(model: Any, folder: Path) -> None:
    """``save_pretrained`` into a temporary sibling, then swap it in (a crash never leaves half a folder)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


class Trainer:
    """Train ``model`` with ``loss_fn`` on batches from ``batch_fn``; see the module docstring.

    Parameters
    ----------
    model : diffusers ModelMixin
        The network (moved to the config's device); weights are restored from ``run.last``
        when ``resume`` is set.
    run : RunFolder
        Where ``last/``, ``best/`` and ``log.csv`` go.
    config : LoopConfig
        Optimisation settings.
    batch_fn : callable
        ``batch_fn(generator) -> batch`` (tensors on the CPU; moved to the device by the loop).
    loss_fn : callable
        ``loss_fn(model, batch, step) -> (loss, parts)``; ``parts`` is a dict of floats with the
        same keys at every step (averaged and logged as ``train_<key>``).
    validate_fn : callable, optional
        ``validate_fn(model) -> dict`` of floats; must contain ``best_metric`` when that is set.
    best_metric : str, optional
        Key of ``validate_fn``'s dict that selects ``best/`` (lower is better unless
        ``config.best_mode == "max"``).
    resume : bool
        Continue from ``run.last``.
    progress : bool
        Show the tqdm bar (on the main process only).
    description : str
        Label of the progress bar.

    Notes
    -----
    ``model`` stays the plain (unwrapped) network: in a multi-process run the DDP wrapper is
    ``_ddp`` and is used only to compute the loss; checkpoints and validation use ``model``.
    """

    def __init__(self, model: Any, run: RunFolder, config: LoopConfig, *, batch_fn: Callable[[torch.Generator], Any],
                 loss_fn: Callable[[Any, Any, int], tuple[torch.Tensor, dict[str, float]]],
                 validate_fn: Callable[[Any], dict[str, float]] | None = None, best_metric: str | None = None,
                 resume: bool = False, progress: bool = True, description: str = "training"):
        from accelerate.utils import set_seed

        self.run, self.config = run, config
        self.batch_fn, self.loss_fn, self.validate_fn = batch_fn, loss_fn, validate_fn
        self.best_metric, self.progress, self.description = best_metric, progress, description
        # DDP's static graph fails under no_sync, which gradient accumulation uses
        self.processes = Processes.from_environment(config.device, static_graph=config.grad_accumulation_steps == 1,
                                                    gradient_accumulation_steps=config.grad_accumulation_steps)
        self.accelerator = self.processes.accelerator
        self.device = self.processes.device
        seed = config.seed + self.processes.rank  # each process its own batches and noise; rank 0 = one process
        set_seed(seed)  # accelerate's: python, numpy, torch (CPU and every GPU)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                           betas=tuple(config.betas), weight_decay=config.weight_decay)
        self.scheduler = make_lr_scheduler(self.optimizer, config)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema = make_ema(self.model, config.ema_decay) if config.ema_decay else None
        self.generator = torch.Generator().manual_seed(seed)  # CPU: same batches on any device
        self.step, self.best = 0, None
        self._in_step, self._snapshot = False, None
        if resume:
            self._load()
        self._ddp = self.processes.wrap(_LossModule(self.model))  # None in a single process

    # -- state -----------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype | None:
        if self.config.mixed_precision == "no":
            return None
        if self.device.type != "cuda":
            warnings.warn(f"mixed_precision={self.config.mixed_precision!r} applies on GPU only; training in "
                          f"float32 on {self.device}", stacklevel=3)
            return None
        return torch.bfloat16 if self.config.mixed_precision == "bf16" else torch.float16

    def save(self) -> Path:
        """Write ``last/`` (raw weights) and ``last/trainer_state.pt`` (everything else).

        Interrupted inside a step, the data generator and RNG states saved are those from the
        start of that unfinished step, so a resumed run redraws the same batch. With several
        processes every one must call this; rank 0 writes, with every rank's generator and RNGs.
        """
        generator, rng = self._snapshot if self._in_step else (self.generator.get_state(), _rng_state())
        ranks = self.processes.gather({"generator": generator, "rng": rng})
        if self.processes.is_main:
            _save_model_atomically(self.model, self.run.last)
            state = {
                "step": self.step, "best": self.best, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None, "generator": generator, "rng": rng,
            }
            if len(ranks) > 1:
                state["rank_states"] = ranks
            with atomic_output(self.run.last / "trainer_state.pt", overwrite=True) as tmp:
                torch.save(state, tmp)
        self.processes.barrier()
        return self.run.last

    def _load(self) -> None:
        fresh = type(self.model).from_pretrained(self.run.last)
        self.model.load_state_dict(fresh.state_dict())
        state = torch.load(self.run.last / "trainer_state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise ValueError(f"{self.run.last}: the run was trained without EMA but the config enables it")
            self.ema.load_state_dict(_ema_state(state["ema"], self.model, state["step"], self.run.last))
            self.ema.to(self.device)  # loaded on the CPU
        own = _load_rank_state(state, self.processes, self.run.last)
        if own is not None:  # a rank the checkpoint lacks keeps its fresh seed + rank states
            self.generator.set_state(own["generator"])
            _set_rng_state(own["rng"])
        self.step, self.best = int(state["step"]), state["best"]

    # -- steps -----------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimiser step on ``grad_accumulation_steps`` batches; returns ``{"loss": ..., **parts}``
        averaged over them.

        Accumulation is accelerate's: under ``accelerator.accumulate`` each batch's loss is divided
        by their number (``accelerator.backward``), the earlier batches skip DDP's gradient
        all-reduce (``no_sync``), and the optimiser steps when ``accelerator.sync_gradients``.
        """
        self.model.train()
        self._snapshot, self._in_step = (self.generator.get_state(), _rng_state()), True
        n = self.config.grad_accumulation_steps
        # accelerate counts batches per Accelerator and keeps the number to accumulate in a state shared
        # by every Accelerator of the process: set both, so that each step syncs on its own last batch
        # even when another trainer ran in this process (KDM's stages) or an earlier step was cut short
        self.accelerator.gradient_accumulation_steps = n
        self.accelerator.step = 0
        self.optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}
        for _ in range(n):
            with self.accelerator.accumulate(self._ddp if self._ddp is not None else self.model):
                for key, value in self._backward().items():
                    logged[key] = logged.get(key, 0.0) + value / n
                if self.accelerator.sync_gradients:
                    self._optimizer_step()
        self._in_step = False
        return logged

    def _optimizer_step(self) -> None:
        """Clip, step the optimiser, the learning rate and the EMA."""
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.step(self.model.parameters())

    def _backward(self) -> dict[str, float]:
        """Draw one batch and add its loss gradient, divided by the batches per step, to ``.grad``.

        In a multi-process run the loss is computed inside the DDP forward, so that the backward of
        a step's last batch averages the gradients of all processes.
        """
        batch = to_device(self.batch_fn(self.generator), self.device)
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            if self._ddp is None:
                loss, parts = self.loss_fn(self.model, batch, self.step)
            else:
                loss, parts = self._ddp(self.loss_fn, batch, self.step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.run.path}: loss is {loss.item()} at step {self.step}; lower "
                                     "train.lr or check the data")
        self.accelerator.backward(self.scaler.scale(loss))  # the accelerator divides by the batches per step
        return {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}

    def validate(self) -> dict[str, float]:
        """Run ``validate_fn`` on the evaluated weights (EMA when on) without touching the training RNGs."""
        if self.validate_fn is None:
            return {}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self.ema_weights() as model:
            metrics = self.validate_fn(model)
        return {k: float(v) for k, v in metrics.items()}

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[torch.nn.Module]:
        """``model`` in eval mode with the EMA parameters in place (its own when EMA is off); its
        parameters and mode are restored on exit."""
        was_training = self.model.training
        if self.ema is not None:
            self.ema.store(self.model.parameters())
            self.ema.copy_to(self.model.parameters())
        self.model.eval()
        try:
            yield self.model
        finally:
            if self.ema is not None:
                self.ema.restore(self.model.parameters())
            self.model.train(was_training)

    def _is_better(self, value: float) -> bool:
        if self.best is None or not math.isfinite(self.best):
            return math.isfinite(value)
        return value < self.best if self.config.best_mode == "min" else value > self.best

    def _evaluate_and_log(self, totals: dict[str, float], count: int, started: float) -> dict[str, float]:
        """Validate, log and keep ``best/`` on the main process; every process gets its row and best value."""
        row = self._validate_and_log(totals, count, started) if self.processes.is_main else {}
        row, self.best = self.processes.from_main((row, self.best))  # the others wait here
        return row

    def _validate_and_log(self, totals: dict[str, float], count: int, started: float) -> dict[str, float]:
        metrics = self.validate()
        row = {"step": self.step, "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": v / max(count, 1) for k, v in totals.items()})
        row.update(metrics)
        row["seconds"] = round(time.perf_counter() - started, 1)
        self.run.log(row)
        if self.best_metric is not None:
            if self.best_metric not in metrics:
                raise KeyError(f"validation returned {sorted(metrics)}, not the best metric {self.best_metric!r}")
            if self._is_better(metrics[self.best_metric]):
                self.best = metrics[self.best_metric]
                with self.ema_weights() as model:
                    _save_model_atomically(model, self.run.best)
        return row

    def fit(self) -> dict[str, Any]:
        """Train until ``config.steps``; returns ``{"run", "steps", "best", "last_row", "seconds"}``.

        On ``KeyboardInterrupt`` the state after the last completed step is saved to ``last/``
        (resume with ``resume=True``) and the interrupt is raised again.
        """
        from tqdm.auto import tqdm

        started = time.perf_counter()
        totals: dict[str, float] = {}
        count, row = 0, {}
        bar = tqdm(total=self.config.steps, initial=self.step, desc=self.description, unit="step",
                   disable=not (self.progress and self.processes.is_main))
        try:
            while self.step < self.config.steps:
                parts = self.train_step()
                for key, value in parts.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss'] / count:.4f}", refresh=False)
                final = self.step == self.config.steps
                if self.step % self.config.val_every == 0 or final:
                    row = self._evaluate_and_log(totals, count, started)
                    if self.best_metric in row:
                        shown = {self.best_metric: f"{row[self.best_metric]:.4f}"}
                        bar.set_postfix(loss=f"{totals['loss'] / count:.4f}", **shown)
                    totals, count = {}, 0
                if self.step % self.config.checkpoint_every == 0 or final:
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            if self.processes.world_size > 1:  # the other processes may be gone: saving needs them all
                if self.processes.is_main:
                    print(f"interrupted at step {self.step}; {self.run.last} holds the last periodic checkpoint; "
                          "continue with resume (--resume)")
                raise
            self.save()
            print(f"interrupted: saved step {self.step} to {self.run.last}; continue with resume (--resume)")
            raise
        bar.close()
        return {"run": str(self.run.path), "steps": self.step, "best": self.best, "last_row": row,
                "seconds": round(time.perf_counter() - started, 1)}
