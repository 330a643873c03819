"""Browse the output folder of ``echokdm evaluate`` or ``echokdm synthesize``: tables worst first, rows playable.

* ``evaluate`` folders (``per_patient.csv``, ``per_clip.csv``, ``generated/<clip>.npz``): one row per
  patient and method, worst first (largest MSE); a row plays the patient's first clip, the real beat
  and the method's frames when the run kept them (KDM's).
* ``synthesize`` folders (``cohort.csv``, ``Videos/<loop>.avi``): one row per loop with its source
  patient, worst first (largest distance between the EF asked for and the EF re-measured); a row plays
  the loop.

Files are read with the package's readers (:func:`echokdm.io.read_cine` for the AVIs) and played as MP4
(:func:`echokdm.io.video.write_video`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ResultsFolder", "open_results", "row_videos"]


@dataclasses.dataclass
class ResultsFolder:
    """A results folder: ``kind`` (``"evaluate"`` or ``"synthesize"``), the table shown (worst first),
    the column it is sorted by and the folder."""

    kind: str
    table: pd.DataFrame
    worst_by: str
    folder: Path


def _evaluate_table(folder: Path) -> ResultsFolder:
    table = pd.read_csv(folder / "per_patient.csv", dtype={"patient_id": str})
    if "mse" not in table.columns:
        raise ValueError(f"{folder / 'per_patient.csv'}: no 'mse' column (not an echokdm evaluate table)")
    table = table.sort_values("mse", ascending=False, na_position="last").reset_index(drop=True)
    return ResultsFolder("evaluate", table, "mse", folder)


def _synthesize_table(folder: Path) -> ResultsFolder:
    table = pd.read_csv(folder / "cohort.csv", dtype={"loop": str, "source_patient_id": str, "source_clip_id": str})
    if "loop" not in table.columns:
        raise ValueError(f"{folder / 'cohort.csv'}: no 'loop' column (not an echokdm synthesize table)")
    achieved = pd.to_numeric(table.get("ef_achieved"), errors="coerce")
    table.insert(1, "ef_miss", (achieved - pd.to_numeric(table["ef_target"], errors="coerce")).abs())
    table = table.sort_values("ef_miss", ascending=False, na_position="last").reset_index(drop=True)
    return ResultsFolder("synthesize", table, "ef_miss", folder)


def open_results(folder: str | os.PathLike) -> ResultsFolder:
    """The table of an ``evaluate`` or ``synthesize`` output folder, worst cases first.

    Raises
    ------
    FileNotFoundError
        Not a folder, or a folder with neither ``per_patient.csv`` nor ``cohort.csv``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if (folder / "per_patient.csv").is_file():
        return _evaluate_table(folder)
    if (folder / "cohort.csv").is_file():
        return _synthesize_table(folder)
    raise FileNotFoundError(f"{folder}: neither per_patient.csv (echokdm evaluate) nor cohort.csv "
                            "(echokdm synthesize) is in this folder")


def _evaluate_frames(results: ResultsFolder, row: pd.Series) -> dict[str, tuple[np.ndarray, float]]:
    from echokdm.data.manifest import clip_file_stem

    clips = pd.read_csv(results.folder / "per_clip.csv", dtype={"patient_id": str, "clip_id": str})
    mine = clips[clips["patient_id"] == str(row["patient_id"])]
    if mine.empty:
        raise ValueError(f"patient {row['patient_id']}: no clip in per_clip.csv")
    clip = str(mine["clip_id"].iloc[0])
    path = results.folder / "generated" / f"{clip_file_stem(clip)}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run kept no frames of clip {clip}")
    with np.load(path) as saved:
        real = saved["real"].astype(np.float32) / 255.0  # (K, S, S)
        key = f"{row.get('method', 'kdm')}_frames"
        generated = saved[key].astype(np.float32) / 255.0 if key in saved else None
    fps = 10.0  # the targets are a subsampled beat: slow enough to follow
    videos = {"real": (real, fps)}
    if generated is not None:
        videos["generated"] = (generated, fps)
    return videos


def _synthesize_frames(results: ResultsFolder, row: pd.Series) -> dict[str, tuple[np.ndarray, float]]:
    from echokdm.io import read_cine

    path = results.folder / "Videos" / f"{row['loop']}.avi"
    cine = read_cine(path, "video")
    return {"generated": (cine.frames, cine.fps or float(row.get("fps", 30.0)))}


def row_videos(results: ResultsFolder, index: int, folder: str | os.PathLike) -> dict[str, Path]:
    """MP4s in ``folder`` of row ``index`` of the table: ``"real"`` and/or ``"generated"``."""
    from echokdm.io.video import write_video

    if not 0 <= index < len(results.table):
        raise IndexError(f"row {index} is outside the table's {len(results.table)} rows")
    row = results.table.iloc[index]
    read = _evaluate_frames if results.kind == "evaluate" else _synthesize_frames
    Path(folder).mkdir(parents=True, exist_ok=True)
    return {name: write_video(Path(folder) / f"results_{results.kind}_{index}_{name}.mp4", frames, fps=fps,
                              overwrite=True)
            for name, (frames, fps) in read(results, row).items()}
