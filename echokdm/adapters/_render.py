"""Generic keypoint schema and anti-aliased polyline renderer shared by the adapters.

An adapter (echo, face, pose) describes its keypoints with a :class:`KeypointSchema`: names,
the polylines drawn through them (``lines``, each a tuple of keypoint indices), lines derived
from the keypoints (``derived``, e.g. the echo long axis), one RGB colour per line, and the index
permutation that a horizontal flip induces. :func:`render_schema` then draws the conditioning
image of the KDM paper (x̂_K): coloured, anti-aliased lines at image resolution on black.

Coordinates are ``(x, y)`` pixels: x = column, y = row, integer values at pixel centres, origin
top-left (shared/DESIGN.md). numpy only.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["KeypointSchema", "render_polylines", "render_schema"]

RGB = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class KeypointSchema:
    """Description of a keypoint set and of how to draw it.

    Attributes
    ----------
    name : str
        Short name of the adapter (``"echo"``).
    keypoint_names : tuple of str
        One name per keypoint, in array order; ``len`` is the number of keypoints ``N``.
    lines : Mapping[str, tuple of int]
        Polylines through keypoint indices, in drawing order (later lines are drawn on top).
    colours : Mapping[str, (r, g, b)]
        Colour in [0, 1] of every line and derived line.
    flip_permutation : tuple of int
        ``new = old[flip_permutation]`` re-labels keypoints after a horizontal flip of the image
        (image-left and image-right parts swap names).
    derived : callable, optional
        ``derived(keypoints (N, 2)) -> {name: (P, 2) polyline}``: lines computed from the
        keypoints (drawn first, under ``lines``). A polyline with NaN is broken there.
    """

    name: str
    keypoint_names: tuple[str, ...]
    lines: Mapping[str, tuple[int, ...]]
    colours: Mapping[str, RGB]
    flip_permutation: tuple[int, ...]
    derived: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        n = len(self.keypoint_names)
        if sorted(self.flip_permutation) != list(range(n)):
            raise ValueError(f"flip_permutation of schema {self.name!r} must be a permutation of 0..{n - 1}")
        for line, idx in self.lines.items():
            if any(not 0 <= i < n for i in idx):
                raise ValueError(f"line {line!r} of schema {self.name!r} has indices outside 0..{n - 1}: {idx}")

    @property
    def n_keypoints(self) -> int:
        """Number of keypoints ``N``."""
        return len(self.keypoint_names)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """Every ``(i, j)`` keypoint pair joined by a drawn segment, in drawing order."""
        return tuple(pair for idx in self.lines.values() for pair in itertools.pairwise(idx))

    def polylines(self, keypoints: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``[(line name, (P, 2) float64 polyline (x, y)), ...]`` in drawing order (derived first)."""
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.shape != (self.n_keypoints, 2):
            raise ValueError(f"{self.name} keypoints must have shape ({self.n_keypoints}, 2) (x, y), got {kp.shape}")
        out = list(self.derived(kp).items()) if self.derived is not None else []
        out += [(line, kp[list(idx)]) for line, idx in self.lines.items()]
        return out


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from pixel centres ``points`` (h, w, 2) to segments ``a -> b`` (S, 2) each: (S, h, w)."""
    p = points[None]  # (1, h, w, 2)
    a = a[:, None, None]  # (S, 1, 1, 2)
    ab = b[:, None, None] - a  # (S, 1, 1, 2)
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab**2).sum(-1), 1e-12), 0.0, 1.0)  # (S, h, w)
    return np.linalg.norm(p - a - t[..., None] * ab, axis=-1)


def _line_coverage(polyline: np.ndarray, shape: tuple[int, int], thickness: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one polyline, ``float64`` ``(H, W)``.

    A pixel's coverage is ``clip(thickness / 2 + 0.5 - d, 0, 1)`` with ``d`` its centre's distance
    to the nearest segment: the area of a one-pixel box covered by a band of width ``thickness``
    (exact for a band along the pixel grid), so sub-pixel positions give intermediate values.
    Segments with a NaN end are skipped: NaN breaks the line.
    """
    h, w = shape
    cover = np.zeros(shape, dtype=np.float64)
    a, b = polyline[:-1], polyline[1:]
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if not ok.any():
        return cover
    a, b = a[ok], b[ok]
    reach = thickness / 2 + 0.5
    ends = np.concatenate([a, b])
    x0, y0 = np.floor(ends.min(0) - reach).astype(int)
    x1, y1 = np.ceil(ends.max(0) + reach).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x0 > x1 or y0 > y1:
        return cover
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    points = np.stack([xx, yy], axis=-1).astype(np.float64)  # (h', w', 2) (x, y)
    dist = _segment_distance(points, a, b).min(axis=0)  # (h', w')
    cover[y0 : y1 + 1, x0 : x1 + 1] = np.clip(reach - dist, 0.0, 1.0)
    return cover


def render_polylines(
    polylines: Sequence[tuple[np.ndarray, RGB]], shape: tuple[int, int], *, thickness: float = 1.0
) -> np.ndarray:
    """Draw coloured anti-aliased polylines on a black image.

    Parameters
    ----------
    polylines : sequence of ((P, 2) array, (r, g, b))
        Vertices ``(x, y)`` in pixels (integer = pixel centre) and a colour in [0, 1]. Drawn in
        order, each "over" the previous ones with its coverage as alpha. NaN vertices break a line.
    shape : (H, W)
        Image size in pixels.
    thickness : float
        Line width in pixels (> 0).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(3, H, W)`` RGB in [0, 1].
    """
    if not thickness > 0:
        raise ValueError(f"thickness must be > 0 pixels, got {thickness}")
    h, w = (int(s) for s in shape)
    image = np.zeros((3, h, w), dtype=np.float64)
    for points, colour in polylines:
        alpha = _line_coverage(np.asarray(points, dtype=np.float64), (h, w), thickness)  # (H, W)
        image = image * (1.0 - alpha) + np.asarray(colour, dtype=np.float64)[:, None, None] * alpha
    return image.astype(np.float32)


def render_schema(schema: KeypointSchema, keypoints: np.ndarray, shape: tuple[int, int], *,
                  thickness: float = 1.0) -> np.ndarray:
    """Conditioning image of ``keypoints`` drawn with ``schema``'s lines and colours.

    Parameters
    ----------
    schema : KeypointSchema
    keypoints : numpy.ndarray
        ``(..., N, 2)`` ``(x, y)`` pixels; NaN rows break the lines through them.
    shape : (H, W)
        Output size in pixels.
    thickness : float
        Line width in pixels.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(..., 3, H, W)`` RGB in [0, 1], black background.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-2:] != (schema.n_keypoints, 2):
        raise ValueError(f"{schema.name} keypoints must have shape (..., {schema.n_keypoints}, 2) (x, y), "
                         f"got {kp.shape}")
    h, w = (int(s) for s in shape)
    flat = kp.reshape(-1, schema.n_keypoints, 2)  # (B, N, 2)
    images = [render_polylines([(line, schema.colours[name]) for name, line in schema.polylines(one)],
                               (h, w), thickness=thickness) for one in flat]
    return np.stack(images).reshape(*kp.shape[:-2], 3, h, w)
