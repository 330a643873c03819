"""Tests of echokdm.io.fan: the ultrasound image of a still frame is not a scanner's flat banner."""

from __future__ import annotations

import numpy as np
import pydicom.data

from echokdm.io.dicom import read_dicom
from echokdm.io.fan import fan_apex_direction, source_fan, still_fan_mask


def _banner_and_sector(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A frame with a flat grey title bar with white text (larger than the image) above a speckled sector."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((200, 300), np.float32)
    frame[5:45, 5:295] = 0.3  # the banner: flat, 11,600 px
    for x in range(20, 280, 24):
        frame[18:30, x:x + 10] = 1.0  # its text
    yy, xx = np.mgrid[:200, :300]
    angle = np.degrees(np.arctan2(xx - 150, yy - 60))
    sector = (np.abs(angle) < 30) & (yy > 60) & (np.hypot(yy - 60, xx - 150) < 130)  # about 8,800 px
    frame[sector] = np.clip(rng.rayleigh(0.25, sector.sum()), 0.03, 1.0)
    return frame, sector


def test_still_fan_is_the_speckled_sector_not_a_larger_flat_banner():
    frame, sector = _banner_and_sector()
    mask = still_fan_mask(frame)
    assert (mask & sector).sum() > 0.95 * sector.sum()
    assert not mask[:50].any()  # nothing of the banner
    assert fan_apex_direction(mask) == "up"


def test_a_flat_drawn_sector_is_still_found():
    """A frame with no speckle anywhere (drawn shapes) keeps the largest region, as before."""
    _, sector = _banner_and_sector()
    frame = np.where(sector, 0.5, 0.0).astype(np.float32)
    frame[5:20, 5:100] = 0.5  # a smaller flat label
    mask = still_fan_mask(frame)
    assert (mask == sector).mean() > 0.99


def test_the_fan_of_pydicoms_obstetric_frame_is_below_its_title_bar():
    """pydicom's Philips frame (800 × 350, a curved-array image under a 60-pixel grey title bar with the date and
    site, its calibration regions drawn for another image size): the fan used to be the title bar."""
    cine = read_dicom(pydicom.data.get_testdata_file("examples_palette.dcm"))
    fan = source_fan(cine)
    assert fan.found and fan.method == "still"
    assert not fan.mask[:60].any()  # none of the title bar (its text would reach the outputs)
    rows, cols = np.nonzero(fan.mask)
    assert rows.min() >= 60 and 300 < cols.mean() < 500  # the image, in the middle of the frame
