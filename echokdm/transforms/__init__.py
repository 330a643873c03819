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
                               (also ``RandSpatiald``, its domain-free name)
``RandIntensityEcho``          ``RandIntensityEchod``    gain, gamma, speckle on images only
=============================  ==============================================================

Submodules are imported on first use (MONAI and torch are slow to import).
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

_ARRAY = ["BloodPoolKeypoints", "TracingsToKeypoints", "KeypointsToMask", "RenderKeypoints",
          "KeypointsToHeatmaps", "EchoAffine", "RandIntensityEcho", "adjust_intensity"]
_DICT = [f"{name}{suffix}" for name in ("BloodPoolKeypoints", "TracingsToKeypoints", "KeypointsToMask",
                                        "RenderKeypoints", "KeypointsToHeatmaps", "RandSpatialEcho",
                                        "RandIntensityEcho") for suffix in ("d", "D", "Dict")] + ["RandSpatiald"]
# public name -> submodule that defines it
_LAZY = {**{name: "array" for name in _ARRAY}, **{name: "dictionary" for name in _DICT}}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
