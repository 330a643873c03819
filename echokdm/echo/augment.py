"""Sim-to-real image augmentation for the LV segmentation network.

The phantom is the only labelled data echokdm can ship, and no phantom looks exactly like any
scanner. :func:`random_ultrasound_look` changes what a segmentation network could learn from the
phantom's look but not from anatomy: blood-pool brightness, speckle size and contrast, blur,
depth gain (TGC), near-field haze, noise, gamma and dynamic range, and lossy-compression blocks.
The geometry (and so the mask) is untouched; apply it after the spatial augmentation.

Every draw comes from the ``torch.Generator`` passed in (a CPU generator), so a training run is
reproducible on any device.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

__all__ = ["LookAugmentation", "contract_lv", "random_ultrasound_look", "dct_blocks"]


@dataclasses.dataclass(frozen=True)
class LookAugmentation:
    """Probabilities and ranges of :func:`random_ultrasound_look` (each effect drawn per sample).

    Attributes
    ----------
    p_blood : float
        Probability of rescaling the blood pool's brightness (inside the mask, feathered) by a
        factor in ``blood_range``: real blood is nearly black, phantom blood may be grey.
    p_blur, blur_sigma_px : float, tuple
        Gaussian blur of ``sigma`` pixels (resolution, scan conversion).
    p_speckle, speckle_sigma_px, speckle_strength : float, tuple, tuple
        Multiplicative smooth speckle noise: ``x * (1 + s * n)``, ``n`` Gaussian noise blurred by
        ``sigma`` pixels and normalised to unit standard deviation.
    p_tgc, tgc_db : float, float
        A depth gain ramp from ``-tgc_db`` to ``+tgc_db`` dB over the frame height (rows).
    p_haze, haze_level : float, tuple
        Near-field clutter: a bright haze fading with depth over the top quarter.
    p_noise, noise_std : float, tuple
        Additive Gaussian noise (electronic noise floor).
    p_gamma, gamma_range, gain_range : float, tuple, tuple
        ``gain * x ** gamma`` (display map, dynamic range).
    p_jpeg, jpeg_step : float, tuple
        8 × 8 DCT quantisation with a uniform step (the blocks of JPEG / MPEG compression).
    p_noisy_outside : float
        Probability that the noise and haze also reach the pixels outside the sector (exactly 0
        in the phantom; a real video's black background is noisy and compressed).
    """

    p_blood: float = 0.5
    blood_range: tuple[float, float] = (0.15, 1.3)
    p_blur: float = 0.5
    blur_sigma_px: tuple[float, float] = (0.3, 1.5)
    p_speckle: float = 0.5
    speckle_sigma_px: tuple[float, float] = (0.5, 2.0)
    speckle_strength: tuple[float, float] = (0.1, 0.6)
    p_tgc: float = 0.5
    tgc_db: float = 6.0
    p_haze: float = 0.3
    haze_level: tuple[float, float] = (0.05, 0.3)
    p_noise: float = 0.5
    noise_std: tuple[float, float] = (0.0, 0.05)
    p_gamma: float = 0.8
    gamma_range: tuple[float, float] = (0.6, 1.8)
    gain_range: tuple[float, float] = (0.5, 1.3)
    p_jpeg: float = 0.3
    jpeg_step: tuple[float, float] = (0.02, 0.12)
    p_noisy_outside: float = 0.0


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def _chosen(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each sample ``(B, 1, H, W)`` with its own ``sigma`` (pixels, ``(B,)``)."""
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernels = torch.exp(-0.5 * (offsets[None] / sigma[:, None].clamp(min=1e-3).to(x.dtype)) ** 2)  # (B, K)
    kernels = kernels / kernels.sum(1, keepdim=True)
    b = x.shape[0]
    # depthwise separable convolution: treat the batch as channels
    planes = x.transpose(0, 1)  # (1, B, H, W)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernels.view(b, 1, 1, -1), groups=b)
    planes = F.conv2d(planes, kernels.view(b, 1, -1, 1), groups=b)
    return planes.transpose(0, 1)


def dct_blocks(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """Quantise the 8 × 8 block DCT of ``x`` ``(B, 1, H, W)`` with a uniform ``step`` per sample.

    Quantisation is the lossy part of JPEG and of the intra frames of MPEG; it leaves the
    blocking and ringing seen in compressed echo videos. ``H`` and ``W`` need not be multiples of
    8 (the frame is padded by replication and cropped back).
    """
    b, c, h, w = x.shape
    n = 8
    k = torch.arange(n, dtype=x.dtype)
    basis = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n))  # (u, x)
    basis = basis * torch.where(k == 0, math.sqrt(1 / n), math.sqrt(2 / n))[:, None]
    ph, pw = (-h) % n, (-w) % n
    xp = F.pad(x, (0, pw, 0, ph), mode="replicate")
    hh, ww = xp.shape[-2:]
    blocks = xp.reshape(b, c, hh // n, n, ww // n, n).permute(0, 1, 2, 4, 3, 5)  # (B, C, by, bx, 8, 8)
    coeffs = basis @ blocks @ basis.T
    s = step.to(x.dtype).view(b, 1, 1, 1, 1, 1)
    coeffs = torch.round(coeffs / s) * s
    blocks = basis.T @ coeffs @ basis
    out = blocks.permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh, ww)
    return out[..., :h, :w]


