import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _shapes import simpson_analytic, truncated_ellipse

from echokdm.geometry.keypoints import mask_keypoints
from echokdm.geometry.volumes import cardiac_cycle, long_axis_from_keypoints, simpson_volume


def test_simpson_from_keypoints_equals_the_disc_sum_with_known_axis():
    _, kp, apex, annulus = truncated_ellipse(tilt_deg=17, cut=6)
    base, ap, length = long_axis_from_keypoints(kp)
    np.testing.assert_allclose(base, annulus.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(ap, apex, atol=1e-6)
    assert float(simpson_volume(kp)) == pytest.approx(simpson_analytic(kp, apex, annulus), rel=1e-9)


def test_simpson_units_and_batches():
    _, kp, *_ = truncated_ellipse()
    px3 = float(simpson_volume(kp))
    ml = float(simpson_volume(kp, spacing_mm=(0.5, 0.5)))
    assert ml == pytest.approx(px3 * 0.125 / 1000)
    batch = simpson_volume(np.stack([kp, kp * 2]))
    assert batch.shape == (2,) and batch[1] == pytest.approx(8 * batch[0])
    kp_nan = kp.copy()
    kp_nan[5] = np.nan
    assert np.isnan(simpson_volume(kp_nan))


def test_half_ellipsoid_volume_converges_to_analytic():
    # half prolate spheroid: V = 2/3 * pi * b^2 * a; Simpson with 20 discs is within ~0.5 %
    _, kp, *_ = truncated_ellipse(size=(400, 400), centre=(200, 250), a=150, b=60, cut=0)
    assert float(simpson_volume(kp)) == pytest.approx(2 / 3 * np.pi * 60**2 * 150, rel=0.005)


def _curve(ef, n_beats, fps=50, hr=75, phase=0.0):
    t = np.arange(int(n_beats * 60 / hr * fps)) / fps
    edv = 120.0
    return edv * (1 - ef / 100 * 0.5 * (1 - np.cos(2 * np.pi * (t * hr / 60 + phase))))


def test_cardiac_cycle_finds_each_beat():
    v = _curve(55, 3.2)
    cyc = cardiac_cycle(v, fps=50)
    assert cyc.n_beats == 3
    np.testing.assert_allclose(cyc.ef, 55, atol=0.5)
    assert (cyc.ed_frames < cyc.es_frames).all()
    assert cyc.ef_mean == pytest.approx(55, abs=0.5)


def test_cardiac_cycle_less_than_one_beat_is_flagged():
    v = _curve(40, 0.45)  # starts at ED, ends just before ES
    cyc = cardiac_cycle(v, fps=50)
    assert cyc.n_beats == 1 and cyc.flags
    with pytest.raises(ValueError, match="1-D"):
        cardiac_cycle(np.zeros((2, 5)))


def test_ef_from_masks_of_a_shrinking_shape():
    vols = []
    for s in np.concatenate([np.linspace(1, 0.8, 10), np.linspace(0.8, 1, 10)]):
        mask, *_ = truncated_ellipse(a=38 * s, b=17 * s, cut=10 * s)
        vols.append(float(simpson_volume(mask_keypoints(mask).keypoints)))
    cyc = cardiac_cycle(np.array(vols))
    assert cyc.n_beats == 1
    assert cyc.ef[0] == pytest.approx(100 * (1 - 0.8**3), abs=2.5)


def test_a_clip_of_less_than_a_beat_with_a_noisy_dip_still_gives_an_ef():
    """pydicom's real cine, segmented: filling from frame 0, a one-frame dip at 13 (rejected as a
    0.03 s systole), end-diastole near 17, the clip ends in systole. The EF comes from the largest
    volume swing, flagged, instead of no EF at all."""
    v = np.array([10.2, 10.3, 10.2, 10.4, 10.6, 11.9, 13.4, 14.6, 16.5, 15.9, 15.5, 15.6, 17.4, 14.5,
                  15.3, 15.6, 16.3, 17.4, 16.7, 16.3, 15.1, 15.0, 14.0, 14.0, 13.3, 13.8, 13.5, 12.6, 12.7, 12.5])
    for smooth_s in (0.02, 0.05):  # with light smoothing the dip is a rejected beat; with the default, no beat
        cyc = cardiac_cycle(v, fps=30, smooth_s=smooth_s)
        assert len(cyc.ef) == 1 and 30 < cyc.ef[0] < 45  # (17.4 - 10.2) / 17.4 = 41 % on the raw curve
        assert cyc.es_frames[0] <= 4 and 12 <= cyc.ed_frames[0] <= 18  # the filling: ES at the start, ED later
        assert any("no complete beat accepted" in f for f in cyc.flags)
    assert any("rejected beat" in f for f in cardiac_cycle(v, fps=30, smooth_s=0.02).flags)


def test_a_noisy_dip_of_a_network_volume_curve_is_not_a_beat():
    """The real cine segmented by seg_phantom_112: a 4-frame dip (ED 9 -> 13, 'EF 10 %') in a curve
    that fills from 10 to 17 mL and empties to 12.5 is segmentation noise; the default smoothing
    (0.05 s) does not take it for a beat."""
    v = np.array([10.0, 10.1, 10.1, 10.4, 11.1, 12.5, 13.8, 15.1, 16.6, 17.4, 15.6, 15.4, 16.9, 14.2, 14.9, 14.7,
                  15.8, 16.6, 16.6, 16.2, 14.8, 14.1, 13.8, 13.6, 13.0, 13.6, 13.6, 12.8, 12.7, 12.5])
    assert cardiac_cycle(v, fps=30, smooth_s=0.02).ef[0] < 15  # the old default took the dip
    cyc = cardiac_cycle(v, fps=30)
    assert len(cyc.ef) == 1 and 35 < cyc.ef[0] < 45
