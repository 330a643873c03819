"""Checkpoints that ship inside the package (trained by the project on phantom data).

============================  =====================================================================
``kdm_phantom_112``           KDM pipeline folder (K2F, F2I, autoencoder, scheduler) at 112×112,
                              trained with ``configs/echo/kdm_112.yaml`` on a 24-patient phantom cohort
``kdm_phantom_112_noflow``    the "w/o K2F" ablation pipeline of the same run
``seg_phantom_112``           LV segmentation U-Net (``configs/echo/seg_demo.yaml``), re-measures EF
``ofnet_phantom_112``         OF-net (``configs/echo/flow.yaml``)
============================  =====================================================================

Each folder's ``README.md`` gives the exact commands that reproduce it. They are demo weights for
phantom data, not for clinical images: train on your own data for anything else.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKPOINTS", "available", "pretrained_path"]

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def available() -> list[str]:
    """Names of the packaged checkpoints present in this installation."""
    if not CHECKPOINTS.is_dir():
        return []
    return sorted(p.name for p in CHECKPOINTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def pretrained_path(name: str) -> Path:
    """Folder of the packaged checkpoint ``name`` (see the module docstring).

    Raises
    ------
    FileNotFoundError
        Naming the checkpoints that are available.
    """
    path = CHECKPOINTS / name
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no packaged checkpoint {name!r}; available: {', '.join(available()) or 'none'}")
    return path
