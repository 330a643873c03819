"""Image, flow, keypoint and clinical metrics; per-patient and per-dataset reports.

Every metric returns one value per sample. Submodules are imported on first use (LPIPS and
scikit-image are heavy).
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

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
    "frechet_distance": "fid", "frechet_inception_distance": "fid", "load_fid_extractor": "fid",
    "frechet_video_distance": "fvd", "load_fvd_extractor": "fvd",
    "classifier_two_sample_test": "two_sample", "TwoSampleResult": "two_sample",
    "loop_consistency": "consistency", "pop_ratio": "consistency",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
