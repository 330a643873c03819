"""Baselines that learned methods are compared with: no edit, thin-plate-spline warp, classical flow.

* :func:`no_edit`: the source frame as the prediction of the target frame.
* :func:`tps_flow`, :func:`tps_warp`: keypoint-driven thin-plate-spline warp (no learning).
* :func:`tvl1_flow`, :func:`ilk_flow`: scikit-image optical flow in the shared/DESIGN.md
  convention (target grid, pointing into the source).

Submodules are imported on first use so that ``import echokdm.baselines`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from echokdm._lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "tps_flow": "tps",
    "tps_warp": "tps",
    "tvl1_flow": "flow",
    "ilk_flow": "flow",
}

__all__ = ["no_edit", *_LAZY]


def no_edit(source: Any, source_keypoints: Any = None, target_keypoints: Any = None) -> Any:
    """Return a copy of ``source``: the "nothing moves" prediction of the target frame.

    Its signature matches :func:`~echokdm.baselines.tps.tps_warp`, so the two baselines can be
    swapped in an evaluation loop; the keypoints are accepted and ignored. Every generative
    method should beat it on the image metrics.

    Parameters
    ----------
    source : numpy.ndarray or torch.Tensor
        Source frame(s), any shape, e.g. float32 ``(H, W)`` in [0, 1].
    source_keypoints, target_keypoints : optional
        Ignored.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        A copy of ``source`` (same kind, shape and dtype), safe to modify.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.zeros((4, 4), np.float32)
    >>> out = no_edit(frame)
    >>> out.shape, out is frame
    ((4, 4), False)
    """
    if hasattr(source, "clone"):  # a torch.Tensor, recognised without importing torch
        return source.clone()
    import numpy as np

    return np.array(source, copy=True)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
