"""Flow pictures: the Middlebury colour coding (Baker et al.) and arrow plots.

The colour coding is the one of Baker, Scharstein, Lewis, Roth, Black & Szeliski, "A database
and evaluation methodology for optical flow" (IJCV 2011), used by the KDM paper (its ref. [5])
and by most optical-flow papers: hue gives the direction of the flow vector, saturation its
magnitude, white is zero motion. The 55-colour wheel and its interpolation follow the
authors' ``computeColor`` code, so pictures compare directly with the literature.

Flows follow shared/DESIGN.md: channel 0 = dx (columns), channel 1 = dy (rows, y down), pixels,
on the target grid pointing into the source. The colour and the arrow at a target pixel
therefore show the displacement to where that pixel's content was in the source frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["make_color_wheel", "flow_to_color", "flow_wheel_legend", "plot_flow_arrows"]

#: Number of colours in each segment of the wheel: red-yellow, yellow-green, green-cyan,
#: cyan-blue, blue-magenta, magenta-red (Baker et al.; chosen to look perceptually even).
WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))


def make_color_wheel() -> np.ndarray:
    """The Middlebury colour wheel: ``float64`` ``(55, 3)`` RGB in [0, 255].

    Six segments of 15, 6, 4, 11, 13 and 6 colours; in each, one RGB channel ramps linearly
    (``floor(255 i / n)``) while another stays at 255: red -> yellow -> green -> cyan -> blue ->
    magenta -> back towards red.
    """
    # (channel held at 255, channel that ramps, ramp direction) for each segment, R=0 G=1 B=2
    ramps = ((0, 1, +1), (1, 0, -1), (1, 2, +1), (2, 1, -1), (2, 0, +1), (0, 2, -1))
    segments = []
    for (_, n), (full, ramp, direction) in zip(WHEEL_SEGMENTS, ramps, strict=True):
        seg = np.zeros((n, 3))
        up = np.floor(255.0 * np.arange(n) / n)
        seg[:, full] = 255.0
        seg[:, ramp] = up if direction > 0 else 255.0 - up
        segments.append(seg)
    return np.concatenate(segments)  # (55, 3)


def _check_flow_2hw(flow: Any) -> np.ndarray:
    """A single ``(2, H, W)`` flow as float64 numpy (torch tensors are detached and copied)."""
    if hasattr(flow, "detach"):
        flow = flow.detach().cpu().numpy()
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must have shape (2, H, W) with channels (dx, dy), got {flow.shape}")
    return flow


def flow_to_color(flow: Any, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a flow with the Middlebury wheel (Baker et al. 2011).

    Hue = direction of ``(dx, dy)`` (image coordinates, y down): ``+x`` is red, ``+y`` (down)
    orange-yellow, ``-x`` cyan, ``-y`` (up) blue-violet; see :func:`flow_wheel_legend`.
    Saturation = magnitude / ``max_magnitude``: white at zero motion, the pure wheel colour at
    ``max_magnitude``; vectors longer than that keep their hue and are darkened to 75 %, as in
    the original code. Non-finite vectors are black.

    Parameters
    ----------
    flow : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` flow, channel 0 = dx (columns), channel 1 = dy (rows), pixels.
    max_magnitude : float, optional
        Magnitude (pixels) shown fully saturated; default the largest finite magnitude in the
        field. Pass the same value to compare several flows.

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(H, W, 3)`` RGB image.

    Examples
    --------
    >>> import numpy as np
    >>> flow = np.zeros((2, 1, 3)); flow[0, 0, 1] = 1.0; flow[0, 0, 2] = 0.5   # 0, +x, +x/2
    >>> flow_to_color(flow)[0].tolist()
    [[255, 255, 255], [255, 0, 0], [255, 127, 127]]
    """
    flow = _check_flow_2hw(flow)
    finite = np.isfinite(flow).all(axis=0)  # (H, W)
    dx, dy = np.where(finite, flow, 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0: one hue for +x
    radius = np.hypot(dx, dy)
    if max_magnitude is None:
        max_magnitude = float(radius.max()) if radius.size else 0.0
    elif not (np.isfinite(max_magnitude) and max_magnitude > 0):
        raise ValueError(f"max_magnitude must be a positive number of pixels, got {max_magnitude!r}")
    scale = max_magnitude + np.finfo(np.float64).eps  # zero field: everything stays white
    rgb = _wheel_colors(dx / scale, dy / scale)  # (H, W, 3) in [0, 1]
    rgb[~finite] = 0.0
    return np.floor(255.0 * rgb).astype(np.uint8)


def _wheel_colors(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Baker et al.'s ``computeColor`` for normalised flow ``(u, v)``: float RGB ``(H, W, 3)`` in [0, 1]."""
    wheel = make_color_wheel() / 255.0  # (55, 3)
    n_colors = len(wheel)
    radius = np.hypot(u, v)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1.0) / 2.0 * (n_colors - 1)  # fractional index into the wheel
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n_colors
    frac = (position - k0)[..., None]
    color = (1.0 - frac) * wheel[k0] + frac * wheel[k1]  # (H, W, 3)
    inside = (radius <= 1.0)[..., None]
    saturated = 1.0 - radius[..., None] * (1.0 - color)  # towards white as the magnitude drops
    return np.where(inside, saturated, 0.75 * color)


def flow_wheel_legend(size: int = 101) -> np.ndarray:
    """The colour key of :func:`flow_to_color`: a disc whose pixel colour codes its offset from the centre.

    A pixel at ``(x, y)`` shows the flow ``(x - c, y - c)`` with ``c = (size - 1) / 2`` and
    ``max_magnitude = c``, so the direction from the centre is the direction of the flow in
    image coordinates (right = +x, down = +y) and the rim is fully saturated. Outside the disc
    is white.

    Parameters
    ----------
    size : int
        Side of the square legend, pixels (>= 3).

    Returns
    -------
    numpy.ndarray
        ``uint8`` ``(size, size, 3)`` RGB image.
    """
    if not isinstance(size, (int, np.integer)) or size < 3:
        raise ValueError(f"size must be an int >= 3, got {size!r}")
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([xx - centre, yy - centre])  # (2, size, size)
    legend = flow_to_color(flow, max_magnitude=centre)
    legend[np.hypot(*flow) > centre] = 255
    return legend


def plot_flow_arrows(ax: Any, flow: Any, image: Any = None, step: int = 8, *, color: str = "yellow",
                     scale: float = 1.0) -> Any:
    """Draw a flow as arrows on a matplotlib axes, in image coordinates (y down).

    One arrow every ``step`` pixels starts at the target pixel centre ``(x, y)`` and points to
    ``(x + scale * dx, y + scale * dy)``: where that pixel's content came from in the source
    frame (the flow points into the source, shared/DESIGN.md). With ``scale=1`` arrow lengths
    are true displacements in pixels.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes to draw on.
    flow : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` flow, dx then dy, pixels.
    image : array_like, optional
        ``(H, W)`` grayscale in [0, 1] (e.g. the target frame) or ``(H, W, 3)`` RGB shown under
        the arrows. Without it the axes only get image orientation and limits.
    step : int
        Spacing of the arrows, pixels; the first arrow is at ``step // 2``.
    color : str
        Arrow colour.
    scale : float
        Arrow length per pixel of displacement (raise it for small motions).

    Returns
    -------
    matplotlib.quiver.Quiver
        The arrows.
    """
    flow = _check_flow_2hw(flow)
    h, w = flow.shape[1:]
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    if image is not None:
        image = np.asarray(image)
        if image.shape[:2] != (h, w):
            raise ValueError(f"image {image.shape} must be (H, W) or (H, W, 3) with (H, W) = {(h, w)}")
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)  # y down, as an image
    ax.set_aspect("equal")
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    dx, dy = flow[0, ys, xs], flow[1, ys, xs]
    # angles="xy" and scale_units="xy": arrows measured in data (pixel) units, so they follow
    # the inverted y axis and a flow (dx, dy) is drawn as that displacement
    return ax.quiver(xs, ys, scale * dx, scale * dy, angles="xy", scale_units="xy", scale=1.0, color=color)
