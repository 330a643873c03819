"""Build small EchoNet-Dynamic-style folders for tests.

Public helpers (other test modules may import them):

* :func:`synthetic_frames` — a small gray cine with a pulsing bright blob.
* :func:`rectangle_tracing` — an EchoNet tracing whose outline is a known rectangle, and
  :func:`rectangle_area` — the area it encloses.
* :func:`make_clip` — one item for :func:`echokdm.io.echonet.write_echonet_dataset`.
* :func:`build_quirky_echonet` — a folder with the quirks of the public release, described by
  the returned :class:`QuirkyEchoNet`.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from echokdm.io.echonet import FILELIST_COLUMNS, TRACING_COLUMNS, write_echonet_dataset

__all__ = [
    "synthetic_frames", "rectangle_tracing", "rectangle_area", "make_clip", "QuirkyEchoNet", "build_quirky_echonet",
]


def synthetic_frames(n_frames: int = 16, height: int = 32, width: int = 40, seed: int = 0) -> np.ndarray:
    """A gray cine: a bright ellipse whose size pulses once per clip, on a dim noisy background.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1].
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    phase = np.cos(2 * np.pi * np.arange(n_frames) / n_frames)
    frames = []
    for scale in 0.75 + 0.2 * phase:
        inside = ((cols - width / 2) / (0.3 * width * scale)) ** 2 + ((rows - height / 2) / (0.4 * height * scale)) ** 2
        frames.append(np.where(inside <= 1.0, 0.8, 0.15) + 0.05 * rng.random((height, width)))
    return np.clip(np.stack(frames), 0.0, 1.0).astype(np.float32)  # (T, H, W)


def rectangle_tracing(left: float, right: float, top: float, bottom: float, n_chords: int = 20) -> np.ndarray:
    """An EchoNet tracing of a rectangle: a vertical long axis and horizontal chords.

    Row 0 runs from ``(centre, top)`` to ``(centre, bottom)``; chord j (row j + 1) runs from
    ``(left, y_j)`` to ``(right, y_j)`` with ``y_j = top + (j + 0.5) (bottom - top) / n_chords``.
    The outline of :func:`~echokdm.io.echonet.tracing_to_polygon` is then the rectangle
    ``[left, right] x [y_0, y_last]``, of area ``(right - left) (bottom - top) (n - 1) / n``.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(1 + n_chords, 4)`` rows ``(x1, y1, x2, y2)`` in pixels.
    """
    ys = top + (np.arange(n_chords) + 0.5) * (bottom - top) / n_chords
    chords = np.stack([np.full(n_chords, left), ys, np.full(n_chords, right), ys], axis=1)
    axis = np.array([[(left + right) / 2, top, (left + right) / 2, bottom]])
    return np.concatenate([axis, chords]).astype(np.float32)


def rectangle_area(left: float, right: float, top: float, bottom: float, n_chords: int = 20) -> float:
    """Area in pixel² enclosed by the outline of :func:`rectangle_tracing` (same arguments)."""
    return (right - left) * (bottom - top) * (n_chords - 1) / n_chords


def make_clip(
    file_name: str,
    *,
    n_frames: int = 16,
    height: int = 32,
    width: int = 40,
    fps: float = 50.0,
    split: str = "TRAIN",
    ef: float = 60.0,
    edv: float = 100.0,
    esv: float = 40.0,
    traced_frames: tuple[int, ...] = (3, 10),
    seed: int = 0,
) -> dict[str, Any]:
    """One item for :func:`~echokdm.io.echonet.write_echonet_dataset`.

    Each traced frame gets a rectangle tracing (20 chords) that shrinks with the frame index.
    """
    tracings = {
        frame: rectangle_tracing(0.25 * width + k, 0.75 * width - k, 0.15 * height + k, 0.85 * height - k)
        for k, frame in enumerate(traced_frames)
    }
    return {
        "file_name": file_name, "frames": synthetic_frames(n_frames, height, width, seed), "fps": fps,
        "ef": ef, "edv": edv, "esv": esv, "split": split, "tracings": tracings,
    }


@dataclasses.dataclass
class QuirkyEchoNet:
    """What :func:`build_quirky_echonet` wrote.

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder.
    clips : list of dict
        The items written (``make_clip`` dicts), in FileList order.
    duplicated : tuple
        ``(file name with .avi, frame)`` whose 21 rows appear twice (42 rows).
    short : tuple
        ``(file name with .avi, frame)`` with 20 rows (one chord missing).
    beyond : tuple
        ``(file name with .avi, frame)`` traced (21 valid rows) beyond the end of the video.
    """

    root: Path
    clips: list[dict[str, Any]]
    duplicated: tuple[str, int]
    short: tuple[str, int]
    beyond: tuple[str, int]


def build_quirky_echonet(root: str | Path) -> QuirkyEchoNet:
    """Write a three-clip EchoNet folder with the public release's quirks.

    * ``FileList.csv`` names clips without ``.avi``, and ``Split`` is in mixed case
      (``train``, ``Val``, ``tEsT``).
    * ``0XAAAA`` is clean: frames 3 and 10 traced with 21 rows each.
    * ``0XBBBB`` frame 3 has its 21 rows twice (the copy after the other clips' rows).
    * ``0XCCCC`` frame 4 has 20 rows; frame 40 is traced but the video has 16 frames.
    """
    root = Path(root)
    clips = [make_clip("0XAAAA", split="train", seed=1), make_clip("0XBBBB", split="Val", ef=45.5, seed=2),
             make_clip("0XCCCC", split="tEsT", traced_frames=(4, 9), ef=70.25, seed=3)]
    write_echonet_dataset(root, clips)
    rows = []
    for clip in clips:
        for frame, segments in clip["tracings"].items():
            short = (clip["file_name"], frame) == ("0XCCCC", 4)
            rows += _tracing_rows(clip["file_name"], frame, segments[:-1] if short else segments)
    rows += _tracing_rows("0XBBBB", 3, clips[1]["tracings"][3])  # the same block again
    rows += _tracing_rows("0XCCCC", 40, clips[2]["tracings"][9])  # beyond the 16 frames
    _write_rows(root / "VolumeTracings.csv", TRACING_COLUMNS, rows)
    filelist = [[c["file_name"], c["ef"], c["esv"], c["edv"], *c["frames"].shape[1:], c["fps"], len(c["frames"]),
                 c["split"]] for c in clips]
    _write_rows(root / "FileList.csv", FILELIST_COLUMNS, filelist)
    return QuirkyEchoNet(root=root, clips=clips, duplicated=("0XBBBB.avi", 3), short=("0XCCCC.avi", 4),
                         beyond=("0XCCCC.avi", 40))


def _tracing_rows(file_name: str, frame: int, segments: np.ndarray) -> list[list[Any]]:
    """VolumeTracings.csv rows of one traced frame (FileName with .avi)."""
    return [[f"{file_name}.avi", *segment, frame] for segment in np.asarray(segments).tolist()]


def _write_rows(path: Path, header: tuple[str, ...], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
