"""Score folders of generated loops against folders of reference loops (no model needed).

Files are paired by name without extension (``P001_a4c.mp4`` ↔ ``P001_a4c.dcm``); each pair must
have the same number of frames and frame size. The patient is the ``patient_id`` of the reference
file when its reader gives one (DICOM, EchoNet), else the file stem.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["evaluate_folders", "pair_folders"]

_SUFFIXES = {".dcm", ".dicom", ".avi", ".mp4", ".gif", ".nii", ".gz", ".mov", ".mkv", ""}


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in _SUFFIXES:
            files.setdefault(_stem(path), path)
    return files


def pair_folders(generated: str | os.PathLike,
                 reference: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(generated file, reference file)`` pairs matched by stem, and the stems left unmatched."""
    gen, ref = _files(Path(generated)), _files(Path(reference))
    pairs = [(gen[s], ref[s]) for s in sorted(gen) if s in ref]
    unmatched = sorted(set(gen) ^ set(ref))
    if not pairs:
        raise ValueError(f"{generated} and {reference}: no file names in common (e.g. {sorted(gen)[:3]} vs "
                         f"{sorted(ref)[:3]})")
    return pairs, unmatched


def evaluate_folders(generated: str | os.PathLike, reference: str | os.PathLike, *,
                     out: str | os.PathLike | None = None,
                     lpips_nets: tuple[str, ...] = ("alex", "vgg"), lpips_backbone: str | None = None,
                     n_boot: int = 2000, progress: bool = True):
    """Per-frame MSE, PSNR, SSIM and LPIPS of generated loops against their references.

    Returns an :class:`~echokdm.evaluation.runner.EvaluationResult` (``clips`` holds the
    temporal warping error of neither: no flows are known; it lists frames per clip) and writes
    the same CSVs and markdown as :func:`~echokdm.evaluation.runner.evaluate` when ``out`` is set.
    LPIPS variants whose backbone cannot be had are NaN, with a note (``notes``, end of ``table3``).
    """
    from tqdm.auto import tqdm

    from echokdm.evaluation.runner import EvaluationResult, announce_notes, summarise_frames, write_csv
    from echokdm.io.dispatch import read_cine
    from echokdm.metrics.image import mse, psnr, ssim
    from echokdm.metrics.lpips import lpips_metrics

    pairs, unmatched = pair_folders(generated, reference)
    lpips, lpips_note = lpips_metrics(lpips_nets, lpips_backbone)  # LPIPS left out (NaN) with a note when unavailable
    notes = announce_notes([lpips_note])
    tables, clips = [], []
    for gen_path, ref_path in tqdm(pairs, desc="scoring", unit="clip", disable=not progress):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gen, ref = read_cine(gen_path), read_cine(ref_path)
        if gen.frames.shape != ref.frames.shape:
            raise ValueError(f"{gen_path}: frames {gen.frames.shape} do not match {ref_path} {ref.frames.shape} "
                             "(same frame count and size needed)")
        pid = ref.patient_id or _stem(ref_path)
        table = pd.DataFrame({"dataset": ref.dataset or "default", "patient_id": pid, "clip_id": _stem(ref_path),
                              "method": "generated", "frame": np.arange(gen.n_frames),
                              "mse": mse(gen.frames, ref.frames), "psnr": psnr(gen.frames, ref.frames),
                              "ssim": ssim(gen.frames, ref.frames)})
        for net in lpips_nets:
            table[f"lpips_{net}"] = lpips[net](gen.frames, ref.frames) if net in lpips else np.nan
        tables.append(table)
        clips.append({"dataset": table["dataset"][0], "patient_id": pid, "clip_id": _stem(ref_path),
                      "method": "generated", "n_frames": gen.n_frames})
    frames, clip_table = pd.concat(tables, ignore_index=True), pd.DataFrame(clips)
    patients, summary, table3 = summarise_frames(frames, clip_table, n_boot=n_boot, notes=notes)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        for name, t in (("per_frame", frames), ("per_clip", clip_table), ("per_patient", patients),
                        ("summary", summary)):
            write_csv(t, out_path / f"{name}.csv")
        (out_path / "table3.md").write_text(table3)
        if unmatched:
            write_csv(pd.DataFrame({"unmatched": unmatched}), out_path / "unmatched.csv")
        from echokdm.evaluation.plots import metric_boxplots

        (out_path / "plots").mkdir(exist_ok=True)
        metric_boxplots(patients, out_path / "plots" / "metrics_per_patient.png")
    return EvaluationResult(frames, clip_table, patients, summary, table3, pd.DataFrame(), out_path, notes)
