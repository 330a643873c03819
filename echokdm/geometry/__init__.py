"""Cardiac geometry: keypoints, Simpson volumes, EF, and the package's one ``warp`` and one resize.

Submodules are imported on first use so that ``import echokdm.geometry`` stays cheap (no torch,
no scipy until a function needs them).
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "warp": "flow",
    "flow_to_grid": "flow",
    "transport_keypoints": "flow",
    "compose_flows": "flow",
    "resize_images": "resize",
    "resize_flow": "resize",
    "flow_to_color": "flow_viz",
    "flow_wheel_legend": "flow_viz",
    "plot_flow_arrows": "flow_viz",
    "make_color_wheel": "flow_viz",
    "N_KEYPOINTS": "keypoints",
    "CHORD_FRACTIONS": "keypoints",
    "KeypointError": "keypoints",
    "LVGeometry": "keypoints",
    "mask_keypoints": "keypoints",
    "tracing_keypoints": "keypoints",
    "keypoints_to_mask": "keypoints",
    "boundary_contour": "keypoints",
    "simpson_volume": "volumes",
    "cardiac_cycle": "volumes",
    "CardiacCycle": "volumes",
    "detect_apex_direction": "keypoints",
    "ApexDirection": "keypoints",
    "degrade_masks": "mask_faults",
    "sequence_keypoints": "temporal",
    "SequenceKeypoints": "temporal",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
