"""Layered procedural scenes with exact motion: the machinery behind the face and pose generators.

A scene is a static background and moving layers (a deformable head, rigid body parts). Every
layer has *material* coordinates that travel with it: :meth:`LayeredScene.locate` finds, for image
points of frame ``t``, the front-most layer covering each and its material coordinates, and
:meth:`LayeredScene.place` puts material points of a layer back into frame ``t``. So

* a frame is the colour of the material seen at each pixel (:meth:`LayeredScene.render`,
  supersampled), and
* the flow from frame ``a`` to frame ``b`` (shared/DESIGN.md: target grid, pointing into the
  source) is ``place(locate(p, b), a) - p`` at every pixel centre ``p`` of frame ``b``
  (:meth:`LayeredScene.flow`): exact, including the static background (zero flow).

Points are ``(x, y)`` pixels (integers at pixel centres). numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LayeredScene", "SinusoidNoise", "pixel_grid", "smoothstep"]

BACKGROUND = -1


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, ``3s² − 2s³`` between (C¹)."""
    s = np.clip((np.asarray(x, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def pixel_grid(size: int, supersample: int = 1) -> np.ndarray:
    """``(size·k, size·k, 2)`` ``(x, y)`` sample points: ``k²`` per pixel, centred on it."""
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = (np.arange(size)[:, None] + offsets[None]).reshape(-1)  # (size·k,)
    xx, yy = np.meshgrid(coords, coords)
    return np.stack([xx, yy], axis=-1)


class SinusoidNoise:
    """A smooth random texture: a sum of ``n`` plane waves with random directions and phases.

    ``noise(points (..., 2)) -> (...)`` in about [-1, 1]; wavelengths between ``min_wavelength``
    and ``max_wavelength`` (in the units of the points).
    """

    def __init__(self, rng: np.random.Generator, n: int = 8, min_wavelength: float = 0.1,
                 max_wavelength: float = 1.0):
        angle = rng.uniform(0, np.pi, n)
        wavelength = np.exp(rng.uniform(np.log(min_wavelength), np.log(max_wavelength), n))
        self.k = np.stack([np.cos(angle), np.sin(angle)], axis=1) * (2 * np.pi / wavelength)[:, None]  # (n, 2)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.amp = rng.uniform(0.5, 1.0, n) / np.sqrt(n / 2)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        return np.tensordot(np.sin(p @ self.k.T + self.phase), self.amp, axes=([-1], [0]))


class LayeredScene:
    """Base class: subclasses define ``size``, ``n_frames``, :meth:`locate`, :meth:`place`,
    :meth:`colour` and :meth:`keypoints`."""

    size: int
    n_frames: int

    def locate(self, points: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(layer int (M,), material (M, 2))`` of image points ``(M, 2)`` of frame ``t``;
        layer :data:`BACKGROUND` (-1) is the static background, whose material is the point."""
        raise NotImplementedError

    def place(self, layer: np.ndarray, material: np.ndarray, t: int) -> np.ndarray:
        """Image points ``(M, 2)`` of frame ``t`` of material points ``(M, 2)`` of ``layer`` ``(M,)``."""
        raise NotImplementedError

    def colour(self, layer: np.ndarray, material: np.ndarray) -> np.ndarray:
        """RGB ``(M, 3)`` in [0, 1] of material points."""
        raise NotImplementedError

    def keypoints(self, t: int) -> np.ndarray:
        """``float64`` ``(N, 2)`` keypoints of frame ``t`` (exact, never missing)."""
        raise NotImplementedError

    # -- generic ----------------------------------------------------------------------------------
    def render(self, t: int, supersample: int = 2) -> np.ndarray:
        """Frame ``t``: ``float32`` ``(H, W, 3)`` RGB in [0, 1], the mean of ``supersample²``
        samples per pixel (anti-aliased edges)."""
        k = supersample
        points = pixel_grid(self.size, k).reshape(-1, 2)
        layer, material = self.locate(points, t)
        rgb = self.colour(layer, material).reshape(self.size, k, self.size, k, 3)
        return np.clip(rgb.mean(axis=(1, 3)), 0.0, 1.0).astype(np.float32)

    def flow(self, source: int, target: int) -> np.ndarray:
        """Exact flow ``float32`` ``(2, H, W)`` from frame ``source`` to frame ``target``: at each
        pixel centre ``p`` of the target, ``(dx, dy)`` to the source point showing the same material."""
        for name, index in (("source", source), ("target", target)):
            if not 0 <= index < self.n_frames:
                raise IndexError(f"{name} frame {index} outside 0..{self.n_frames - 1}")
        if source == target:
            return np.zeros((2, self.size, self.size), np.float32)
        points = pixel_grid(self.size).reshape(-1, 2)
        layer, material = self.locate(points, target)
        moved = self.place(layer, material, source)
        return (moved - points).T.reshape(2, self.size, self.size).astype(np.float32)

    def frames(self, supersample: int = 2) -> np.ndarray:
        """All frames, ``float32`` ``(T, H, W, 3)``."""
        return np.stack([self.render(t, supersample) for t in range(self.n_frames)])

    def all_keypoints(self) -> np.ndarray:
        """``float32`` ``(T, N, 2)``."""
        return np.stack([self.keypoints(t) for t in range(self.n_frames)]).astype(np.float32)
