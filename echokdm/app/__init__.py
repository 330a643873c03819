"""``echokdm app``: a local browser app to watch, compare and steer cine loops (Gradio).

* :mod:`~echokdm.app.clip`: open a file or a manifest clip and measure it as ``segment``,
  ``keypoints`` and ``ef`` do (:func:`~echokdm.app.clip.open_clip`);
* :mod:`~echokdm.app.render`: the cine with its LV mask, 40 keypoints and volume curve, the source
  frame to click keypoints on;
* :mod:`~echokdm.app.generate`: generate with the functions of ``echokdm generate``, the real |
  generated video and the exports (:func:`~echokdm.generation.export.write_loop`);
* :mod:`~echokdm.app.results`: the tables of ``evaluate`` / ``synthesize`` folders, worst first;
* :mod:`~echokdm.app.ui`: the Gradio page (:func:`~echokdm.app.ui.build_app`, :func:`~echokdm.app.ui.launch`).

Only :mod:`~echokdm.app.ui` imports Gradio (``pip install "echokdm[app]"``).
"""

from __future__ import annotations

__all__ = ["build_app", "launch"]


def build_app(*args, **kwargs):
    """See :func:`echokdm.app.ui.build_app`."""
    from echokdm.app.ui import build_app as build

    return build(*args, **kwargs)


def launch(*args, **kwargs):
    """See :func:`echokdm.app.ui.launch`."""
    from echokdm.app.ui import launch as serve

    return serve(*args, **kwargs)
