import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _shapes import simpson_analytic, truncated_ellipse

from echokdm.geometry.keypoints import (
    CHORD_FRACTIONS,
    KeypointError,
    keypoints_to_polygon,
    mask_keypoints,
)


def _cases(n_per=2, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    for tilt in np.linspace(-30, 30, 7):
        for cut in (0.0, 8.0, 14.0):
            for _ in range(n_per):
                size = (int(112 * scale), int(112 * scale))
                centre = ((56 + rng.uniform(-3, 3)) * scale, (62 + rng.uniform(-3, 3)) * scale)
                a, b = rng.uniform(30, 42) * scale, rng.uniform(13, 20) * scale
                yield tilt, truncated_ellipse(size, centre, a, b, cut * scale, tilt)


def test_chord_fractions_follow_the_design():
    np.testing.assert_allclose(CHORD_FRACTIONS, (np.arange(20) + 0.5) / 20)


def test_keypoints_match_analytic_truncated_ellipses_at_112():
    errors, vol_errors = [], []
    for _, (mask, kp, apex, annulus) in _cases():
        geo = mask_keypoints(mask)
        assert geo.keypoints.shape == (40, 2) and geo.keypoints.dtype == np.float32
        assert not np.isnan(geo.keypoints).any() and geo.flags == ()
        err = np.linalg.norm(geo.keypoints - kp, axis=1)
        errors.append(err)
        assert err.mean() < 0.6, err
        assert np.linalg.norm(geo.apex - apex) < 1.0
        assert np.linalg.norm(geo.annulus - annulus, axis=1).max() < 1.2  # ordered left, right
        v_true = simpson_analytic(kp, apex, annulus)
        v_est = simpson_analytic(geo.keypoints.astype(float), geo.apex, geo.annulus)
        vol_errors.append(abs(v_est / v_true - 1))
    errors = np.concatenate(errors)
    # the mask is only known to the pixel: 0.5 px on average, volume within 2 % typically
    assert errors.mean() < 0.35 and np.percentile(errors, 95) < 0.75
    assert np.mean(vol_errors) < 0.01 and np.percentile(vol_errors, 90) < 0.02 and max(vol_errors) < 0.04


def test_keypoints_within_half_pixel_at_224():
    for _, (mask, kp, apex, annulus) in _cases(n_per=1, seed=1, scale=2.0):
        geo = mask_keypoints(mask)
        err = np.linalg.norm(geo.keypoints - kp, axis=1)
        assert err.mean() < 0.5 and np.median(err) < 0.5
        v_true = simpson_analytic(kp, apex, annulus)
        assert abs(simpson_analytic(geo.keypoints.astype(float), geo.apex, geo.annulus) / v_true - 1) < 0.02


def test_keypoint_order_left_wall_then_right_wall():
    mask, kp, apex, annulus = truncated_ellipse(tilt_deg=20)
    geo = mask_keypoints(mask)
    base = geo.annulus.mean(axis=0)
    axis = geo.apex - base
    rel = geo.keypoints - base
    cross = axis[0] * rel[:, 1] - axis[1] * rel[:, 0]
    assert (cross[:20] < 0).all() and (cross[20:] > 0).all()
    along = rel @ axis / np.linalg.norm(axis)
    assert (np.diff(along[:20]) > 0).all() and (np.diff(along[20:]) < 0).all()  # base -> apex -> base
    assert np.allclose(keypoints_to_polygon(geo.keypoints), geo.keypoints)


def test_annulus_is_the_flat_side_even_when_apex_points_down_or_sideways():
    mask, kp, apex, annulus = truncated_ellipse(tilt_deg=0)
    flipped = mask[::-1]  # apex down
    geo = mask_keypoints(flipped, apex_direction="down")
    assert abs(geo.apex[1] - (flipped.shape[0] - 1 - apex[1])) < 1.0
    geo = mask_keypoints(np.ascontiguousarray(mask.T), apex_direction="left")  # apex to the left
    assert abs(geo.apex[0] - apex[1]) < 1.0
    # without a direction hint the longest flat side is taken: still the base for this shape
    assert np.linalg.norm(mask_keypoints(mask, apex_direction=None).apex - apex) < 1.0


def test_boundary_noise_keeps_keypoints_close():
    from scipy import ndimage

    mask, kp, apex, annulus = truncated_ellipse(tilt_deg=-10)
    rng = np.random.default_rng(0)
    edge = ndimage.binary_dilation(mask) ^ ndimage.binary_erosion(mask)
    noisy = mask.copy()
    flip = edge & (rng.random(mask.shape) < 0.15)
    noisy[flip] = 1 - noisy[flip]
    noisy = ndimage.binary_fill_holes(noisy).astype(np.uint8)
    labels, _ = ndimage.label(noisy)
    noisy = (labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1).astype(np.uint8)
    geo = mask_keypoints(noisy)
    assert np.nanmean(np.linalg.norm(geo.keypoints - kp, axis=1)) < 1.2


def test_bad_masks_raise_clear_errors_or_flag():
    mask, *_ = truncated_ellipse()
    with pytest.raises(KeypointError, match="empty"):
        mask_keypoints(np.zeros_like(mask))
    with pytest.raises(KeypointError, match="binary"):
        mask_keypoints(mask * 2 + (mask == 0) * 3)
    with pytest.raises(KeypointError, match="too small"):
        mask_keypoints(truncated_ellipse(a=4, b=2, cut=1)[0])
    with pytest.raises(KeypointError, match="2-D"):
        mask_keypoints(mask[None])
    two = mask.copy()
    two[2:6, 2:6] = 1
    geo = mask_keypoints(two)
    assert any("several components" in f for f in geo.flags)
    holed = mask.copy()
    holed[60:63, 55:58] = 0
    geo = mask_keypoints(holed)
    assert any("holes filled" in f for f in geo.flags)
    edge, *_ = truncated_ellipse(centre=(56, 30), a=38, b=17, cut=10)  # apex cut by the top border
    assert "touches border" in mask_keypoints(edge).flags


def _tracing_from_shape(kp, apex, annulus, n_chords=20, offset=0.0, flip=False):
    """EchoNet-like tracing of an analytic shape: axis row then chords at their own positions."""
    base = annulus.mean(axis=0)
    axis = apex - base
    t = np.linspace(0.05, 0.95, n_chords) + offset
    # chord ends by interpolating the analytic keypoints along the axis
    a = axis / np.linalg.norm(axis)
    left, right = kp[:20], kp[::-1][:20]
    tl = (left - base) @ a / np.linalg.norm(axis)
    rows = [np.concatenate([apex, base]) if not flip else np.concatenate([base, apex])]
    for tj in t:
        lx, ly = np.interp(tj, tl, left[:, 0]), np.interp(tj, tl, left[:, 1])
        rx, ry = np.interp(tj, tl, right[:, 0]), np.interp(tj, tl, right[:, 1])
        rows.append([rx, ry, lx, ly] if flip else [lx, ly, rx, ry])
    return np.array(rows[:1] + (rows[1:][::-1] if flip else rows[1:]))


def test_tracing_keypoints_resample_to_design_chords():
    from echokdm.geometry.keypoints import tracing_keypoints

    _, kp, apex, annulus = truncated_ellipse(size=(224, 224), centre=(112, 120), a=76, b=34, cut=14, tilt_deg=12)
    for flip in (False, True):
        geo = tracing_keypoints(_tracing_from_shape(kp, apex, annulus, flip=flip))
        np.testing.assert_allclose(geo.apex, apex, atol=1e-4)  # the traced axis is kept
        np.testing.assert_allclose(geo.basal_centre, annulus.mean(axis=0), atol=0.3)
        err = np.linalg.norm(geo.keypoints - kp, axis=1)
        assert np.median(err) < 0.1 and err[1:19].max() < 0.5 and err[21:39].max() < 0.5
        # apical pair: between the last traced chord and the apex the wall is a straight line
        assert err.max() < 3.0


def test_keypoints_to_mask_matches_the_source_mask():
    from echokdm.geometry.keypoints import keypoints_to_mask

    mask, kp, *_ = truncated_ellipse(tilt_deg=-12)
    rebuilt = keypoints_to_mask(mask_keypoints(mask).keypoints, mask.shape)
    dice = 2 * (rebuilt & mask).sum() / (rebuilt.sum() + mask.sum())
    assert dice > 0.95 and rebuilt.dtype == np.uint8


def test_slanted_staircase_base_is_found_whole():
    """A segmentation mask (from the demo model on a held-out phantom frame) whose basal side is a
    pixel staircase at about 15°: its inner corners dip more than the flatness tolerance below the
    hull's base line. The base must still run hinge to hinge (it was cut at x = 45, leaving the
    most basal left chord without a wall)."""
    from echokdm.geometry.keypoints import _close_gaps

    mask = np.load(Path(__file__).parent / "data" / "staircase_base_mask.npz")["mask"]
    geo = mask_keypoints(mask)
    assert not geo.flags and np.isfinite(geo.keypoints).all()
    left, right = geo.annulus
    assert left[0] < 36 and right[0] > 62  # the mask's base runs from x ≈ 33.7 to 65
    # the keypoints sit on the mask's boundary
    inside = mask[np.clip(np.round(geo.keypoints[:, 1]).astype(int), 0, 111),
                  np.clip(np.round(geo.keypoints[:, 0]).astype(int), 0, 111)]
    assert inside.mean() > 0.4
    cyclic = np.array([1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0], bool)
    assert _close_gaps(cyclic, 3).astype(int).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1]
