"""Train the LV segmentation network on the labelled frames of a manifest, and segment clips.

EchoNet-Dynamic traces only two frames per clip; the network trained here fills every other
frame with a mask (``echokdm segment``), so keypoints, volumes and EF can follow the whole cycle.

    echokdm train seg --config configs/echo/seg.yaml --manifest data_manifests/echonet.csv --out runs/seg
    echokdm segment data_manifests/echonet.csv --checkpoint runs/seg/best -o segmentations/
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from echokdm.config import load_config
from echokdm.data.manifest import clip_file_stem, load_manifest, read_clip
from echokdm.echo.augment import contract_lv, random_ultrasound_look
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.geometry.resize import resize_images
from echokdm.io.atomic import atomic_output
from echokdm.io.fan import fan_mask_or_none
from echokdm.pretrained import resolve_checkpoint
from echokdm.training.run import RunFolder

__all__ = [
    "LabelledFrames",
    "SegConfig",
    "SegDataConfig",
    "SegModelConfig",
    "SegTrainConfig",
    "dice_scores",
    "labelled_frames",
    "load_seg_config",
    "segment_manifest",
    "train_segmentation",
]


@dataclasses.dataclass
class SegModelConfig:
    channels: tuple[int, ...] = (16, 32, 64, 128)
    num_res_units: int = 2
    dropout: float = 0.0


@dataclasses.dataclass
class SegDataConfig:
    size: int = 112
    augment: bool = True
    elastic_px: float = 3.0
    look_augment: bool = False  # sim-to-real look changes (echokdm.echo.augment), after the spatial ones
    contract_augment: float = 0.0  # probability of squeezing the LV towards its axis (echokdm.echo.augment.contract_lv)
    contract_max: float = 0.7  # its largest strength (the cavity narrows by up to 1 / (1 + contract_max))
    zoom_range: tuple[float, float] = (0.9, 1.1)  # content scale of the random affine
    aspect_range: tuple[float, float] = (1.0, 1.0)  # column stretch against rows
    max_clips: int | None = None

    def __post_init__(self) -> None:
        for name in ("zoom_range", "aspect_range"):
            value = tuple(float(v) for v in getattr(self, name))
            if not (len(value) == 2 and 0 < value[0] <= value[1]):
                raise ValueError(f"data.{name} must be [low, high] with 0 < low <= high, got {list(value)}")
            setattr(self, name, value)
        if not 0.0 <= self.contract_augment <= 1.0:
            raise ValueError(f"data.contract_augment must be a probability in [0, 1], got {self.contract_augment}")
        if not self.contract_max >= 0.0:
            raise ValueError(f"data.contract_max must be >= 0, got {self.contract_max}")
        if self.size < 16:
            raise ValueError(f"data.size must be >= 16 pixels, got {self.size}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"data.max_clips must be >= 1 or null, got {self.max_clips}")


@dataclasses.dataclass
class SegTrainConfig:
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    val_every: int = 250
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")


@dataclasses.dataclass
class SegConfig:
    """``echokdm train seg`` configuration (``configs/echo/seg.yaml``)."""

    model: SegModelConfig = dataclasses.field(default_factory=SegModelConfig)
    data: SegDataConfig = dataclasses.field(default_factory=SegDataConfig)
    train: SegTrainConfig = dataclasses.field(default_factory=SegTrainConfig)


def load_seg_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> SegConfig:
    """Read and validate a segmentation config (defaults when ``path`` is None)."""
    return load_config(path, SegConfig, overrides)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LabelledFrames:
    """Labelled frames resized to a square size: ``frames`` ``uint8`` ``(N, S, S)`` (0-255),
    ``masks`` ``uint8`` ``(N, S, S)``, and per frame its ``patient_id`` and ``clip_id``."""

    frames: np.ndarray
    masks: np.ndarray
    patient_ids: list[str]
    clip_ids: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def labelled_frames(manifest: pd.DataFrame, split: str, size: int, max_clips: int | None = None,
                    progress: bool = True) -> LabelledFrames:
    """Collect the labelled frames of the clips of one split, resized to ``size`` × ``size``."""
    from tqdm.auto import tqdm

    rows = manifest[manifest["split"] == split]
    if max_clips is not None:
        rows = rows.iloc[:max_clips]
    frames, masks, pids, cids, skipped = [], [], [], [], []
    for _, row in tqdm(list(rows.iterrows()), desc=f"loading {split} masks", unit="clip", disable=not progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cine = read_clip(row)
        except Exception as exc:  # noqa: BLE001 - listed and skipped, never silently
            skipped.append((str(row["clip_id"]), f"{type(exc).__name__}: {exc}"))
            continue
        if cine.masks is None:
            skipped.append((str(row["clip_id"]), "no masks or tracings"))
            continue
        idx = np.arange(cine.n_frames) if cine.labelled_frames is None else cine.labelled_frames
        frames.append(resize_images(cine.frames[idx], size, dtype=np.uint8))
        masks.append((resize_images(cine.masks[idx], size, mode="nearest") > 0.5).astype(np.uint8))
        pids += [str(row["patient_id"])] * len(idx)
        cids += [str(row["clip_id"])] * len(idx)
    if not frames:
        return LabelledFrames(np.zeros((0, size, size), np.uint8), np.zeros((0, size, size), np.uint8), [], [], skipped)
    return LabelledFrames(np.concatenate(frames), np.concatenate(masks), pids, cids, skipped)


def _augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, elastic_px: float = 3.0,
             zoom_range: tuple[float, float] = (0.9, 1.1),
             aspect_range: tuple[float, float] = (1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """One random affine (and, when ``elastic_px`` > 0, a smooth random deformation of up to about
    that many pixels) and gain/gamma per sample; the same geometry for frame and mask.

    The mask is resampled bilinearly and thresholded at 0.5, so its boundary moves with sub-pixel
    accuracy. The deformation is a 4 × 4 grid of random displacements upsampled bicubically: it
    compresses and stretches the cavity locally, as the flows of generated frames do, so the model
    learns to find the boundary on warped images too (the EF of generated loops is measured on
    them).

    ``zoom_range`` is the content's scale (below 1: the sector shrinks inside black margins, as a
    real DICOM cropped to a loose box does); ``aspect_range`` stretches columns against rows (a
    non-square crop resized to a square). The default ranges draw as the original augmentation.
    """
    b, _, h, w = x.shape
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(15)
    scale = zoom_range[0] + (zoom_range[1] - zoom_range[0]) * torch.rand(b, generator=gen)
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * 0.08
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    if tuple(aspect_range) != (1.0, 1.0):
        aspect = aspect_range[0] + (aspect_range[1] - aspect_range[0]) * torch.rand(b, generator=gen)
        row_x = [cos / aspect, -sin / aspect]  # columns sampled 1/aspect as densely: content aspect× wider
    else:
        row_x = [cos, -sin]
    theta = torch.stack([torch.stack([*row_x, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    if elastic_px > 0:
        coarse = (torch.rand(b, 2, 4, 4, generator=gen) * 2 - 1) * elastic_px
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)  # pixels
        norm = torch.tensor([2.0 / w, 2.0 / h]).view(1, 2, 1, 1)  # pixels → grid units
        grid = grid + (field * norm).permute(0, 2, 3, 1).to(x)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).to(y)
    gain = (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)).to(x)
    gamma = (0.8 + 0.45 * torch.rand(b, 1, 1, 1, generator=gen)).to(x)
    return (gain * x.clamp(0, 1) ** gamma).clamp(0, 1), y


def dice_scores(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """Dice per frame of binary masks ``(N, H, W)``; 1.0 when both are empty."""
    p = torch.as_tensor(pred).reshape(len(pred), -1).float()
    t = torch.as_tensor(target).reshape(len(target), -1).float()
    inter = (p * t).sum(1)
    total = p.sum(1) + t.sum(1)
    return torch.where(total > 0, 2 * inter / total.clamp(min=1e-9), torch.ones_like(total)).numpy()


def _evaluate(model: LVSegmentationNet, data: LabelledFrames) -> tuple[float, pd.DataFrame]:
    """Mean over patients of the per-patient mean Dice."""
    frames = torch.from_numpy(data.frames).float() / 255.0
    pred = model.predict_masks(frames)
    dice = dice_scores(pred, data.masks)
    per_patient = pd.DataFrame({"patient_id": data.patient_ids, "dice": dice}).groupby("patient_id")["dice"].mean()
    return float(per_patient.mean()), per_patient.reset_index()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_segmentation(config: SegConfig, manifest: str | os.PathLike, out: str | os.PathLike, *,
                       resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Train :class:`LVSegmentationNet` on the train split's labelled frames; validate on val.

    Writes the run folder (:class:`~echokdm.training.run.RunFolder`): ``best/`` holds the model
    with the highest mean per-patient validation Dice. Returns a summary dict.
    """
    from monai.losses import DiceCELoss
    from tqdm.auto import tqdm

    frame = load_manifest(manifest)
    run = RunFolder(out, config, resume=resume, overwrite=overwrite)
    train = labelled_frames(frame, "train", config.data.size, config.data.max_clips, progress)
    val = labelled_frames(frame, "val", config.data.size, config.data.max_clips, progress)
    if len(train) == 0:
        raise ValueError(f"{manifest}: no labelled frames in the train split (skipped: {train.skipped[:5]})")
    val_source = "val"
    if len(val) == 0:
        warnings.warn(f"{manifest}: no labelled frames in the val split; validating on train frames", stacklevel=2)
        val, val_source = train, "train"
    device = _device(config.train.device)
    torch.manual_seed(config.train.seed)
    if resume:
        model = LVSegmentationNet.from_pretrained(run.last)
    else:
        model = LVSegmentationNet(channels=config.model.channels, num_res_units=config.model.num_res_units,
                                  dropout=config.model.dropout, sample_size=config.data.size)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    gen = torch.Generator().manual_seed(config.train.seed)  # CPU generator: same batches on any device
    step, best = 0, -1.0
    if resume:
        state = torch.load(run.last / "trainer_state.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), float(state["best_dice"])
        gen.set_state(state["generator"])
    loss_fn = DiceCELoss(sigmoid=True)
    frames = torch.from_numpy(train.frames)
    masks = torch.from_numpy(train.masks)
    bar = tqdm(total=config.train.steps, initial=step, desc="training seg", unit="step", disable=not progress)
    losses = []
    while step < config.train.steps:
        model.train()
        idx = torch.randint(len(train), (config.train.batch_size,), generator=gen)
        x = frames[idx, None].float() / 255.0  # (B, 1, S, S)
        y = masks[idx, None].float()
        if config.data.contract_augment > 0:
            x, y = contract_lv(x, y, gen, config.data.contract_augment, config.data.contract_max)
        if config.data.augment:
            x, y = _augment(x, y, gen, config.data.elastic_px, config.data.zoom_range, config.data.aspect_range)
        if config.data.look_augment:
            x = random_ultrasound_look(x, y, gen)
        loss = loss_fn(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % config.train.val_every == 0 or step == config.train.steps:
            dice, _ = _evaluate(model, val)
            run.log({"step": step, "train_loss": float(np.mean(losses)), f"{val_source}_dice_per_patient": dice})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", dice=f"{dice:.3f}")
            losses = []
            if dice > best:
                best = dice
                model.save_pretrained(run.best)
            model.save_pretrained(run.last)
            torch.save({"optimizer": opt.state_dict(), "step": step, "best_dice": best,
                        "generator": gen.get_state()}, run.last / "trainer_state.pt")
    bar.close()
    return {"run": str(run.path), "steps": step, "best_dice": best, "validated_on": val_source,
            "train_frames": len(train), "val_frames": len(val), "skipped": train.skipped + val.skipped}


def _mean_dice(pred: np.ndarray, truth: np.ndarray | None, idx: np.ndarray | None) -> float:
    """Mean Dice of ``pred`` against ``truth`` on frames ``idx`` (NaN without labelled frames)."""
    if truth is None or idx is None or not len(idx):
        return np.nan
    return float(np.mean(dice_scores(pred[idx], truth[idx])))


def segment_manifest(manifest: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                     overwrite: bool = False, progress: bool = True, batch_size: int = 32,
                     device: str = "auto", repair: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Segment every frame of every clip; Dice against the clip's own labelled frames.

    Each clip is segmented inside its ultrasound fan when one is found (:func:`echokdm.io.fan.source_fan`,
    ``predict_masks(region=)``): the sector's bounding box, black outside it, masks 0 outside it.
    With ``repair`` (default) the masks are then repaired as the clip's keypoints read them
    (:func:`echokdm.geometry.mask_repair.repair_masks`: largest component, holes filled, frames that
    leak into the atrium cut at the annulus line; apex side from the sector); the network's own
    output is kept beside them.

    Writes ``out/masks/<clip>.npz`` (``masks`` ``uint8`` ``(T, H, W)`` at the clip's size, and with
    ``repair`` ``network``: the masks before the repair) and ``out/segmentation.csv`` (one row per
    clip: frames, labelled frames, mean Dice, with ``repair`` also the network's Dice, the frames cut
    and a note). Returns the table and the skipped clips with their reasons.
    """
    from tqdm.auto import tqdm

    from echokdm.generation.loop import segment_clip

    frame = load_manifest(manifest)
    out = Path(out)
    report_path = out / "segmentation.csv"
    if report_path.exists() and not overwrite:
        raise FileExistsError(f"{report_path}: already exists; pass --overwrite to replace it")
    checkpoint = resolve_checkpoint(checkpoint, "segmentation")  # a folder or a packaged name; never the hub
    (out / "masks").mkdir(parents=True, exist_ok=True)
    model = LVSegmentationNet.from_pretrained(checkpoint).to(_device(device))
    rows, skipped = [], []
    for _, row in tqdm(list(frame.iterrows()), desc="segmenting", unit="clip", disable=not progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cine = read_clip(row)
        except Exception as exc:  # noqa: BLE001 - listed and skipped
            skipped.append((str(row["clip_id"]), f"{type(exc).__name__}: {exc}"))
            continue
        region = fan_mask_or_none(cine)  # the network sees the sector as it was trained, never text around it
        pred, network, repaired = segment_clip(model, cine.frames, region, repair=repair, batch_size=batch_size)
        target = out / "masks" / f"{clip_file_stem(str(row['clip_id']))}.npz"
        with atomic_output(target, overwrite=True) as tmp:
            np.savez_compressed(tmp, masks=pred, **({} if repaired is None else {"network": network}))
        idx = None
        if cine.masks is not None:
            idx = np.arange(cine.n_frames) if cine.labelled_frames is None else cine.labelled_frames
        record = {"clip_id": row["clip_id"], "patient_id": row["patient_id"], "dataset": row["dataset"],
                  "split": row["split"], "n_frames": cine.n_frames, "n_labelled": 0 if idx is None else len(idx),
                  "dice": _mean_dice(pred, cine.masks, idx), "masks": str(target.relative_to(out))}
        if repaired is not None:
            record.update({"dice_network": _mean_dice(network, cine.masks, idx),
                           "frames_cut": int(repaired.cut.sum()), "repair_note": repaired.note})
        rows.append(record)
    table = pd.DataFrame(rows)
    with atomic_output(report_path, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)
    return table, skipped
