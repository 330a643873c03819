"""The one-step F2I refiner: a small U-Net that turns the warped source into the target frame.

A departure from the paper (its F2I is a latent diffusion model), measured in README "Does F2I earn
its place?": on simulated training pairs the diffusion F2I, however few its steps, adds nothing over the warp
it starts from, because what the target frame has and the warp lacks (speckle that decorrelated,
texture blurred or stretched by resampling, stationary clutter and noise dragged along by the flow)
is fine detail the 28×28×4 latent does not hold. The refiner works at the frame's own resolution:

``frame = clip(warped + R(warped, source, flow), 0, 1)``

``R`` is a three-level U-Net (channels 16-32-64 by default, about 0.1 M parameters, a few ms a frame on
a CPU) whose last convolution starts at zero, so an untrained refiner returns the warp exactly. It is
trained in one step (no noise, no sampler) on (source, warp, flow, target) frames with an L1 plus
LPIPS-VGG loss (:mod:`echokdm.training.refiner`); evaluated with LPIPS-Alex and SSIM, which it is not
trained on. Inputs: frames in [0, 1] ``(B, 1, H, W)`` (``H``, ``W`` multiples of 4), the flow ``(B, 2, H, W)``
in pixels (shared/DESIGN.md), scaled by ``flow_scale`` inside.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

__all__ = ["WarpRefiner"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    groups = min(8, c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU())


class WarpRefiner(ModelMixin, ConfigMixin):
    """``forward(warped, source, flow) -> frame``, all ``(B, C, H, W)``; see the module docstring.

    Parameters
    ----------
    channels : tuple of int
        Widths of the three U-Net levels (full, 1/2 and 1/4 resolution).
    in_channels : int
        Image channels (1 for grayscale frames).
    flow_scale : float
        Pixels of flow per unit of network input.
    """

    @register_to_config
    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), in_channels: int = 1, flow_scale: float = 8.0):
        super().__init__()
        if len(channels) != 3:
            raise ValueError(f"channels must name 3 levels, got {channels!r}")
        c1, c2, c3 = (int(c) for c in channels)
        self.enc1 = _block(2 * in_channels + 2, c1)
        self.enc2 = _block(c1, c2)
        self.enc3 = _block(c2, c3)
        self.dec2 = _block(c3 + c2, c2)
        self.dec1 = _block(c2 + c1, c1)
        self.out = nn.Conv2d(c1, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, warped: torch.Tensor, source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        h, w = warped.shape[-2:]
        if h % 4 or w % 4:
            raise ValueError(f"WarpRefiner needs H and W that are multiples of 4, got {h}x{w}")
        if source.shape[0] == 1 and warped.shape[0] > 1:
            source = source.expand(warped.shape[0], -1, -1, -1)
        x = torch.cat([warped * 2 - 1, source * 2 - 1, flow / self.config.flow_scale], dim=1)
        e1 = self.enc1(x)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        e3 = self.enc3(F.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(e3, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], dim=1))
        return (warped + self.out(d1)).clamp(0, 1)
