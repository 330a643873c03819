"""KDM networks (paper §3.2-3.3): the condition encoder Ψ, the keypoint-to-flow UNet (K2F), the
flow-to-image UNet (F2I), the latent autoencoder, and the flow representation K2F diffuses.

Both diffusion networks are a diffusers ``UNet2DModel`` whose input is the noisy sample
concatenated along channels with Ψ(condition): Ψ is a stack of strided 3×3 convolutions that
takes the full-resolution condition images down to the latent resolution (paper: "conditioned by
channel concatenation with a condition encoder").

* K2F denoises a flow at the latent resolution: condition = source frame (1 channel, or 3 for RGB) + rendered
  source keypoints + rendered target keypoints (3 RGB channels each, the adapter's renderer), and, when
  ``displacement_sigma`` is set, the keypoint displacement field (3 channels, see
  :func:`echokdm.models.conditions.keypoint_displacement`).
* F2I denoises the image latent: condition = source frame + rendered target keypoints + the flow
  (2 channels, normalised); the "w/o K2F" ablation drops the flow channels.

Flow representation. A flow is smooth, signed and two-channel; K2F diffuses it directly at the
latent resolution (area-downsampled by the autoencoder's factor, divided by ``flow_scale`` so that
typical motions fall in [-1, 1]) and it is decoded by bilinear upsampling. This costs no
autoencoder and keeps the flow's units explicit; its round-trip error is measured by
:func:`flow_round_trip_epe` (see the benchmark).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

__all__ = [
    "ConditionEncoder",
    "ConditionalUNet",
    "make_autoencoder",
    "encode_flow",
    "decode_flow",
    "flow_round_trip_epe",
]


class ConditionEncoder(nn.Module):
    """Ψ: 3×3 convolutions, ``log2(downsample)`` of them with stride 2, full → latent resolution.

    ``(B, in_channels, H, W)`` → ``(B, out_channels, H / downsample, W / downsample)``.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: int, hidden: int = 32):
        super().__init__()
        n_down = int(round(math.log2(downsample)))
        if 2**n_down != downsample:
            raise ValueError(f"downsample must be a power of 2, got {downsample}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(n_down):
            layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(hidden, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition)


class ConditionalUNet(ModelMixin, ConfigMixin):
    """A diffusers ``UNet2DModel`` denoising ``sample_channels`` at the latent resolution,
    conditioned by channel concatenation with Ψ(condition images at full resolution).

    Parameters
    ----------
    sample_channels : int
        Channels of the diffused sample (2 for K2F's flow, the latent channels for F2I).
    condition_channels : int
        Channels of the full-resolution condition stack.
    condition_embed_channels : int
        Output channels of Ψ.
    downsample : int
        Full / latent resolution ratio (the autoencoder's factor, 4 as in the paper).
    sample_size : int
        Latent size (28 for 112×112 frames).
    block_out_channels, layers_per_block, attention_levels, norm_num_groups
        UNet width and depth; ``attention_levels[i]`` puts self-attention at level ``i``.
    flow_scale : float
        K2F only: pixels of full-resolution motion that map to 1.0 in the diffused flow.
    prediction_type : {"epsilon", "sample", "v_prediction"}
        What the network predicts (the DDIM scheduler of a pipeline follows it): the noise ε
        (the paper), the clean sample x0, or v.
    displacement_sigma : float or None
        K2F only: ``None`` (the paper) conditions on the rendered keypoints alone; a width in
        full-resolution pixels adds the keypoint displacement field (Gaussian-weighted keypoint
        motion, in flow code units, and its confidence: 3 channels, included in
        ``condition_channels``). :mod:`echokdm.models.conditions` builds the condition from this setting.
    warped_source : bool
        F2I only: ``False`` (the paper) conditions on the source frame, the rendered target
        keypoints and the flow; ``True`` adds the source warped by the flow, ``x_src(I + F)``
        (``frame_channels``, included in ``condition_channels``). Ψ's few strided convolutions see only a
        few pixels, so without it the network must learn to move content by the flow itself and
        renders large motions (end-systole of a strongly contracting heart) short, back towards
        the source.
    frame_channels : int
        Channels of the frames in the condition (1: grayscale; 3: RGB). The pipelines read it to
        take frames ``(T, H, W)`` or ``(T, H, W, C)``; saved models without it are grayscale.
    """

    @register_to_config
    def __init__(
        self,
        sample_channels: int = 2,
        condition_channels: int = 7,
        condition_embed_channels: int = 32,
        downsample: int = 4,
        sample_size: int = 28,
        block_out_channels: tuple[int, ...] = (64, 128, 256),
        layers_per_block: int = 2,
        attention_levels: tuple[bool, ...] = (False, True, True),
        norm_num_groups: int = 32,
        flow_scale: float = 8.0,
        prediction_type: str = "epsilon",
        displacement_sigma: float | None = None,
        warped_source: bool = False,
        frame_channels: int = 1,
    ):
        super().__init__()
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ValueError(f"prediction_type must be epsilon, sample or v_prediction, got {prediction_type!r}")
        if len(attention_levels) != len(block_out_channels):
            raise ValueError("attention_levels needs one entry per block_out_channels entry")
        self.psi = ConditionEncoder(condition_channels, condition_embed_channels, downsample)
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels))
        self.unet = UNet2DModel(
            sample_size=sample_size, in_channels=sample_channels + condition_embed_channels,
            out_channels=sample_channels, down_block_types=down, up_block_types=up,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups, attention_head_dim=8,
        )

    @apply_forward_hook  # moves the model to its device under enable_model_cpu_offload, as forward does
    def embed(self, condition: torch.Tensor) -> torch.Tensor:
        """Ψ(condition): ``(B, Cc, H, W)`` full resolution → ``(B, Ce, H / downsample, W / downsample)``.

        Ψ does not depend on the timestep, so a sampler computes it once per sample and passes it
        to every denoising step as ``forward(..., embedded=...)``.
        """
        return self.psi(condition)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, condition: torch.Tensor | None = None, *,
                embedded: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction (``config.prediction_type``: ε, x0 or v) for ``sample`` ``(B, C, h, w)`` at ``timestep``.

        Give either ``condition`` ``(B, Cc, H, W)`` (Ψ is applied) or its embedding ``embedded``
        ``(B, Ce, h, w)`` from :meth:`embed` (the same result without recomputing Ψ at every step).
        """
        if (condition is None) == (embedded is None):
            raise ValueError("give exactly one of condition (full resolution) and embedded (Ψ(condition))")
        if embedded is None:
            embedded = self.psi(condition)  # (B, Ce, h, w)
        if embedded.shape[-2:] != sample.shape[-2:]:
            what = (f"condition {tuple(condition.shape)} does not downsample to" if condition is not None
                    else f"embedded {tuple(embedded.shape)} does not match")
            raise ValueError(f"{what} the sample's {tuple(sample.shape[-2:])} (downsample={self.config.downsample})")
        return self.unet(torch.cat([sample, embedded], dim=1), timestep).sample


def make_autoencoder(
    block_out_channels: tuple[int, ...] = (32, 64, 128), latent_channels: int = 4, sample_size: int = 112,
    layers_per_block: int = 1, norm_num_groups: int = 32, channels: int = 1,
) -> AutoencoderKL:
    """A diffusers ``AutoencoderKL`` of ``channels``-channel frames (1: grayscale; 3: RGB, as
    the paper's faces and poses) with downsampling ``2 ** (len(block_out_channels) - 1)``
    (4 with the default three levels: 112 → 28, 224 → 56 as in the paper)."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block, latent_channels=latent_channels, norm_num_groups=norm_num_groups,
        sample_size=sample_size, scaling_factor=1.0,
    )


