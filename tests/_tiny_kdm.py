"""Tiny random KDM components for tests (32×32 frames, a few thousand parameters each).

Imported by test files with ``sys.path.insert(0, <tests folder>)`` as ``_shapes`` is.
"""

from __future__ import annotations

import torch

from echokdm.models.kdm import ConditionalUNet, make_autoencoder
from echokdm.pipelines import KDMPipeline

SIZE = 32


def tiny_unet(sample_channels: int, condition_channels: int, size: int = SIZE, **overrides) -> ConditionalUNet:
    """A seeded tiny ``ConditionalUNet`` in eval mode (K2F: 2, 7; F2I: 4, 6; F2I without flow: 4, 4)."""
    torch.manual_seed(0)
    options = dict(sample_channels=sample_channels, condition_channels=condition_channels, condition_embed_channels=8,
                   downsample=4, sample_size=size // 4, block_out_channels=(16, 32), attention_levels=(False, True),
                   layers_per_block=1, norm_num_groups=8, flow_scale=4.0)
    return ConditionalUNet(**{**options, **overrides}).eval()


def tiny_pipeline(size: int = SIZE, use_flow: bool = True) -> KDMPipeline:
    """A seeded tiny ``KDMPipeline`` (random weights) for ``size``×``size`` frames."""
    torch.manual_seed(0)
    vae = make_autoencoder(block_out_channels=(8, 16, 16), latent_channels=4, sample_size=size, norm_num_groups=8)
    return KDMPipeline(tiny_unet(2, 7, size), tiny_unet(4, 6 if use_flow else 4, size), vae.eval(), use_flow=use_flow)
