"""MONAI transforms for LV keypoints: array classes (logic) and ``Xxxd`` dictionary wrappers.

=============================  ==============================================================
array (:mod:`.array`)          dictionary (:mod:`.dictionary`)
=============================  ==============================================================
``BloodPoolKeypoints``         ``BloodPoolKeypointsd``   masks -> 40 keypoints (+ flags)
``TracingsToKeypoints``        ``TracingsToKeypointsd``  EchoNet tracings -> 40 keypoints
``KeypointsToMask``            ``KeypointsToMaskd``      keypoints -> polygon mask
``RenderKeypoints``            ``RenderKeypointsd``      keypoints -> conditioning image x̂_K
``KeypointsToHeatmaps``        ``KeypointsToHeatmapsd``  keypoints -> Gaussian heatmaps
``EchoAffine``                 ``RandSpatialEchod``      one affine for image/mask/keypoints/flow
``RandIntensityEcho``          ``RandIntensityEchod``    gain, gamma, speckle on images only
=============================  ==============================================================

Submodules are imported on first use (MONAI and torch are slow to import).
"""

from __future__ import annotations

import importlib

_ARRAY = ["BloodPoolKeypoints", "TracingsToKeypoints", "KeypointsToMask", "RenderKeypoints",
          "KeypointsToHeatmaps", "EchoAffine", "RandIntensityEcho", "adjust_intensity"]
_DICT = [f"{name}{suffix}" for name in ("BloodPoolKeypoints", "TracingsToKeypoints", "KeypointsToMask",
                                        "RenderKeypoints", "KeypointsToHeatmaps", "RandSpatialEcho",
                                        "RandIntensityEcho") for suffix in ("d", "D", "Dict")]
# public name -> submodule that defines it
_LAZY = {**{name: "array" for name in _ARRAY}, **{name: "dictionary" for name in _DICT}}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"echokdm.transforms.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'echokdm.transforms' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
