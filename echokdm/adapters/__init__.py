"""Keypoint adapters: schemas, conditioning-image renderers, keypoint files and training data per domain.

* :func:`get_adapter` (``"echo"``, ``"face"``, ``"pose"``, ``"pose_coco18"``) returns an
  :class:`Adapter`: the keypoint schema, the renderer of the KDM conditioning image x̂_K, keypoint
  file parsers, the training manifest and clips, the keypoint re-detection hook and the default
  config. The generic KDM core (models, pipelines, training, evaluation) holds only the name.
* :mod:`echokdm.adapters.echo` (40 LV keypoints), :mod:`echokdm.adapters.face` (68 iBUG
  landmarks, 11 lines), :mod:`echokdm.adapters.pose` (OpenPose BODY_25 and COCO-18).
* :class:`KeypointSchema`, :func:`render_schema`, :func:`render_polylines`: the generic renderer.

Importing this package needs numpy only.
"""

from __future__ import annotations

from echokdm.adapters._render import KeypointSchema, render_polylines, render_schema
from echokdm.adapters.base import (
    DEFAULT_ADAPTER,
    Adapter,
    SequenceAdapter,
    available_adapters,
    get_adapter,
    register_adapter,
)

__all__ = [
    "DEFAULT_ADAPTER",
    "Adapter",
    "KeypointSchema",
    "SequenceAdapter",
    "available_adapters",
    "get_adapter",
    "register_adapter",
    "render_polylines",
    "render_schema",
]
