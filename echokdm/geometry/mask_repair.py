"""A segmentation network's LV masks repaired the way the keypoints read them.

The keypoints of a clip (:func:`~echokdm.geometry.temporal.sequence_keypoints`) already survive a
network's faults: they keep the largest component, fill holes, cut a leak into the atrium at its
neck, and recognise a leak through the wide-open mitral valve that has no neck by the clip's long
axis. The masks themselves did not: ``echokdm segment`` wrote the network's output, so a mask that
runs on through the open valve into the atrium (``seg_phantom_112`` on pydicom's real cine, frames
7-12 and 18-19) was scored, shown and passed on as if the atrium were LV. :func:`repair_masks`
applies the same repairs to the masks:

* every frame: the largest component, holes filled (no smoothing of the border);
* frames where the keypoints found a leak (cut at its neck, or through the open valve) or borrowed
  their landmarks from the neighbouring frames: the mask is cut along the clip's annulus line at that
  frame (the line through the two smoothed hinge points, interpolated from the closed-valve frames on
  either side for an open-valve leak), keeping the apical side, which is how a tracer closes the LV;
  a cut that would remove less than 2 % of the mask is not made.

Nothing else changes: a frame without a leak keeps its pixels. All coordinates ``(x, y)`` pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["RepairedMasks", "repair_masks", "LEAK_FLAGS"]

#: Flags of :func:`~echokdm.geometry.temporal.sequence_keypoints` after which a frame's mask is cut at its
#: annulus line: a leak cut at its neck, a leak through the open valve, and landmarks interpolated from the
#: neighbouring frames (the keypoints measured the frame with that annulus; a frame whose own was fine, such
#: as one that lost its apex, loses less than ``MIN_CUT`` and is left alone).
LEAK_FLAGS = ("leak beyond the base cut", "open mitral valve", "outlier landmarks")
#: Smallest fraction of a mask's pixels a cut must remove to be made.
MIN_CUT = 0.02


@dataclasses.dataclass
class RepairedMasks:
    """Masks repaired by :func:`repair_masks`.

    Attributes
    ----------
    masks : numpy.ndarray
        ``uint8`` ``(T, H, W)``.
    cut : numpy.ndarray
        ``bool`` ``(T,)``: frames cut at the annulus line.
    removed : numpy.ndarray
        ``int64`` ``(T,)``: pixels removed per frame (other components, the leak).
    sequence : SequenceKeypoints
        The keypoints the repair followed.
    """

    masks: np.ndarray
    cut: np.ndarray
    removed: np.ndarray
    sequence: object

    @property
    def note(self) -> str:
        """One line for a report: how many frames were cut, or ``""``."""
        n = int(self.cut.sum())
        if not n:
            return ""
        frames = np.flatnonzero(self.cut)
        shown = ", ".join(str(int(t)) for t in frames[:12]) + (", …" if n > 12 else "")
        return (f"{n} of {len(self.cut)} frame(s) cut at the annulus line their keypoints use (a leak into the "
                f"atrium, or landmarks from the neighbouring frames; frames {shown}; "
                f"{int(self.removed[self.cut].sum())} px removed)")


def _apical_side(shape: tuple[int, int], hinges: np.ndarray, apex: np.ndarray) -> np.ndarray | None:
    """``bool`` ``(H, W)``: pixels on the apex's side of the line through the two hinges (half a pixel of slack)."""
    h1, h2 = np.asarray(hinges, np.float64)
    direction = h2 - h1
    length = float(np.linalg.norm(direction))
    if not (np.isfinite(length) and length > 1e-6 and np.isfinite(apex).all()):
        return None
    normal = np.array([-direction[1], direction[0]]) / length
    if float((np.asarray(apex, np.float64) - h1) @ normal) < 0:
        normal = -normal
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (xx - h1[0]) * normal[0] + (yy - h1[1]) * normal[1] >= -0.5


def repair_masks(masks: np.ndarray, *, apex_direction="auto", sequence=None) -> RepairedMasks:
    """The masks with the repairs their keypoints made (module docstring).

    Parameters
    ----------
    masks : numpy.ndarray
        ``(T, H, W)`` binary LV masks of consecutive frames of one clip (a network's output).
    apex_direction : str or (dx, dy)
        As in :func:`~echokdm.geometry.temporal.sequence_keypoints`; for a network's masks of a
        scanner file pass the sector's (:func:`echokdm.io.fan.apex_direction_with_fan`).
    sequence : SequenceKeypoints, optional
        The clip's keypoints when already measured (``apex_direction`` is then not used).

    Returns
    -------
    RepairedMasks
    """
    from echokdm.geometry.keypoints import clean_mask
    from echokdm.geometry.temporal import sequence_keypoints

    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (T, H, W), got {masks.shape}")
    if sequence is None:
        sequence = sequence_keypoints((masks != 0).astype(np.uint8), apex_direction=apex_direction)
    out = np.zeros(masks.shape, np.uint8)
    cut = np.zeros(len(masks), bool)
    removed = np.zeros(len(masks), np.int64)
    for t, mask in enumerate(masks):
        binary = mask != 0
        if not binary.any():
            continue
        repaired = clean_mask(binary, smooth=False)[0]  # largest component, holes filled
        if any(flag in sequence.flags[t] for flag in LEAK_FLAGS):
            side = _apical_side(binary.shape, sequence.annulus[t], sequence.apex[t])
            if side is not None and (repaired & side).any():
                kept = clean_mask(repaired & side, smooth=False)[0]
                if kept.sum() < (1.0 - MIN_CUT) * repaired.sum():  # a sliver at the line is left alone
                    cut[t], repaired = True, kept
        out[t] = repaired
        removed[t] = int(binary.sum()) - int(repaired.sum())
    return RepairedMasks(masks=out, cut=cut, removed=removed, sequence=sequence)
