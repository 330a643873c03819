"""Echo-specific tools beside the generic KDM core: the LV blood-pool segmentation network.

* :mod:`~echokdm.echo.segmentation`: :class:`LVSegmentationNet`, a MONAI 2-D U-Net saved as a
  diffusers model (the packaged ``seg_phantom_112`` checkpoint loads with
  ``LVSegmentationNet.from_pretrained(pretrained_path("seg_phantom_112"))``).
* :mod:`~echokdm.echo.segmentation_training`: :func:`train_segmentation` (``echokdm train seg``),
  :func:`segment_manifest` (``echokdm segment``), :func:`dice_scores` and the config dataclasses.

The KDM core (:mod:`echokdm.models`, :mod:`echokdm.pipelines`, :mod:`echokdm.training`) holds no
echo-specific name; it reaches the domain through :mod:`echokdm.adapters`. Submodules are
imported on first use (torch and MONAI only when a model is built).
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "LVSegmentationNet": "segmentation",
    "SegModelConfig": "segmentation_training",
    "SegDataConfig": "segmentation_training",
    "SegTrainConfig": "segmentation_training",
    "SegConfig": "segmentation_training",
    "load_seg_config": "segmentation_training",
    "LabelledFrames": "segmentation_training",
    "labelled_frames": "segmentation_training",
    "dice_scores": "segmentation_training",
    "train_segmentation": "segmentation_training",
    "segment_manifest": "segmentation_training",
    "EFRegressionNet": "ef_regression",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
