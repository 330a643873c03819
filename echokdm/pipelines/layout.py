"""The two layouts of a pipeline folder, and reading its component folders.

diffusers' layout (since issue 19): ``model_index.json`` (each component's class, ``adapter``,
``use_flow``) and one ``save_pretrained`` folder per component. The old layout: the same component
folders and ``kdm_pipeline.json`` (``adapter``, ``f2i_uses_flow``) instead of ``model_index.json``.
:mod:`echokdm.pipelines.convert` converts an old folder on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler

from echokdm.adapters import DEFAULT_ADAPTER
from echokdm.models.kdm import ConditionalUNet

__all__ = ["LEGACY_FILE", "COMPONENTS", "is_legacy_pipeline_folder", "legacy_settings", "load_components"]

#: The settings file of the old layout.
LEGACY_FILE = "kdm_pipeline.json"
#: The class of each pipeline component, by its folder name (the same in both layouts).
COMPONENTS = {"k2f": ConditionalUNet, "f2i": ConditionalUNet, "vae": AutoencoderKL, "scheduler": DDIMScheduler}


def is_legacy_pipeline_folder(folder: str | os.PathLike) -> bool:
    """True for a pipeline folder of the old layout: no ``model_index.json``, and ``kdm_pipeline.json``
    or a ``scheduler/`` folder (folders saved before ``kdm_pipeline.json`` existed have only that)."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        return False
    return (folder / LEGACY_FILE).is_file() or (folder / "scheduler").is_dir()


def legacy_settings(folder: str | os.PathLike) -> dict:
    """``{"adapter": str, "use_flow": bool}`` of an old-layout folder (the default adapter and True when it has no
    ``kdm_pipeline.json``)."""
    path = Path(folder) / LEGACY_FILE
    meta = json.loads(path.read_text()) if path.is_file() else {}
    return {"adapter": meta.get("adapter", DEFAULT_ADAPTER), "use_flow": bool(meta.get("f2i_uses_flow", True))}


def load_components(folder: str | os.PathLike, names: Iterable[str],
                    torch_dtype: torch.dtype | dict | None = None) -> dict:
    """The components ``names`` (among k2f, f2i, vae, scheduler) of a pipeline folder (either layout: the
    component folders are the same), models in eval mode; ``torch_dtype`` is one dtype, or one per name
    (None: float32).

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing component folders.
    """
    folder = Path(folder)
    names = list(names)
    missing = [n for n in names if not (folder / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing component folder(s) {', '.join(missing)}")
    parts = {}
    for name in names:
        if name == "scheduler":
            parts[name] = DDIMScheduler.from_pretrained(folder / name)
        else:
            dtype = torch_dtype.get(name) if isinstance(torch_dtype, dict) else torch_dtype
            parts[name] = COMPONENTS[name].from_pretrained(folder / name, torch_dtype=dtype).eval()
    return parts
