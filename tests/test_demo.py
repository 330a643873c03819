"""echokdm.demo helpers (the full demo runs in tests/test_cli.py and .ci/run)."""

import numpy as np
import pytest

from echokdm.demo import _usable_source


def test_source_frame_needs_complete_keypoints():
    volumes = np.array([np.nan, 10.0, 9.0, 5.0, 3.0, 7.0, 11.0, np.nan])  # NaN: a keypoint missing
    assert _usable_source(volumes, 2) == 2  # complete: kept
    assert _usable_source(volumes, 0) == 1  # the largest complete frame nearby
    assert _usable_source(volumes, 7) == 6
    far = np.array([np.nan] * 5 + [4.0, 6.0])
    assert _usable_source(far, 0) == 6  # nothing within 2 frames: the largest anywhere
    with pytest.raises(ValueError, match="no frame"):
        _usable_source(np.full(4, np.nan), 1)
