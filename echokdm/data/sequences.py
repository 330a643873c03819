"""Sequence manifests: image sequences or videos with a keypoint file per frame (face, pose …).

The generic counterpart of the echo manifest (:mod:`echokdm.data.manifest`) for the
image-sequence adapters: one CSV row per sequence, patient-level (subject-level) splits, validated
on load, paths relative to the manifest's folder when the data lies under it.

=================  ==========  =================================================================
column             required    meaning
=================  ==========  =================================================================
``patient_id``     yes         subject identifier; splits are made per subject
``clip_id``        yes         sequence identifier, unique within ``dataset``
``dataset``        yes         dataset name
``path``           yes         a folder of frame images (``format: images``, sorted by file name)
                               or a video file (``format: video``)
``format``         yes         ``images`` or ``video``
``keypoints_path`` yes         a folder with one keypoint file per frame (sorted by name, as many
                               as frames) or one file holding every frame (CSV, JSON, ``.npy``);
                               parsed by the adapter (``.pts``, OpenPose JSON …)
``flows_path``     no          a flow file in the ``echokdm flow`` cache layout (``pairs``,
                               ``flows``): the dataset's own flows (``data.flows: dataset``)
``fps``            no          frames per second
``n_frames``,      no          frame count and size in pixels
``height``,
``width``
``split``          yes         ``train``, ``val`` or ``test``
=================  ==========  =================================================================

Frames are read as float32 in [0, 1]: grayscale ``(T, H, W)`` (colour images by their ITU-R 601
luma, Pillow's ``convert("L")``) with ``data.channels: 1``, RGB ``(T, H, W, 3)`` with
``data.channels: 3`` (see ``docs/adapters.md``, design notes).
Keypoints are ``(T, N, 2)`` ``(x, y)`` pixels of the frames; a missing keypoint is NaN.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.data.manifest import is_blank, load_table, row_problems, table_to_check, write_table
from echokdm.data.pairs import (
    TrainingClip,
    flows_at_size,
    random_pairs,
    read_flow_file,
    scale_keypoints,
    tps_pair_flows,
)
from echokdm.errors import ReadError
from echokdm.geometry.resize import resize_images

__all__ = [
    "IMAGE_SUFFIXES",
    "SEQUENCE_COLUMNS",
    "SEQUENCE_FORMATS",
    "SEQUENCE_REQUIRED_COLUMNS",
    "check_sequence_manifest",
    "frame_files",
    "load_sequence_manifest",
    "natural_sort_key",
    "read_image",
    "read_sequence_frames",
    "read_sequence_keypoints",
    "sequence_clip_loader",
    "write_sequence_manifest",
]

SEQUENCE_COLUMNS = ("patient_id", "clip_id", "dataset", "path", "format", "keypoints_path", "flows_path", "fps",
                    "n_frames", "height", "width", "split")
SEQUENCE_REQUIRED_COLUMNS = ("patient_id", "clip_id", "dataset", "path", "format", "keypoints_path", "split")
SEQUENCE_FORMATS = ("images", "video")
#: Frame image suffixes of an ``images`` sequence.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_PATHS = ("path", "keypoints_path", "flows_path")
_NUMERIC = ("fps", "n_frames", "height", "width")
_DIGITS = re.compile(r"(\d+)")


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------


def _row_problems(i: int, rec: dict, base: Path | None, check_files: bool) -> list[str]:
    return row_problems(f"line {i + 2} (clip {rec.get('clip_id', '')!r})", rec,
                        required=("patient_id", "clip_id", "dataset", "path", "keypoints_path"),
                        formats=SEQUENCE_FORMATS, path_columns=_PATHS, base=base, check_files=check_files)


def check_sequence_manifest(manifest: pd.DataFrame | str | os.PathLike, *, base_dir: str | os.PathLike | None = None,
                            check_files: bool = True) -> list[str]:
    """Validate a sequence manifest; one line per problem (empty when valid).

    Checks required and unknown columns, formats and splits, empty IDs, files that exist, numbers
    in range, duplicate ``(dataset, clip_id)`` and a subject in two splits.
    """
    try:
        manifest, base = table_to_check(manifest, base_dir)
    except ReadError as exc:
        return [exc.problem]
    missing = [c for c in SEQUENCE_REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        return [f"missing column(s): {', '.join(missing)} (a sequence manifest; see echokdm.data.sequences)"]
    problems = []
    unknown = [c for c in manifest.columns if c not in SEQUENCE_COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) (misspelt?): {', '.join(map(str, unknown))}")
    for i, rec in enumerate(manifest.to_dict("records")):
        problems += _row_problems(i, rec, base, check_files)
    frame = manifest.astype({"dataset": str, "clip_id": str, "patient_id": str, "split": str})
    for (dataset, clip), group in frame[frame.duplicated(["dataset", "clip_id"], keep=False)].groupby(
            ["dataset", "clip_id"], sort=True):
        problems.append(f"clip {clip!r} of dataset {dataset!r} appears more than once (lines "
                        f"{', '.join(str(i + 2) for i in group.index)})")
    for (dataset, patient), values in frame.groupby(["dataset", "patient_id"])["split"].unique().items():
        if len(values) > 1:
            problems.append(f"subject {patient!r} of dataset {dataset!r} is in several splits "
                            f"({', '.join(sorted(values))}): splits must be by subject")
    return problems


def load_sequence_manifest(path: str | os.PathLike, *, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a sequence manifest: every column of :data:`SEQUENCE_COLUMNS`, numbers as
    floats (NaN when empty), paths absolute.

    Raises
    ------
    FileNotFoundError
    echokdm.errors.ManifestError
        Listing every problem :func:`check_sequence_manifest` finds.
    """
    return load_table(path, check_sequence_manifest, SEQUENCE_COLUMNS, _NUMERIC, _PATHS, check_files=check_files)


