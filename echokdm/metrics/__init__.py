"""Image, flow, keypoint and clinical metrics; per-patient and per-dataset reports.

Every metric returns one value per sample. Submodules are imported on first use (LPIPS and
scikit-image are heavy).
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_LAZY = {
    "mse": "image", "psnr": "image", "ssim": "image",
    "LPIPSMetric": "lpips", "lpips_distance": "lpips",
    "endpoint_error": "flow", "flow_mae": "flow", "flow_rmse": "flow", "warped_mse": "flow",
    "warped_ssim": "flow", "keypoint_consistency": "flow",
    "temporal_warping_error": "temporal", "TemporalWarpingError": "temporal",
    "nearest_distance": "privacy", "memorisation_report": "privacy", "MemorisationReport": "privacy",
    "bootstrap_ci": "report", "per_patient": "report", "summarise": "report", "table3_markdown": "report",
    "keypoints_table": "lv_function", "ef_table": "lv_function", "ef_agreement": "lv_function",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"echokdm.metrics.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'echokdm.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
