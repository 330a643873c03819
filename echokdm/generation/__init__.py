"""Generated cine loops: motion sources, KDM generation and writers (``echokdm generate``).

* :mod:`~echokdm.generation.settings`: :class:`SamplingSettings`, how KDM samples (flow mode, ``k``,
  DDIM steps, seed, batch size, ``fit_keypoints``), the one set of defaults every entry point
  takes as ``sampling=``; :data:`DEFAULT_FPS`.
* :mod:`~echokdm.generation.motion`: target keypoint trajectories ``(T, 40, 2)``: the clip's
  own motion, another patient's motion transferred, a synthetic beat at a chosen EF, drag edits.
* :mod:`~echokdm.generation.tracking`: :func:`track_keypoints` carries keypoints through a clip by
  speckle tracking (optical flow); :func:`own_beat_motion` is a clip's own beat by tracking or by
  per-frame segmentation, as ``echokdm generate --own-motion`` chooses.
* :mod:`~echokdm.generation.loop`: :func:`generate_loop` runs a KDM pipeline on one source
  frame and a trajectory and returns a :class:`GeneratedLoop`; :func:`source_from_file` reads
  the source frame and its keypoints from any supported file.
* :mod:`~echokdm.generation.export`: :func:`write_loop` writes a loop as MP4, GIF, synthetic
  DICOM (:mod:`echokdm.io.dicom_write`) and NIfTI.
* :mod:`~echokdm.generation.echonet_cohort`: :func:`write_echonet_cohort` writes many loops in
  the EchoNet-Dynamic layout.
* :mod:`~echokdm.generation.synthesize`: :func:`synthesize_cohort` plans and makes a synthetic
  cohort; :mod:`~echokdm.generation.cohort_report` writes its memorisation check, plots and tables.
* :mod:`~echokdm.generation.keypoint_edit`: the same KDM generation for any adapter (faces, poses):
  :func:`generate_keypoint_edit`, :func:`read_edit_source`, :func:`write_keypoint_edit`.

Submodules are imported on first use (torch only when a loop is generated).
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "SamplingSettings": "settings",
    "DEFAULT_FPS": "settings",
    "own_motion": "motion",
    "own_beat": "motion",
    "own_beat_motion": "tracking",
    "track_keypoints": "tracking",
    "first_end_diastole": "motion",
    "transfer_motion": "motion",
    "synthetic_motion": "motion",
    "synthetic_volume_curve": "motion",
    "drag_motion": "motion",
    "spread_drag_vectors": "motion",
    "load_keypoints_file": "motion",
    "load_drag_file": "motion",
    "GeneratedLoop": "loop",
    "generate_loop": "loop",
    "LoopSource": "loop",
    "source_from_file": "loop",
    "read_source": "loop",
    "clip_keypoints": "loop",
    "loop_ef": "loop",
    "measure_ef": "loop",
    "ef_reading": "loop",
    "contour_agreement": "loop",
    "load_segmentation": "loop",
    "generate_ef_loop": "ef_control",
    "write_loop": "export",
    "write_synthetic_dicom": "export",  # defined in echokdm.io.dicom_write, which export imports
    "write_echonet_cohort": "echonet_cohort",
    "write_echonet_items": "echonet_cohort",
    "generate_keypoint_edit": "keypoint_edit",
    "read_edit_source": "keypoint_edit",
    "write_keypoint_edit": "keypoint_edit",
    "GeneratedEdit": "keypoint_edit",
    "synthesize_cohort": "synthesize",
    "sample_efs": "synthesize",
    "SynthesisResult": "cohort_report",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
