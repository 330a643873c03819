"""Echo adapter: schema constants and the anti-aliased conditioning-image renderer."""

from __future__ import annotations

import numpy as np
import pytest

from echokdm.adapters import KeypointSchema, render_polylines, render_schema
from echokdm.adapters.echo import (
    ANNULUS_COLOUR,
    ECHO_SCHEMA,
    LEFT_WALL_COLOUR,
    LONG_AXIS_COLOUR,
    RIGHT_WALL_COLOUR,
    long_axis_line,
    render_keypoints,
)
from echokdm.geometry.volumes import long_axis_from_keypoints

T = (np.arange(20) + 0.5) / 20


def _box_keypoints(x_left=10.0, x_right=30.0, base_y=62.0, length=60.0):
    """Vertical walls at x_left / x_right from the base (y = base_y) up, chords every length/20 px."""
    left = np.stack([np.full(20, x_left), base_y - length * T], axis=1)
    right = np.stack([np.full(20, x_right), base_y - length * T], axis=1)[::-1]
    return np.concatenate([left, right]).astype(np.float32)  # (40, 2)


def test_schema_constants():
    assert ECHO_SCHEMA.n_keypoints == 40
    assert ECHO_SCHEMA.lines["left wall"] == tuple(range(20))
    assert ECHO_SCHEMA.lines["right wall"] == tuple(range(20, 40))
    assert ECHO_SCHEMA.lines["annulus"] == (0, 39)
    assert ECHO_SCHEMA.flip_permutation[0] == 39 and ECHO_SCHEMA.flip_permutation[39] == 0
    assert len(ECHO_SCHEMA.edges) == 19 + 19 + 1
    colours = [LEFT_WALL_COLOUR, RIGHT_WALL_COLOUR, ANNULUS_COLOUR, LONG_AXIS_COLOUR]
    assert len(set(colours)) == 4
    assert set(ECHO_SCHEMA.colours) == {"left wall", "right wall", "annulus", "long axis"}
    assert ECHO_SCHEMA.keypoint_names[0] == "left wall 0" and ECHO_SCHEMA.keypoint_names[39] == "right wall 0"


def test_vertical_walls_light_expected_columns_in_their_colours():
    kp = _box_keypoints()
    image = render_keypoints(kp, (64, 48))
    assert image.shape == (3, 64, 48) and image.dtype == np.float32
    rows = slice(10, 55)  # away from the wall ends
    np.testing.assert_array_equal(image[:, rows, 10], np.tile(np.array(LEFT_WALL_COLOUR, np.float32)[:, None], 45))
    np.testing.assert_array_equal(image[:, rows, 30], np.tile(np.array(RIGHT_WALL_COLOUR, np.float32)[:, None], 45))
    # integer positions and thickness 1: the neighbouring columns stay black
    for col in (9, 11, 29, 31):
        assert image[:, rows, col].max() == 0.0
    # the long axis runs down the middle (x = 20) in its colour
    np.testing.assert_allclose(image[:, 30, 20], LONG_AXIS_COLOUR)
    # everything else far from the lines is black
    assert image[:, :, 40:].max() == 0.0 and image[:, :, :8].max() == 0.0


def test_annulus_joins_keypoints_0_and_39():
    kp = _box_keypoints(base_y=50.0)  # keypoints 0 and 39 at y = 50 - 1.5 = 48.5
    image = render_keypoints(kp, (64, 48))
    # the annulus at y = 48.5 covers rows 48 and 49 by half each, in its colour
    np.testing.assert_allclose(image[:, 48, 15], np.array(ANNULUS_COLOUR) * 0.5, atol=1e-6)
    np.testing.assert_allclose(image[:, 49, 15], np.array(ANNULUS_COLOUR) * 0.5, atol=1e-6)
    assert image[:, 47, 15].max() == 0.0 and image[:, 50, 15].max() == 0.0


def test_subpixel_positions_are_anti_aliased():
    image = render_keypoints(_box_keypoints(x_left=10.5), (64, 48))
    np.testing.assert_allclose(image[0, 30, 10:12], [0.5, 0.5], atol=1e-6)
    image = render_keypoints(_box_keypoints(x_left=10.25), (64, 48))
    np.testing.assert_allclose(image[0, 30, 10:12], [0.75, 0.25], atol=1e-6)
    # coverage across the line sums to the thickness
    assert image[0, 30, 5:15].sum() == pytest.approx(1.0, abs=1e-6)


