"""The Cine record: what every reader returns.

Conventions (shared/DESIGN.md):

* ``frames`` is ``float32`` in [0, 1], grayscale, shape ``(T, H, W)``; a single image is a cine
  of one frame (``T == 1``).
* ``spacing_mm`` is ``(dx, dy)``: the physical size in millimetres of one pixel step along x
  (columns) and along y (rows), in the same ``(x, y)`` order as keypoints. ``None`` when the
  file carries no calibration; lengths are then in pixels and volumes in pixel³.
* ``masks`` is ``uint8`` ``(T, H, W)`` with 1 = LV blood pool. When only some frames are
  labelled (EchoNet tracings, CAMUS ED/ES), ``labelled_frames`` lists them and the other frames
  of ``masks`` are all zero; ``labelled_frames is None`` means every frame is labelled.
* ``tracings`` maps a frame index to the EchoNet-style line segments of that frame, a
  ``float32`` array ``(K, 4)`` of ``(x1, y1, x2, y2)`` in pixels: row 0 is the long axis, rows
  1 … K-1 the chords perpendicular to it.
* ``metadata`` holds technical facts only (codec, transfer syntax, photometric
  interpretation, manufacturer, cropping box …), never personal data.

The record lives in :mod:`echokdm.io` (not :mod:`echokdm.data`) because readers, which sit at
the bottom of the import graph, build it; :mod:`echokdm.data` re-exports it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Cine"]


@dataclasses.dataclass
class Cine:
    """One echo clip (or single image) read from any source.

    Parameters
    ----------
    frames : numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1].
    fps : float or None
        Frames per second; ``None`` when the source does not say.
    spacing_mm : tuple of float or None
        ``(dx, dy)`` millimetres per pixel along columns and rows.
    patient_id : str
        Pseudonymous patient identifier (never a name or a hospital ID).
    clip_id : str
        Identifier of this clip, unique within a dataset.
    view : str or None
        Echo view, e.g. ``"A4C"`` or ``"A2C"``, when known.
    source : pathlib.Path or None
        The file the clip was read from.
    dataset : str
        Name of the dataset or format family (``"echonet"``, ``"camus"``, ``"dicom"`` …).
    masks : numpy.ndarray or None
        ``uint8`` ``(T, H, W)``, 1 = LV blood pool.
    labelled_frames : numpy.ndarray or None
        ``int64`` indices of the frames of ``masks`` that carry a label; ``None`` = all.
    tracings : dict or None
        Frame index → ``float32`` ``(K, 4)`` segments ``(x1, y1, x2, y2)``.
    metadata : dict
        Technical, non-personal facts about the source.
    """

    frames: np.ndarray
    fps: float | None = None
    spacing_mm: tuple[float, float] | None = None
    patient_id: str = ""
    clip_id: str = ""
    view: str | None = None
    source: Path | None = None
    dataset: str = ""
    masks: np.ndarray | None = None
    labelled_frames: np.ndarray | None = None
    tracings: dict[int, np.ndarray] | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"clip {self.clip_id!r}" + (f" ({self.source})" if self.source else "")
        frames = np.asarray(self.frames)
        if frames.ndim != 3:
            raise ValueError(f"{where}: frames must have shape (T, H, W), got {frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError(f"{where}: frames is empty (0 frames)")
        self.frames = frames.astype(np.float32, copy=False)
        if self.source is not None:
            self.source = Path(self.source)
        if self.fps is not None:
            self.fps = float(self.fps)
            if not np.isfinite(self.fps) or self.fps <= 0:
                raise ValueError(f"{where}: fps must be a positive number, got {self.fps}")
        if self.spacing_mm is not None:
            dx, dy = (float(v) for v in self.spacing_mm)
            if not (dx > 0 and dy > 0 and np.isfinite(dx) and np.isfinite(dy)):
                raise ValueError(f"{where}: spacing_mm must be two positive numbers, got {self.spacing_mm}")
            self.spacing_mm = (dx, dy)
        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.shape != self.frames.shape:
                raise ValueError(
                    f"{where}: masks shape {masks.shape} differs from frames shape {self.frames.shape}"
                )
            self.masks = masks.astype(np.uint8, copy=False)
        if self.labelled_frames is not None:
            lf = np.unique(np.asarray(self.labelled_frames, dtype=np.int64))
            if lf.size and (lf[0] < 0 or lf[-1] >= self.n_frames):
                raise ValueError(f"{where}: labelled_frames {lf.tolist()} outside 0..{self.n_frames - 1}")
            self.labelled_frames = lf

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Frame height ``H`` in pixels (rows)."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width ``W`` in pixels (columns)."""
        return int(self.frames.shape[2])

    @property
    def duration_s(self) -> float | None:
        """Clip duration in seconds, ``None`` without a frame rate."""
        return None if self.fps is None else self.n_frames / self.fps

    def summary(self) -> str:
        """One line describing the clip, for logs and the CLI."""
        fps = "unknown fps" if self.fps is None else f"{self.fps:.3g} fps"
        sp = "no calibration" if self.spacing_mm is None else "spacing {:.3g}x{:.3g} mm".format(*self.spacing_mm)
        n_masked = self.n_frames if self.labelled_frames is None else len(self.labelled_frames)
        masks = "" if self.masks is None else f", masks on {n_masked} frame(s)"
        return (f"{self.clip_id or '<unnamed>'} [{self.dataset or '?'}] patient {self.patient_id or '?'}: "
                f"{self.n_frames}x{self.height}x{self.width}, {fps}, {sp}{masks}")
