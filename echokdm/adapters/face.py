"""The face adapter: 68 iBUG / dlib facial landmarks and their conditioning image (KDM paper §4).

Landmark order is the iBUG 300-W / dlib ``shape_predictor_68_face_landmarks`` order; "right" and
"left" are the subject's (the subject's right eye appears on the image left in a frontal face):

===========================  ==================  =============================================
line (drawn in this order)   landmarks           colour (RGB in [0, 1])
===========================  ==================  =============================================
lower face contour           0 … 16              white
right eyebrow                17 … 21             orange
left eyebrow                 22 … 26             yellow
nose bridge                  27 … 30             green
nose bottom                  31 … 35             cyan
right eye                    36 … 41, 36         sky blue
left eye                     42 … 47, 42         blue
outer upper lip              48 … 54             magenta
outer lower lip              54 … 59, 48         purple
inner upper lip              60 … 64             pink
inner lower lip              64 … 67, 60         red
===========================  ==================  =============================================

These are the paper's 11 lines (lower face contour, two eyebrows, two eyes, nose bridge, nose
bottom line, four lip lines); the paper's figure with its colours is not in the text, so the
colours here are ours, one distinct colour per line (left and right parts differ, so the network
can tell them apart after a flip). Lines are 1 px wide and anti-aliased (:func:`render_schema`).

Files: iBUG ``.pts`` (1-based, :func:`~echokdm.io.keypoint_files.read_pts`), wide or long CSV and
JSON (:mod:`echokdm.io.keypoint_files`). Detection (:func:`detect_landmarks`) uses the
``face-alignment`` package or ``dlib`` when the user has installed one of them (the optional
extra ``pip install "echokdm[face]"``); neither is needed to train or generate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from echokdm.adapters._render import KeypointSchema, render_schema
from echokdm.adapters.base import SequenceAdapter

__all__ = [
    "DLIB_PREDICTOR_ENV",
    "FACE_ADAPTER",
    "FACE_COLOURS",
    "FACE_FLIP_PERMUTATION",
    "FACE_LINES",
    "FACE_SCHEMA",
    "N_FACE_KEYPOINTS",
    "detect_landmarks",
    "render_keypoints",
]

#: Number of landmarks.
N_FACE_KEYPOINTS = 68

#: The 11 lines of the conditioning image: name -> landmark indices (closed loops repeat the start).
FACE_LINES = {
    "lower face contour": tuple(range(17)),
    "right eyebrow": tuple(range(17, 22)),
    "left eyebrow": tuple(range(22, 27)),
    "nose bridge": tuple(range(27, 31)),
    "nose bottom": tuple(range(31, 36)),
    "right eye": (*range(36, 42), 36),
    "left eye": (*range(42, 48), 42),
    "outer upper lip": tuple(range(48, 55)),
    "outer lower lip": (*range(54, 60), 48),
    "inner upper lip": tuple(range(60, 65)),
    "inner lower lip": (64, 65, 66, 67, 60),
}

#: One colour per line (RGB in [0, 1]).
FACE_COLOURS = {
    "lower face contour": (1.0, 1.0, 1.0),
    "right eyebrow": (1.0, 0.5, 0.0),
    "left eyebrow": (1.0, 1.0, 0.0),
    "nose bridge": (0.0, 1.0, 0.0),
    "nose bottom": (0.0, 1.0, 1.0),
    "right eye": (0.0, 0.5, 1.0),
    "left eye": (0.0, 0.0, 1.0),
    "outer upper lip": (1.0, 0.0, 1.0),
    "outer lower lip": (0.5, 0.0, 1.0),
    "inner upper lip": (1.0, 0.5, 0.75),
    "inner lower lip": (1.0, 0.0, 0.0),
}


def _flip_permutation() -> tuple[int, ...]:
    """Landmark relabelling of a horizontal flip (image-left and image-right parts swap)."""
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # eyebrows
    pairs += [(31, 35), (32, 34)]  # nose bottom
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lip
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lip
    perm = list(range(N_FACE_KEYPOINTS))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


#: ``new = old[FACE_FLIP_PERMUTATION]`` after a horizontal flip of the image.
FACE_FLIP_PERMUTATION = _flip_permutation()

_NAMES = (
    [f"jaw {i}" for i in range(17)] + [f"right eyebrow {i}" for i in range(5)]
    + [f"left eyebrow {i}" for i in range(5)] + [f"nose bridge {i}" for i in range(4)]
    + [f"nose bottom {i}" for i in range(5)] + [f"right eye {i}" for i in range(6)]
    + [f"left eye {i}" for i in range(6)] + [f"outer lip {i}" for i in range(12)]
    + [f"inner lip {i}" for i in range(8)]
)

FACE_SCHEMA = KeypointSchema(name="face", keypoint_names=tuple(_NAMES), lines=FACE_LINES, colours=FACE_COLOURS,
                             flip_permutation=FACE_FLIP_PERMUTATION)
"""The 68 landmarks: names (``"jaw 0"`` … ``"inner lip 7"``), the 11 lines and their colours."""


def render_keypoints(keypoints: np.ndarray, shape: tuple[int, int], *, thickness: float = 1.0) -> np.ndarray:
    """The face conditioning image x̂_K: the 11 anti-aliased coloured lines of 68 landmarks.

    Parameters
    ----------
    keypoints : numpy.ndarray
        ``(68, 2)`` or ``(..., 68, 2)`` ``(x, y)`` pixels (integer = pixel centre). A NaN
        landmark breaks its line (never drawn at the origin).
    shape : (H, W)
        Image size in pixels.
    thickness : float
        Line width in pixels.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(3, H, W)`` (or ``(..., 3, H, W)``) RGB in [0, 1] on black.

    Examples
    --------
    >>> kp = np.full((68, 2), np.nan)
    >>> kp[27:31] = [[16.0, 4.0], [16.0, 8.0], [16.0, 12.0], [16.0, 16.0]]  # the nose bridge alone
    >>> render_keypoints(kp, (32, 32))[:, 10, 16].tolist()
    [0.0, 1.0, 0.0]
    """
    return render_schema(FACE_SCHEMA, keypoints, shape, thickness=thickness)


# ---------------------------------------------------------------------------------------------
# detection (optional dependencies)
# ---------------------------------------------------------------------------------------------

#: Environment variable naming dlib's ``shape_predictor_68_face_landmarks.dat``.
DLIB_PREDICTOR_ENV = "ECHOKDM_DLIB_PREDICTOR"
_INSTALL = ('face landmark detection needs the optional package face-alignment (pip install "echokdm[face]" '
            'or pip install face-alignment) or dlib with its 68-landmark model (pip install dlib, and set '
            f'{DLIB_PREDICTOR_ENV} to shape_predictor_68_face_landmarks.dat); neither is installed. Give the '
            'landmarks as files instead (.pts, .csv or .json)')


def _to_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, dtype=np.float32)
    f = np.repeat(f[..., None], 3, axis=-1) if f.ndim == 2 else f
    return np.round(np.clip(f, 0.0, 1.0) * 255).astype(np.uint8)


def _face_alignment_backend(model: Any):
    import face_alignment  # optional dependency

    if model is None:
        landmarks = face_alignment.LandmarksType
        kind = getattr(landmarks, "TWO_D", None) or landmarks._2D
        model = face_alignment.FaceAlignment(kind, device="cpu", flip_input=False)

    def detect(image: np.ndarray) -> np.ndarray | None:
        found = model.get_landmarks_from_image(image)
        return None if not found else np.asarray(found[0], dtype=np.float64)[:, :2]

    return detect


def _dlib_backend(model: Any):
    import dlib  # optional dependency

    path = model if isinstance(model, (str, os.PathLike)) else os.environ.get(DLIB_PREDICTOR_ENV)
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"{path or '(unset)'}: dlib needs its 68-landmark model file "
                                f"shape_predictor_68_face_landmarks.dat; pass its path or set {DLIB_PREDICTOR_ENV}")
    finder, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))

    def detect(image: np.ndarray) -> np.ndarray | None:
        boxes = finder(image, 1)
        if not boxes:
            return None
        shape = predictor(image, max(boxes, key=lambda b: b.area()))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    return detect


def detect_landmarks(frames: np.ndarray, model: Any = None, *, backend: str = "auto") -> np.ndarray:
    """68 landmarks of the largest face of each frame, with an optional detector package.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` grayscale or ``(T, H, W, 3)`` RGB in [0, 1].
    model : optional
        A ``face_alignment.FaceAlignment`` instance, or the path of dlib's
        ``shape_predictor_68_face_landmarks.dat`` (default: ``$ECHOKDM_DLIB_PREDICTOR``).
    backend : {"auto", "face_alignment", "dlib"}
        ``auto`` takes face-alignment when installed, else dlib.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(T, 68, 2)`` ``(x, y)`` pixels; NaN for a frame with no face found.

    Raises
    ------
    echokdm.errors.MissingDependencyError
        Neither package is installed (the message says what to install).
    """
    from echokdm.errors import MissingDependencyError

    if backend not in ("auto", "face_alignment", "dlib"):
        raise ValueError(f"backend must be 'auto', 'face_alignment' or 'dlib', got {backend!r}")
    detect = None
    for name, build in (("face_alignment", _face_alignment_backend), ("dlib", _dlib_backend)):
        if backend in ("auto", name):
            try:
                detect = build(model)
                break
            except ImportError:
                continue
    if detect is None:
        raise MissingDependencyError(_INSTALL)
    frames = np.asarray(frames)
    out = np.full((len(frames), N_FACE_KEYPOINTS, 2), np.nan, dtype=np.float32)
    for t, frame in enumerate(frames):
        found = detect(_to_uint8_rgb(frame))
        if found is not None and found.shape == (N_FACE_KEYPOINTS, 2):
            out[t] = found
    return out


def _read_pts(path):
    from echokdm.io.keypoint_files import read_pts

    return read_pts(path, n_keypoints=N_FACE_KEYPOINTS)


def _write_pts(path, keypoints, *, overwrite=False):
    from echokdm.io.keypoint_files import write_pts

    return write_pts(path, keypoints, overwrite=overwrite)


FACE_ADAPTER = SequenceAdapter("face", FACE_SCHEMA, "face/kdm_224.yaml", readers={".pts": _read_pts},
                               writer=(".pts", _write_pts), detector=detect_landmarks, thickness=1.0)
"""The face adapter (registry name ``"face"``): 68 landmarks, ``.pts`` files, optional detection."""
