"""Run folders: everything needed to rebuild a trained model from the folder alone.

A run folder holds ``config.yaml`` (the resolved config), ``git.txt`` (commit of the code that
ran, and whether the tree had uncommitted changes), ``log.csv`` (one row per evaluation) and
checkpoints (``best/`` and ``last/`` as ``save_pretrained`` folders, ``last/trainer_state.pt``
with optimiser and step for resuming).
"""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path
from typing import Any

from echokdm.config import save_config
from echokdm.training.distributed import is_main_process

__all__ = ["RunFolder", "git_description"]


def git_description() -> str:
    """``<commit> (clean|dirty)`` of the echokdm source tree, or ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit} ({'dirty' if dirty else 'clean'})"


class RunFolder:
    """A training run's folder.

    Parameters
    ----------
    path : path
        The folder.
    config : dataclass
        The resolved config, written to ``config.yaml``.
    resume : bool
        Continue the run in an existing folder (its ``last/`` checkpoint).
    overwrite : bool
        Start afresh in an existing folder, replacing its files.

    A folder "holds a run" once a step was completed (``last/`` or ``best/`` exists). A folder
    whose earlier attempt stopped before that (only ``config.yaml``, ``git.txt``, maybe
    ``log.csv``) holds nothing to protect and is reused without ``overwrite``.

    Raises
    ------
    FileExistsError
        When the folder already holds a run and neither ``resume`` nor ``overwrite`` is set.
    """

    def __init__(self, path: str | os.PathLike, config: Any, *, resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        if not is_main_process():  # under a multi-process launcher only rank 0 creates and writes the folder
            return
        if self.holds_run(self.path) and not (resume or overwrite):
            raise FileExistsError(
                f"{self.path}: already holds a run; pass --resume to continue it or --overwrite to start again"
            )
        if resume and not (self.path / "last" / "trainer_state.pt").exists():
            raise FileNotFoundError(f"{self.path}: nothing to resume (no last/trainer_state.pt)")
        self.path.mkdir(parents=True, exist_ok=True)
        if not resume:
            for name in ("log.csv",):
                (self.path / name).unlink(missing_ok=True)
        save_config(config, self.path / "config.yaml")
        (self.path / "git.txt").write_text(git_description() + "\n")

    @staticmethod
    def holds_run(path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a run with at least one completed step (a ``last/`` or ``best/`` checkpoint)."""
        return any((Path(path) / name).exists() for name in ("last", "best"))

    @property
    def last(self) -> Path:
        return self.path / "last"

    @property
    def best(self) -> Path:
        return self.path / "best"

    def log(self, row: dict[str, Any]) -> None:
        """Append one row to ``log.csv`` (header written with the first row)."""
        path = self.path / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
