"""A small keypoint detector for the keypoint distance MD when no face or pose detector is installed.

The paper's MD re-detects keypoints on generated images (faces: a landmark detector, poses:
OpenPose) and measures their mean distance to the target keypoints. Where ``face-alignment`` /
``dlib`` are not installed and OpenPose was not run, ``echokdm evaluate`` falls back on this
detector: a small fully convolutional network that regresses one heatmap per keypoint and reads the
keypoint as the heatmap's soft-argmax (integral regression, Sun et al., ECCV 2018), trained on the
procedural faces or figures (:mod:`echokdm.data.procedural`) with their exact keypoints.

* :class:`KeypointHeatmapNet` — the network (diffusers ``ModelMixin``/``ConfigMixin``:
  ``save_pretrained`` / ``from_pretrained``); frames are resized to ``config.size`` (64).
* :func:`train_keypoint_detector` — training on a sequence manifest (a few minutes on a CPU).
* :func:`detect_with_heatmaps` — ``(T, N, 2)`` keypoints of frames ``(T, H, W)`` or ``(T, H, W, 3)``.

Packaged weights: ``kpdet_face_64`` and ``kpdet_pose_64`` (``echokdm/checkpoints/``; their README
says how they were made). They know cartoon faces and figures only: on real images use
face-alignment or OpenPose, and say which detector an MD comes from (``echokdm evaluate`` does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

__all__ = ["KeypointHeatmapNet", "detect_with_heatmaps", "load_detector", "train_keypoint_detector",
           "PACKAGED_DETECTORS"]

#: Packaged detector per adapter (``echokdm/checkpoints/<name>``).
PACKAGED_DETECTORS = {"face": "kpdet_face_64", "pose": "kpdet_pose_64"}


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class KeypointHeatmapNet(ModelMixin, ConfigMixin):
    """Heatmap regression: ``(B, C, S, S)`` frames in [0, 1] → ``(B, N, S/2, S/2)`` heatmap logits.

    Parameters
    ----------
    n_keypoints : int
        ``N`` (68 for faces, 25 for BODY_25 poses).
    channels : int
        Frame channels (3: RGB).
    size : int
        Working size ``S`` in pixels; frames are resized to ``S × S``.
    width : int
        Channels of the first level (doubled at each of the two downsamplings).
    adapter : str
        The keypoint adapter the detector was trained for (checked at use).
    """

    @register_to_config
    def __init__(self, n_keypoints: int = 68, channels: int = 3, size: int = 64, width: int = 16,
                 adapter: str = "face"):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(_block(channels, w, 2), _block(w, w), _block(w, 2 * w, 2), _block(2 * w, 2 * w),
                                     _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w))  # S/2, S/4, S/8
        self.decoder = nn.Sequential(_block(4 * w + w, 2 * w), _block(2 * w, 2 * w))
        self.head = nn.Conv2d(2 * w, n_keypoints, 1)
        self.skip_at = 2  # the encoder's output after this many blocks (at S/2) feeds the decoder

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames * 2 - 1
        skip = None
        for i, layer in enumerate(self.encoder):
            x = layer(x)
            if i + 1 == self.skip_at:
                skip = x  # (B, w, S/2, S/2)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.decoder(torch.cat([x, skip], dim=1)))  # (B, N, S/2, S/2)

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """Soft-argmax keypoints ``(B, N, 2)`` ``(x, y)`` in pixels of the ``S × S`` input."""
        logits = self.forward(frames)
        b, n, h, w = logits.shape
        prob = torch.softmax(logits.reshape(b, n, -1), dim=-1).reshape(b, n, h, w)
        scale = frames.shape[-1] / w  # heatmap pixel centres -> input pixel centres
        xs = (torch.arange(w, dtype=prob.dtype, device=prob.device) + 0.5) * scale - 0.5
        ys = (torch.arange(h, dtype=prob.dtype, device=prob.device) + 0.5) * scale - 0.5
        return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)


def _to_input(frames: np.ndarray, size: int, channels: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Frames ``(T, H, W)`` or ``(T, H, W, C)`` in [0, 1] → ``(T, C, S, S)`` and the input ``(H, W)``."""
    x = torch.as_tensor(np.asarray(frames, np.float32))
    x = x[..., None] if x.ndim == 3 else x  # (T, H, W, C)
    hw = tuple(x.shape[1:3])
    x = x.permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True).expand(-1, channels, -1, -1) if x.shape[1] in (1, 3) else x
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous(), hw


def load_detector(name_or_path: str | os.PathLike) -> KeypointHeatmapNet:
    """A detector folder, or a packaged name (``kpdet_face_64``, ``kpdet_pose_64``)."""
    from echokdm.pretrained import CHECKPOINTS

    path = Path(name_or_path)
    if not path.is_dir():
        path = CHECKPOINTS / str(name_or_path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{name_or_path}: not a keypoint detector folder nor a packaged detector "
                                f"({', '.join(PACKAGED_DETECTORS.values())})")
    return KeypointHeatmapNet.from_pretrained(path).eval()


