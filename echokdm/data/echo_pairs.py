"""KDM training clips of echo manifests: the echo adapter's data hook.

For each manifest row (:func:`echo_clip_loader`): the clip is read (:func:`~echokdm.data.manifest.read_clip`),
its 40 keypoints per frame taken from the phantom ground truth (``data.keypoints: phantom``) or
derived from every frame's mask (``masks``: the clip's own masks, or ``echokdm segment`` output in
``data.segmentation``), and its frame pairs and flows from the phantom's exact flows (``data.flows:
phantom``), an ``echokdm flow`` cache (``cache``) or a thin-plate spline through the keypoints
(``tps``). Everything is returned at the working size ``data.size`` as a
:class:`~echokdm.data.pairs.TrainingClip`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.data.ground_truth import ground_truth_files
from echokdm.data.manifest import clip_file_stem
from echokdm.data.pairs import (
    TrainingClip,
    flows_at_size,
    random_pairs,
    read_flow_file,
    scale_keypoints,
)
from echokdm.geometry.resize import resize_flow, resize_images

__all__ = ["echo_clip_keypoints", "echo_clip_loader"]


def _phantom_clip(row, truth: dict[str, Path]):
    from echokdm.data.phantom import load_npz

    npz = truth.get(str(row["clip_id"]))
    if npz is None:
        raise ValueError("not in the phantom ground truth (data.keypoints/flows: phantom needs a phantom cohort)")
    return load_npz(npz)


def _mask_keypoints(cine, row, segmentation: str | None) -> np.ndarray:
    """Keypoints ``(T, 40, 2)`` of every frame's mask (the clip's, or ``echokdm segment`` output: the network's
    masks, with the apex on the side of the clip's sector apex, as ``echokdm ef`` reads them)."""
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.io.fan import apex_direction_with_fan, fan_mask_or_none

    masks = cine.masks if cine.labelled_frames is None else None
    side = "auto"
    if segmentation:
        path = Path(segmentation) / "masks" / f"{clip_file_stem(str(row['clip_id']))}.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no predicted masks for this clip (echokdm segment)")
        with np.load(path) as saved:
            masks = saved["network"] if "network" in saved.files else saved["masks"]
        side = apex_direction_with_fan(fan_mask_or_none(cine), "auto")
    if masks is None:
        raise ValueError("data.keypoints: masks needs a mask on every frame; set data.segmentation to the "
                         "output of echokdm segment (echokdm evaluate: --masks DIR, or --segmentation MODEL to "
                         "segment the clip there)")
    return sequence_keypoints(masks, apex_direction=side).keypoints


def echo_clip_keypoints(cine, row, keypoints: str, truth: dict[str, Path], size: int, *,
                        segmentation: str | None = None, need_truth: bool = False):
    """The 40 keypoints of every frame of a clip at the working size, and its phantom ground truth.

    Parameters
    ----------
    cine : Cine
        The clip, read from ``row``.
    row : pandas.Series
        Its manifest row.
    keypoints : {"phantom", "masks"}
        The phantom's exact keypoints, or keypoints derived from every frame's mask (the clip's
        own, or ``echokdm segment`` output in ``segmentation``).
    truth : dict
        ``clip_id → ground-truth .npz`` (:func:`~echokdm.data.ground_truth.ground_truth_files`).
    size : int
        Working size: keypoints are mapped from the clip's ``(H, W)`` to ``size × size``.
    need_truth : bool
        Load the phantom clip even for ``keypoints="masks"`` (for its exact flows).

    Returns
    -------
    (numpy.ndarray, PhantomClip or None)
        ``float32`` ``(T, 40, 2)`` and the phantom clip (None unless loaded).
    """
    phantom = _phantom_clip(row, truth) if keypoints == "phantom" or need_truth else None
    kp = phantom.keypoints if keypoints == "phantom" else _mask_keypoints(cine, row, segmentation)
    return scale_keypoints(kp, cine.frames.shape[-2:], size), phantom


def echo_clip_loader(manifest_path: str | os.PathLike, data: Any) -> Callable[[pd.Series, np.random.Generator],
                                                                               TrainingClip]:
    """``loader(row, rng) -> TrainingClip`` for the rows of an echo manifest (see the module docstring).

    ``data`` is the training config's ``data`` section (``size``, ``keypoints``, ``flows``,
    ``flow_cache``, ``segmentation``, ``pairs_per_clip``). Random pairs draw from ``rng``.
    """
    truth = ground_truth_files(manifest_path)
    cache = Path(data.flow_cache) if data.flow_cache else None
    size = data.size

    def load(row: pd.Series, rng: np.random.Generator) -> TrainingClip:
        from echokdm.data.manifest import read_clip

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cine = read_clip(row)
        kp, phantom = echo_clip_keypoints(cine, row, data.keypoints, truth, size, segmentation=data.segmentation,
                                          need_truth=data.flows == "phantom")
        if data.flows == "cache":
            pairs, flows = read_flow_file(cache / "flows" / f"{clip_file_stem(str(row['clip_id']))}.npz")
            flows = flows_at_size(flows, size)
        else:
            pairs = random_pairs(cine.n_frames, data.pairs_per_clip, rng)
            if data.flows == "phantom":
                flows = np.stack([resize_flow(phantom.flow(int(a), int(b)), size) for a, b in pairs])
                flows = flows.astype(np.float16)
            else:
                from echokdm.data.pairs import tps_pair_flows

                flows = tps_pair_flows(kp, pairs, size)
        return TrainingClip(resize_images(cine.frames, size, dtype=np.uint8), kp, pairs, flows)

    return load
