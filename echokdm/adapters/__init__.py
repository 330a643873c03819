"""Keypoint schemas and conditioning-image renderers: echo (40 LV keypoints); face and pose later.

Each adapter module defines a :class:`KeypointSchema` (keypoint names, polylines, colours, flip
permutation, derived lines) and a ``render_keypoints(keypoints, shape, *, thickness)`` function
built on the generic :func:`render_schema`. numpy only.
"""

from __future__ import annotations

from echokdm.adapters._render import KeypointSchema, render_polylines, render_schema

__all__ = ["KeypointSchema", "render_polylines", "render_schema"]
