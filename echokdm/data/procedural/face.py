"""Procedural cartoon faces whose 68 iBUG landmarks move with expression and head motion.

A face is drawn in *template* coordinates (face units: the jaw's half-width is about 1, origin
between the eyes' line and the nose, y down) from its 68 rest landmarks: skin with shading and
fine texture, hair, eyebrows, eyes with iris and pupil, nostrils, lips and the mouth gap. Each
frame moves the head layer by

1. a horizontal expression map ``x' = x + g(x, y)`` (smile widening the mouth, a head turn "yaw"
   shifting the inner face),
2. a vertical expression map ``y' = y + f(x', y)`` (jaw opening, which stretches the closed
   mouth gap into an open mouth, smile raising the mouth corners, brows raising, eyes blinking),
3. a similarity (rotation, scale, translation) into the image;

each map is strictly increasing along the coordinate it moves, so it is inverted exactly by
bisection, and the background (wall, neck, shoulders) stays still. Landmarks are the rest
landmarks pushed through the same maps, so they follow the drawn features exactly, and the flow
between any two frames is exact (:class:`~echokdm.data.procedural._scene.LayeredScene`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from echokdm.data.procedural._scene import (
    BACKGROUND,
    LayeredScene,
    SinusoidNoise,
    smoothstep,
)

__all__ = [
    "CartoonFace",
    "FaceMotion",
    "FaceSubject",
    "sample_face_motion",
    "sample_face_subject",
    "simulate_face",
    "template_landmarks",
]

_HEAD = 0
_JAW_OPEN = 0.2  # face units the chin drops at jaw = 1
_BISECT_STEPS = 40


@dataclasses.dataclass(frozen=True)
class FaceSubject:
    """Shape and appearance of one cartoon face (face units; colours RGB in [0, 1])."""

    jaw_radii: tuple[float, float]
    eye_x: float
    eye_y: float
    eye_size: tuple[float, float]
    brow_y: float
    nose_tip_y: float
    mouth_y: float
    mouth_half_width: float
    hairline: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    wall: tuple[float, float, float]
    shirt: tuple[float, float, float]
    texture_seed: int


@dataclasses.dataclass(frozen=True)
class FaceMotion:
    """Per-frame expression and head pose, arrays ``(T,)``.

    ``jaw`` [0, 1] mouth opening; ``smile`` [-0.3, 1]; ``brow`` [-0.3, 1] raise; ``blink``
    [0, 0.7] eyelid closure; ``yaw`` [-1, 1] head turn; ``angle`` radians; ``scale`` relative
    size; ``shift`` ``(T, 2)`` translation in image widths.
    """

    jaw: np.ndarray
    smile: np.ndarray
    brow: np.ndarray
    blink: np.ndarray
    yaw: np.ndarray
    angle: np.ndarray
    scale: np.ndarray
    shift: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.jaw)


def sample_face_subject(rng: np.random.Generator) -> FaceSubject:
    """A random face: proportions, skin, hair, eye and lip colours, wall and shirt."""
    tone = rng.uniform(0.35, 0.95)
    skin = (0.45 + 0.5 * tone, 0.3 + 0.45 * tone, 0.22 + 0.4 * tone)
    hair_shade = rng.uniform(0.05, 0.55)  # drawn before the tint (the order fixes each seed's face)
    hair = tuple(float(v) for v in hair_shade * np.array([1.0, rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.7)]))
    return FaceSubject(
        jaw_radii=(float(rng.uniform(0.92, 1.05)), float(rng.uniform(1.05, 1.22))),
        eye_x=float(rng.uniform(0.38, 0.46)), eye_y=float(rng.uniform(-0.36, -0.28)),
        eye_size=(float(rng.uniform(0.15, 0.2)), float(rng.uniform(0.06, 0.085))),
        brow_y=float(rng.uniform(-0.6, -0.52)), nose_tip_y=float(rng.uniform(0.12, 0.22)),
        mouth_y=float(rng.uniform(0.52, 0.62)), mouth_half_width=float(rng.uniform(0.26, 0.36)),
        hairline=float(rng.uniform(-0.95, -0.75)), skin=skin, hair=hair,
        iris=tuple(float(v) for v in rng.uniform(0.1, 0.7, 3)),
        lips=(float(rng.uniform(0.6, 0.85)), float(rng.uniform(0.2, 0.4)), float(rng.uniform(0.25, 0.4))),
        wall=tuple(float(v) for v in rng.uniform(0.3, 0.9, 3)), shirt=tuple(float(v) for v in rng.uniform(0.1, 0.9, 3)),
        texture_seed=int(rng.integers(2**31)),
    )


def _wave(rng: np.random.Generator, t: np.ndarray, base: float, amp: float) -> np.ndarray:
    """``base + amp · (a smooth random curve of about unit size)`` over ``t`` in [0, 1)."""
    out = np.zeros_like(t)
    for _ in range(2):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.4, 1.6) * t + rng.uniform(0, 2 * np.pi))
    return base + amp * out / 1.3


def sample_face_motion(rng: np.random.Generator, n_frames: int) -> FaceMotion:
    """Random smooth expression and head motion over ``n_frames`` (a blink, a smile, talking …)."""
    t = np.arange(n_frames) / max(n_frames, 1)
    blink = np.zeros(n_frames)
    if rng.random() < 0.7:
        centre = rng.uniform(0, n_frames)
        blink = 0.7 * np.exp(-0.5 * ((np.arange(n_frames) - centre) / max(0.6, 0.06 * n_frames)) ** 2)
    return FaceMotion(
        jaw=np.clip(_wave(rng, t, rng.uniform(0.1, 0.4), rng.uniform(0.2, 0.6)), 0.0, 1.0),
        smile=np.clip(_wave(rng, t, rng.uniform(-0.1, 0.4), rng.uniform(0.1, 0.5)), -0.3, 1.0),
        brow=np.clip(_wave(rng, t, rng.uniform(-0.1, 0.3), rng.uniform(0.1, 0.5)), -0.3, 1.0),
        blink=blink,
        yaw=np.clip(_wave(rng, t, rng.uniform(-0.3, 0.3), rng.uniform(0.1, 0.5)), -1.0, 1.0),
        angle=_wave(rng, t, rng.uniform(-0.05, 0.05), rng.uniform(0.02, 0.08)),
        scale=_wave(rng, t, 1.0, rng.uniform(0.0, 0.04)),
        shift=np.stack([_wave(rng, t, 0.0, rng.uniform(0.0, 0.03)), _wave(rng, t, 0.0, rng.uniform(0.0, 0.02))], 1),
    )


def template_landmarks(s: FaceSubject) -> np.ndarray:
    """The 68 rest landmarks ``(68, 2)`` in face units, iBUG order (see :mod:`echokdm.adapters.face`)."""
    rx, ry = s.jaw_radii
    a = np.pi * np.arange(17) / 16
    jaw = np.stack([-rx * np.cos(a), -0.1 + ry * np.sin(a)], axis=1)
    j = np.arange(5) / 4
    arch = s.brow_y - 0.08 * np.sin(np.pi * j)
    right_brow = np.stack([-(s.eye_x + 0.25) + j * 0.52, arch - 0.02 * (1 - j)], axis=1)
    left_brow = right_brow[::-1] * [-1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(s.eye_y - 0.08, s.nose_tip_y, 4)], axis=1)
    base = s.nose_tip_y + 0.09
    nose = np.stack([np.array([-0.2, -0.1, 0.0, 0.1, 0.2]), base + np.array([0.0, 0.015, 0.025, 0.015, 0.0])], axis=1)
    w, h = s.eye_size
    eye = np.array([[-w, 0], [-w / 3, -h], [w / 3, -h], [w, 0], [w / 3, h], [-w / 3, h]])
    right_eye = eye + [-s.eye_x, s.eye_y]
    left_eye = eye + [s.eye_x, s.eye_y]  # 42 is its inner corner, 45 its outer one
    m, my, g = s.mouth_half_width, s.mouth_y, 0.02
    outer = np.array([[-m, 0], [-0.62 * m, -0.07], [-0.25 * m, -0.1], [0, -0.085], [0.25 * m, -0.1],
                      [0.62 * m, -0.07], [m, 0], [0.62 * m, 0.09], [0.25 * m, 0.13], [0, 0.14],
                      [-0.25 * m, 0.13], [-0.62 * m, 0.09]]) + [0, my]
    inner = np.array([[-0.8 * m, 0], [-0.35 * m, -g], [0, -g], [0.35 * m, -g], [0.8 * m, 0],
                      [0.35 * m, g], [0, g], [-0.35 * m, g]]) + [0, my]
    return np.concatenate([jaw, right_brow, left_brow, bridge, nose, right_eye, left_eye, outer, inner])


def _bisect(func, target: np.ndarray, half_range: float) -> np.ndarray:
    """Solve ``func(v) = target`` elementwise for a strictly increasing ``func``, with the root
    within ``half_range`` of ``target``."""
    lo, hi = target - half_range, target + half_range
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        above = func(mid) > target
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return 0.5 * (lo + hi)


class CartoonFace(LayeredScene):
    """A face sequence: ``subject``'s face moved by ``motion`` in ``size × size`` frames.

    Attributes: ``rest`` ``(68, 2)`` template landmarks; ``n_frames``; ``size``.
    """

    def __init__(self, subject: FaceSubject, motion: FaceMotion, size: int):
        self.subject, self.motion, self.size, self.n_frames = subject, motion, int(size), motion.n_frames
        self.rest = template_landmarks(subject)
        self.unit = 0.27 * self.size  # pixels per face unit at scale 1
        self.centre = np.array([0.5, 0.47]) * self.size
        rng = np.random.default_rng(subject.texture_seed)
        self._skin_noise = SinusoidNoise(rng, 10, 0.15, 1.5)
        self._fine_noise = SinusoidNoise(rng, 12, 0.03, 0.12)
        self._wall_noise = SinusoidNoise(rng, 10, 0.2, 3.0)
        self._stripe = rng.uniform(0, np.pi), rng.uniform(0.25, 0.6)

    # -- maps -------------------------------------------------------------------------------------
    def _g(self, x: np.ndarray, y: np.ndarray, t: int) -> np.ndarray:
        s, mo = self.subject, self.motion
        m, my = s.mouth_half_width, s.mouth_y
        corner = np.exp(-((x - m) ** 2 + (y - my) ** 2) / 0.02) - np.exp(-((x + m) ** 2 + (y - my) ** 2) / 0.02)
        turn = np.clip(1.0 - (x / 1.15) ** 2, 0.0, None)
        return mo.smile[t] * 0.05 * corner + mo.yaw[t] * 0.1 * turn

    def _f(self, x: np.ndarray, y: np.ndarray, t: int) -> np.ndarray:
        s, mo = self.subject, self.motion
        m, my = s.mouth_half_width, s.mouth_y
        lateral = 1.0 - smoothstep(np.abs(x), 0.45, s.jaw_radii[0] + 0.05)
        jaw = _JAW_OPEN * smoothstep(y, my - 0.02, my + 0.02) * lateral
        corners = np.exp(-((x - m) ** 2 + (y - my) ** 2) / 0.02) + np.exp(-((x + m) ** 2 + (y - my) ** 2) / 0.02)
        ax = np.abs(x)
        brows = np.exp(-((ax - s.eye_x) ** 2 / (2 * 0.22**2) + (y - s.brow_y) ** 2 / (2 * 0.12**2)))
        eyes = np.exp(-((ax - s.eye_x) ** 2 / (2 * 0.16**2) + (y - s.eye_y) ** 2 / (2 * 0.1**2)))
        return (mo.jaw[t] * jaw - mo.smile[t] * 0.06 * corners - mo.brow[t] * 0.09 * brows
                - mo.blink[t] * 0.6 * (y - s.eye_y) * eyes)

    def _similarity(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A (2, 2), c (2,))``: image point = ``A @ u + c``."""
        mo = self.motion
        a = mo.angle[t]
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return self.unit * mo.scale[t] * rot, self.centre + mo.shift[t] * self.size

    def forward(self, u: np.ndarray, t: int) -> np.ndarray:
        """Template points ``(M, 2)`` → image points of frame ``t``."""
        x, y = u[:, 0], u[:, 1]
        x1 = x + self._g(x, y, t)
        y1 = y + self._f(x1, y, t)
        a, c = self._similarity(t)
        return np.stack([x1, y1], axis=1) @ a.T + c

    def inverse(self, p: np.ndarray, t: int) -> np.ndarray:
        """Image points ``(M, 2)`` of frame ``t`` → template points (bisection, to ~1e-12 face units)."""
        a, c = self._similarity(t)
        v = (np.asarray(p, dtype=np.float64) - c) @ np.linalg.inv(a).T
        x1, y1 = v[:, 0], v[:, 1]
        y = _bisect(lambda yy: yy + self._f(x1, yy, t), y1, 0.6)
        x = _bisect(lambda xx: xx + self._g(xx, y, t), x1, 0.4)
        return np.stack([x, y], axis=1)

    # -- scene ------------------------------------------------------------------------------------
    def _in_head(self, u: np.ndarray) -> np.ndarray:
        rx, ry = self.subject.jaw_radii
        x, y = u[:, 0], u[:, 1] + 0.1
        jaw = (x / rx) ** 2 + (y / ry) ** 2 <= 1.0
        cranium = (y <= 0) & ((x / (rx + 0.08)) ** 2 + (y / 1.5) ** 2 <= 1.0)
        return jaw | cranium

    def locate(self, points: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        u = self.inverse(points, t)
        head = self._in_head(u)
        layer = np.where(head, _HEAD, BACKGROUND)
        return layer, np.where(head[:, None], u, points)

    def place(self, layer: np.ndarray, material: np.ndarray, t: int) -> np.ndarray:
        out = np.array(material, dtype=np.float64)
        head = layer == _HEAD
        if head.any():
            out[head] = self.forward(material[head], t)
        return out

    def keypoints(self, t: int) -> np.ndarray:
        return self.forward(self.rest, t)

    def colour(self, layer: np.ndarray, material: np.ndarray) -> np.ndarray:
        rgb = self._background((material - self.centre) / self.unit)
        head = layer == _HEAD
        if head.any():
            rgb[head] = self._face(material[head])
        return rgb

    # -- textures ---------------------------------------------------------------------------------
    def _background(self, q: np.ndarray) -> np.ndarray:
        s = self.subject
        angle, period = self._stripe
        stripes = 0.5 + 0.5 * np.sin((q @ np.array([np.cos(angle), np.sin(angle)])) * 2 * np.pi / period)
        shade = 0.8 + 0.1 * self._wall_noise(q) + 0.08 * stripes - 0.1 * (q[:, 1] + 2) / 4
        rgb = np.asarray(s.wall)[None] * shade[:, None]
        neck = (np.abs(q[:, 0]) < 0.4) & (q[:, 1] > 0.6)
        rgb[neck] = np.asarray(s.skin) * (0.75 + 0.05 * self._fine_noise(q[neck]))[:, None]
        shirt = q[:, 1] > 1.35 + 0.45 * (q[:, 0] / 1.8) ** 2 - 0.25
        rgb[shirt] = np.asarray(s.shirt) * (0.85 + 0.1 * self._skin_noise(q[shirt] * 2))[:, None]
        return rgb

    def _face(self, u: np.ndarray) -> np.ndarray:
        s, rest = self.subject, self.rest
        x, y = u[:, 0], u[:, 1]
        rx, ry = s.jaw_radii
        radial = (x / rx) ** 2 + ((y + 0.1) / ry) ** 2
        shade = 1.0 - 0.22 * radial**2 + 0.05 * self._skin_noise(u) + 0.025 * self._fine_noise(u)
        rgb = np.asarray(s.skin)[None] * shade[:, None]
        cheeks = np.exp(-((np.abs(x) - 0.55) ** 2 + (y - 0.25) ** 2) / 0.03)
        rgb = rgb * (1 - 0.15 * cheeks[:, None]) + 0.15 * cheeks[:, None] * np.array([0.9, 0.45, 0.45])
        hair = (y < s.hairline + 0.25 * x**2) | ((x / rx) ** 2 + ((y + 0.1) / 1.3) ** 2 > 1.0) & (y < 0.1)
        strands = 0.8 + 0.2 * np.sin(40 * x + 5 * np.sin(3 * y)) + 0.05 * self._fine_noise(u)
        rgb[hair] = np.asarray(s.hair) * strands[hair, None]
        self._features(u, rgb, rest)
        return rgb

    def _features(self, u: np.ndarray, rgb: np.ndarray, rest: np.ndarray) -> None:
        """Eyebrows, eyes, nose and mouth drawn into ``rgb`` (in place) at template points ``u``."""
        from matplotlib.path import Path as PolyPath

        s = self.subject
        dark = np.asarray(s.hair) * 0.6
        for idx in (range(17, 22), range(22, 27)):
            rgb[_near(u, rest[list(idx)], 0.035)] = dark
        for idx in (range(36, 42), range(42, 48)):
            eye = rest[list(idx)]
            inside = PolyPath(eye).contains_points(u)
            centre = eye.mean(axis=0)
            r = np.linalg.norm(u - centre, axis=1)
            rgb[inside] = (0.93, 0.93, 0.9)
            rgb[inside & (r < 0.065)] = s.iris
            rgb[inside & (r < 0.028)] = (0.05, 0.05, 0.05)
            rgb[_near(u, np.concatenate([eye, eye[:1]]), 0.012)] = dark * 0.7
        for cx in (-0.1, 0.1):
            nostril = ((u[:, 0] - cx) / 0.045) ** 2 + ((u[:, 1] - rest[33, 1] + 0.02) / 0.022) ** 2 < 1
            rgb[nostril] = np.asarray(s.skin) * 0.35
        rgb[_near(u, rest[27:31] + [0.05, 0.0], 0.02)] *= 0.88
        outer, inner = PolyPath(rest[48:60]).contains_points(u), PolyPath(rest[60:68]).contains_points(u)
        rgb[outer & ~inner] = np.asarray(s.lips) * (0.9 + 0.1 * np.sin(60 * u[outer & ~inner, 0]))[:, None]
        teeth = inner & (u[:, 1] < s.mouth_y - 0.008)
        rgb[inner] = (0.25, 0.05, 0.06)
        rgb[teeth] = (0.92, 0.9, 0.85)


def _near(points: np.ndarray, polyline: np.ndarray, radius: float) -> np.ndarray:
    """Points ``(M, 2)`` within ``radius`` of a polyline ``(P, 2)``."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a  # (S, 2)
    p = points[:, None]  # (M, 1, 2)
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab**2).sum(-1), 1e-12), 0, 1)  # (M, S)
    d = np.linalg.norm(p - a - t[..., None] * ab, axis=-1).min(axis=1)
    return d < radius


def simulate_face(seed: int, n_frames: int = 16, size: int = 224) -> CartoonFace:
    """A random cartoon-face sequence (subject and motion drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    return CartoonFace(sample_face_subject(rng), sample_face_motion(rng, n_frames), size)