def test_diagonal_line_has_intermediate_values():
    line = np.array([[2.0, 3.0], [40.3, 27.9]])
    image = render_polylines([(line, (1.0, 1.0, 1.0))], (32, 48))
    values = image[0][image[0] > 0]
    assert ((values > 0.05) & (values < 0.95)).any()
    assert image[0, 3, 2] == pytest.approx(1.0)  # the start point is on the line


def test_thickness_widens_the_line():
    image = render_keypoints(_box_keypoints(), (64, 48), thickness=3.0)
    np.testing.assert_allclose(image[0, 30, 9:12], [1.0, 1.0, 1.0])
    assert image[0, 30, 8] == 0.0 and image[0, 30, 12] == 0.0
    with pytest.raises(ValueError, match="thickness"):
        render_keypoints(_box_keypoints(), (64, 48), thickness=0.0)


def test_nan_keypoint_breaks_the_line_and_is_never_drawn_at_origin():
    kp = _box_keypoints()  # chords every 3 px
    kp[10] = np.nan  # left wall at y = 62 - 60 * 0.525 = 30.5
    image = render_keypoints(kp, (64, 48))
    assert image[0, 30, 10] == 0.0 and image[0, 31, 10] == 0.0  # gap where keypoint 10 was
    assert image[0, 20, 10] == 1.0 and image[0, 40, 10] == 1.0  # the rest of the wall is drawn
    assert image[:, :3, :3].max() == 0.0  # nothing at the origin
    # the long axis is still fitted from the complete chords
    np.testing.assert_allclose(image[:, 20, 20], LONG_AXIS_COLOUR)


def test_missing_annulus_end_and_all_nan():
    kp = _box_keypoints(base_y=50.0)
    kp[0] = np.nan
    image = render_keypoints(kp, (64, 48))
    assert image[2].max() == 0.0  # no annulus (blue) without keypoint 0
    blank = render_keypoints(np.full((40, 2), np.nan, np.float32), (64, 48))
    assert blank.shape == (3, 64, 48) and blank.max() == 0.0


def test_long_axis_line_matches_volumes_and_handles_nan():
    kp = _box_keypoints()
    base, apex, _ = long_axis_from_keypoints(kp)
    np.testing.assert_allclose(long_axis_line(kp), np.stack([base, apex]))
    np.testing.assert_allclose(long_axis_line(kp), [[20.0, 62.0], [20.0, 2.0]], atol=1e-9)
    kp[[3, 20]] = np.nan  # chord 3 and chord 19 incomplete
    np.testing.assert_allclose(long_axis_line(kp), [[20.0, 62.0], [20.0, 2.0]], atol=1e-9)
    kp[:19] = np.nan
    assert np.isnan(long_axis_line(kp)).all()


def test_batch_render_equals_single_renders():
    kp = np.stack([_box_keypoints(), _box_keypoints(x_left=12.3, x_right=33.1)])
    images = render_keypoints(kp, (64, 48))
    assert images.shape == (2, 3, 64, 48)
    np.testing.assert_array_equal(images[1], render_keypoints(kp[1], (64, 48)))


def test_bad_shape_is_an_error():
    with pytest.raises(ValueError, match=r"\(\.\.\., 40, 2\)"):
        render_keypoints(np.zeros((39, 2)), (64, 48))


def test_generic_schema_plugs_in():
    tri = KeypointSchema(name="tri", keypoint_names=("a", "b", "c"), lines={"edge": (0, 1, 2)},
                         colours={"edge": (0.0, 0.5, 1.0)}, flip_permutation=(2, 1, 0))
    image = render_schema(tri, np.array([[2.0, 2.0], [10.0, 2.0], [10.0, 8.0]]), (12, 12))
    np.testing.assert_allclose(image[:, 2, 6], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(image[:, 5, 10], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="permutation"):
        KeypointSchema(name="bad", keypoint_names=("a", "b"), lines={}, colours={}, flip_permutation=(0, 0))
