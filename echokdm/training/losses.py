"""Unsupervised optical-flow losses (UnFlow / ARFlow style), all in torch.

Every function works on batches: images ``(B, 1, H, W)`` in [0, 1], flows ``(B, 2, H, W)`` in the
shared/DESIGN.md convention (dx, dy pixels on the target grid, pointing into the source), masks
``(B, 1, H, W)`` float in [0, 1] (1 = pixel counts). All warping goes through
:func:`echokdm.geometry.flow.warp`.

References
----------
Meister, Hur & Roth, "UnFlow: Unsupervised Learning of Optical Flow with a Bidirectional Census
Loss", AAAI 2018 (census loss, forward–backward occlusion check, eq. 1–2).
Liu et al., "Learning by Analogy: Reliable Supervision from Transformations for Unsupervised
Optical Flow Estimation" (ARFlow), CVPR 2020 (L1 + SSIM photometric loss, second-order
edge-aware smoothness).
Wang et al., "Image quality assessment: from error visibility to structural similarity", 2004.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from echokdm.geometry.flow import warp

__all__ = [
    "masked_mean", "census_transform", "census_loss", "ssim_map", "photometric_loss",
    "smoothness_loss", "occlusion_mask", "endpoint_error",
]


def masked_mean(value: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``value`` ``(B, C, H, W)`` over the pixels where ``mask`` ``(B, 1, H, W)`` is set.

    Returns a scalar; ``mask=None`` is the plain mean. An empty mask gives 0, not NaN.
    """
    if mask is None:
        return value.mean()
    weight = mask.expand_as(value)
    return (value * weight).sum() / weight.sum().clamp(min=1.0)


def census_transform(image: torch.Tensor, patch: int = 7) -> torch.Tensor:
    """Soft ternary census transform (UnFlow, §3.1): ``(B, patch², H, W)``.

    For every neighbour ``n`` in the ``patch × patch`` window, ``t = I(n) - I(centre)`` (image
    scaled to [0, 255]) is mapped to ``t / sqrt(0.81 + t²)``, a smooth sign that ignores gain.
    """
    b, c, h, w = image.shape
    r = patch // 2
    padded = F.pad(image * 255.0, (r, r, r, r), mode="replicate")
    neighbours = F.unfold(padded, patch).view(b, c * patch * patch, h, w)  # (B, P*P, H, W) for C = 1
    diff = neighbours - image * 255.0
    return diff / torch.sqrt(0.81 + diff**2)