def write_sequence_manifest(manifest: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a sequence manifest atomically; paths under its folder are stored relative to it.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    return write_table(manifest, path, SEQUENCE_COLUMNS, _PATHS, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# frames and keypoints
# ---------------------------------------------------------------------------------------------


def natural_sort_key(path: str | os.PathLike) -> list:
    """Sort key of a file by its name, digit runs read as numbers (``frame2`` before ``frame10``):
    ``sorted(files, key=natural_sort_key)`` is the frame order of a folder of frames or keypoint files."""
    return [int(p) if p.isdigit() else p for p in _DIGITS.split(Path(path).name)]


def frame_files(folder: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes``, in natural name order (hidden files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith(".")),
                  key=natural_sort_key)


def read_image(path: str | os.PathLike, channels: int = 1) -> np.ndarray:
    """One image as ``float32`` in [0, 1]: grayscale ``(H, W)`` (``channels=1``; colour by its
    ITU-R 601 luma) or RGB ``(H, W, 3)`` (``channels=3``; gray images repeated)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    path = Path(path)
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB")
            return np.asarray(converted, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise ReadError(path, f"not a readable image ({exc})") from exc


def read_sequence_frames(row: pd.Series | dict, channels: int = 1) -> np.ndarray:
    """Frames ``float32`` ``(T, H, W)`` (``channels=1``) or ``(T, H, W, 3)`` (``channels=3``) in [0, 1]
    of one row of a loaded sequence manifest."""
    if str(row["format"]) == "video":
        from echokdm.io.video import read_video

        if channels != 1:
            raise ReadError(row["path"], "colour frames are read from image folders only (format: images); "
                            "extract the video's frames as PNGs, or train with data.channels: 1")
        return read_video(row["path"]).frames
    files = frame_files(row["path"])
    if not files:
        raise ReadError(row["path"], f"no frame images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    frames = [read_image(f, channels) for f in files]
    if len({f.shape for f in frames}) != 1:
        raise ReadError(row["path"], f"frames differ in size: {sorted({f.shape for f in frames})}")
    return np.stack(frames)


def read_sequence_keypoints(row: pd.Series | dict, read_keypoints: Callable, n_frames: int) -> np.ndarray:
    """Keypoints ``float32`` ``(T, N, 2)`` of one row: a folder of one file per frame, or one file.

    ``read_keypoints(path) -> (T, N, 2)`` is the adapter's parser. The count must equal ``n_frames``.
    """
    path = Path(row["keypoints_path"])
    if path.is_dir():
        files = [p for p in sorted(path.iterdir(), key=natural_sort_key) if p.is_file() and not p.name.startswith(".")]
        if len(files) != n_frames:
            raise ReadError(path, f"{len(files)} keypoint file(s) for {n_frames} frames (one file per frame)")
        kp = np.concatenate([np.asarray(read_keypoints(f), np.float32) for f in files])  # (T, N, 2)
    else:
        kp = np.asarray(read_keypoints(path), np.float32)
    if len(kp) != n_frames:
        raise ReadError(path, f"{len(kp)} keypoint set(s) for {n_frames} frames")
    return kp


# ---------------------------------------------------------------------------------------------
# training clips
# ---------------------------------------------------------------------------------------------


def sequence_clip_loader(data: Any, read_keypoints: Callable) -> Callable[[pd.Series, np.random.Generator],
                                                                        TrainingClip]:
    """``loader(row, rng) -> TrainingClip`` for the rows of a sequence manifest.

    ``data`` is the training config's ``data`` section: ``size``, ``flows`` (``dataset``: the
    row's ``flows_path``; ``cache``: ``<flow_cache>/flows/<clip>.npz`` from ``echokdm flow``;
    ``tps``: a thin-plate spline through ``pairs_per_clip`` random pairs' keypoints).
    """
    size = data.size
    channels = getattr(data, "channels", 1)

    def load(row: pd.Series, rng: np.random.Generator) -> TrainingClip:
        from echokdm.data.manifest import clip_file_stem

        frames = read_sequence_frames(row, channels)
        kp = scale_keypoints(read_sequence_keypoints(row, read_keypoints, len(frames)), frames.shape[1:3], size)
        if data.flows in ("dataset", "cache"):
            if data.flows == "dataset" and is_blank(row.get("flows_path")):
                raise ValueError("data.flows: dataset needs a flows_path for every sequence (or use cache or tps)")
            path = (Path(row["flows_path"]) if data.flows == "dataset"
                    else Path(data.flow_cache) / "flows" / f"{clip_file_stem(str(row['clip_id']))}.npz")
            pairs, flows = read_flow_file(path)
            if pairs.size and pairs.max() >= len(frames):
                raise ReadError(path, f"pairs reach frame {pairs.max()} of a {len(frames)}-frame sequence")
            flows = flows_at_size(flows, size)
        else:
            pairs = random_pairs(len(frames), data.pairs_per_clip, rng)
            flows = tps_pair_flows(kp, pairs, size)
        if frames.ndim == 4:  # (T, H, W, C): resized per channel, back to channels last
            small = resize_images(frames.transpose(0, 3, 1, 2), size, dtype=np.uint8).transpose(0, 2, 3, 1)
            return TrainingClip(np.ascontiguousarray(small), kp, pairs, flows)
        return TrainingClip(resize_images(frames, size, dtype=np.uint8), kp, pairs, flows)

    return load
