"""The pose adapters: OpenPose BODY_25 and COCO-18 skeletons and their conditioning image.

Joint order and limbs are OpenPose's (``poseParameters.hpp``); "R"/"L" are the person's right and
left. Each limb is drawn as its own anti-aliased line in OpenPose's render colour, which is the
colour of the limb's second joint (``colorIndex = pairs[pair + 1]``), on black. Lines are
``max(1, min(H, W) / 112)`` px wide (2 px at the paper's 224×224). OpenPose also draws a disc at
every joint; the conditioning image here has the limbs only, as the face and echo ones have lines
only.

A joint that OpenPose did not find (confidence 0, written ``0, 0, 0``) is read as NaN
(:func:`~echokdm.io.keypoint_files.read_openpose_json`), and every limb touching it is skipped:
nothing is ever drawn at the image origin.

Registry names: ``"pose"`` (BODY_25, the default of OpenPose ≥ 1.4) and ``"pose_coco18"``.
No detector is bundled (OpenPose is not a Python package): run OpenPose with ``--write_json`` and
read its files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echokdm.adapters._render import KeypointSchema, render_schema
from echokdm.adapters.base import SequenceAdapter

__all__ = [
    "BODY_25_LIMBS",
    "BODY_25_NAMES",
    "BODY_25_SCHEMA",
    "COCO_18_LIMBS",
    "COCO_18_NAMES",
    "COCO_18_SCHEMA",
    "POSE_ADAPTER",
    "POSE_COCO18_ADAPTER",
    "openpose_colour",
    "pose_thickness",
    "render_body25",
    "render_coco18",
]

BODY_25_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                 "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                 "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")
#: OpenPose ``POSE_BODY_25_PAIRS_RENDER_GPU``, in drawing order.
BODY_25_LIMBS = ((1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
                 (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21),
                 (11, 22), (22, 23), (11, 24))
#: OpenPose ``POSE_BODY_25_COLORS_RENDER_GPU``: RGB 0-255 per joint.
_BODY_25_RGB = ((255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                (0, 255, 0), (255, 0, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255), (85, 0, 255), (0, 0, 255), (0, 0, 255),
                (0, 0, 255), (0, 255, 255), (0, 255, 255), (0, 255, 255))

COCO_18_NAMES = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
                 "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")
#: OpenPose ``POSE_COCO_PAIRS_RENDER_GPU``, in drawing order.
COCO_18_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
                 (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
#: OpenPose ``POSE_COCO_COLORS_RENDER_GPU``: RGB 0-255 per joint.
_COCO_18_RGB = ((255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255),
                (255, 0, 170), (170, 0, 255), (255, 0, 255), (85, 0, 255))


def openpose_colour(rgb: tuple[int, ...], joint: int) -> tuple[float, float, float]:
    """OpenPose's render colour of ``joint`` as RGB in [0, 1]."""
    r, g, b = rgb[joint % len(rgb)]
    return r / 255.0, g / 255.0, b / 255.0


def _flip(names: tuple[str, ...]) -> tuple[int, ...]:
    """``new = old[perm]`` after a horizontal flip: every R joint swaps with its L joint."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for name in names:
        other = "L" + name[1:] if name.startswith("R") else "R" + name[1:] if name.startswith("L") else name
        out.append(index.get(other, index[name]))
    return tuple(out)


def _schema(name: str, names: tuple[str, ...], limbs, rgb) -> KeypointSchema:
    lines = {f"{names[a]}-{names[b]}": (a, b) for a, b in limbs}
    colours = {f"{names[a]}-{names[b]}": openpose_colour(rgb, b) for a, b in limbs}
    return KeypointSchema(name=name, keypoint_names=names, lines=lines, colours=colours, flip_permutation=_flip(names))


BODY_25_SCHEMA = _schema("pose", BODY_25_NAMES, BODY_25_LIMBS, _BODY_25_RGB)
"""OpenPose BODY_25: 25 joints, 24 limbs named ``"<joint>-<joint>"`` (e.g. ``"Neck-MidHip"``)."""
COCO_18_SCHEMA = _schema("pose_coco18", COCO_18_NAMES, COCO_18_LIMBS, _COCO_18_RGB)
"""OpenPose COCO: 18 joints, 17 limbs."""


def pose_thickness(shape: tuple[int, int]) -> float:
    """Limb width in pixels for an image of ``shape``: ``max(1, min(H, W) / 112)``."""
    return max(1.0, min(shape) / 112.0)


def render_body25(keypoints: np.ndarray, shape: tuple[int, int], *, thickness: float | None = None) -> np.ndarray:
    """BODY_25 conditioning image: ``float32`` ``(..., 3, H, W)`` RGB in [0, 1] of ``(..., 25, 2)`` joints.

    NaN joints (not found) skip their limbs. ``thickness`` defaults to :func:`pose_thickness`.

    Examples
    --------
    >>> kp = np.full((25, 2), np.nan)
    >>> kp[1], kp[8] = (16.0, 4.0), (16.0, 28.0)  # neck and mid-hip only
    >>> image = render_body25(kp, (32, 32))
    >>> image[:, 16, 16].tolist(), float(image[:, :, :10].max())  # the Neck-MidHip limb, MidHip's red
    ([1.0, 0.0, 0.0], 0.0)
    """
    return render_schema(BODY_25_SCHEMA, keypoints, shape, thickness=thickness or pose_thickness(shape))


def render_coco18(keypoints: np.ndarray, shape: tuple[int, int], *, thickness: float | None = None) -> np.ndarray:
    """COCO-18 conditioning image: ``float32`` ``(..., 3, H, W)`` of ``(..., 18, 2)`` joints.

    See :func:`render_body25`.
    """
    return render_schema(COCO_18_SCHEMA, keypoints, shape, thickness=thickness or pose_thickness(shape))


def _reader(n: int):
    def read(path):
        from echokdm.io.keypoint_files import read_openpose_json

        return read_openpose_json(path, n_keypoints=n)
    return read


def _writer(path, keypoints, *, overwrite=False):
    from echokdm.io.keypoint_files import write_openpose_json

    return write_openpose_json(path, keypoints, overwrite=overwrite)


def _no_detector(frames: np.ndarray, model: Any = None) -> np.ndarray:
    from echokdm.errors import MissingDependencyError

    raise MissingDependencyError("pose keypoints are not detected by echokdm: run OpenPose with --write_json "
                                 "and give its files (adapter pose reads them with read_openpose_json)")


POSE_ADAPTER = SequenceAdapter("pose", BODY_25_SCHEMA, "pose/kdm_224.yaml", readers={".json": _reader(25)},
                               writer=("_keypoints.json", _writer), detector=_no_detector,
                               thickness=pose_thickness)
"""The BODY_25 pose adapter (registry name ``"pose"``): OpenPose JSON files, one per frame."""
POSE_COCO18_ADAPTER = SequenceAdapter("pose_coco18", COCO_18_SCHEMA, "pose/kdm_224_coco18.yaml",
                                      readers={".json": _reader(18)}, writer=("_keypoints.json", _writer),
                                      detector=_no_detector, thickness=pose_thickness)
"""The COCO-18 pose adapter (registry name ``"pose_coco18"``)."""