def census_loss(warped: torch.Tensor, target: torch.Tensor, patch: int = 7) -> torch.Tensor:
    """Per-pixel census distance ``(B, 1, H, W)``: mean over the patch of ``d² / (0.1 + d²)``.

    Robust to speckle decorrelation and gain changes (UnFlow's ternary census loss,
    with a soft Hamming distance). Values in [0, 1); 0 for identical images.
    """
    d = census_transform(warped, patch) - census_transform(target, patch)
    return (d**2 / (0.1 + d**2)).mean(1, keepdim=True)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Local SSIM ``(B, C, H, W)`` with a ``window × window`` box filter (Wang et al. 2004).

    Constants ``C1 = 0.01²``, ``C2 = 0.03²`` for images in [0, 1]; reflect padding keeps the size.
    """
    pad = window // 2
    x = F.pad(x, (pad,) * 4, mode="reflect")
    y = F.pad(y, (pad,) * 4, mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, window, 1), F.avg_pool2d(y, window, 1)
    var_x = F.avg_pool2d(x * x, window, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, window, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, window, 1) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def photometric_loss(source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor,
                     mask: torch.Tensor | None = None, *, l1_weight: float = 0.15, ssim_weight: float = 0.85,
                     census_weight: float = 0.0, census_patch: int = 7) -> torch.Tensor:
    """Photometric loss of ``warp(source, flow)`` against ``target`` over ``mask`` (scalar).

    ``l1_weight · |w - t| + ssim_weight · (1 - SSIM(w, t)) / 2 + census_weight · census(w, t)``,
    each averaged over the masked pixels (ARFlow's L1 + SSIM mix by default; UnFlow's census
    by weight). Identical images with zero flow give exactly 0.

    Parameters
    ----------
    source, target : torch.Tensor
        ``(B, 1, H, W)`` frames in [0, 1].
    flow : torch.Tensor
        ``(B, 2, H, W)`` backward flow (target grid, into the source), pixels.
    mask : torch.Tensor, optional
        ``(B, 1, H, W)`` weights (e.g. non-occluded pixels); None counts every pixel.
    """
    warped = warp(source, flow)
    per_pixel = torch.zeros_like(target)
    if l1_weight:
        per_pixel = per_pixel + l1_weight * (warped - target).abs()
    if ssim_weight:
        per_pixel = per_pixel + ssim_weight * ((1.0 - ssim_map(warped, target)) / 2.0).clamp(0.0, 1.0)
    if census_weight:
        per_pixel = per_pixel + census_weight * census_loss(warped, target, census_patch)
    return masked_mean(per_pixel, mask)


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x (columns) and y (rows): ``(B, C, H, W-1)`` and ``(B, C, H-1, W)``."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def smoothness_loss(flow: torch.Tensor, image: torch.Tensor, *, order: int = 2,
                    edge_alpha: float = 10.0) -> torch.Tensor:
    """Edge-aware smoothness of ``flow`` (scalar), weighted by the gradients of ``image``.

    ``mean |∇ᵏ flow| · exp(-edge_alpha · |∇ image|)`` along x and y, with ``k = order`` (1: first
    differences; 2: second differences, which do not penalise the affine motions of a beating
    wall; ARFlow's default). ``image`` ``(B, 1, H, W)`` is the frame on whose grid the flow lives
    (the target). Flows are taken in pixels.
    """
    if order not in (1, 2):
        raise ValueError(f"smoothness order must be 1 or 2, got {order}")
    img_dx, img_dy = _gradients(image)
    weight_x = torch.exp(-edge_alpha * img_dx.abs().mean(1, keepdim=True))
    weight_y = torch.exp(-edge_alpha * img_dy.abs().mean(1, keepdim=True))
    dx, dy = _gradients(flow)
    if order == 2:
        dx, _ = _gradients(dx)
        _, dy = _gradients(dy)
        weight_x, weight_y = weight_x[..., :, 1:], weight_y[..., 1:, :]
    return (weight_x * dx.abs()).mean() + (weight_y * dy.abs()).mean()


def occlusion_mask(flow_fw: torch.Tensor, flow_bw: torch.Tensor, *, alpha: float = 0.01,
                   beta: float = 0.5) -> torch.Tensor:
    """Forward–backward consistency check (UnFlow eq. 1): 1 where the pixel is *visible*.

    ``flow_fw`` is the flow of the pair (source a, target b), on b's grid pointing into a;
    ``flow_bw`` the flow of (source b, target a), on a's grid pointing into b. For a visible pixel
    q of b the round trip closes: ``flow_fw(q) + flow_bw(q + flow_fw(q)) ≈ 0``. A pixel is
    occluded where ``|f_fw + warp(f_bw, f_fw)|² > alpha (|f_fw|² + |warp(f_bw, f_fw)|²) + beta``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)`` float, 1 = visible, 0 = occluded; no gradient flows through it.
    """
    with torch.no_grad():
        back = warp(flow_bw, flow_fw)  # flow_bw sampled where each target pixel lands in a
        mismatch = ((flow_fw + back) ** 2).sum(1, keepdim=True)
        bound = alpha * ((flow_fw**2).sum(1, keepdim=True) + (back**2).sum(1, keepdim=True)) + beta
        return (mismatch <= bound).to(flow_fw.dtype)


def endpoint_error(flow: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error ``|flow - reference|₂`` (pixels) over ``mask``; scalar, differentiable."""
    epe = torch.sqrt(((flow - reference) ** 2).sum(1, keepdim=True) + 1e-12)  # (B, 1, H, W)
    return masked_mean(epe, mask)
