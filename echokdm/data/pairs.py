"""KDM training clips: frames, keypoints, frame pairs and their flows at the working size.

A :class:`TrainingClip` is what an adapter's clip loader (:meth:`echokdm.adapters.Adapter.clip_loader`)
returns for one manifest row, and what :func:`echokdm.training.kdm.build_pair_bank` stacks into
its in-memory bank, whatever the domain. The helpers here are shared by the loaders:

* :func:`scale_keypoints` — keypoints to the square working size ``S``, the pixel-centre mapping
  of :mod:`echokdm.geometry.resize` (``resize_images`` for the frames, ``uint8`` 0–255 in a
  clip; ``resize_flow`` for flows, vectors rescaled per axis; :func:`flows_at_size` for a stack);
* :func:`random_pairs` — random (source, target) frame pairs of one clip;
* :func:`read_flow_file` — a flow file in the ``echokdm flow`` cache layout (``pairs``,
  ``flows``), which is also how :mod:`echokdm.data.procedural` ships its exact flows;
* :func:`tps_pair_flows` — thin-plate-spline flows through the keypoints, when a dataset has no
  flows.

Flows follow shared/DESIGN.md: ``(2, H, W)`` (dx, dy) pixels on the target grid pointing into
the source.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from echokdm.geometry.resize import resize_flow

__all__ = [
    "TrainingClip",
    "flows_at_size",
    "random_pairs",
    "read_flow_file",
    "scale_keypoints",
    "tps_pair_flows",
]


@dataclasses.dataclass
class TrainingClip:
    """One clip's KDM training material at the working size ``S``.

    Attributes
    ----------
    frames : numpy.ndarray
        ``uint8`` ``(T, S, S)`` grayscale, 0–255.
    keypoints : numpy.ndarray
        ``float32`` ``(T, N, 2)`` ``(x, y)`` pixels of the ``S × S`` frames (NaN = missing).
    pairs : numpy.ndarray
        ``int64`` ``(P, 2)`` (source, target) frame indices within the clip.
    flows : numpy.ndarray
        ``float16`` ``(P, 2, S, S)``: the flow of each pair in pixels of the ``S × S`` frames.
    """

    frames: np.ndarray
    keypoints: np.ndarray
    pairs: np.ndarray
    flows: np.ndarray

    def __post_init__(self) -> None:
        t = len(self.frames)
        if self.keypoints.shape[0] != t or len(self.pairs) != len(self.flows):
            raise ValueError(f"inconsistent training clip: {t} frames, {self.keypoints.shape[0]} keypoint sets, "
                             f"{len(self.pairs)} pairs, {len(self.flows)} flows")
        if len(self.pairs) and (self.pairs.min() < 0 or self.pairs.max() >= t):
            raise ValueError(f"frame pairs reach outside the clip's frames 0..{t - 1}")


def scale_keypoints(keypoints: np.ndarray, from_hw: tuple[int, int], size: int) -> np.ndarray:
    """``(..., 2)`` ``(x, y)`` pixels of an ``H × W`` frame → pixels of the ``size × size`` resize
    (pixel centres at integers: ``x' = (x + 0.5) · size / W − 0.5``, the same for y with H)."""
    h, w = from_hw
    scale = np.array([size / w, size / h])
    return ((np.asarray(keypoints, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def random_pairs(n_frames: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``int64`` ``(n_pairs, 2)`` random (source, target) pairs of distinct frames of one clip."""
    if n_frames < 2:
        raise ValueError(f"{n_frames} frame(s): a clip needs at least two frames to make pairs")
    a = rng.integers(0, n_frames, size=n_pairs)
    b = (a + rng.integers(1, n_frames, size=n_pairs)) % n_frames  # any other frame
    return np.stack([a, b], axis=1)


def read_flow_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs int64 (P, 2), flows (P, 2, S, S))`` of a flow file in the ``echokdm flow`` cache layout
    (a pooled file, ``pool > 1``, comes back at full size: each value repeated over its block).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming it when it lacks
    ``pairs`` or ``flows`` or their counts differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such flow file")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("pairs", "flows") if k not in f.files]
        if missing:
            raise ValueError(f"{path}: not a flow file: missing {', '.join(missing)}")
        pairs, flows = f["pairs"].astype(np.int64), f["flows"]
        pool = int(f["pool"]) if "pool" in f.files else 1  # echokdm flow's pooled cache (issue 23)
    if pool > 1 and flows.ndim == 4:  # each value over its pool × pool block: area-pooling gives it back exactly
        flows = flows.repeat(pool, axis=2).repeat(pool, axis=3)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or flows.ndim != 4 or len(flows) != len(pairs) or flows.shape[1] != 2:
        raise ValueError(f"{path}: pairs {pairs.shape} and flows {flows.shape} must be (P, 2) and (P, 2, H, W)")
    return pairs, flows


def flows_at_size(flows: np.ndarray, size: int) -> np.ndarray:
    """``float16`` ``(P, 2, size, size)`` of flows ``(P, 2, H, W)`` (resized when ``H, W != size``)."""
    if flows.shape[-2:] == (size, size):
        return flows.astype(np.float16)
    return np.stack([resize_flow(f.astype(np.float32), size) for f in flows]).astype(np.float16)


def tps_pair_flows(keypoints: np.ndarray, pairs: np.ndarray, size: int) -> np.ndarray:
    """Thin-plate-spline flows ``float16`` ``(P, 2, size, size)`` of ``pairs`` through ``(T, N, 2)``
    keypoints at the working size (:func:`echokdm.baselines.tps.tps_flow`, border pinned)."""
    from echokdm.baselines.tps import tps_flow

    return np.stack([tps_flow(keypoints[a], keypoints[b], (size, size)) for a, b in pairs]).astype(np.float16)
