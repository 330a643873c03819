"""EF regression from the video: a small (2+1)D CNN, its clip data, training and prediction.

The downstream model of :mod:`echokdm.evaluation.utility` (``echokdm utility``), the task EchoFlow
and EchoNet-Synthetic use to measure whether a synthetic cohort trains models: ejection fraction
(percent) regressed from ``n_frames`` frames of an apical four-chamber clip, as EchoNet-Dynamic's
R(2+1)D does, in miniature so that it trains on a CPU.

* :class:`EFRegressionNet`: (2+1)D convolutions (a spatial ``1×3×3`` then a temporal ``3×1×1``
  convolution per block, Tran et al. 2018), global average pooling, one linear output; saved as a
  diffusers model.
* :func:`ef_clips`: the clips of a manifest resized to ``size × size`` (``uint8``), with their
  reference EF (``ef_reference``).
* :func:`train_ef_regression` / :func:`predict_ef`: training on random windows, prediction as the
  mean over windows spread over the clip.

Windows are ``n_frames`` frames ``stride`` apart from a random start; a clip shorter than a window
wraps around (generated loops are seamless loops; a real clip then repeats its beat).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

__all__ = ["EFClips", "EFRegressionNet", "EFTrainSettings", "ef_clips", "predict_ef", "train_ef_regression"]

_EF_CENTRE, _EF_SCALE = 50.0, 15.0  # the network predicts (EF - 50) / 15


class _Block(nn.Module):
    """Spatial ``1×3×3`` conv, temporal ``3×1×1`` conv, each followed by GroupNorm and ReLU, then pooling."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int, int]):
        super().__init__()
        groups = min(4, c_out)
        self.layers = nn.Sequential(
            nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1)), nn.GroupNorm(groups, c_out), nn.ReLU(),
            nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0)), nn.GroupNorm(groups, c_out), nn.ReLU(),
            nn.MaxPool3d(pool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class EFRegressionNet(ModelMixin, ConfigMixin):
    """A small (2+1)D CNN regressing the EF (percent) of a clip.

    Parameters
    ----------
    channels : tuple of int
        Feature channels per block; each block halves the frame size, and the time axis from the
        second block on.
    n_frames : int
        Frames per window (recorded for prediction).
    size : int
        Frame size in pixels (frames are resized to ``size × size``).
    stride : int
        Frames between the window's frames (recorded for prediction).

    Input ``(B, 1, T, H, W)`` frames in [0, 1]; output ``(B,)`` EF in percent.
    """

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64), n_frames: int = 32, size: int = 56,
                 stride: int = 2):
        super().__init__()
        blocks, c_in = [], 1
        for i, c in enumerate(channels):
            blocks.append(_Block(c_in, c, (1 if i == 0 else 2, 2, 2)))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, 1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """EF in percent ``(B,)`` of windows ``(B, 1, T, H, W)`` in [0, 1]."""
        features = self.blocks(clips * 2.0 - 1.0).mean(dim=(2, 3, 4))  # (B, C)
        return _EF_CENTRE + _EF_SCALE * self.head(features)[:, 0]


@dataclasses.dataclass
class EFClips:
    """Clips for EF regression: ``frames`` list of ``uint8`` ``(T_i, S, S)``, ``ef`` ``float64`` ``(N,)``
    (percent, NaN when unknown), and per clip its ``patient_id`` and ``clip_id``; ``skipped``
    ``(clip, reason)`` for the clips that could not be read."""

    frames: list[np.ndarray]
    ef: np.ndarray
    patient_ids: list[str]
    clip_ids: list[str]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, keep: Sequence[int]) -> EFClips:
        """The clips at positions ``keep``."""
        keep = list(keep)
        return EFClips([self.frames[i] for i in keep], self.ef[keep], [self.patient_ids[i] for i in keep],
                       [self.clip_ids[i] for i in keep])

    def __add__(self, other: EFClips) -> EFClips:
        return EFClips(self.frames + other.frames, np.concatenate([self.ef, other.ef]),
                       self.patient_ids + other.patient_ids, self.clip_ids + other.clip_ids,
                       self.skipped + other.skipped)


