"""Tests of echokdm.geometry.tracings: the EchoNet tracing of a keypoint set."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from echokdm.geometry.keypoints import mask_keypoints, tracing_keypoints
from echokdm.geometry.tracings import keypoints_to_tracing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _generated_loops import lv_keypoints


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_tracing_of_asymmetric_mask_keypoints_gives_them_back(angle):
    yy, xx = np.mgrid[0:112, 0:112]
    across = np.where(xx > 50, (xx - 50) / 24, (xx - 50) / 16)  # right wall wider than the left
    mask = ((across**2 + ((yy - 80) / 50) ** 2) < 1) & (yy <= 80)
    mask = ndimage.rotate(mask.astype(np.float32), angle, reshape=False, order=1) > 0.5  # tilted axis
    keypoints = mask_keypoints(mask).keypoints
    segments = keypoints_to_tracing(keypoints)
    assert segments.shape == (21, 4) and segments.dtype == np.float32
    np.testing.assert_allclose(tracing_keypoints(segments).keypoints, keypoints, atol=1e-3)


def test_tracing_needs_every_keypoint():
    keypoints = lv_keypoints()[0]
    keypoints[4] = np.nan
    with pytest.raises(ValueError, match="finite"):
        keypoints_to_tracing(keypoints)
