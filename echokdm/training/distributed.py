"""Multi-process (multi-GPU) training through ``accelerate``: what the training loop needs to know.

A training command launched once (``python -m echokdm train ...``) runs in one process, where the
:class:`accelerate.Accelerator` of :class:`Processes` only accumulates gradients (it places and
wraps nothing). Launched by ``accelerate launch --num_processes N`` or ``torchrun
--nproc_per_node N``, every process sees ``WORLD_SIZE = N`` and its ``RANK`` in the environment;
:class:`Processes` then starts an :class:`accelerate.Accelerator` (one GPU per process, or the CPU)
and wraps the model for distributed data parallel training (DDP), which averages the gradients
of all processes in the backward pass.

:func:`world_size`, :func:`process_rank` and :func:`is_main_process` read the environment only, so
they are safe to call before anything is set up (for example to print only on the main process).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import warnings
from typing import Any

import torch

__all__ = ["world_size", "process_rank", "is_main_process", "Processes"]


def world_size() -> int:
    """Number of training processes (``WORLD_SIZE``; 1 when not launched by a distributed launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """Global rank of this process (``RANK``; 0 when not launched by a distributed launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """True in a single-process run and in the rank-0 process of a distributed one."""
    return process_rank() == 0


def _end_process_group() -> None:
    """Leave the process group before the interpreter exits (gloo aborts the process otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@dataclasses.dataclass
class Processes:
    """The training processes as the loop sees them.

    Attributes
    ----------
    device : torch.device
        This process's device (its own GPU in a multi-GPU run).
    rank, world_size : int
        This process's rank and the number of processes (0 and 1 in a single process).
    accelerator : accelerate.Accelerator
        Wraps the model for DDP (several processes) and accumulates gradients (any number).
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    accelerator: Any = None

    @classmethod
    def from_environment(cls, device: str, static_graph: bool = True,
                         gradient_accumulation_steps: int = 1) -> Processes:
        """One process: ``device`` (``"auto"`` = CUDA when available). Several: accelerate's device.

        In a distributed run ``device`` can only force the CPU (``"cpu"``); any other value leaves
        the choice of one GPU per process to accelerate. ``static_graph=False`` makes DDP look for
        unused parameters at every step instead (``find_unused_parameters``): needed with gradient
        accumulation, because DDP's static graph breaks under ``no_sync`` (pytorch/pytorch#143580).
        The accelerator accumulates gradients over ``gradient_accumulation_steps`` batches
        (``accelerator.accumulate``); in a single process it does nothing else (it places nothing:
        the loop moves the model to ``device`` itself).
        """
        from accelerate import Accelerator, DistributedDataParallelKwargs

        from echokdm.training.loop import resolve_device

        if world_size() == 1:
            # no cpu=True: accelerate's state is one per process, and refuses cpu=True once a GPU run made it
            accelerator = Accelerator(mixed_precision="no", gradient_accumulation_steps=gradient_accumulation_steps)
            return cls(device=resolve_device(device), accelerator=accelerator)

        if device not in ("auto", "cpu", "cuda"):
            warnings.warn(f"train.device={device!r} is ignored in a distributed run: each process uses the "
                          "device accelerate gives it", stacklevel=3)
        cpu = device == "cpu" or not torch.cuda.is_available()
        # static graph: parameters a model never uses (OF-net's coarsest level) are found once, at the
        # first step, so a loss function must use the same parameters at every step
        ddp = DistributedDataParallelKwargs(static_graph=static_graph, find_unused_parameters=not static_graph)
        # mixed precision stays the loop's own (autocast + grad scaler, from train.mixed_precision)
        accelerator = Accelerator(cpu=cpu, mixed_precision="no", kwargs_handlers=[ddp],
                                  gradient_accumulation_steps=gradient_accumulation_steps)
        atexit.unregister(_end_process_group)  # once, however many trainers a command runs
        atexit.register(_end_process_group)
        return cls(device=accelerator.device, rank=accelerator.process_index,
                   world_size=accelerator.num_processes, accelerator=accelerator)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module | None:
        """``module`` wrapped for DDP (None in a single process, where nothing needs wrapping)."""
        if self.world_size == 1:
            return None
        return self.accelerator.prepare_model(module)

    def barrier(self) -> None:
        """Wait until every process gets here (nothing in a single process)."""
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def from_main(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process."""
        return self.gather(obj)[0]