def ef_clips(manifest: pd.DataFrame, size: int, progress: bool = False) -> EFClips:
    """Every clip of a loaded manifest resized to ``size × size`` (``uint8``), with its ``ef_reference``.

    A clip that cannot be read is listed in ``skipped``; a clip without a reference EF keeps NaN.
    """
    from tqdm.auto import tqdm

    from echokdm.data.manifest import read_clip
    from echokdm.geometry.resize import resize_images

    frames, efs, pids, cids, skipped = [], [], [], [], []
    for _, row in tqdm(list(manifest.iterrows()), desc="loading clips", unit="clip", disable=not progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cine = read_clip(row)
        except Exception as exc:  # noqa: BLE001 - listed, never silently
            skipped.append((str(row["clip_id"]), f"{type(exc).__name__}: {exc}"))
            continue
        frames.append(resize_images(cine.frames, size, dtype=np.uint8))  # (T, S, S)
        efs.append(pd.to_numeric(pd.Series([row.get("ef_reference")]), errors="coerce").iloc[0])
        pids.append(str(row["patient_id"]))
        cids.append(str(row["clip_id"]))
    return EFClips(frames, np.asarray(efs, dtype=np.float64), pids, cids, skipped)


@dataclasses.dataclass(frozen=True)
class EFTrainSettings:
    """Training of :class:`EFRegressionNet`: model size, windows and optimiser."""

    channels: tuple[int, ...] = (8, 16, 32, 64)
    n_frames: int = 32
    size: int = 56
    stride: int = 2
    steps: int = 1500
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_frames", "size", "stride", "steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.channels or self.size < 2 ** len(self.channels):
            raise ValueError(f"size must be at least 2 ** len(channels) = {2 ** len(self.channels)}, got {self.size}")
        if self.n_frames < 2 ** (len(self.channels) - 1):
            raise ValueError(f"n_frames must be at least 2 ** (len(channels) - 1) = {2 ** (len(self.channels) - 1)}, "
                             f"got {self.n_frames}")


def _window(frames: np.ndarray, start: int, n_frames: int, stride: int) -> np.ndarray:
    """``n_frames`` frames ``stride`` apart from ``start``, wrapping around: ``uint8`` ``(n_frames, S, S)``."""
    index = (start + stride * np.arange(n_frames)) % len(frames)
    return frames[index]


def _batch(windows: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(windows)).float().div_(255.0)[:, None]  # (B, 1, T, S, S)


def train_ef_regression(clips: EFClips, settings: EFTrainSettings = EFTrainSettings(), *, device: str = "cpu",
                        progress: bool = False) -> EFRegressionNet:
    """Train :class:`EFRegressionNet` on the clips with a reference EF (smooth-L1 loss on ``(EF - 50) / 15``).

    Each step draws ``batch_size`` clips with replacement and a random window of each, flipped left
    to right with probability 1/2 (an apical view mirrored is still an apical view). Deterministic for
    a given ``settings.seed`` on one device.

    Raises
    ------
    ValueError
        No clip has a reference EF.
    """
    from tqdm.auto import tqdm

    usable = [i for i in range(len(clips)) if np.isfinite(clips.ef[i])]
    if not usable:
        raise ValueError("no training clip has a reference EF (ef_reference)")
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = EFRegressionNet(channels=tuple(settings.channels), n_frames=settings.n_frames, size=settings.size,
                            stride=settings.stride).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    for _ in tqdm(range(settings.steps), desc="training EF", unit="step", disable=not progress, leave=False):
        picked = rng.choice(usable, settings.batch_size)
        windows = []
        for i in picked:
            w = _window(clips.frames[i], int(rng.integers(len(clips.frames[i]))), settings.n_frames, settings.stride)
            windows.append(w[:, :, ::-1] if rng.random() < 0.5 else w)
        x = _batch(windows).to(device)
        target = torch.as_tensor((clips.ef[picked] - _EF_CENTRE) / _EF_SCALE, dtype=torch.float32, device=device)
        loss = nn.functional.smooth_l1_loss((model(x) - _EF_CENTRE) / _EF_SCALE, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.inference_mode()
def predict_ef(model: EFRegressionNet, clips: EFClips, n_windows: int = 4) -> np.ndarray:
    """EF in percent ``float64`` ``(N,)`` of each clip: the mean over ``n_windows`` windows whose starts
    are evenly spread over the clip."""
    model.eval()
    device = next(model.parameters()).device
    n_frames, stride = model.config.n_frames, model.config.stride
    out = []
    for frames in clips.frames:
        starts = np.linspace(0, len(frames), n_windows, endpoint=False).astype(int)
        x = _batch([_window(frames, int(s), n_frames, stride) for s in starts]).to(device)
        out.append(float(model(x).mean()))
    return np.asarray(out, dtype=np.float64)
