"""Pipeline folders of the old layout → diffusers' layout.

Until issue 19 a pipeline folder held ``k2f/``, ``f2i/``, ``vae/`` and ``scheduler/`` (each a
``save_pretrained`` folder) and ``kdm_pipeline.json`` (the adapter name and whether F2I takes the
flow). Pipelines are now diffusers ``DiffusionPipeline`` s: the same component folders and a
``model_index.json`` that names each component's class and holds ``adapter`` and ``use_flow``.

``from_pretrained`` still reads an old folder (converting it in memory, with a warning); convert it
once on disk with

    python -m echokdm.pipelines.convert OLD NEW

which keeps the weights' dtype (the packaged pipelines are stored in float16).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from echokdm.pipelines.kdm import FlowToImagePipeline, KDMPipeline, KeypointToFlowPipeline
from echokdm.pipelines.layout import COMPONENTS, LEGACY_FILE, is_legacy_pipeline_folder, legacy_settings

__all__ = ["pipeline_class_for", "convert_pipeline_folder", "main"]

_WEIGHTS = "diffusion_pytorch_model.safetensors"

def pipeline_class_for(folder: str | os.PathLike) -> type:
    """The pipeline class an old-layout folder holds: KDM (k2f, f2i, vae), K2F (k2f) or F2I (f2i, vae)."""
    folder = Path(folder)
    has = {n for n in ("k2f", "f2i", "vae") if (folder / n).is_dir()}
    if has == {"k2f", "f2i", "vae"}:
        return KDMPipeline
    if has == {"k2f"}:
        return KeypointToFlowPipeline
    if has == {"f2i", "vae"}:
        return FlowToImagePipeline
    raise FileNotFoundError(f"{folder}: not a pipeline folder (component folders found: {sorted(has) or 'none'})")


def _stored_dtype(component: Path) -> torch.dtype | None:
    """The dtype of the first tensor of ``component``'s safetensors weights (None without such a file)."""
    from safetensors import safe_open

    path = component / _WEIGHTS
    if not path.is_file():
        return None
    with safe_open(path, framework="pt") as f:
        keys = list(f.keys())
        return f.get_tensor(keys[0]).dtype if keys else None


def convert_pipeline_folder(old: str | os.PathLike, new: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the old-layout pipeline folder ``old`` to ``new`` in diffusers' layout (``model_index.json``).

    Each model keeps the dtype its weights are stored in (float16 stays float16). ``old`` and
    ``new`` may be the same folder: the new files are written beside the old ones, then
    ``kdm_pipeline.json`` is removed.

    Raises
    ------
    ValueError
        ``old`` is not an old-layout folder, or ``new`` exists (another folder) and ``overwrite`` is False.
    """
    old, new = Path(old), Path(new)
    if not is_legacy_pipeline_folder(old):
        raise ValueError(f"{old}: not a pipeline folder of the old layout (no {LEGACY_FILE} or scheduler/, "
                         "or it already has model_index.json)")
    same = old.resolve() == new.resolve()
    if new.exists() and not same and not overwrite:
        raise ValueError(f"{new}: already exists (pass overwrite=True / --overwrite to replace its files)")
    cls = pipeline_class_for(old)
    dtypes = {name: _stored_dtype(old / name) for name in COMPONENTS}  # float16 weights stay float16
    cls.from_component_folders(old, legacy_settings(old), dtypes).save_pretrained(new)
    if same:
        (old / LEGACY_FILE).unlink(missing_ok=True)
    return new


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m echokdm.pipelines.convert OLD NEW [--overwrite]``."""
    parser = argparse.ArgumentParser(prog="python -m echokdm.pipelines.convert", description=(
        "Convert a KDM pipeline folder of the old layout (kdm_pipeline.json) to diffusers' layout (model_index.json)."))
    parser.add_argument("old", help="pipeline folder of the old layout")
    parser.add_argument("new", help="folder to write (may be OLD itself: converted in place)")
    parser.add_argument("--overwrite", action="store_true", help="write into NEW even if it exists")
    args = parser.parse_args(argv)
    try:
        out = convert_pipeline_folder(args.old, args.new, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(1, f"error: {exc}\n")
    print(f"wrote {out} (model_index.json + component folders)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
