"""Pictures the app shows: a clip with its LV mask, keypoints and volume curve, and the source frame.

Drawing only (the measurements come from :mod:`echokdm.app.clip`): the frames are enlarged for
the screen (:func:`echokdm.geometry.resize.resize_images`), the keypoints drawn with the echo
adapter's renderer (:func:`echokdm.adapters.echo.render_keypoints`, its colours) and the videos
written with :func:`echokdm.io.video.write_video`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

__all__ = ["DISPLAY_SIZE", "display_scale", "display_to_frame", "frame_picture", "nearest_keypoint", "overlay_frames",
           "volume_strip", "write_overlay_video"]

#: The long side of the frames shown, in pixels (small clips are enlarged to about this).
DISPLAY_SIZE = 336
_MASK_COLOUR = np.array([0.0, 0.75, 1.0], np.float32)  # LV blood pool tint (cyan)
_MASK_ALPHA = 0.3
_CURSOR_COLOUR = np.array([1.0, 1.0, 0.0], np.float32)


def display_scale(shape: tuple[int, int]) -> int:
    """The integer enlargement of frames of ``(H, W)`` for the screen (1 for frames already large)."""
    return max(1, math.ceil(DISPLAY_SIZE / max(shape)))


def _to_display(keypoints: np.ndarray, scale: int) -> np.ndarray:
    """``(..., 2)`` (x, y) pixels → the enlarged grid (pixel centres)."""
    return (np.asarray(keypoints, np.float32) + 0.5) * scale - 0.5


def overlay_frames(frames: np.ndarray, masks: np.ndarray | None = None,
                   keypoints: np.ndarray | None = None) -> np.ndarray:
    """Frames ``(T, H, W)`` in [0, 1] as ``float32`` RGB ``(T, sH, sW, 3)`` with the LV mask tinted and
    the 40 keypoints drawn (``masks`` ``(T, H, W)``, ``keypoints`` ``(T, 40, 2)``; either may be None)."""
    from echokdm.adapters.echo import render_keypoints
    from echokdm.geometry.resize import resize_images

    frames = np.clip(np.asarray(frames, np.float32), 0.0, 1.0)
    t, h, w = frames.shape
    s = display_scale((h, w))
    big = (h * s, w * s)
    rgb = np.repeat(resize_images(frames, big)[..., None], 3, axis=-1)  # (T, sH, sW, 3)
    if masks is not None:
        tint = resize_images(np.asarray(masks, np.float32), big) > 0.5  # (T, sH, sW)
        rgb[tint] = rgb[tint] * (1 - _MASK_ALPHA) + _MASK_ALPHA * _MASK_COLOUR
    if keypoints is not None:
        for i in range(t):
            if np.isfinite(keypoints[i]).any():
                lines = np.moveaxis(render_keypoints(_to_display(keypoints[i], s), big, thickness=1.5), 0, -1)
                alpha = lines.max(axis=-1, keepdims=True)  # (sH, sW, 1) line coverage
                rgb[i] = rgb[i] * (1 - alpha) + lines
    return np.clip(rgb, 0.0, 1.0)


def volume_strip(volumes: np.ndarray, width: int, *, ed_frames=(), es_frames=(), units: str = "mL",
                 height: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """The volume curve drawn once: ``(strip float32 (height, width, 3), x pixel of each frame (T,))``.

    ED frames are marked ▲ (red), ES frames ▼ (blue); :func:`overlay_frames` callers draw a cursor at
    ``x[t]`` on frame ``t``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    volumes = np.asarray(volumes, np.float64)
    t = np.arange(len(volumes))
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.3, 0.88, 0.62), facecolor="black")
    ax.plot(t, volumes, "-", color="white", lw=1.2)
    for frames, marker, colour in ((ed_frames, "^", "tab:red"), (es_frames, "v", "tab:blue")):
        frames = [f for f in frames if 0 <= f < len(volumes) and np.isfinite(volumes[f])]
        ax.plot(frames, volumes[frames], marker, color=colour, ms=5, ls="none")
    ax.set_xlim(-0.5, max(len(volumes) - 0.5, 0.5))
    ax.tick_params(colors="white", labelsize=6, length=2)
    ax.set_ylabel(units, color="white", fontsize=6, labelpad=1)
    ax.set_xlabel("frame", color="white", fontsize=6, labelpad=0)
    for spine in ax.spines.values():
        spine.set_color("gray")
    fig.canvas.draw()
    strip = np.asarray(fig.canvas.buffer_rgba(), np.float32)[..., :3] / 255.0  # (height, width, 3)
    x = ax.transData.transform(np.stack([t, np.zeros_like(t)], axis=1).astype(float))[:, 0]
    return strip, np.clip(np.round(x).astype(int), 0, strip.shape[1] - 1)


