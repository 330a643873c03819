"""Procedural articulated figures with textured clothes whose OpenPose joints move with an action.

A figure is a planar kinematic chain (torso, head, arms, legs, feet) in front of a static wall
and floor. Every body part is a rigid layer — a capsule (or the head's disc) in the frame of two
joints — with its texture (striped shirt, trousers with a seam, skin, shoes, hair and eyes)
painted in that frame, so it moves rigidly with the part. Frames are drawn back to front (feet,
legs, torso, head, arms), and the flow between any two frames is exact
(:class:`~echokdm.data.procedural._scene.LayeredScene`). Joints are in OpenPose BODY_25 order
(:data:`echokdm.adapters.pose.BODY_25_NAMES`; "R" is the figure's right, on the image left);
:data:`BODY25_TO_COCO18` picks the COCO-18 subset.

Actions: ``walk``, ``wave``, ``jacks`` (jumping jacks) and ``squat``, each with a random tempo,
amplitude, lean and head tilt; the figure keeps its feet on the floor.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from echokdm.data.procedural._scene import BACKGROUND, LayeredScene, SinusoidNoise

__all__ = [
    "ACTIONS",
    "BODY25_TO_COCO18",
    "FigureMotion",
    "FigureSubject",
    "StickFigure",
    "sample_figure_motion",
    "sample_figure_subject",
    "simulate_figure",
]

ACTIONS = ("walk", "wave", "jacks", "squat")
#: BODY_25 index of each COCO-18 joint.
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# segment lengths and widths in body units (one body unit = FigureSubject.unit · size pixels)
_LENGTHS = {"torso": 2.6, "neck": 0.95, "upper_arm": 1.45, "forearm": 1.3, "thigh": 1.85, "shin": 1.75}
_HALF = {"shoulder": 0.85, "hip": 0.5}


@dataclasses.dataclass(frozen=True)
class FigureSubject:
    """Build and clothes of one figure: ``unit`` (body unit as a fraction of the image size),
    ``build`` (width factor), colours RGB in [0, 1] and a texture seed."""

    unit: float
    build: float
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: tuple[float, float, float]
    pants: tuple[float, float, float]
    shoes: tuple[float, float, float]
    wall: tuple[float, float, float]
    floor: tuple[float, float, float]
    texture_seed: int


@dataclasses.dataclass(frozen=True)
class FigureMotion:
    """Per-frame pose, arrays ``(T,)`` in radians unless said: ``action`` name; ``lean`` and
    ``tilt`` (torso and head); ``arm_out`` / ``elbow`` ``(T, 2)`` (right, left) abduction and
    elbow bend; ``leg_out`` / ``knee`` ``(T, 2)``; ``x`` horizontal position (image widths)."""

    action: str
    lean: np.ndarray
    tilt: np.ndarray
    arm_out: np.ndarray
    elbow: np.ndarray
    leg_out: np.ndarray
    knee: np.ndarray
    x: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.lean)


def _colour(rng: np.random.Generator, low: float = 0.1, high: float = 0.9) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(low, high, 3))


def sample_figure_subject(rng: np.random.Generator) -> FigureSubject:
    """A random figure: size, build, skin, hair and clothes, wall and floor."""
    tone = rng.uniform(0.35, 0.95)
    return FigureSubject(
        unit=float(rng.uniform(0.085, 0.1)), build=float(rng.uniform(0.85, 1.15)),
        skin=(0.45 + 0.5 * tone, 0.3 + 0.45 * tone, 0.22 + 0.4 * tone), hair=_colour(rng, 0.05, 0.4),
        shirt=_colour(rng), pants=_colour(rng, 0.1, 0.6), shoes=_colour(rng, 0.05, 0.3), wall=_colour(rng, 0.4, 0.95),
        floor=_colour(rng, 0.2, 0.7), texture_seed=int(rng.integers(2**31)),
    )


def _action_angles(action: str, s: np.ndarray, phase: np.ndarray, amp: float):
    """``(arm_out, elbow, leg_out, knee)`` each ``(T, 2)`` (right, left) of an action."""
    zero = np.zeros_like(s)
    rest_arm, rest_leg = np.full_like(s, 0.15), np.full_like(s, 0.06)
    if action == "walk":
        swing = amp * 0.45 * np.sin(phase)
        arm = np.stack([rest_arm + swing, rest_arm - swing], 1)
        leg = np.stack([rest_leg + 0.6 * swing, rest_leg - 0.6 * swing], 1)
        knee = np.stack([0.5 * np.clip(np.sin(phase), 0, None), 0.5 * np.clip(-np.sin(phase), 0, None)], 1) * amp
        return arm, np.stack([zero + 0.3, zero + 0.3], 1), leg, knee
    if action == "wave":
        arm = np.stack([2.2 + 0.2 * amp * np.sin(phase), rest_arm], 1)
        elbow = np.stack([0.7 + 0.5 * amp * np.sin(2 * phase), zero + 0.2], 1)
        return arm, elbow, np.stack([rest_leg, rest_leg], 1), np.zeros((len(s), 2))
    if action == "jacks":
        arm = np.stack([0.2 + 2.3 * amp * s] * 2, 1)
        leg = np.stack([0.05 + 0.35 * amp * s] * 2, 1)
        return arm, np.stack([zero + 0.1] * 2, 1), leg, np.zeros((len(s), 2))
    if action == "squat":
        arm = np.stack([0.3 + 1.0 * amp * s] * 2, 1)
        leg = np.stack([0.1 + 0.55 * amp * s] * 2, 1)
        return arm, np.stack([zero + 0.4] * 2, 1), leg, np.stack([1.0 * amp * s] * 2, 1)
    raise ValueError(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")


def sample_figure_motion(rng: np.random.Generator, n_frames: int, action: str | None = None) -> FigureMotion:
    """A random action (or ``action``) over ``n_frames``: tempo, amplitude, lean, head tilt, drift."""
    action = action or str(rng.choice(ACTIONS))
    t = np.arange(n_frames) / max(n_frames, 1)
    phase = 2 * np.pi * rng.uniform(0.6, 1.5) * t + rng.uniform(0, 2 * np.pi)
    s = 0.5 - 0.5 * np.cos(phase)
    arm, elbow, leg, knee = _action_angles(action, s, phase, float(rng.uniform(0.6, 1.0)))
    drift = rng.uniform(-0.05, 0.05) if action == "walk" else 0.0
    return FigureMotion(
        action=action, lean=rng.uniform(-0.04, 0.04) + 0.03 * np.sin(phase + 1.0),
        tilt=rng.uniform(-0.1, 0.1) + 0.06 * np.sin(0.5 * phase), arm_out=arm, elbow=elbow, leg_out=leg, knee=knee,
        x=rng.uniform(-0.05, 0.05) + drift * (t - 0.5) * 2,
    )


def _dir(angle: np.ndarray | float) -> np.ndarray:
    """Unit vector at ``angle`` from straight down, towards image-right for positive angles."""
    return np.array([np.sin(angle), np.cos(angle)])


@dataclasses.dataclass(frozen=True)
class _Part:
    """A rigid body part: capsule ``p0 → p1`` (body units, in the frame of joints ``a → b``:
    first coordinate along ``a → b``, second along its left-hand normal), radius, texture."""

    frame: tuple[int, int]
    p0: tuple[float, float]
    p1: tuple[float, float]
    radius: float
    texture: str


def _parts(build: float) -> list[_Part]:
    """Body parts back to front."""
    lt, ln, lua, lfa, lth, lsh = (_LENGTHS[k] for k in ("torso", "neck", "upper_arm", "forearm", "thigh", "shin"))
    w = build
    parts = []
    for side, (hip, knee, ankle) in ((-1, (9, 10, 11)), (1, (12, 13, 14))):  # right leg, left leg
        toe = (lsh + 0.28, 0.02 * -side)
        parts += [_Part((knee, ankle), (lsh + 0.02, 0.0), toe, 0.15 * w, "shoes"),
                  _Part((knee, ankle), (0.0, 0.0), (lsh, 0.0), 0.27 * w, "pants"),
                  _Part((hip, knee), (0.0, 0.0), (lth, 0.0), 0.34 * w, "pants")]
    parts += [_Part((8, 1), (0.25, 0.0), (lt - 0.15, 0.0), 0.72 * w, "shirt"),
              _Part((1, 0), (-0.1, 0.0), (ln * 0.6, 0.0), 0.2 * w, "skin"),
              _Part((1, 0), (ln + 0.12, 0.0), (ln + 0.12, 0.0), 0.6, "head")]
    for shoulder, elbow, wrist in ((2, 3, 4), (5, 6, 7)):
        parts += [_Part((shoulder, elbow), (0.0, 0.0), (lua, 0.0), 0.25 * w, "shirt"),
                  _Part((elbow, wrist), (0.0, 0.0), (lfa + 0.12, 0.0), 0.19 * w, "skin")]
    return parts


class StickFigure(LayeredScene):
    """A figure sequence: ``subject`` performing ``motion`` in ``size × size`` frames."""

    def __init__(self, subject: FigureSubject, motion: FigureMotion, size: int):
        self.subject, self.motion, self.size, self.n_frames = subject, motion, int(size), motion.n_frames
        self.unit = subject.unit * self.size
        self.parts = _parts(subject.build)
        rng = np.random.default_rng(subject.texture_seed)
        self._noise = SinusoidNoise(rng, 10, 0.1, 1.0)
        self._wall_noise = SinusoidNoise(rng, 10, 0.5, 6.0)
        self.ground = 0.93 * self.size
        self._joints = np.stack([self._pose(t) for t in range(self.n_frames)])  # (T, 25, 2) px

    # -- kinematics -------------------------------------------------------------------------------
    def _skeleton(self, t: int) -> np.ndarray:
        """BODY_25 joints ``(25, 2)`` in body units with the mid-hip at the origin."""
        m, j = self.motion, np.zeros((25, 2))
        w = self.subject.build
        up = _dir(np.pi + m.lean[t])
        right = np.array([-up[1], up[0]])  # image-right of the torso axis
        j[1] = _LENGTHS["torso"] * up
        j[2], j[5] = j[1] - _HALF["shoulder"] * w * right, j[1] + _HALF["shoulder"] * w * right
        j[9], j[12] = -_HALF["hip"] * w * right, _HALF["hip"] * w * right
        head = _dir(np.pi + m.lean[t] + m.tilt[t])
        head_right = np.array([-head[1], head[0]])
        j[0] = j[1] + _LENGTHS["neck"] * head
        tip = _LENGTHS["neck"]
        for index, (along, across) in ((15, (0.2, -0.2)), (16, (0.2, 0.2)), (17, (0.05, -0.45)), (18, (0.05, 0.45))):
            j[index] = j[1] + (tip + along) * head + across * head_right
        for k, (side, (s, e, wr)) in enumerate(((-1, (2, 3, 4)), (1, (5, 6, 7)))):
            upper = side * m.arm_out[t, k] + m.lean[t]
            j[e] = j[s] + _LENGTHS["upper_arm"] * _dir(upper)
            j[wr] = j[e] + _LENGTHS["forearm"] * _dir(upper + side * m.elbow[t, k])
        for k, (side, (h, kn, an, big, small, heel)) in enumerate(((-1, (9, 10, 11, 22, 23, 24)),
                                                                   (1, (12, 13, 14, 19, 20, 21)))):
            thigh = side * m.leg_out[t, k] + m.lean[t]
            j[kn] = j[h] + _LENGTHS["thigh"] * _dir(thigh)
            shin = _dir(thigh - side * m.knee[t, k])
            j[an] = j[kn] + _LENGTHS["shin"] * shin
            normal = np.array([-shin[1], shin[0]])
            j[big] = j[an] + 0.3 * shin + 0.1 * side * normal  # the big toe is medial
            j[small] = j[an] + 0.27 * shin - 0.14 * side * normal
            j[heel] = j[an] + 0.08 * shin
        return j

    def _pose(self, t: int) -> np.ndarray:
        """Joints ``(25, 2)`` in pixels: the skeleton scaled, centred and standing on the floor."""
        j = self._skeleton(t) * self.unit
        lowest = j[[19, 20, 21, 22, 23, 24], 1].max() + 0.15 * self.unit
        return j + [self.size * (0.5 + self.motion.x[t]), self.ground - lowest]

    def _frame(self, part: _Part, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(origin (2,) px, rotation (2, 2))`` of a part's frame: columns = axis and normal."""
        a, b = self._joints[t, part.frame[0]], self._joints[t, part.frame[1]]
        axis = (b - a) / np.linalg.norm(b - a)
        return a, np.stack([axis, [-axis[1], axis[0]]], axis=1)

    # -- scene ------------------------------------------------------------------------------------
    def locate(self, points: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        layer = np.full(len(points), BACKGROUND)
        material = np.array(points, dtype=np.float64)
        free = np.ones(len(points), bool)
        for index in range(len(self.parts) - 1, -1, -1):  # front to back: the first hit is visible
            part = self.parts[index]
            origin, rot = self._frame(part, t)
            local = (points[free] - origin) @ rot / self.unit  # (M', 2) body units
            hit = _capsule_distance(local, np.asarray(part.p0), np.asarray(part.p1)) <= part.radius
            idx = np.flatnonzero(free)[hit]
            layer[idx], material[idx] = index, local[hit]
            free[idx] = False
        return layer, material

    def place(self, layer: np.ndarray, material: np.ndarray, t: int) -> np.ndarray:
        out = np.array(material, dtype=np.float64)
        for index in np.unique(layer[layer >= 0]):
            origin, rot = self._frame(self.parts[index], t)
            sel = layer == index
            out[sel] = origin + material[sel] * self.unit @ rot.T
        return out

    def keypoints(self, t: int) -> np.ndarray:
        return self._joints[t].copy()

    def colour(self, layer: np.ndarray, material: np.ndarray) -> np.ndarray:
        rgb = self._background(material / self.unit)
        for index in np.unique(layer[layer >= 0]):
            sel = layer == index
            rgb[sel] = self._texture(self.parts[index].texture, material[sel])
        return rgb

    def _background(self, q: np.ndarray) -> np.ndarray:
        s = self.subject
        floor = q[:, 1] * self.unit > self.ground - 0.6 * self.unit
        shade = 0.85 + 0.08 * self._wall_noise(q) + 0.05 * np.sin(q[:, 0] * 2.5)
        rgb = np.asarray(s.wall)[None] * shade[:, None]
        tiles = ((np.floor(q[floor, 0] / 1.2) + np.floor(q[floor, 1] / 0.6)) % 2) * 0.12 + 0.8
        rgb[floor] = np.asarray(s.floor) * (tiles + 0.05 * self._noise(q[floor]))[:, None]
        return rgb

    def _texture(self, kind: str, local: np.ndarray) -> np.ndarray:
        s, noise = self.subject, self._noise(local)
        if kind == "shirt":
            shade = 0.82 + 0.12 * np.sin(2 * np.pi * local[:, 0] / 0.35) + 0.05 * noise
            return np.asarray(s.shirt)[None] * shade[:, None]
        if kind == "pants":
            shade = 0.85 + 0.06 * noise - 0.25 * (np.abs(local[:, 1]) < 0.035)
            return np.asarray(s.pants)[None] * shade[:, None]
        if kind == "shoes":
            return np.asarray(s.shoes)[None] * (0.9 + 0.08 * noise)[:, None]
        rgb = np.asarray(s.skin)[None] * (0.92 + 0.05 * noise)[:, None]
        if kind == "head":
            tip = _LENGTHS["neck"]
            rgb[local[:, 0] > tip + 0.35 - 0.1 * np.abs(local[:, 1])] = s.hair
            for across in (-0.2, 0.2):
                rgb[np.hypot(local[:, 0] - tip - 0.2, local[:, 1] - across) < 0.07] = (0.05, 0.05, 0.05)
            mouth = (np.abs(local[:, 0] - tip + 0.18) < 0.03) & (np.abs(local[:, 1]) < 0.16)
            rgb[mouth] = (0.45, 0.1, 0.1)
        return rgb


def _capsule_distance(points: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance of points ``(M, 2)`` to the segment ``p0 → p1`` (a disc's centre when equal)."""
    d = p1 - p0
    t = np.clip(((points - p0) @ d) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - p0 - t[:, None] * d, axis=1)


def simulate_figure(seed: int, n_frames: int = 16, size: int = 224, action: str | None = None) -> StickFigure:
    """A random figure sequence (subject and motion drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    return StickFigure(sample_figure_subject(rng), sample_figure_motion(rng, n_frames, action), size)