def random_ultrasound_look(x: torch.Tensor, mask: torch.Tensor | None, gen: torch.Generator,
                           settings: LookAugmentation = LookAugmentation()) -> torch.Tensor:
    """Randomly change the look of frames ``x`` ``(B, 1, H, W)`` in [0, 1], not their anatomy.

    Parameters
    ----------
    x : torch.Tensor
        Frames ``(B, 1, H, W)``, float in [0, 1] (CPU or GPU; random numbers are drawn on CPU).
    mask : torch.Tensor, optional
        The LV blood-pool masks ``(B, 1, H, W)`` (1 = blood), used only to rescale the blood
        pool's brightness; ``None`` skips that effect.
    gen : torch.Generator
        CPU generator all draws come from.
    settings : LookAugmentation
        Probabilities and ranges.

    Returns
    -------
    torch.Tensor
        Frames of the same shape, dtype and device, in [0, 1]. Pixels that were exactly 0 (outside
        the sector) stay 0, so the sector's outline is kept, except in the share
        ``p_noisy_outside`` of samples.
    """
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"x must be (B, 1, H, W), got {tuple(x.shape)}")
    device, dtype = x.device, x.dtype
    b, _, h, w = x.shape
    s = settings
    out = x.detach().to("cpu", torch.float32).clamp(0, 1)
    outside = out <= 0
    if mask is not None and s.p_blood > 0:
        chosen = _chosen(b, s.p_blood, gen)
        factor = torch.where(chosen, _uniform(b, *s.blood_range, gen), torch.ones(b)).view(b, 1, 1, 1)
        soft = _gaussian_blur(mask.detach().to("cpu", torch.float32), torch.full((b,), 1.0)).clamp(0, 1)
        out = out * (1 + (factor - 1) * soft)
    if s.p_speckle > 0:
        chosen = _chosen(b, s.p_speckle, gen).view(b, 1, 1, 1)
        noise = torch.randn(b, 1, h, w, generator=gen)
        noise = _gaussian_blur(noise, _uniform(b, *s.speckle_sigma_px, gen))
        noise = noise / noise.flatten(1).std(1).clamp(min=1e-6).view(b, 1, 1, 1)
        strength = _uniform(b, *s.speckle_strength, gen).view(b, 1, 1, 1)
        out = torch.where(chosen, out * (1 + strength * noise).clamp(min=0), out)
    if s.p_blur > 0:
        chosen = _chosen(b, s.p_blur, gen).view(b, 1, 1, 1)
        out = torch.where(chosen, _gaussian_blur(out, _uniform(b, *s.blur_sigma_px, gen)), out)
    if s.p_tgc > 0:
        chosen = _chosen(b, s.p_tgc, gen).view(b, 1, 1, 1)
        db = (_uniform(b, -s.tgc_db, s.tgc_db, gen)).view(b, 1, 1, 1)
        depth = torch.linspace(-1, 1, h).view(1, 1, h, 1)
        out = torch.where(chosen, out * 10 ** (db * depth / 20), out)
    if s.p_haze > 0:
        chosen = _chosen(b, s.p_haze, gen).view(b, 1, 1, 1)
        level = _uniform(b, *s.haze_level, gen).view(b, 1, 1, 1)
        depth = torch.linspace(0, 1, h).view(1, 1, h, 1)
        haze = level * torch.exp(-depth / 0.12)
        out = torch.where(chosen, out + haze, out)
    if s.p_gamma > 0:
        chosen = _chosen(b, s.p_gamma, gen).view(b, 1, 1, 1)
        gamma = _uniform(b, *s.gamma_range, gen).view(b, 1, 1, 1)
        gain = _uniform(b, *s.gain_range, gen).view(b, 1, 1, 1)
        out = torch.where(chosen, gain * out.clamp(0, 1) ** gamma, out)
    if s.p_noise > 0:
        chosen = _chosen(b, s.p_noise, gen).view(b, 1, 1, 1)
        std = _uniform(b, *s.noise_std, gen).view(b, 1, 1, 1)
        out = torch.where(chosen, out + std * torch.randn(b, 1, h, w, generator=gen), out)
    out = out.clamp(0, 1)
    if s.p_jpeg > 0:
        chosen = _chosen(b, s.p_jpeg, gen).view(b, 1, 1, 1)
        step = _uniform(b, *s.jpeg_step, gen)
        out = torch.where(chosen, dct_blocks(out, step).clamp(0, 1), out)
    if s.p_noisy_outside > 0:  # drawn only when asked for, so the default draws as before
        outside = outside & ~_chosen(b, s.p_noisy_outside, gen).view(b, 1, 1, 1)
    out = out.masked_fill(outside, 0.0)
    return out.to(device, dtype)