def _with_strip(rgb: np.ndarray, strip: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Frames ``(T, sH, sW, 3)`` over the volume strip, a cursor at frame ``t``'s x on frame ``t``."""
    strips = np.repeat(strip[None], len(rgb), axis=0)
    for i, xi in enumerate(x):
        strips[i, :, max(xi - 1, 0): xi + 1] = _CURSOR_COLOUR
    return np.concatenate([rgb, strips], axis=1)


def write_overlay_video(path: str | os.PathLike, view, *, overwrite: bool = True) -> Path:
    """An MP4 of a :class:`~echokdm.app.clip.ClipView`: mask, keypoints, and the volume curve under the
    frames with a cursor on the frame shown (H.264, plays in browsers)."""
    from echokdm.io.video import write_video

    rgb = overlay_frames(view.cine.frames, view.masks, view.keypoints if view.mask_source else None)
    if view.mask_source and np.isfinite(view.volumes).sum() >= 2:
        strip, x = volume_strip(view.volumes, rgb.shape[2], ed_frames=view.ed_frames, es_frames=view.es_frames,
                                units=view.volume_units)
        rgb = _with_strip(rgb, strip, x)
    rgb = rgb[:, : rgb.shape[1] // 2 * 2, : rgb.shape[2] // 2 * 2]  # even sizes: yuv420p, which browsers play
    return write_video(path, rgb, fps=view.fps or 30.0, overwrite=overwrite)


def frame_picture(frame: np.ndarray, keypoints: np.ndarray | None, *, moved: np.ndarray | None = None,
                  picked: int | None = None) -> np.ndarray:
    """``uint8`` RGB ``(sH, sW, 3)`` of one frame with its keypoints (and the dragged ones in ``moved``
    ``(40, 2)``), keypoint ``picked`` ringed; for clicking keypoints and their new places."""
    from PIL import Image, ImageDraw

    kp = None if keypoints is None else keypoints[None]
    rgb = overlay_frames(frame[None], None, kp)[0]
    s = display_scale(frame.shape)
    image = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    if keypoints is not None:
        for i, (x, y) in enumerate(_to_display(keypoints, s)):
            if not np.isfinite([x, y]).all():
                continue
            r = 5 if i == picked else 2
            draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 0) if i == picked else (255, 255, 255))
            if moved is not None and np.isfinite(moved[i]).all() and np.abs(moved[i] - keypoints[i]).max() > 0:
                mx, my = _to_display(moved[i], s)
                draw.line((x, y, mx, my), fill=(255, 0, 255), width=2)
                draw.ellipse((mx - 3, my - 3, mx + 3, my + 3), fill=(255, 0, 255))
    return np.asarray(image)


def nearest_keypoint(keypoints: np.ndarray, xy_display: tuple[float, float], shape: tuple[int, int]) -> int:
    """Index of the keypoint nearest to a click at ``(x, y)`` on the enlarged picture of a frame ``(H, W)``."""
    s = display_scale(shape)
    d = np.linalg.norm(_to_display(keypoints, s) - np.asarray(xy_display, np.float32), axis=1)
    return int(np.nanargmin(d))


def display_to_frame(xy_display: tuple[float, float], shape: tuple[int, int]) -> tuple[float, float]:
    """A click ``(x, y)`` on the enlarged picture → ``(x, y)`` pixels of the frame."""
    s = display_scale(shape)
    return ((xy_display[0] + 0.5) / s - 0.5, (xy_display[1] + 0.5) / s - 0.5)