@torch.inference_mode()
def detect_with_heatmaps(frames: np.ndarray, model: KeypointHeatmapNet | str | os.PathLike,
                         batch_size: int = 64) -> np.ndarray:
    """Keypoints ``float32`` ``(T, N, 2)`` ``(x, y)`` pixels of frames ``(T, H, W)`` / ``(T, H, W, C)`` in [0, 1]."""
    if not isinstance(model, KeypointHeatmapNet):
        model = load_detector(model)
    cfg = model.config
    x, (h, w) = _to_input(frames, cfg.size, cfg.channels)
    out = torch.cat([model.keypoints(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    scale = torch.tensor([w / cfg.size, h / cfg.size])
    return ((out + 0.5) * scale - 0.5).numpy().astype(np.float32)  # pixel centres of the input grid


def _training_frames(manifest: str | os.PathLike, adapter: str, size: int, channels: int,
                     split: str) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(F, C, S, S)`` and keypoints ``(F, N, 2)`` at size ``S`` of one split."""
    from echokdm.adapters import get_adapter
    from echokdm.data.pairs import scale_keypoints
    from echokdm.data.sequences import load_sequence_manifest, read_sequence_frames, read_sequence_keypoints

    ad = get_adapter(adapter)
    rows = load_sequence_manifest(manifest)
    rows = rows[rows["split"] == split] if split != "all" else rows
    xs, kps = [], []
    for _, row in rows.iterrows():
        frames = read_sequence_frames(row, channels)
        kp = read_sequence_keypoints(row, ad.read_keypoints, len(frames))
        x, hw = _to_input(frames, size, channels)
        xs.append(x.numpy())
        kps.append(scale_keypoints(kp, hw, size))
    if not xs:
        raise ValueError(f"{manifest}: no sequences in split {split!r}")
    return np.concatenate(xs), np.concatenate(kps)


def train_keypoint_detector(manifest: str | os.PathLike, adapter: str, out: str | os.PathLike, *, size: int = 64,
                            channels: int = 3, steps: int = 1500, batch_size: int = 32, lr: float = 2e-3,
                            width: int = 16, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train :class:`KeypointHeatmapNet` on the train split of a sequence manifest; save it in ``out``.

    Loss: the mean L1 distance (px at ``size``) between soft-argmax and true keypoints, over the
    keypoints that are not missing; augmentation: random horizontal flips (keypoints relabelled by
    the adapter's flip permutation) and brightness/contrast. Returns ``{"train_md", "val_md"}``
    (mean distance in pixels at ``size`` on the train and val splits) with the model saved.
    """
    from tqdm.auto import tqdm

    from echokdm.adapters import get_adapter

    torch.manual_seed(seed)
    perm = list(get_adapter(adapter).schema.flip_permutation)
    x, kp = _training_frames(manifest, adapter, size, channels, "train")
    xv, kpv = _training_frames(manifest, adapter, size, channels, "val")
    model = KeypointHeatmapNet(n_keypoints=kp.shape[1], channels=channels, size=size, width=width, adapter=adapter)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    x_t, kp_t = torch.from_numpy(x), torch.from_numpy(kp)
    g = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc=f"{adapter} detector", disable=not progress):
        idx = torch.randint(len(x_t), (batch_size,), generator=g)
        xb, kb = x_t[idx].clone(), kp_t[idx].clone()
        flip = torch.rand(batch_size, generator=g) < 0.5
        xb[flip] = xb[flip].flip(-1)
        kb[flip] = kb[flip][:, perm]
        kb[flip, :, 0] = size - 1 - kb[flip, :, 0]
        gain = 0.8 + 0.4 * torch.rand(batch_size, 1, 1, 1, generator=g)
        xb = ((xb - 0.5) * gain + 0.5 + 0.1 * (torch.rand(batch_size, 1, 1, 1, generator=g) - 0.5)).clamp(0, 1)
        pred = model.keypoints(xb)
        ok = torch.isfinite(kb).all(-1)
        loss = (pred - kb.nan_to_num(0)).abs().sum(-1)[ok].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    result = {"train_md": _mean_distance(model, x, kp), "val_md": _mean_distance(model, xv, kpv),
              "size": size, "steps": steps, "train_frames": len(x), "val_frames": len(xv)}
    model.save_pretrained(out)
    return result


@torch.inference_mode()
def _mean_distance(model: KeypointHeatmapNet, x: np.ndarray, kp: np.ndarray) -> float:
    pred = torch.cat([model.keypoints(torch.from_numpy(x[i:i + 64])) for i in range(0, len(x), 64)]).numpy()
    d = np.linalg.norm(pred - kp, axis=-1)
    return float(np.nanmean(d))