def contract_lv(x: torch.Tensor, mask: torch.Tensor, gen: torch.Generator, p: float = 0.5,
                max_strength: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """Squeeze the LV towards its long axis, frame and mask alike, as a contracting or generated frame does.

    Generated loops are warps of a source frame: their end-systolic LV is the source's cavity pushed
    towards the axis, its walls thickened, its speckle compressed. The phantom's own systole shows a
    phantom wall contracting, not a warped one, and on warped real frames the packaged segmentation
    lost the narrowed cavity. With probability ``p`` per sample, every pixel is resampled from farther
    from the mask's principal axis by ``1 + s`` (``s`` uniform in ``[0, max_strength]``) inside the
    blood pool, the factor fading to 1 over the surrounding tissue (a blurred copy of the mask), so
    the cavity narrows by up to ``1 / (1 + max_strength)`` and the walls thicken. Samples without a
    mask, or not drawn, are unchanged.

    Parameters
    ----------
    x, mask : torch.Tensor
        Frames in [0, 1] and binary LV masks, both ``(B, 1, H, W)``.
    gen : torch.Generator
        CPU generator (every draw comes from it).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The frames and the masks (bilinear, thresholded at 0.5), same shapes and dtypes.
    """
    b, _, h, w = x.shape
    chosen = _chosen(b, p, gen)
    strength = _uniform(b, 0.0, max_strength, gen)
    m = mask.float().cpu()
    area = m.sum(dim=(1, 2, 3))
    chosen = chosen & (area >= 16)
    if not bool(chosen.any()):
        return x, mask
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    weight = m[:, 0] / area.clamp(min=1)[:, None, None]  # (B, H, W)
    cy, cx = (weight * ys).sum((1, 2)), (weight * xs).sum((1, 2))
    dy, dx = ys[None] - cy[:, None, None], xs[None] - cx[:, None, None]
    cov = torch.stack([(weight * dx * dx).sum((1, 2)), (weight * dx * dy).sum((1, 2)),
                       (weight * dy * dy).sum((1, 2))], 1)  # (B, 3): xx, xy, yy
    theta = 0.5 * torch.atan2(2 * cov[:, 1], cov[:, 0] - cov[:, 2])  # principal axis angle
    nx, ny = -torch.sin(theta), torch.cos(theta)  # unit normal to the axis
    across = dx * nx[:, None, None] + dy * ny[:, None, None]  # (B, H, W) signed distance from the axis
    half = torch.sqrt((weight * across**2).sum((1, 2))).clamp(min=1.0)  # RMS half-width
    fade = _gaussian_blur(m, 0.5 * half)[:, 0]
    fade = (2.0 * fade).clamp(max=1.0)  # 1 inside the pool, fading to 0 over about half a width outside
    factor = (strength * chosen.float())[:, None, None] * fade  # (B, H, W)
    sx, sy = xs[None] + factor * across * nx[:, None, None], ys[None] + factor * across * ny[:, None, None]
    grid = torch.stack([2 * (sx + 0.5) / w - 1, 2 * (sy + 0.5) / h - 1], dim=-1)  # align_corners=False
    grid = grid.to(x.device, x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    moved = F.grid_sample(mask.to(x.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5
    return out, moved.to(mask.dtype)
