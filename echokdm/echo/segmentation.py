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
    def predict_masks(self, frames: torch.Tensor, batch_size: int = 32, threshold: float = 0.5,
                      region=None) -> torch.Tensor:
        """``uint8`` masks ``(T, H, W)`` for frames ``(T, H, W)`` in [0, 1] at any size.

        Frames are resized to ``sample_size`` (bilinear), segmented in batches, and the probabilities
        resized back before thresholding.

        ``region`` (``(H, W)`` bool, optional): the ultrasound sector (:func:`echokdm.io.fan.source_fan`).
        The network then sees what it was trained on, whatever the file's layout: the sector's
        bounding box only (the whole frame when the box fills 95 % of it each way), black outside the
        sector (the EchoNet-Dynamic preprocessing), and the masks are 0 outside it. Without it, a
        scanner frame with text, an ECG trace and a small fan is shrunk whole, its LV is smaller than
        the network knows it, and the text can be taken for it (on pydicom's real cine as the scanner
        wrote it, ``echokdm generate``'s source keypoints came out on the caption at the top; inside
        the fan they are those of the file cropped to the fan).
        """
        import numpy as np
        import torch.nn.functional as F

        self.eval()
        frames = torch.as_tensor(frames)
        box, inside = None, None
        if region is not None:
            inside = torch.as_tensor(np.asarray(region, dtype=bool))
            if inside.shape != frames.shape[-2:]:
                raise ValueError(f"region of shape {tuple(inside.shape)} does not match frames of size "
                                 f"{tuple(frames.shape[-2:])}")
            rows, cols = torch.nonzero(inside.any(1)).flatten(), torch.nonzero(inside.any(0)).flatten()
            if len(rows) == 0:
                raise ValueError("region is empty (no pixel inside the sector)")
            box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            h, w = inside.shape
            if box[1] - box[0] >= 0.95 * h and box[3] - box[2] >= 0.95 * w:
                box = (0, h, 0, w)  # the sector fills the frame (EchoNet-like): no resampling for a pixel or two
        size = self.config.sample_size
        out = []
        for start in range(0, frames.shape[0], batch_size):
            x = frames[start : start + batch_size, None].to(self.device, torch.float32)  # (B, 1, H, W)
            if box is not None:
                r0, r1, c0, c1 = box
                x = (x * inside.to(x.device, x.dtype))[..., r0:r1, c0:c1]
            h, w = x.shape[-2:]
            if (h, w) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            prob = torch.sigmoid(self(x))
            if (h, w) != (size, size):
                prob = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
            masks = (prob[:, 0] > threshold).to(torch.uint8).cpu()
            if box is not None:
                full = torch.zeros((masks.shape[0], *frames.shape[-2:]), dtype=torch.uint8)
                full[:, r0:r1, c0:c1] = masks
                masks = full * inside.to(torch.uint8)
            out.append(masks)
        return torch.cat(out)
