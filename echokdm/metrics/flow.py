"""Flow metrics: against a reference flow, through the warped image, and through the keypoints.

Every metric returns one value per sample (shared/DESIGN.md): a flow ``(2, H, W)`` gives one
value, a batch ``(B, 2, H, W)`` gives ``(B,)``. numpy inputs give float64 numpy results (a
``numpy.float64`` scalar for one sample); torch inputs give torch tensors on the input's device
(differentiable, except :func:`warped_ssim`). Flows follow shared/DESIGN.md: channel 0 = dx
(columns), channel 1 = dy (rows), pixels, on the target grid pointing into the source.

``mask`` (optional, everywhere) restricts the average to pixels where it is nonzero, e.g. the
imaging sector or the LV: ``(H, W)`` for every sample or ``(B, H, W)`` one per sample. A sample
whose mask is empty gets NaN.

* Against a reference flow (ground truth on the phantom, OF-net for K2F as in the paper's
  Table 5): :func:`endpoint_error`, :func:`flow_mae`, :func:`flow_rmse`.
* Against the target frame (the only check possible on real data): :func:`warped_mse`,
  :func:`warped_ssim` of ``warp(source, flow)``.
* Against keypoints: :func:`keypoint_consistency`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echokdm._lazy import is_tensor
from echokdm.geometry.flow import check_flow, transport_keypoints, warp

__all__ = ["endpoint_error", "flow_mae", "flow_rmse", "warped_mse", "warped_ssim", "keypoint_consistency"]


# -- helpers -----------------------------------------------------------------------------------------
def _as_batch(flow: Any, reference: Any, name: str = "reference") -> tuple[Any, Any]:
    """Check two flows of the same shape; return both as ``(B, 2, H, W)``."""
    if is_tensor(flow) != is_tensor(reference):
        raise TypeError(f"flow and {name} must both be numpy arrays or both torch tensors, "
                        f"got {type(flow).__name__} and {type(reference).__name__}")
    if not is_tensor(flow):
        flow, reference = np.asarray(flow, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    check_flow(flow)
    if tuple(flow.shape) != tuple(reference.shape):
        raise ValueError(f"flow {tuple(flow.shape)} and {name} {tuple(reference.shape)} must have the same shape")
    return flow.reshape(-1, *flow.shape[-3:]), reference.reshape(-1, *reference.shape[-3:])


def _mask_weights(mask: Any, like: Any) -> Any:
    """``mask`` as float weights ``(B or 1, H, W)`` of the same kind and device as ``like`` (B, C, H, W)."""
    b, h, w = like.shape[0], like.shape[-2], like.shape[-1]
    if mask is None:
        return None
    shape = tuple(mask.shape)
    if shape not in ((h, w), (b, h, w)):
        raise ValueError(f"mask must have shape (H, W) = {(h, w)} or (B, H, W) = {(b, h, w)}, got {shape}")
    if is_tensor(like):
        import torch

        weights = torch.as_tensor(mask, device=like.device) != 0
        return weights.to(like.dtype).reshape(-1, h, w)
    return (np.asarray(mask) != 0).astype(np.float64).reshape(-1, h, w)


def _masked_mean(values: Any, mask: Any) -> Any:
    """Mean of ``values`` (B, C, H, W) over C, H, W, weighted by ``mask`` (B or 1, H, W) if given."""
    if mask is None:
        return values.mean((1, 2, 3))
    weights = mask[:, None]  # (B or 1, 1, H, W)
    total = (values * weights).sum((1, 2, 3))  # (B,)
    count = weights.sum((1, 2, 3)) * values.shape[1]  # (B or 1,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count  # 0 / 0 = NaN for an empty mask


def _per_sample(values: Any, batched: bool) -> Any:
    """``(B,)`` values as returned to the caller: unchanged when batched, else the single value."""
    if batched:
        return values
    return values[0] if is_tensor(values) else np.float64(values[0])


# -- against a reference flow ---------------------------------------------------------------------
def endpoint_error(flow: Any, reference: Any, mask: Any = None) -> Any:
    """Mean end-point error: the Euclidean distance between flow vectors, averaged per sample.

    ``EPE = mean over pixels of sqrt((dx - dx_ref)^2 + (dy - dy_ref)^2)``, in pixels.

    Parameters
    ----------
    flow, reference : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` or ``(B, 2, H, W)`` flows (dx, dy) in pixels, same shape and kind.
    mask : array_like or torch.Tensor, optional
        ``(H, W)`` or ``(B, H, W)``; average only where nonzero (NaN for an empty mask).

    Returns
    -------
    numpy.float64 or numpy.ndarray or torch.Tensor
        One EPE per sample: a scalar for ``(2, H, W)``, ``(B,)`` for a batch.

    Examples
    --------
    >>> import numpy as np
    >>> flow = np.zeros((2, 4, 4), np.float32); flow[0], flow[1] = 3.0, 4.0
    >>> float(endpoint_error(flow, np.zeros_like(flow)))
    5.0
    """
    batched = np.ndim(flow) == 4
    flow, reference = _as_batch(flow, reference)
    diff = flow - reference  # (B, 2, H, W)
    if is_tensor(diff):
        import torch

        epe = torch.linalg.vector_norm(diff, dim=1, keepdim=True)  # (B, 1, H, W); gradient 0 at 0, not NaN
    else:
        epe = np.sqrt((diff ** 2).sum(1, keepdims=True))  # (B, 1, H, W)
    return _per_sample(_masked_mean(epe, _mask_weights(mask, diff)), batched)


def flow_mae(flow: Any, reference: Any, mask: Any = None, *, per_channel: bool = False) -> Any:
    """Mean absolute error between flows, over both components (the paper's Table 5 MAE).

    ``MAE = mean over pixels and over (dx, dy) of |flow - reference|``, in pixels.

    Parameters
    ----------
    flow, reference, mask
        As in :func:`endpoint_error`.
    per_channel : bool
        Return the MAE of dx and of dy separately, a trailing axis of length 2.

    Returns
    -------
    numpy.float64 or numpy.ndarray or torch.Tensor
        Scalar (``(2,)`` with ``per_channel``) for one flow; ``(B,)`` (``(B, 2)``) for a batch.
    """
    return _componentwise(flow, reference, mask, per_channel, squared=False)


def flow_rmse(flow: Any, reference: Any, mask: Any = None, *, per_channel: bool = False) -> Any:
    """Root-mean-square error between flows, over both components (the paper's Table 5 RMSE).

    ``RMSE = sqrt(mean over pixels and over (dx, dy) of (flow - reference)^2)``, in pixels; a
    constant error ``(a, b)`` gives ``sqrt((a^2 + b^2) / 2)`` (the EPE divided by sqrt 2).

    Parameters
    ----------
    flow, reference, mask
        As in :func:`endpoint_error`.
    per_channel : bool
        Return the RMSE of dx and of dy separately, a trailing axis of length 2.

    Returns
    -------
    numpy.float64 or numpy.ndarray or torch.Tensor
        Scalar (``(2,)`` with ``per_channel``) for one flow; ``(B,)`` (``(B, 2)``) for a batch.
    """
    return _componentwise(flow, reference, mask, per_channel, squared=True)


def _componentwise(flow: Any, reference: Any, mask: Any, per_channel: bool, squared: bool) -> Any:
    """MAE (``squared=False``) or RMSE (``squared=True``) per sample, optionally per channel."""
    batched = np.ndim(flow) == 4
    flow, reference = _as_batch(flow, reference)
    diff = flow - reference  # (B, 2, H, W)
    err = diff ** 2 if squared else abs(diff)
    weights = _mask_weights(mask, diff)
    if per_channel:
        b, _, h, w = err.shape
        means = _masked_mean(err.reshape(b * 2, 1, h, w), _repeat_channels(weights))  # (B*2,)
        means = means.reshape(b, 2)
    else:
        means = _masked_mean(err, weights)  # (B,)
    out = means ** 0.5 if squared else means
    if batched:
        return out
    return out[0] if is_tensor(out) or per_channel else np.float64(out[0])


def _repeat_channels(weights: Any) -> Any:
    """Mask weights (B or 1, H, W) repeated for the two flow channels laid out as (B*2, H, W)."""
    if weights is None:
        return None
    if weights.shape[0] == 1:
        return weights
    if is_tensor(weights):
        return weights.repeat_interleave(2, dim=0)
    return np.repeat(weights, 2, axis=0)


# -- through the warped image ------------------------------------------------------------------
def _warped_pair(source: Any, target: Any, flow: Any) -> tuple[Any, Any]:
    """``warp(source, flow)`` and ``target``, both ``(B, C, H, W)``, after checking the shapes."""
    if not (is_tensor(source) == is_tensor(target) == is_tensor(flow)):
        raise TypeError("source, target and flow must all be numpy arrays or all torch tensors")
    if not is_tensor(flow):
        source, target, flow = np.asarray(source), np.asarray(target), np.asarray(flow)
    h, w = check_flow(flow)
    if tuple(source.shape) != tuple(target.shape):
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} must have the same shape")
    if flow.ndim == 4:
        b = flow.shape[0]
        if source.ndim not in (3, 4) or source.shape[0] != b:
            raise ValueError(f"with a batch of {b} flows, source and target must be (B, H, W) or (B, C, H, W) "
                             f"with B = {b}, got {tuple(source.shape)}")
    elif source.ndim not in (2, 3):
        raise ValueError(f"with one flow (2, H, W), source and target must be (H, W) or (C, H, W), "
                         f"got {tuple(source.shape)}")
    if tuple(source.shape[-2:]) != (h, w):
        raise ValueError(f"image size {tuple(source.shape[-2:])} differs from the flow's (H, W) = {(h, w)}")
    b = flow.shape[0] if flow.ndim == 4 else 1
    src = source.reshape(b, -1, h, w)  # (B, C, H, W)
    tgt = target.reshape(b, -1, h, w)
    if is_tensor(src):
        import torch

        dtype = flow.dtype if flow.is_floating_point() else torch.float32
        src, tgt, flow = src.to(dtype), tgt.to(dtype), flow.to(dtype)
    else:
        src, tgt = src.astype(np.float64), tgt.astype(np.float64)
    return warp(src, flow), tgt


def warped_mse(source: Any, target: Any, flow: Any, mask: Any = None) -> Any:
    """Mean squared error between ``warp(source, flow)`` and ``target``, per sample.

    Parameters
    ----------
    source, target : numpy.ndarray or torch.Tensor
        Frames in [0, 1]: ``(H, W)`` or ``(C, H, W)`` with a ``(2, H, W)`` flow; ``(B, H, W)`` or
        ``(B, C, H, W)`` with a ``(B, 2, H, W)`` flow. Same shape.
    flow : numpy.ndarray or torch.Tensor
        Backward flow (target grid, pointing into the source), dx then dy, pixels.
    mask : optional
        ``(H, W)`` or ``(B, H, W)``; average only where nonzero (e.g. the sector).

    Returns
    -------
    numpy.float64 or numpy.ndarray or torch.Tensor
        One MSE per sample (averaged over channels and pixels): scalar, or ``(B,)``.

    Examples
    --------
    >>> import numpy as np
    >>> source = np.tile(np.arange(6, dtype=np.float32) / 5, (4, 1))   # a horizontal ramp
    >>> target = np.roll(source, 1, axis=1)
    >>> shift = np.zeros((2, 4, 6), np.float32); shift[0] = -1.0      # target pixel x comes from x - 1
    >>> float(warped_mse(source, target, shift, mask=np.pad(np.ones((4, 5)), ((0, 0), (1, 0)))))
    0.0
    """
    warped, tgt = _warped_pair(source, target, flow)  # (B, C, H, W) each
    return _per_sample(_masked_mean((warped - tgt) ** 2, _mask_weights(mask, tgt)), np.ndim(flow) == 4)


def warped_ssim(source: Any, target: Any, flow: Any, mask: Any = None, *, win_size: int = 7) -> Any:
    """Structural similarity between ``warp(source, flow)`` and ``target``, per sample.

    :func:`skimage.metrics.structural_similarity` with ``data_range=1`` (frames in [0, 1]) and a
    uniform ``win_size`` window computes the SSIM map (channels averaged). Without a mask the
    result is scikit-image's mean SSIM, which leaves out the ``(win_size - 1) // 2`` border
    pixels; with a mask it is the mean of the map over the mask minus that same border, so an
    all-ones mask gives the unmasked value. Windows near the mask edge still see pixels outside it.

    Parameters
    ----------
    source, target, flow, mask
        As in :func:`warped_mse`. torch inputs are computed in numpy (not differentiable).
    win_size : int
        Odd side of the SSIM window, pixels.

    Returns
    -------
    numpy.float64 or numpy.ndarray or torch.Tensor
        One SSIM in [-1, 1] per sample (1 = identical): scalar, or ``(B,)``; NaN for an empty mask.
    """
    from skimage.metrics import structural_similarity

    warped, tgt = _warped_pair(source, target, flow)  # (B, C, H, W) each
    as_numpy = (lambda x: x.detach().cpu().double().numpy()) if is_tensor(tgt) else np.asarray
    warped_np, tgt_np = as_numpy(warped), as_numpy(tgt)
    weights = _mask_weights(None if mask is None else as_numpy(mask) if is_tensor(mask) else mask, tgt_np)
    pad = (win_size - 1) // 2
    values = np.empty(tgt_np.shape[0])
    for i in range(tgt_np.shape[0]):
        _, ssim_map = structural_similarity(warped_np[i], tgt_np[i], data_range=1.0, win_size=win_size,
                                            channel_axis=0, full=True)  # (C, H, W)
        inner = np.zeros(ssim_map.shape[-2:])
        inner[pad:inner.shape[0] - pad, pad:inner.shape[1] - pad] = 1.0
        if weights is not None:
            inner = inner * weights[i if weights.shape[0] > 1 else 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            values[i] = (ssim_map.mean(0) * inner).sum() / inner.sum()
    if is_tensor(tgt):
        import torch

        values = torch.as_tensor(values, device=tgt.device)
    return _per_sample(values, np.ndim(flow) == 4)


# -- through the keypoints ------------------------------------------------------------------------
def keypoint_consistency(flow: Any, source_keypoints: Any, target_keypoints: Any) -> Any:
    """How far target keypoints land from the source keypoints after transport through ``flow``.

    Mean over keypoints of ``|| transport_keypoints(target_keypoints, flow) - source_keypoints ||``
    (pixels), with :func:`~echokdm.geometry.flow.transport_keypoints` (``q + flow(q)``, bilinear).
    0 for a flow that carries every target keypoint onto its source keypoint.

    Parameters
    ----------
    flow : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` or ``(B, 2, H, W)`` backward flow, dx then dy, pixels.
    source_keypoints, target_keypoints : numpy.ndarray or torch.Tensor
        ``(N, 2)`` (or ``(B, N, 2)`` for a batch) keypoints ``(x, y)`` in pixels of the source
        and target frames, same order. Rows with a NaN in either are ignored.

    Returns
    -------
    numpy.float64 or numpy.ndarray or torch.Tensor
        One mean distance per sample (pixels): scalar, or ``(B,)``; NaN where no keypoint is left.
    """
    if not is_tensor(flow):
        source_keypoints = np.asarray(source_keypoints, dtype=np.float64)
        target_keypoints = np.asarray(target_keypoints, dtype=np.float64)
    if tuple(source_keypoints.shape) != tuple(target_keypoints.shape):
        raise ValueError(f"source_keypoints {tuple(source_keypoints.shape)} and target_keypoints "
                         f"{tuple(target_keypoints.shape)} must have the same shape")
    landed = transport_keypoints(target_keypoints, flow)  # checks the shapes against the flow
    n = source_keypoints.shape[-2]
    diff = (landed - source_keypoints).reshape(-1, n, 2)  # (B, N, 2)
    if is_tensor(diff):
        dist = diff.pow(2).sum(-1).sqrt()  # (B, N), NaN where a keypoint is missing
        found = ~dist.isnan()
        values = dist.nan_to_num(0.0).sum(-1) / found.sum(-1)
    else:
        dist = np.sqrt((diff.astype(np.float64) ** 2).sum(-1))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.nansum(dist, -1) / (~np.isnan(dist)).sum(-1)
    return _per_sample(values, np.ndim(flow) == 4)
