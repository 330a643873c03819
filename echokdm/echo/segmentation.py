"""LV blood-pool segmentation network: a MONAI 2-D U-Net saved as a diffusers model.

It fills the frames that have no mask (EchoNet traces only ED and ES) and re-detects keypoints
on generated frames for the keypoint-distance metric.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

__all__ = ["LVSegmentationNet"]


class LVSegmentationNet(ModelMixin, ConfigMixin):
    """MONAI ``UNet`` (2-D, residual units) predicting one logit per pixel for the LV blood pool.

    Parameters
    ----------
    channels : tuple of int
        Feature channels per level; ``len(channels) - 1`` downsamplings by 2, so the input
        size must be divisible by ``2 ** (len(channels) - 1)``.
    num_res_units : int
        Residual units per block.
    dropout : float
        Dropout probability.
    sample_size : int
        Frame size the network was trained at (frames are resized to it).

    Input ``(B, 1, H, W)`` frames in [0, 1]; output ``(B, 1, H, W)`` logits.
    """

    @register_to_config
    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        num_res_units: int = 2,
        dropout: float = 0.0,
        sample_size: int = 112,
    ):
        super().__init__()
        from monai.networks.nets import UNet

        self.unet = UNet(
            spatial_dims=2, in_channels=1, out_channels=1, channels=tuple(channels),
            strides=(2,) * (len(channels) - 1), num_res_units=num_res_units, dropout=dropout,
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` for frames ``(B, 1, H, W)`` in [0, 1]."""
        return self.unet(frames * 2.0 - 1.0)  # the network works on [-1, 1] (DESIGN.md)

    @torch.inference_mode()
    def predict_masks(self, frames: torch.Tensor, batch_size: int = 32, threshold: float = 0.5) -> torch.Tensor:
        """``uint8`` masks ``(T, H, W)`` for frames ``(T, H, W)`` in [0, 1] at any size.

        Frames are resized to ``sample_size`` (bilinear), segmented in batches, and the
        probabilities resized back before thresholding.
        """
        import torch.nn.functional as F

        self.eval()
        size = self.config.sample_size
        out = []
        for start in range(0, frames.shape[0], batch_size):
            x = frames[start : start + batch_size, None].to(self.device, torch.float32)  # (B, 1, H, W)
            h, w = x.shape[-2:]
            if (h, w) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            prob = torch.sigmoid(self(x))
            if (h, w) != (size, size):
                prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
            out.append((prob[:, 0] > threshold).to(torch.uint8).cpu())
        return torch.cat(out)
