"""Procedural face and pose image sequences with exact keypoints and flows (test and demo data).

No face or pose dataset ships with echokdm, and none can be downloaded in CI, so these generators
stand in for them, as the echo phantom (:mod:`echokdm.data.phantom`) does for echo:

* :mod:`~echokdm.data.procedural.face` — cartoon faces whose 68 iBUG landmarks move with
  expression (jaw opening, smile, brows, blinks) and head motion (:func:`simulate_face`);
* :mod:`~echokdm.data.procedural.pose` — articulated figures with textured clothes whose OpenPose
  BODY_25 joints move with an action (walk, wave, jumping jacks, squat) (:func:`simulate_figure`);
* :func:`write_procedural_dataset` — either kind on disk in the sequence-manifest layout
  (:mod:`echokdm.data.sequences`), with exact flows in the ``echokdm flow`` cache layout, ready
  for ``echokdm train kdm --config configs/face/kdm_224.yaml``.

Both are layered scenes (:class:`~echokdm.data.procedural._scene.LayeredScene`): a frame is
``scene.render(t)`` (RGB ``(H, W, 3)``), its keypoints ``scene.keypoints(t)`` and the exact flow
between two frames ``scene.flow(source, target)`` (shared/DESIGN.md convention). numpy (and
matplotlib's point-in-polygon test) only.
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

_LAZY = {
    "CartoonFace": "face", "simulate_face": "face", "sample_face_subject": "face", "sample_face_motion": "face",
    "template_landmarks": "face",
    "StickFigure": "pose", "simulate_figure": "pose", "sample_figure_subject": "pose",
    "sample_figure_motion": "pose", "ACTIONS": "pose", "BODY25_TO_COCO18": "pose",
    "write_procedural_dataset": "export", "ProceduralResult": "export",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
