"""OF-net: a small PWC-Net-style optical-flow network for grayscale frames, trained without labels.

The network follows PWC-Net (Sun et al., CVPR 2018) as slimmed down by ARFlow's "PWC-lite"
(Liu et al., CVPR 2020): a feature pyramid shared by both frames, a local cost volume in plain
PyTorch (row-wise batched matrix products), warping of the source features by the current
flow, one residual flow estimator shared by all levels (after a 1×1 convolution to a common
width), and a dilated context network at the finest level. It is sized for a CPU: at 112×112
the finest estimate is made at stride 4 (28×28) and upsampled bilinearly, which suits smooth,
slowly varying motion (such as tissue moving in ultrasound speckle).

Flow convention (shared/DESIGN.md): the output is a backward flow ``(B, 2, H, W)``, channel 0 =
dx (columns), channel 1 = dy (rows), in pixels of the input, on the *target* grid and pointing
into the *source*, so that ``warp(source, OFNet()(source, target)) ≈ target``. Inside the
network every level holds its flow in that level's pixels; all warping goes through
:func:`echokdm.geometry.flow.warp`, the package's one warp.

Size constraint: ``H`` and ``W`` must be multiples of ``2 ** len(pyramid_channels)`` (16 with
the default four levels: 64, 112, 128, 224 all work).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from echokdm.geometry.flow import warp

__all__ = ["OFNet", "local_correlation", "upsample_flow"]


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1, act: bool = True) -> nn.Sequential:
    """3×3 convolution (padding keeps the size, ``/ stride``) and LeakyReLU(0.1)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation)]
    if act:
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


def local_correlation(target_feat: torch.Tensor, source_feat: torch.Tensor, max_displacement: int) -> torch.Tensor:
    """Cost volume: mean-over-channels products of target features and shifted source features.

    Computed row by row as batched matrix products (every column against every shifted column of
    the same row, then the band of ``2 d + 1`` diagonals kept): a few large ``bmm`` calls, several
    times faster on a CPU than one product per displacement, forward and backward.

    ``out[:, k, y, x] = mean_c target[:, c, y, x] * source[:, c, y + dy_k, x + dx_k]`` for the
    ``(2 d + 1) ** 2`` displacements ``(dx_k, dy_k)`` in ``[-d, d]²`` ordered row-major (dy
    outer, dx inner); source samples outside the map are zero.

    Parameters
    ----------
    target_feat, source_feat : torch.Tensor
        ``(B, C, h, w)`` feature maps on the same grid.
    max_displacement : int
        ``d``, in pixels of this grid.

    Returns
    -------
    torch.Tensor
        ``(B, (2 d + 1) ** 2, h, w)``, followed by LeakyReLU(0.1) as in PWC-Net.
    """
    d = int(max_displacement)
    k = 2 * d + 1
    b, c, h, w = target_feat.shape
    padded = F.pad(source_feat, (d, d, d, d))  # (B, C, h + 2d, w + 2d)
    rows_t = target_feat.permute(0, 2, 3, 1).reshape(b * h, w, c)  # one matrix per image row
    bands = []
    for dy in range(k):
        rows_s = padded[:, :, dy : dy + h].permute(0, 2, 1, 3).reshape(b * h, c, w + 2 * d)
        full = torch.bmm(rows_t, rows_s)  # (B*h, w, w + 2d): every x against every shifted x'
        # keep the band x' = x + j, j = 0 .. 2d (i.e. dx = j - d): a strided view of the diagonals
        bands.append(full.as_strided((b * h, w, k), (full.stride(0), full.stride(1) + 1, full.stride(2))))
    cost = torch.stack(bands, 2).reshape(b, h, w, k * k).permute(0, 3, 1, 2) / c  # (B, k*k, h, w)
    return F.leaky_relu(cost, 0.1)


def upsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a flow ``(B, 2, h, w)`` to ``size = (H, W)`` and rescale its vectors to the new pixels.

    Bilinear with ``align_corners=False`` (pixel areas, so a stride-``s`` map scales by ``s``);
    dx is multiplied by ``W / w`` and dy by ``H / h``.
    """
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=tuple(size), mode="bilinear", align_corners=False)  # (B, 2, H, W)
    scale = flow.new_tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
    return out * scale


class _Estimator(nn.Module):
    """Residual flow from ``[cost volume, target features, current flow]``; returns (flow, hidden)."""

    def __init__(self, c_in: int, channels: tuple[int, ...]):
        super().__init__()
        layers, c = [], c_in
        for c_out in channels:
            layers.append(_conv(c, c_out))
            c = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)
        return self.head(hidden), hidden


class _Context(nn.Module):
    """Dilated convolutions refining the finest flow (PWC-Net's context network)."""

    def __init__(self, c_in: int, channels: tuple[int, ...], dilations: tuple[int, ...]):
        super().__init__()
        layers, c = [], c_in
        for c_out, dil in zip(channels, dilations, strict=True):
            layers.append(_conv(c, c_out, dilation=dil))
            c = c_out
        layers.append(nn.Conv2d(c, 2, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class OFNet(ModelMixin, ConfigMixin):
    """PWC-Net-style optical flow for single-channel grayscale frames (e.g. ultrasound speckle).

    Parameters
    ----------
    pyramid_channels : tuple of int
        Feature channels of each pyramid level, finest first. Level ``l`` has stride
        ``2 ** (l + 1)``: with four levels 112 → 56, 28, 14, 7.
    feature_channels : int
        Width of the 1×1 convolutions that bring every level's features to a common width, so
        that one estimator serves all levels.
    estimator_channels : tuple of int
        Widths of the estimator's 3×3 convolutions.
    context_channels, context_dilations : tuple of int
        Widths and dilations of the context network (same length); empty to disable it.
    max_displacement : int
        Search radius of the cost volume in pixels of each level (4 → 81 displacements; at
        stride 16 this covers ±64 input pixels before refinement). The cost volume correlates
        L2-normalised features (cosine similarity in [-1, 1]), which keeps its scale independent
        of the feature magnitudes while the network is young.
    output_level : int
        Finest pyramid level that gets an estimate (0 = stride 2, 1 = stride 4); the flow is
        upsampled bilinearly from there to the input size.
    sample_size : int
        Frame size the network was trained at (informative; any multiple of
        ``2 ** len(pyramid_channels)`` works).
    normalize_input : bool
        Standardise every frame (zero mean, unit standard deviation over the frame) before the
        pyramid instead of mapping [0, 1] to [-1, 1]. The features, and so the cost volume, then do
        not depend on the frame's brightness and contrast: dark frames (mean grey about 0.07, as
        real ultrasound), where the [-1, 1] input is nearly constant and a network
        trained on bright frames barely sees the texture. False (the default) keeps the networks
        trained before this option.

    Notes
    -----
    Input: ``source`` and ``target`` ``(B, 1, H, W)`` float in [0, 1] (mapped to [-1, 1]
    inside). Output: flow ``(B, 2, H, W)`` float32, (dx, dy) pixels on the target grid pointing
    into the source (shared/DESIGN.md), i.e. ``warp(source, flow) ≈ target``.

    Examples
    --------
    >>> import torch
    >>> net = OFNet(pyramid_channels=(8, 8, 8, 8), feature_channels=8, estimator_channels=(8,),
    ...             context_channels=(8,), context_dilations=(2,))
    >>> net(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)).shape
    torch.Size([2, 2, 64, 64])
    """

    @register_to_config
    def __init__(
        self,
        pyramid_channels: tuple[int, ...] = (16, 32, 48, 64),
        feature_channels: int = 32,
        estimator_channels: tuple[int, ...] = (64, 48, 32),
        context_channels: tuple[int, ...] = (48, 48, 32, 32),
        context_dilations: tuple[int, ...] = (1, 2, 4, 8),
        max_displacement: int = 4,
        output_level: int = 1,
        sample_size: int = 112,
        normalize_input: bool = False,
    ):
        super().__init__()
        if not 0 <= output_level < len(pyramid_channels):
            raise ValueError(f"output_level must be in 0..{len(pyramid_channels) - 1}, got {output_level}")
        if len(context_channels) != len(context_dilations):
            raise ValueError(f"context_channels {tuple(context_channels)} and context_dilations "
                             f"{tuple(context_dilations)} must have the same length")
        levels, c = [], 1
        for c_out in pyramid_channels:
            levels.append(nn.Sequential(_conv(c, c_out, stride=2), _conv(c_out, c_out)))
            c = c_out
        self.pyramid = nn.ModuleList(levels)
        self.reduce = nn.ModuleList(nn.Conv2d(c, feature_channels, 1) for c in pyramid_channels)
        n_cost = (2 * max_displacement + 1) ** 2
        self.estimator = _Estimator(n_cost + feature_channels + 2, tuple(estimator_channels))
        self.context = (_Context(estimator_channels[-1] + 2, tuple(context_channels), tuple(context_dilations))
                        if context_channels else None)
        self._initialise()

    def _initialise(self) -> None:
        """He initialisation for LeakyReLU(0.1) (PyTorch's default shrinks activations layer after
        layer, which stalls training of a network this deep), and flow heads that start at zero.

        An untrained network then predicts no motion (the right prior for scenes where most of the
        field of view is static), so the forward–backward occlusion check is meaningful from step 0.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        heads = [self.estimator.head] + ([self.context.body[-1]] if self.context is not None else [])
        for head in heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @property
    def divisor(self) -> int:
        """Frame height and width must be multiples of this (``2 ** number of levels``)."""
        return 2 ** len(self.config.pyramid_channels)

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.divisor or w % self.divisor:
            raise ValueError(f"{name}: height and width must be multiples of {self.divisor} for this OF-net "
                             f"({len(self.config.pyramid_channels)} pyramid levels), got {h}x{w}; resize first")

    def features(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Pyramid features of frames ``(B, 1, H, W)`` in [0, 1], finest level first.

        Level ``l`` is ``(B, pyramid_channels[l], H / 2 ** (l + 1), W / 2 ** (l + 1))``. Computing
        them once per frame lets many pairs share them (:meth:`decode`).
        """
        self._check_input(frames, "frames")
        if self.config.normalize_input:  # each frame to zero mean, unit SD: brightness and contrast free
            x = frames.float()
            mean, std = x.mean(dim=(-2, -1), keepdim=True), x.std(dim=(-2, -1), keepdim=True)
            x = ((x - mean) / std.clamp(min=1e-3)).to(self.dtype)
        else:
            x = frames.to(self.dtype) * 2.0 - 1.0  # the network works on [-1, 1] (DESIGN.md)
        feats = []
        for level in self.pyramid:
            x = level(x)
            feats.append(x)
        return feats

    def decode(self, source_feats: list[torch.Tensor], target_feats: list[torch.Tensor],
               size: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """Coarse-to-fine flow estimation from the pyramid features of source and target.

        Returns
        -------
        list of torch.Tensor
            The flow at every estimated level, coarsest first, each ``(B, 2, h_l, w_l)`` in pixels
            of its level; the last entry is the finest estimate (after the context network).
            With ``size`` a final entry is appended: the finest flow upsampled to ``size`` (input
            pixels).
        """
        d = self.config.max_displacement
        flows, flow, hidden = [], None, None
        for level in range(len(source_feats) - 1, self.config.output_level - 1, -1):
            src, tgt = self.reduce[level](source_feats[level]), self.reduce[level](target_feats[level])
            if flow is None:
                flow = src.new_zeros(src.shape[0], 2, *src.shape[-2:])  # (B, 2, h, w)
                aligned = src
            else:
                flow = upsample_flow(flow, tuple(src.shape[-2:]))
                aligned = warp(src, flow)  # source features moved onto the target grid
            # cosine similarity of unit feature vectors (local_correlation averages over channels)
            cost = local_correlation(F.normalize(tgt, dim=1), F.normalize(aligned, dim=1), d) * tgt.shape[1]
            # cost: (B, (2d+1)^2, h, w)
            residual, hidden = self.estimator(torch.cat([cost, tgt, flow], 1))
            flow = flow + residual
            flows.append(flow)
        if self.context is not None:
            flows[-1] = flow + self.context(torch.cat([hidden, flow], 1))
        if size is not None:
            flows.append(upsample_flow(flows[-1], size))
        return flows

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Backward flow ``(B, 2, H, W)`` (pixels, target grid, pointing into ``source``).

        Parameters
        ----------
        source, target : torch.Tensor
            ``(B, 1, H, W)`` frames in [0, 1]; H and W multiples of :attr:`divisor`.
        """
        self._check_input(source, "source")
        self._check_input(target, "target")
        if source.shape != target.shape:
            raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} differ in shape")
        feats = self.features(torch.cat([source, target]))
        b = source.shape[0]
        return self.decode([f[:b] for f in feats], [f[b:] for f in feats], size=tuple(source.shape[-2:]))[-1]

    @torch.inference_mode()
    def predict(self, source: torch.Tensor, target: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Flows for many pairs at any size, in batches, in eval mode, on the model's device.

        Frames ``(N, H, W)`` or ``(N, 1, H, W)`` in [0, 1] are resized to ``sample_size`` when
        their size differs (bilinear) and the flows resized back and rescaled to input pixels.
        Returns float32 ``(N, 2, H, W)`` on the CPU.
        """
        self.eval()
        if source.ndim == 3:
            source, target = source[:, None], target[:, None]
        size = tuple(source.shape[-2:])
        work = (self.config.sample_size, self.config.sample_size)
        out = []
        for start in range(0, source.shape[0], batch_size):
            s = source[start : start + batch_size].to(self.device, torch.float32)
            t = target[start : start + batch_size].to(self.device, torch.float32)
            if size != work:
                s = F.interpolate(s, size=work, mode="bilinear", align_corners=False)
                t = F.interpolate(t, size=work, mode="bilinear", align_corners=False)
            out.append(upsample_flow(self(s, t).float(), size).cpu())
        return torch.cat(out) if out else torch.zeros(0, 2, *size)
