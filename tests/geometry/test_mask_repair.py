"""Masks repaired the way the keypoints read them (echokdm.geometry.mask_repair)."""

from __future__ import annotations

import numpy as np
import pytest

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.mask_faults import degrade_masks
from echokdm.geometry.mask_repair import repair_masks


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(7, 1), n_beats=2.0, fps=50.0, size=112)


@pytest.mark.parametrize("leak", ["leak", "open_valve"])
def test_leaking_frames_are_cut_back_to_the_lv(clip, leak):
    bad = degrade_masks(clip.masks, clip.keypoints, seed=701, faults=("jagged", "holes", leak))
    leaking = [t for t, f in enumerate(bad.faults) if leak in f]
    repaired = repair_masks(bad.masks)
    assert repaired.masks.shape == bad.masks.shape and repaired.masks.dtype == np.uint8
    from scipy import ndimage

    for t in range(len(bad.masks)):  # nothing added but filled holes
        assert not (repaired.masks[t].astype(bool) & ~ndimage.binary_fill_holes(bad.masks[t])).any(), t
    assert repaired.cut.sum() >= 0.4 * len(leaking)
    assert set(np.flatnonzero(repaired.cut)) <= set(leaking)  # only leaking frames are cut
    before = np.mean([_dice(bad.masks[t], clip.masks[t]) for t in leaking])
    after = np.mean([_dice(repaired.masks[t], clip.masks[t]) for t in leaking])
    assert after > before + 0.08, (before, after)
    cut = np.flatnonzero(repaired.cut)
    assert np.mean([_dice(repaired.masks[t], clip.masks[t]) for t in cut]) > 0.85
    assert "cut at the annulus line" in repaired.note and (repaired.removed[cut] > 0).all()


def test_masks_without_a_leak_keep_their_pixels(clip):
    bad = degrade_masks(clip.masks, clip.keypoints, seed=3, faults=("jagged",))
    repaired = repair_masks(bad.masks)
    assert not repaired.cut.any() and repaired.note == ""
    # only specks and pinholes of the jagged border change
    changed = (repaired.masks != bad.masks).sum(axis=(1, 2))
    assert (changed <= 0.01 * bad.masks.sum(axis=(1, 2))).all(), changed.max()


def test_other_components_and_holes_go_and_empty_frames_stay_empty(clip):
    masks = clip.masks[:6].astype(np.uint8).copy()
    masks[0, 2:6, 2:6] = 1  # a speck away from the LV
    ys, xs = np.nonzero(clip.masks[1])
    masks[1, int(ys.mean()), int(xs.mean())] = 0  # a hole
    masks[2] = 0
    repaired = repair_masks(masks)
    assert not repaired.masks[0, 2:6, 2:6].any() and repaired.removed[0] == 16
    assert repaired.masks[1, int(ys.mean()), int(xs.mean())] == 1 and repaired.removed[1] == -1
    assert not repaired.masks[2].any()
    assert np.array_equal(repaired.masks[3:], masks[3:])
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        repair_masks(masks[0])
