"""Checkpoints that ship inside the package (trained by the project on phantom data).

============================  =====================================================================
``kdm_phantom_112``           KDM pipeline folder (K2F, F2I, autoencoder, scheduler) at 112×112,
                              trained with ``configs/echo/kdm_112_realistic.yaml`` on the realistic phantom
``kdm_phantom_classic_112``   the previous KDM pipeline (``configs/echo/kdm_112.yaml``, classic phantom)
``seg_phantom_112``           LV segmentation U-Net for real echo, trained on the realistic phantom with
                              sim-to-real augmentation (``configs/echo/seg_sim2real.yaml``)
``seg_phantom_classic_112``   the previous segmentation, classic phantom only (``configs/echo/seg_demo.yaml``)
``ofnet_phantom_112``         OF-net for real echo, trained on the realistic phantom
                              (``configs/echo/flow_realistic.yaml``)
``ofnet_phantom_classic_112`` the previous OF-net, classic phantom (``configs/echo/flow.yaml``)
``kpdet_face_64``             face landmark heatmap detector (68 points, RGB 64×64, procedural faces), the
                              fallback of ``evaluate``'s keypoint distance MD without face-alignment
``kpdet_pose_64``             the same for BODY_25 poses (procedural figures)
============================  =====================================================================

Each folder's ``README.md`` gives the exact commands that reproduce it. They are demo weights for
phantom data, not for clinical images: train on your own data for anything else.

Every command that takes a model (``--checkpoint``, ``--pipeline``, ``--segmentation``) resolves
it with :func:`resolve_checkpoint`: a folder on disk, else one of the names above, else a clear
error. Nothing is ever looked up on a model hub (diffusers' ``from_pretrained`` would try the
network for a path that is not a local folder, so it only ever receives resolved folders).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from echokdm.errors import CheckpointError

__all__ = ["CHECKPOINTS", "KINDS", "available", "checkpoint_kind", "pretrained_path", "resolve_checkpoint"]

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
        names = ", ".join(available()) or "none"
        raise FileNotFoundError(f"{path}: no packaged checkpoint {name!r}; available: {names}")
    return path


#: What each kind of checkpoint is, in words (the keys are the ``kind`` of :func:`resolve_checkpoint`).
KINDS = {
    "pipeline": "a KDM pipeline folder (model_index.json, k2f/, f2i/, vae/, scheduler/)",
    "segmentation": "an LV segmentation model folder (LVSegmentationNet)",
    "ofnet": "an OF-net model folder (OFNet)",
    "detector": "a keypoint detector model folder (KeypointHeatmapNet)",
}
_MODEL_CLASSES = {"LVSegmentationNet": "segmentation", "OFNet": "ofnet", "KeypointHeatmapNet": "detector"}


def checkpoint_kind(folder: str | os.PathLike) -> str | None:
    """The kind of checkpoint ``folder`` holds (a key of :data:`KINDS`), or None when it holds none.

    A KDM pipeline has the ``model_index.json`` of ``DiffusionPipeline.save_pretrained`` (or, in the
    old layout, ``kdm_pipeline.json`` or a ``scheduler/`` folder); a model has the ``config.json`` of
    ``save_pretrained`` naming its class.
    """
    folder = Path(folder)
    marks = (folder / "model_index.json", folder / "kdm_pipeline.json")
    if any(m.is_file() for m in marks) or (folder / "scheduler").is_dir():
        return "pipeline"
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return _MODEL_CLASSES.get(config.get("_class_name")) if isinstance(config, dict) else None


def _packaged_of_kind(kind: str) -> list[str]:
    return [name for name in available() if checkpoint_kind(CHECKPOINTS / name) == kind]


def _check_kind(folder: Path, kind: str, value: str | os.PathLike) -> Path:
    found = checkpoint_kind(folder)
    if found == kind:
        return folder
    if found is not None:
        raise CheckpointError(value, f"is {KINDS[found]}; expected {KINDS[kind]}")
    hint = ""
    for sub in ("best", "last", "pipeline"):  # a run folder given instead of its checkpoint
        if checkpoint_kind(folder / sub) == kind:
            hint = f"; did you mean {folder / sub}?"
            break
    expected = "model_index.json (or the old kdm_pipeline.json)" if kind == "pipeline" else "config.json"
    raise CheckpointError(value, f"no {expected} in this folder; expected {KINDS[kind]}{hint}")


def resolve_checkpoint(value: str | os.PathLike, kind: str) -> Path:
    """The checkpoint folder that ``value`` names: a local folder, else a packaged checkpoint.

    Never goes to the network. Give the result to ``from_pretrained``.

    Parameters
    ----------
    value : str or path
        A folder (a run's ``best/``, a pipeline folder ...) or the name of a packaged checkpoint
        (e.g. ``seg_phantom_112``, ``kdm_phantom_112``; see :func:`available`).
    kind : {"pipeline", "segmentation", "ofnet"}
        What the caller will load; a folder of another kind is an error.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    CheckpointError
        (a ``FileNotFoundError``) naming ``value``: no such folder and no packaged checkpoint of
        that name (listing the packaged ones of this kind), a file instead of a folder, or a
        folder of another kind.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = Path(value).expanduser()
    if path.is_dir():
        return _check_kind(path, kind, value)
    if path.exists():
        raise CheckpointError(value, f"is a file; expected {KINDS[kind]} or a packaged checkpoint name")
    name = os.fspath(value)
    if name and os.sep not in name and (os.altsep is None or os.altsep not in name) and name in available():
        return _check_kind(CHECKPOINTS / name, kind, value)
    packaged = _packaged_of_kind(kind)
    raise CheckpointError(value, f"no such folder, and no packaged checkpoint of that name; expected {KINDS[kind]} "
                                 f"or a packaged name: {', '.join(packaged) or 'none installed'}")
