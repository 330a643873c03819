"""The condition images of KDM's two networks (paper §3.2-3.3), and how many channels each has.

One contract for training (:mod:`echokdm.training.kdm`, which sizes the networks and builds the
conditions of its batches) and inference (:mod:`echokdm.pipelines.kdm`): the channel counts below
are those of the tensors the builders return.

* K2F: source frame (F) + rendered source keypoints (C) + rendered target keypoints (C)
  [+ the keypoint displacement field (3) when ``displacement_sigma`` is set].
* F2I: source frame (F) + rendered target keypoints (C) [+ the flow / ``flow_scale`` (2)]
  [+ the source warped by the flow (F)].

``F`` is the frame channel count (1 for grayscale, 3 for RGB faces and poses; the
autoencoder's ``in_channels``). Frames cross the I/O boundary as ``(T, H, W)`` (one channel) or
``(T, H, W, C)`` (colour) and are ``(B, F, H, W)`` tensors inside torch: :func:`frames_to_batch`
and :func:`batch_to_frames` convert (docs/adapters.md, design notes).

``C`` is the channel count of the keypoint adapter's rendered image (3 for the RGB renderings of
:mod:`echokdm.adapters`). Frames are in [0, 1] and enter as ``2 x - 1``; renders are in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "DISPLACEMENT_CHANNELS",
    "FLOW_CHANNELS",
    "k2f_condition_channels",
    "f2i_condition_channels",
    "render_batch",
    "keypoint_displacement",
    "k2f_condition",
    "k2f_condition_from_renders",
    "f2i_condition",
    "f2i_condition_from_render",
    "frames_to_batch",
    "batch_to_frames",
    "frame_shape",
]

#: Channels of :func:`keypoint_displacement` (dx, dy, confidence).
DISPLACEMENT_CHANNELS = 3
#: Channels of a flow (dx, dy).
FLOW_CHANNELS = 2


def k2f_condition_channels(render_channels: int, displacement: bool = False, frame_channels: int = 1) -> int:
    """Channels of :func:`k2f_condition`: ``frame_channels + 2 render_channels [+ 3]``."""
    return frame_channels + 2 * render_channels + (DISPLACEMENT_CHANNELS if displacement else 0)


def f2i_condition_channels(render_channels: int, flow: bool = True, warped_source: bool = False,
                           frame_channels: int = 1) -> int:
    """Channels of :func:`f2i_condition`: ``frame_channels + render_channels [+ 2] [+ frame_channels]``."""
    return frame_channels + render_channels + (FLOW_CHANNELS if flow else 0) + frame_channels * int(warped_source)


def frames_to_batch(frames, channels: int = 1) -> torch.Tensor:
    """Frames at the I/O boundary → the ``float32`` ``(B, C, H, W)`` tensor the networks take.

    ``channels == 1``: ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` (grayscale, as before colour existed).
    ``channels > 1``: ``(H, W, C)`` or ``(B, H, W, C)`` (channels last, as images are read and
    written), or ``(B, C, H, W)``. numpy or torch, values in [0, 1] (not checked).

    Raises ValueError naming the shape and the expected channel count otherwise.
    """
    t = frames.float() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.asarray(frames, np.float32))
    if channels == 1:
        t = t[None, None] if t.ndim == 2 else t[:, None] if t.ndim == 3 else t
        if t.ndim == 4 and t.shape[1] == 1:
            return t
        raise ValueError(f"frames must be (H, W), (B, H, W) or (B, 1, H, W) for 1-channel models, got "
                         f"{tuple(frames.shape)}")
    t = t[None] if t.ndim == 3 else t
    if t.ndim == 4 and t.shape[1] == channels and t.shape[-1] != channels:
        return t
    if t.ndim == 4 and t.shape[-1] == channels:
        return t.permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)
    raise ValueError(f"frames must be (H, W, {channels}), (B, H, W, {channels}) or (B, {channels}, H, W) for "
                     f"{channels}-channel models, got {tuple(frames.shape)}")


def batch_to_frames(batch: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` tensor → numpy frames at the I/O boundary: ``(B, H, W)`` for one channel,
    ``(B, H, W, C)`` otherwise (the inverse of :func:`frames_to_batch`)."""
    out = batch.detach().float().cpu()
    return (out[:, 0] if out.shape[1] == 1 else out.permute(0, 2, 3, 1)).numpy()


def frame_shape(frame, channels: int = 1) -> tuple[int, int]:
    """``(H, W)`` of one frame in the I/O layout (``(H, W)`` or ``(H, W, C)``)."""
    shape = tuple(np.shape(frame))
    return shape[:2] if channels > 1 else shape[-2:]


def render_batch(keypoints: np.ndarray | torch.Tensor, shape: tuple[int, int], renderer: Callable) -> torch.Tensor:
    """Rendered keypoint images ``(B, C, H, W)`` in [-1, 1] for keypoints ``(B, N, 2)``."""
    kp = keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    images = np.stack([renderer(k, shape) for k in kp])  # (B, C, H, W) in [0, 1]
    return torch.from_numpy(images).float() * 2 - 1


def keypoint_displacement(source_kp, target_kp, shape: tuple[int, int], sigma: float,
                          scale: float = 1.0) -> torch.Tensor:
    """The keypoint motion as a dense condition image, in the flow convention.

    Each target keypoint ``t_i`` carries the displacement ``s_i - t_i`` (a flow on the target grid
    points into the source). At every pixel ``x`` the weights ``w_i = exp(-|x - t_i|² / 2σ²)`` give
    the weighted mean displacement ``Σ w_i (s_i - t_i) / Σ w_i`` (divided by ``scale``, K2F's
    ``flow_scale``, so it is in the units of the diffused flow code) and the confidence
    ``1 - exp(-Σ w_i)``. Keypoints with a NaN coordinate in either set are left out.

    Why: at the latent resolution (a quarter of the image) the keypoints move by a fraction of a
    latent pixel between frames, which the rendered keypoint lines carry poorly; this image gives
    K2F the motion's magnitude directly (DESIGN departure, see ``docs/training.md``).

    Parameters
    ----------
    source_kp, target_kp : array or tensor ``(B, N, 2)`` or ``(N, 2)``
        ``(x, y)`` pixels, integer values at pixel centres.
    shape : (H, W)
    sigma : float
        Gaussian width in pixels.
    scale : float
        Pixels per unit of the returned displacement.

    Returns
    -------
    torch.Tensor ``(B, 3, H, W)`` float32: ``dx / scale``, ``dy / scale``, confidence in [0, 1].
    """
    # np.array copies: keypoints often arrive as read-only broadcast views
    src = source_kp if isinstance(source_kp, torch.Tensor) else torch.from_numpy(np.array(source_kp, np.float32))
    src = src.float()
    tgt = (target_kp if isinstance(target_kp, torch.Tensor) else torch.from_numpy(np.array(target_kp, np.float32)))
    tgt = tgt.float().to(src.device)
    src, tgt = (src[None], tgt[None]) if src.ndim == 2 else (src, tgt)
    ok = torch.isfinite(src).all(-1) & torch.isfinite(tgt).all(-1)  # (B, N)
    disp = torch.where(ok[..., None], src - tgt, torch.zeros_like(src)) / scale  # (B, N, 2)
    centre = torch.where(ok[..., None], tgt, torch.zeros_like(tgt))
    h, w = shape
    ys = torch.arange(h, dtype=torch.float32, device=src.device)
    xs = torch.arange(w, dtype=torch.float32, device=src.device)
    d2 = ((xs[None, None, None, :] - centre[..., 0, None, None]) ** 2
          + (ys[None, None, :, None] - centre[..., 1, None, None]) ** 2)  # (B, N, H, W)
    logw = (-d2 / (2 * sigma**2)).masked_fill(~ok[..., None, None], float("-inf"))
    field = torch.einsum("bnhw,bnc->bchw", torch.softmax(logw, dim=1).nan_to_num(0.0), disp)
    weight = torch.logsumexp(logw, dim=1).exp()  # Σ w_i, 0 where no keypoint is valid
    return torch.cat([field, (1 - torch.exp(-weight))[:, None]], dim=1)


def k2f_condition(source: torch.Tensor, source_kp, target_kp, renderer: Callable,
                  displacement_sigma: float | None = None, flow_scale: float = 1.0) -> torch.Tensor:
    """K2F condition ``(B, F + 2C [+ 3], H, W)``: source frame ``(B, F, H, W)``, rendered source and target keypoints
    in [-1, 1] [, :func:`keypoint_displacement` when ``displacement_sigma`` is set]."""
    shape = tuple(source.shape[-2:])
    return k2f_condition_from_renders(source, render_batch(source_kp, shape, renderer),
                                      render_batch(target_kp, shape, renderer), source_kp, target_kp,
                                      displacement_sigma, flow_scale)


def k2f_condition_from_renders(source: torch.Tensor, source_render: torch.Tensor, target_render: torch.Tensor,
                               source_kp=None, target_kp=None, displacement_sigma: float | None = None,
                               flow_scale: float = 1.0) -> torch.Tensor:
    """:func:`k2f_condition` with the keypoints already rendered (in [-1, 1]); training uses it.

    ``source_kp`` and ``target_kp`` ``(B, N, 2)`` are needed only with ``displacement_sigma``."""
    parts = [source * 2 - 1, source_render.to(source), target_render.to(source)]
    if displacement_sigma:
        parts.append(keypoint_displacement(source_kp, target_kp, tuple(source.shape[-2:]), displacement_sigma,
                                           flow_scale).to(source))
    return torch.cat(parts, dim=1)


def f2i_condition(source: torch.Tensor, target_kp, flow: torch.Tensor | None, renderer: Callable,
                  flow_scale: float, warped: torch.Tensor | None = None) -> torch.Tensor:
    """F2I condition ``(B, F + C [+ 2] [+ F], H, W)``: source ``(B, F, H, W)``, rendered target keypoints
    [, flow / flow_scale] [, the warped source ``warped`` (B, F, H, W) in [0, 1]]."""
    render = render_batch(target_kp, tuple(source.shape[-2:]), renderer).to(source)
    return f2i_condition_from_render(source, render, flow, flow_scale, warped)


def f2i_condition_from_render(source: torch.Tensor, target_render: torch.Tensor, flow: torch.Tensor | None,
                              flow_scale: float, warped: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`f2i_condition` with the target keypoints already rendered (in [-1, 1]); training uses it."""
    parts = [source * 2 - 1, target_render]
    if flow is not None:
        parts.append(flow / flow_scale)
    if warped is not None:
        parts.append(warped * 2 - 1)
    return torch.cat(parts, dim=1)
