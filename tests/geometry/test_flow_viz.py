"""Flow pictures: the Middlebury colour wheel and the arrow plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from echokdm.geometry.flow_viz import (
    flow_to_color,
    flow_wheel_legend,
    make_color_wheel,
    plot_flow_arrows,
)


def _constant(dx, dy, h=4, w=5):
    flow = np.zeros((2, h, w), np.float32)
    flow[0], flow[1] = dx, dy
    return flow


def test_wheel_is_the_standard_55_colours():
    wheel = make_color_wheel()
    assert wheel.shape == (55, 3)
    # segment starts: red, yellow, green, cyan, blue, magenta (RY=15, YG=6, GC=4, CB=11, BM=13, MR=6)
    starts = [0, 15, 21, 25, 36, 49]
    expected = [[255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255], [255, 0, 255]]
    np.testing.assert_array_equal(wheel[starts], expected)
    np.testing.assert_array_equal(wheel[14], [255, np.floor(255 * 14 / 15), 0])
    np.testing.assert_array_equal(wheel[54], [255, 0, 255 - np.floor(255 * 5 / 6)])


def test_zero_flow_is_white():
    image = flow_to_color(np.zeros((2, 6, 7)))
    assert image.shape == (6, 7, 3) and image.dtype == np.uint8
    assert (image == 255).all()


def test_directions_have_the_wheel_hues():
    wheel = make_color_wheel().astype(np.uint8)
    # angle = atan2(-dy, -dx) / pi mapped onto wheel positions 0 ... 54
    cases = {(1.0, 0.0): 0, (-1.0, 0.0): 27, (0.0, 1.0): 13.5, (0.0, -1.0): 40.5}
    for (dx, dy), position in cases.items():
        color = flow_to_color(_constant(dx, dy), max_magnitude=1.0)[0, 0]
        lo, hi = wheel[int(np.floor(position))].astype(float), wheel[int(np.ceil(position)) % 55].astype(float)
        np.testing.assert_allclose(color, np.floor((lo + hi) / 2), atol=1, err_msg=f"flow {(dx, dy)}")
    np.testing.assert_array_equal(flow_to_color(_constant(1.0, 0.0), max_magnitude=1.0)[0, 0], [255, 0, 0])


def test_magnitude_sets_saturation():
    half = flow_to_color(_constant(1.0, 0.0), max_magnitude=2.0)[0, 0]
    np.testing.assert_array_equal(half, [255, 127, 127])  # half way from white to red
    # default normalisation: the largest vector in the field is fully saturated
    flow = np.zeros((2, 1, 3), np.float32)
    flow[0, 0] = [0.0, 2.0, 4.0]
    image = flow_to_color(flow)
    np.testing.assert_array_equal(image[0], [[255, 255, 255], [255, 127, 127], [255, 0, 0]])
    # beyond max_magnitude: same hue, darkened to 75 %
    np.testing.assert_array_equal(flow_to_color(_constant(3.0, 0.0), max_magnitude=1.0)[0, 0], [191, 0, 0])
    # scaling the flow and the maximum together changes nothing
    rng = np.random.default_rng(0)
    field = rng.normal(size=(2, 8, 8))
    np.testing.assert_array_equal(flow_to_color(field, 2.0), flow_to_color(10.0 * field, 20.0))


def test_non_finite_vectors_are_black_and_torch_is_accepted():
    flow = _constant(1.0, 0.0)
    flow[0, 1, 1] = np.nan
    image = flow_to_color(flow)
    np.testing.assert_array_equal(image[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(image[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(flow_to_color(torch.from_numpy(_constant(1.0, 0.0))), flow_to_color(
        _constant(1.0, 0.0)))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        flow_to_color(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="max_magnitude"):
        flow_to_color(np.zeros((2, 4, 4)), max_magnitude=0.0)
    with pytest.raises(ValueError, match="size"):
        flow_wheel_legend(2)


def test_legend_matches_flow_to_color():
    legend = flow_wheel_legend(21)
    assert legend.shape == (21, 21, 3) and legend.dtype == np.uint8
    np.testing.assert_array_equal(legend[10, 10], [255, 255, 255])  # centre: no motion
    np.testing.assert_array_equal(legend[10, 20], [255, 0, 0])  # right rim: +x, saturated
    np.testing.assert_array_equal(legend[0, 0], [255, 255, 255])  # outside the disc
    np.testing.assert_array_equal(legend[20, 10], flow_to_color(_constant(0.0, 1.0), 1.0)[0, 0])  # down = +y


def test_arrow_plot_draws_backward_flow_in_image_coordinates():
    flow = _constant(2.0, -1.0, 16, 24)
    image = np.random.default_rng(0).random((16, 24))
    fig, ax = plt.subplots()
    try:
        quiver = plot_flow_arrows(ax, flow, image=image, step=8)
        # arrows at the pixel centres 4, 12, 20 (x) and 4, 12 (y), vectors = the flow
        np.testing.assert_array_equal(np.unique(quiver.X), [4, 12, 20])
        np.testing.assert_array_equal(np.unique(quiver.Y), [4, 12])
        np.testing.assert_allclose(quiver.U, 2.0)
        np.testing.assert_allclose(quiver.V, -1.0)
        assert ax.get_ylim() == (15.5, -0.5)  # y down, as an image
        assert len(ax.images) == 1
        fig.canvas.draw()
    finally:
        plt.close(fig)
    fig, ax = plt.subplots()
    try:
        quiver = plot_flow_arrows(ax, torch.from_numpy(flow), step=5, scale=3.0)
        np.testing.assert_allclose(quiver.U, 6.0)
        assert len(ax.images) == 0
        with pytest.raises(ValueError, match="image"):
            plot_flow_arrows(ax, flow, image=np.zeros((8, 8)))
        with pytest.raises(ValueError, match="step"):
            plot_flow_arrows(ax, flow, step=0)
        fig.canvas.draw()
    finally:
        plt.close(fig)