def encode_flow(flow: torch.Tensor, downsample: int, flow_scale: float) -> torch.Tensor:
    """Full-resolution flow ``(B, 2, H, W)`` (px) → K2F's representation ``(B, 2, H/d, W/d)``.

    Area-averaged, then divided by ``flow_scale``; the values stay in full-resolution pixels
    (over ``flow_scale``), so decoding needs no rescaling by ``downsample``.
    """
    return F.avg_pool2d(flow, downsample) / flow_scale


def decode_flow(code: torch.Tensor, downsample: int, flow_scale: float) -> torch.Tensor:
    """K2F's representation ``(B, 2, h, w)`` → full-resolution flow ``(B, 2, h·d, w·d)`` in pixels."""
    up = F.interpolate(code, scale_factor=downsample, mode="bilinear", align_corners=False)
    return up * flow_scale


def flow_round_trip_epe(flow: torch.Tensor, downsample: int = 4, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean end-point error (px) per sample of ``decode_flow(encode_flow(flow))`` against ``flow``."""
    back = decode_flow(encode_flow(flow, downsample, 1.0), downsample, 1.0)
    epe = torch.linalg.vector_norm(back - flow, dim=1)  # (B, H, W)
    if mask is None:
        return epe.mean(dim=(1, 2))
    m = mask.to(epe.dtype).expand_as(epe)
    return (epe * m).sum(dim=(1, 2)) / m.sum(dim=(1, 2)).clamp(min=1)
