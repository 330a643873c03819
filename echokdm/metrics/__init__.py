"""Image, flow, keypoint and clinical metrics; per-patient and per-dataset reports."""
