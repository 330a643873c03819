"""Ground truth of synthetic cohorts: the exact keypoints and flows written beside a manifest.

A cohort with ground truth (the echo phantom, ``echokdm phantom``) has a ``ground_truth.csv``
next to its ``manifest.csv``: one row per clip, ``clip_id`` and ``npz`` (the clip's ground-truth
file, relative to the table). :func:`ground_truth_files` reads that table;
:class:`GroundTruthFlows` serves exact flows and valid-region masks of those files for training
and validation, resized and cached.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from echokdm.geometry.resize import resize_flow, resize_images

__all__ = ["GROUND_TRUTH_TABLE", "GroundTruthFlows", "ground_truth_files"]

GROUND_TRUTH_TABLE = "ground_truth.csv"


def ground_truth_files(manifest: str | os.PathLike) -> dict[str, Path]:
    """``clip_id → ground-truth .npz`` of a cohort with ``ground_truth.csv`` beside its manifest.

    Parameters
    ----------
    manifest : path
        The cohort's manifest; only its folder is used.

    Returns
    -------
    dict of str to pathlib.Path
        One entry per row with a non-empty ``npz``; empty when the table does not exist (the
        manifest has no ground truth, e.g. scanner data).

    Raises
    ------
    ValueError
        The table exists but lacks the ``clip_id`` or ``npz`` column (the message names the file).
    """
    path = Path(manifest).parent / GROUND_TRUTH_TABLE
    if not path.exists():
        return {}
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"clip_id", "npz"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: ground-truth table lacks column(s) {', '.join(sorted(missing))}")
    return {row.clip_id: path.parent / row.npz for row in table.itertuples() if row.npz}


class GroundTruthFlows:
    """Exact flows of a set of clips with ground truth, resized to a working size, with two LRU caches.

    Parameters
    ----------
    data : object
        Anything with ``truth`` (a list, per clip, of its ground-truth ``.npz`` path or None),
        ``clip_ids`` (list of str, for error messages) and ``size`` (int, the working size S), such
        as :class:`echokdm.training.flow.PairData`.
    max_flows : int
        Resized flows kept in memory (about 100 kB each at 112×112).
    max_clips : int
        Ground-truth clips kept loaded.

    Notes
    -----
    ``flow(clip, source, target)`` → ``float32`` ``(2, S, S)``: dx, dy in pixels of the S × S
    frames, on the target grid pointing into the source (DESIGN.md), about 15 ms at 112×112 on
    first use, then cached. ``fan(clip)`` → ``bool`` ``(S, S)``: the valid region of the frames
    (the imaging sector), where flow errors are measured.
    """

    def __init__(self, data, max_flows: int = 4096, max_clips: int = 64):
        self.data, self.max_flows, self.max_clips = data, max_flows, max_clips
        self._flows: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._clips: OrderedDict[int, object] = OrderedDict()

    def _clip(self, index: int):
        from echokdm.data.phantom import load_npz

        if index in self._clips:
            self._clips.move_to_end(index)
            return self._clips[index]
        path = self.data.truth[index]
        if path is None:
            raise ValueError(f"clip {self.data.clip_ids[index]!r} has no ground truth (not in {GROUND_TRUTH_TABLE})")
        clip = self._clips[index] = load_npz(path)
        if len(self._clips) > self.max_clips:
            self._clips.popitem(last=False)
        return clip

    def flow(self, clip: int, source: int, target: int) -> np.ndarray:
        """Exact flow ``float32`` ``(2, S, S)`` from frame ``source`` to ``target`` of clip ``clip``."""
        key = (int(clip), int(source), int(target))
        if key in self._flows:
            self._flows.move_to_end(key)
            return self._flows[key]
        value = resize_flow(self._clip(clip).flow(source, target), self.data.size)
        self._flows[key] = value
        if len(self._flows) > self.max_flows:
            self._flows.popitem(last=False)
        return value

    def fan(self, clip: int) -> np.ndarray:
        """Valid-region mask ``bool`` ``(S, S)`` of clip ``clip`` (nearest-neighbour resize)."""
        return resize_images(self._clip(clip).fan_mask, self.data.size, mode="nearest") > 0.5
