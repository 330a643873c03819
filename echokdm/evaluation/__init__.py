"""Evaluation of generated echo loops: ``echokdm evaluate`` and its Python API.

* :func:`evaluate` — generate with fixed seeds (KDM, "w/o F2I", "w/o K2F", TPS warp, no edit) on a
  manifest split and score every frame, clip, patient and dataset;
* :func:`evaluate_folders` — score folders of already generated loops against references;
* :class:`EvaluationResult` — pandas tables (``frames``, ``clips``, ``patients``, ``summary``)
  and the Table-3 markdown.
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports

_LAZY = {
    "evaluate": "runner", "EvaluateConfig": "runner", "EvaluationResult": "runner", "METHODS": "runner",
    "METHOD_LABELS": "runner", "generate_case": "runner", "score_case": "runner",
    "summarise_frames": "runner", "EvalCase": "cases", "load_case": "cases", "choose_frames": "cases",
    "evaluate_folders": "folders", "pair_folders": "folders", "write_plots": "plots",
    "run_utility": "utility", "UtilitySettings": "utility",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
