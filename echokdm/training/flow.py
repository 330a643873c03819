"""Train OF-net without labels on frame pairs from a manifest, and cache its flows for K2F.

    echokdm train flow --config configs/<domain>/flow.yaml --manifest cohort/manifest.csv --out /tmp/ofnet_run
    echokdm flow cohort/manifest.csv --checkpoint /tmp/ofnet_run/best -o /tmp/ofnet_flows

Training pairs are frames ``(t, t + g)`` of one clip for every gap ``g`` of ``data.gaps``, in both
directions, resized to ``data.size``. Each step computes the flow of a pair in both directions
(sharing the feature pyramid), masks occlusions by the forward–backward check, and minimises a
photometric loss (L1 + SSIM and/or census) plus edge-aware smoothness
(:mod:`echokdm.training.losses`). When the manifest has ground truth (``ground_truth.csv`` next
to it, :func:`echokdm.data.ground_truth.ground_truth_files`), validation measures the end-point
error against the exact flow inside the valid region of the frames, and
``loss.supervised_weight > 0`` adds a supervised EPE term; otherwise validation reports the
photometric error. The loop is :class:`echokdm.training.loop.Trainer`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from echokdm.adapters import DEFAULT_ADAPTER, get_adapter
from echokdm.config import load_config
from echokdm.data.ground_truth import GroundTruthFlows, ground_truth_files
from echokdm.data.manifest import clip_file_stem, load_manifest, read_clip
from echokdm.geometry.flow import warp
from echokdm.geometry.resize import resize_images
from echokdm.io.atomic import atomic_output, atomic_write_text
from echokdm.models.ofnet import OFNet, upsample_flow
from echokdm.pretrained import resolve_checkpoint
from echokdm.training import losses
from echokdm.training.loop import LoopConfig, Trainer, resolve_device
from echokdm.training.run import RunFolder

__all__ = [
    "FlowModelConfig", "FlowDataConfig", "FlowLossConfig", "FlowTrainConfig", "FlowConfig", "load_flow_config",
    "build_ofnet", "frame_pairs", "random_smooth_flow", "synthetic_pairs", "PairData", "load_pair_data",
    "PairSampler", "flow_loss",
    "train_flow", "predict_clip_flows", "cache_flows", "pool_flows", "CACHE_FORMAT_VERSION", "DEFAULT_CACHE_POOL",
]

CACHE_FORMAT_VERSION = 1
#: Default area pooling of the cached flows: K2F's latent downsampling (the README's KDM section), so
#: the cache holds what K2F diffuses (issue 23: 16× smaller than at full resolution).
DEFAULT_CACHE_POOL = 4


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FlowModelConfig:
    """:class:`~echokdm.models.ofnet.OFNet` architecture (see its docstring)."""

    pyramid_channels: tuple[int, ...] = (16, 32, 48, 64)
    feature_channels: int = 32
    estimator_channels: tuple[int, ...] = (64, 48, 32)
    context_channels: tuple[int, ...] = (48, 48, 32, 32)
    context_dilations: tuple[int, ...] = (1, 2, 4, 8)
    max_displacement: int = 4
    output_level: int = 1
    normalize_input: bool = False


@dataclasses.dataclass
class FlowDataConfig:
    """Frame pairs and augmentation.

    ``size``: frames resized to ``size × size``; ``gaps``: frame gaps of the pairs (both
    directions); ``max_clips``: clips per split (null = all); ``val_pairs``: fixed validation
    pairs; intensity augmentation (gain, gamma, the same for both frames of a pair) with
    ``intensity_prob``; spatial augmentation (one random rotation, scale, shift and flip for both
    frames, and the ground-truth flow, :data:`~echokdm.transforms.RandSpatiald`) with
    ``spatial_prob``. Synthetic pairs (used when ``loss.synthetic_weight > 0``): each source frame
    warped by a random smooth flow (a ``synthetic_grid²`` grid of Gaussian vectors, rms up to
    ``synthetic_amplitude_px``, upsampled bicubically, times a smooth random on/off mask so that
    some regions stay still), with independent Gaussian noise of ``synthetic_noise`` on both frames.
    ``appearance_augment``: the random look of the keypoint adapter named by ``adapter``
    (:meth:`~echokdm.adapters.base.KeypointAdapter.augment_appearance`; the default adapter's is the
    scanner look its sim-to-real models use), after the other augmentation: the same look for both
    frames of a pair, with independent noise in each.
    """

    size: int = 112
    gaps: tuple[int, ...] = (1, 2, 4, 8, 16)
    max_clips: int | None = None
    val_pairs: int = 96
    intensity_prob: float = 0.8
    gain_range: tuple[float, float] = (0.8, 1.2)
    gamma_range: tuple[float, float] = (0.8, 1.25)
    spatial_prob: float = 0.5
    rotate_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate_px: float = 4.0
    flip_prob: float = 0.5
    synthetic_amplitude_px: float = 3.0
    synthetic_grid: int = 4
    synthetic_noise: float = 0.03
    appearance_augment: bool = False
    adapter: str = DEFAULT_ADAPTER


@dataclasses.dataclass
class FlowLossConfig:
    """Loss weights (:mod:`echokdm.training.losses`).

    Photometric: ``l1_weight``, ``ssim_weight``, ``census_weight`` (``census_patch`` wide).
    Smoothness: ``smooth_weight`` × edge-aware ``smooth_order`` differences, edge weight
    ``exp(-smooth_edge_alpha |∇I|)``. Occlusion: forward–backward check with ``occlusion_alpha``,
    ``occlusion_beta`` from step ``occlusion_start`` (before it every pixel counts).
    ``level_weights``: photometric weight of the final flow, then of each coarser estimate
    (upsampled), finest first; missing entries are 0. ``synthetic_weight``: EPE on synthetic
    pairs (a training frame and its own copy warped by a known random smooth flow; no labels
    needed, so it applies to real data too; 0 = off). ``supervised_weight``: EPE against the
    exact ground-truth flow inside the valid region (the imaging sector, moved with the frames by the
    spatial augmentation; 0 = unsupervised, the default; needs ``ground_truth.csv``), from step
    ``supervised_start``. The EPE is an L1-type loss whose minimiser, wherever the network cannot
    tell a moving pixel from a still one, is exactly zero flow (a geometric median; much of the
    sector does not move). On the realistic synthetic cohort, whose speckle decorrelates from frame
    to frame, it held or brought the network to zero flow at every weight tried (1 and 0.05 from
    step 0; 0.05 from step 1000), and so did the synthetic pairs' EPE (0.1), while the photometric
    term alone did not (``flow_realistic.yaml`` of the default adapter's configs).
    """

    l1_weight: float = 1.0
    ssim_weight: float = 0.0
    census_weight: float = 0.0
    census_patch: int = 7
    smooth_weight: float = 1.0
    smooth_order: int = 2
    smooth_edge_alpha: float = 10.0
    occlusion: bool = True
    occlusion_alpha: float = 0.01
    occlusion_beta: float = 0.5
    occlusion_start: int = 0
    level_weights: tuple[float, ...] = (1.0,)
    synthetic_weight: float = 0.0
    supervised_weight: float = 0.0
    supervised_start: int = 0


@dataclasses.dataclass
class FlowTrainConfig(LoopConfig):
    """:class:`~echokdm.training.loop.LoopConfig` with OF-net's defaults (a short CPU run)."""

    steps: int = 3000
    batch_size: int = 8
    lr: float = 5e-4
    warmup_steps: int = 50
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    ema_decay: float | None = 0.99
    val_every: int = 250
    checkpoint_every: int = 250


@dataclasses.dataclass
class FlowConfig:
    """``echokdm train flow`` configuration (the flow config, ``configs/<domain>/flow.yaml``)."""

    model: FlowModelConfig = dataclasses.field(default_factory=FlowModelConfig)
    data: FlowDataConfig = dataclasses.field(default_factory=FlowDataConfig)
    loss: FlowLossConfig = dataclasses.field(default_factory=FlowLossConfig)
    train: FlowTrainConfig = dataclasses.field(default_factory=FlowTrainConfig)


def load_flow_config(path: str | os.PathLike | dict | None = None, overrides: dict | None = None) -> FlowConfig:
    """Read and validate an OF-net config (defaults when ``path`` is None)."""
    return load_config(path, FlowConfig, overrides)


def build_ofnet(model: FlowModelConfig, size: int) -> OFNet:
    """An untrained :class:`OFNet` from the ``model:`` section, for frames of ``size`` pixels."""
    return OFNet(pyramid_channels=tuple(model.pyramid_channels), feature_channels=model.feature_channels,
                 estimator_channels=tuple(model.estimator_channels), context_channels=tuple(model.context_channels),
                 context_dilations=tuple(model.context_dilations), max_displacement=model.max_displacement,
                 output_level=model.output_level, sample_size=size, normalize_input=model.normalize_input)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def frame_pairs(n_frames: int, gaps: Sequence[int], both_directions: bool = True) -> np.ndarray:
    """``int64`` ``(N, 2)`` (source, target) frame pairs ``(t, t + g)`` of a clip, for each gap.

    Ordered by gap, then ``t``; with ``both_directions`` each pair is followed by ``(t + g, t)``.
    Gaps of ``n_frames`` or more give no pairs.
    """
    pairs = []
    for g in gaps:
        if g < 1:
            raise ValueError(f"frame gaps must be >= 1, got {g}")
        for t in range(n_frames - g):
            pairs.append((t, t + g))
            if both_directions:
                pairs.append((t + g, t))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@dataclasses.dataclass
class PairData:
    """The frames of one split in memory, and its frame pairs.

    ``frames[i]`` is ``uint8`` ``(T_i, S, S)`` (0–255) of clip ``i``; ``pairs`` ``int64``
    ``(N, 3)`` rows ``(clip index, source frame, target frame)``; ``truth[i]`` the ground-truth
    ``.npz`` of the clip or None (:func:`~echokdm.data.ground_truth.ground_truth_files`);
    ``skipped`` ``(clip_id, reason)`` of clips that could not be used.
    """

    frames: list[np.ndarray]
    clip_ids: list[str]
    patient_ids: list[str]
    pairs: np.ndarray
    truth: list[Path | None]
    size: int
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def has_truth(self) -> bool:
        return bool(self.frames) and all(t is not None for t in self.truth)


def load_pair_data(manifest: pd.DataFrame, split: str, size: int, gaps: Sequence[int], *,
                   truth: dict[str, Path] | None = None, max_clips: int | None = None,
                   progress: bool = True) -> PairData:
    """Read the clips of ``split`` (resized to ``size``) and list their frame pairs.

    Clips that fail to read or have fewer than two frames are skipped and listed, never silently.
    Memory: one byte per pixel (112×112: 12.5 kB per frame).
    """
    from tqdm.auto import tqdm

    rows = manifest[manifest["split"] == split]
    if max_clips is not None:
        rows = rows.iloc[:max_clips]
    truth = truth or {}
    frames, clip_ids, patient_ids, pairs, truths, skipped = [], [], [], [], [], []
    for _, row in tqdm(list(rows.iterrows()), desc=f"loading {split} clips", unit="clip", disable=not progress):
        clip_id = str(row["clip_id"])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cine = read_clip(row)
        except Exception as exc:  # noqa: BLE001 - listed and skipped, never silently
            skipped.append((clip_id, f"{type(exc).__name__}: {exc}"))
            continue
        if cine.n_frames < 2:
            skipped.append((clip_id, f"{cine.n_frames} frame(s): no pairs"))
            continue
        clip_pairs = frame_pairs(cine.n_frames, gaps)
        pairs.append(np.column_stack([np.full(len(clip_pairs), len(frames)), clip_pairs]))
        frames.append(resize_images(cine.frames, size, dtype=np.uint8))
        clip_ids.append(clip_id)
        patient_ids.append(str(row["patient_id"]))
        truths.append(truth.get(clip_id))
    all_pairs = np.concatenate(pairs) if pairs else np.zeros((0, 3), np.int64)
    return PairData(frames, clip_ids, patient_ids, all_pairs, truths, size, skipped)


def random_smooth_flow(batch: int, size: int, amplitude: float, grid: int, generator: torch.Generator) -> torch.Tensor:
    """Random smooth flows ``(B, 2, S, S)`` in pixels for synthetic pairs.

    A ``grid × grid`` field of Gaussian vectors with an rms drawn uniformly in ``[0, amplitude]``
    per sample, upsampled bicubically (``align_corners=False``), times a smooth random mask in
    [0, 1] (coarse uniform noise, upsampled and sharpened) so that parts of the frame stay still,
    as most of a mostly static field of view does.
    """
    rms = amplitude * torch.rand(batch, 1, 1, 1, generator=generator)
    coarse = torch.randn(batch, 2, grid, grid, generator=generator) * rms  # (B, 2, g, g)
    flow = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)  # (B, 2, S, S)
    gate = F.interpolate(torch.rand(batch, 1, grid, grid, generator=generator), size=(size, size), mode="bicubic",
                         align_corners=False)
    return flow * ((gate - 0.3) * 3.0).clamp(0.0, 1.0)


def synthetic_pairs(frames: torch.Tensor, config: FlowDataConfig,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Synthetic training pairs with a known flow from frames ``(B, 1, S, S)`` in [0, 1].

    ``target = warp(source, flow)`` (the shared warp) for a :func:`random_smooth_flow`, then
    independent Gaussian noise on both frames (a crude stand-in for speckle decorrelation).
    Returns ``synthetic_source``, ``synthetic_target`` ``(B, 1, S, S)`` and ``synthetic_flow``
    ``(B, 2, S, S)``, the exact answer in the DESIGN.md convention.
    """
    b, _, s, _ = frames.shape
    flow = random_smooth_flow(b, s, config.synthetic_amplitude_px, config.synthetic_grid, generator)
    target = warp(frames, flow)
    noise = config.synthetic_noise
    source = (frames + noise * torch.randn(frames.shape, generator=generator)).clamp(0, 1)
    target = (target + noise * torch.randn(frames.shape, generator=generator)).clamp(0, 1)
    return {"synthetic_source": source, "synthetic_target": target, "synthetic_flow": flow}


class PairSampler:
    """Random training batches of a :class:`PairData`, drawn only from the given generator.

    ``__call__(generator)`` returns ``{"source", "target"}`` float ``(B, 1, S, S)`` in [0, 1]
    (and, when ``with_truth``, ``"flow"`` ``(B, 2, S, S)`` exact flows and ``"valid"``
    ``(B, 1, S, S)`` the imaging sector, 1 inside), augmented identically for both frames of a pair
    (intensity: gain and gamma; spatial: one affine for frames, flow and sector; the scanner look
    when ``config.appearance_augment``). With ``synthetic`` it adds :func:`synthetic_pairs` made
    from the batch's source frames.
    """

    def __init__(self, data: PairData, config: FlowDataConfig, batch_size: int, *, with_truth: bool = False,
                 synthetic: bool = False):
        from echokdm.transforms import RandSpatiald

        if len(data) == 0:
            raise ValueError("no training pairs: the train split has no readable clip with two frames")
        self.data, self.config, self.batch_size, self.synthetic = data, config, batch_size, synthetic
        self.truth = GroundTruthFlows(data) if with_truth else None
        self.spatial = RandSpatiald(
            image_keys=("source", "target"), mask_keys=("valid",) if with_truth else (),
            flow_keys=("flow",) if with_truth else (), prob=1.0,
            rotate_range=np.deg2rad(config.rotate_deg), scale_range=tuple(config.scale_range),
            translate_range=config.translate_px, flip_prob=config.flip_prob)

    def _intensity(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Same gain and gamma for both frames of each pair; ``x`` ``(B, 2, S, S)``."""
        b = x.shape[0]
        lo, hi = self.config.gain_range
        gain = lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=generator)
        lo, hi = self.config.gamma_range
        gamma = lo + (hi - lo) * torch.rand(b, 1, 1, 1, generator=generator)
        apply = torch.rand(b, 1, 1, 1, generator=generator) < self.config.intensity_prob
        out = (gain * x.clamp(0, 1) ** gamma).clamp(0, 1)
        return torch.where(apply, out, x)

    def _look(self, batch: dict, generator: torch.Generator) -> dict:
        """The adapter's random look, one per pair, with noise of its own in each frame.

        Source and target go side by side through one call: one draw of blur, TGC, haze, gamma,
        gain and compression for both, while the speckle and noise fields differ between the two
        halves. (Replaying the generator for the second frame, as KDM does, would also repeat the
        noise: a fixed pattern in both frames that pulls the flow to zero.)
        """
        width = batch["source"].shape[-1]
        look = get_adapter(self.config.adapter).augment_appearance
        both = look(torch.cat([batch["source"], batch["target"]], dim=-1), generator)
        return {**batch, "source": both[..., :width].contiguous(), "target": both[..., width:].contiguous()}

    def _spatial(self, sample: dict, generator: torch.Generator) -> dict:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        if float(torch.rand(1, generator=generator)) >= self.config.spatial_prob:
            return sample
        self.spatial.set_random_state(seed=seed)
        return self.spatial(sample)

    def __call__(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self.data), (self.batch_size,), generator=generator).numpy()
        samples = []
        for clip, a, b in self.data.pairs[idx]:
            frames = self.data.frames[clip]
            sample = {"source": torch.from_numpy(frames[a][None].astype(np.float32) / 255.0),
                      "target": torch.from_numpy(frames[b][None].astype(np.float32) / 255.0)}
            if self.truth is not None:
                sample["flow"] = torch.from_numpy(self.truth.flow(clip, a, b))
                sample["valid"] = torch.from_numpy(self.truth.fan(clip)[None].astype(np.float32))
            samples.append(self._spatial(sample, generator))
        pair = torch.stack([torch.cat([s["source"], s["target"]]) for s in samples])  # (B, 2, S, S)
        pair = self._intensity(pair, generator)
        batch = {"source": pair[:, :1].contiguous(), "target": pair[:, 1:].contiguous()}
        if self.truth is not None:
            batch["flow"] = torch.stack([torch.as_tensor(s["flow"]) for s in samples]).float()
            batch["valid"] = (torch.stack([torch.as_tensor(s["valid"]) for s in samples]).float() > 0.5).float()
        if self.config.appearance_augment:
            batch = self._look(batch, generator)
        if self.synthetic:
            batch.update(synthetic_pairs(batch["source"], self.config, generator))
        return batch


# ---------------------------------------------------------------------------------------------
# loss
# ---------------------------------------------------------------------------------------------


def _photometric(source, target, flow, mask, cfg: FlowLossConfig) -> torch.Tensor:
    return losses.photometric_loss(source, target, flow, mask, l1_weight=cfg.l1_weight, ssim_weight=cfg.ssim_weight,
                                   census_weight=cfg.census_weight, census_patch=cfg.census_patch)


def flow_loss(model: OFNet, batch: dict[str, torch.Tensor], step: int,
              cfg: FlowLossConfig) -> tuple[torch.Tensor, dict]:
    """Bidirectional unsupervised loss of one batch (plus supervised EPE when weighted).

    Both directions of each pair share the pyramid features: the pair (a, b) gives ``f_ab`` (on
    b's grid, into a) and ``f_ba``; occlusions of each follow from the other
    (:func:`~echokdm.training.losses.occlusion_mask`). Synthetic pairs in the batch add
    ``synthetic_weight`` × their EPE. Returns the loss and its parts (``photo``, ``smooth``,
    ``visible`` fraction, ``synthetic_epe``, and ``epe`` when ground truth is in the batch).
    """
    source, target = batch["source"], batch["target"]  # (B, 1, S, S) each
    b, size = source.shape[0], tuple(source.shape[-2:])
    feats = model.features(torch.cat([source, target]))
    src_feats = [torch.cat([f[:b], f[b:]]) for f in feats]  # sources a then b
    tgt_feats = [torch.cat([f[b:], f[:b]]) for f in feats]  # targets b then a
    flows = model.decode(src_feats, tgt_feats, size=size)  # coarse..fine, then full size; each (2B, 2, ., .)
    final = flows[-1]  # (2B, 2, S, S): [f_ab; f_ba]
    images_src, images_tgt = torch.cat([source, target]), torch.cat([target, source])
    if cfg.occlusion and step >= cfg.occlusion_start:
        f_ab, f_ba = final[:b], final[b:]
        visible = torch.cat([losses.occlusion_mask(f_ab, f_ba, alpha=cfg.occlusion_alpha, beta=cfg.occlusion_beta),
                             losses.occlusion_mask(f_ba, f_ab, alpha=cfg.occlusion_alpha, beta=cfg.occlusion_beta)])
    else:
        visible = torch.ones_like(images_tgt)
    photo = final.new_zeros(())
    estimates = [final] + [upsample_flow(f, size) for f in reversed(flows[:-2])]  # finest first
    for weight, flow in zip(cfg.level_weights, estimates, strict=False):  # missing weights are 0
        if weight:
            photo = photo + weight * _photometric(images_src, images_tgt, flow, visible, cfg)
    smooth = losses.smoothness_loss(final, images_tgt, order=cfg.smooth_order, edge_alpha=cfg.smooth_edge_alpha)
    loss = photo + cfg.smooth_weight * smooth
    parts = {"photo": float(photo.detach()), "smooth": float(smooth.detach()), "visible": float(visible.mean())}
    if cfg.synthetic_weight and "synthetic_flow" in batch:
        predicted = model(batch["synthetic_source"], batch["synthetic_target"])
        synthetic = losses.endpoint_error(predicted, batch["synthetic_flow"])
        loss = loss + cfg.synthetic_weight * synthetic
        parts["synthetic_epe"] = float(synthetic.detach())
    if "flow" in batch:  # inside the valid region (the sector) only, as validation measures it
        epe = losses.endpoint_error(final[:b], batch["flow"], batch.get("valid"))
        parts["epe"] = float(epe.detach())
        if cfg.supervised_weight and step >= cfg.supervised_start:
            loss = loss + cfg.supervised_weight * epe
    return loss, parts


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _ValidationSet:
    source: torch.Tensor  # (N, 1, S, S)
    target: torch.Tensor
    flow: torch.Tensor | None  # (N, 2, S, S) exact flows, or None
    fan: torch.Tensor | None  # (N, 1, S, S) float sector masks, or None


def _validation_set(data: PairData, n_pairs: int, seed: int) -> _ValidationSet:
    """A fixed random subset of the pairs (seeded), with exact flows and sector masks when known."""
    rng = np.random.default_rng(seed)
    chosen = data.pairs[np.sort(rng.choice(len(data), size=min(n_pairs, len(data)), replace=False))]
    src = np.stack([data.frames[c][a] for c, a, _ in chosen]).astype(np.float32)[:, None] / 255.0
    tgt = np.stack([data.frames[c][b] for c, _, b in chosen]).astype(np.float32)[:, None] / 255.0
    flow = fan = None
    if data.has_truth:
        truth = GroundTruthFlows(data)
        flow = torch.from_numpy(np.stack([truth.flow(c, a, b) for c, a, b in chosen]))
        fan = torch.from_numpy(np.stack([truth.fan(c) for c, _, _ in chosen]).astype(np.float32)[:, None])
    return _ValidationSet(torch.from_numpy(src), torch.from_numpy(tgt), flow, fan)


@torch.no_grad()
def _validate(model: OFNet, val: _ValidationSet, batch_size: int = 32) -> dict[str, float]:
    """``val_photometric`` (mean |warp(source) - target|, in the sector when known) and, with ground
    truth, ``val_epe`` and ``val_epe_zero`` (the zero flow's EPE) in the sector, in pixels."""
    device = next(model.parameters()).device
    flows = []
    for i in range(0, len(val.source), batch_size):
        src, tgt = val.source[i:i + batch_size].to(device), val.target[i:i + batch_size].to(device)
        flows.append(model(src, tgt).float().cpu())
    flows = torch.cat(flows)  # (N, 2, S, S)
    warped = warp(val.source, flows)
    metrics = {"val_photometric": float(losses.masked_mean((warped - val.target).abs(), val.fan))}
    if val.flow is not None:
        metrics["val_epe"] = float(losses.endpoint_error(flows, val.flow, val.fan))
        metrics["val_epe_zero"] = float(losses.endpoint_error(torch.zeros_like(val.flow), val.flow, val.fan))
    return metrics


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def train_flow(config: FlowConfig, manifest: str | os.PathLike, out: str | os.PathLike, *, resume: bool = False,
               overwrite: bool = False, progress: bool = True) -> dict:
    """Train OF-net on the train split's frame pairs; validate on the val split.

    Writes the run folder (:class:`~echokdm.training.run.RunFolder`): ``best/`` holds the model
    (EMA weights when ``train.ema_decay`` is set) with the lowest validation EPE (data with ground
    truth) or photometric error (other data). Returns a summary dict (run, steps, best, metric, pairs,
    skipped clips).
    """
    frame = load_manifest(manifest)
    truth = ground_truth_files(manifest)
    if config.loss.supervised_weight and not truth:
        raise ValueError(f"{manifest}: loss.supervised_weight > 0 needs ground truth (a cohort with "
                         "ground_truth.csv beside the manifest)")
    run = RunFolder(out, config, resume=resume, overwrite=overwrite)
    size, gaps = config.data.size, config.data.gaps
    train = load_pair_data(frame, "train", size, gaps, truth=truth, max_clips=config.data.max_clips, progress=progress)
    val = load_pair_data(frame, "val", size, gaps, truth=truth, max_clips=config.data.max_clips, progress=progress)
    validated_on = "val"
    if len(val) == 0:
        warnings.warn(f"{manifest}: no readable val clips; validating on train pairs", stacklevel=2)
        val, validated_on = train, "train"
    torch.manual_seed(config.train.seed)
    model = build_ofnet(config.model, size)
    sampler = PairSampler(train, config.data, config.train.batch_size,
                          with_truth=bool(config.loss.supervised_weight), synthetic=bool(config.loss.synthetic_weight))
    val_set = _validation_set(val, config.data.val_pairs, config.train.seed)
    metric = "val_epe" if val_set.flow is not None else "val_photometric"
    trainer = Trainer(model, run, config.train, batch_fn=sampler,
                      loss_fn=lambda m, batch, step: flow_loss(m, batch, step, config.loss),
                      validate_fn=lambda m: _validate(m, val_set), best_metric=metric, resume=resume,
                      progress=progress, description="training OF-net")
    result = trainer.fit()
    result.update({"metric": metric, "validated_on": validated_on, "train_pairs": len(train),
                   "val_pairs": len(val_set.source),
                   "skipped": train.skipped + (val.skipped if val is not train else [])})
    return result


# ---------------------------------------------------------------------------------------------
# flow cache for K2F
# ---------------------------------------------------------------------------------------------


@torch.inference_mode()
def predict_clip_flows(model: OFNet, frames: np.ndarray | torch.Tensor, pairs: np.ndarray, *,
                       batch_size: int = 32) -> np.ndarray:
    """Flows of many pairs of one clip, sharing each frame's pyramid features.

    Parameters
    ----------
    model : OFNet
        In eval mode on its device.
    frames : array
        ``(T, S, S)`` float in [0, 1] (or uint8 0–255) at the model's working size.
    pairs : numpy.ndarray
        ``(N, 2)`` (source, target) frame indices.
    batch_size : int
        Frames per feature batch and pairs per decoding batch.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(N, 2, S, S)`` flows (DESIGN.md convention).
    """
    model.eval()
    x = torch.as_tensor(np.asarray(frames))
    x = (x.float() / 255.0 if x.dtype == torch.uint8 else x.float())[:, None]  # (T, 1, S, S)
    feats = [model.features(x[i:i + batch_size].to(model.device)) for i in range(0, len(x), batch_size)]
    levels = [torch.cat([f[level] for f in feats]) for level in range(len(feats[0]))] if feats else []
    out = []
    size = tuple(x.shape[-2:])
    for start in range(0, len(pairs), batch_size):
        src, tgt = pairs[start:start + batch_size, 0], pairs[start:start + batch_size, 1]
        flows = model.decode([f[src] for f in levels], [f[tgt] for f in levels], size=size)[-1]
        out.append(flows.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2, *size), np.float32)




def pool_flows(flows: np.ndarray, pool: int) -> np.ndarray:
    """Flows ``(N, 2, S, S)`` area-averaged over ``pool × pool`` blocks: ``(N, 2, S/pool, S/pool)``, the
    values still in pixels of the S×S frames (what :func:`~echokdm.models.kdm.encode_flow` gives K2F
    before dividing by the flow scale). ``pool=1`` returns ``flows``."""
    if pool == 1:
        return flows
    n, c, h, w = flows.shape
    if h % pool or w % pool:
        raise ValueError(f"flows of {h}×{w} cannot be pooled by {pool}")
    return flows.reshape(n, c, h // pool, pool, w // pool, pool).mean(axis=(3, 5), dtype=np.float32)


def _cache_complete(path: Path, pairs: np.ndarray, size: int, pool: int = 1) -> bool:
    """True when ``path`` is a readable cache file of this version, size, pooling and exactly these ``pairs``.

    Files are only ever created complete (written under a temporary name, then renamed), so the
    small arrays are checked and the flows are not decompressed; an unreadable or truncated
    file (its zip directory sits at the end) counts as incomplete.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_pool = int(data["pool"]) if "pool" in data.files else 1  # files before issue 23: full size
            return ("flows" in data.files and int(data["format_version"]) == CACHE_FORMAT_VERSION
                    and int(data["size"]) == size and stored_pool == pool and np.array_equal(data["pairs"], pairs))
    except Exception:  # noqa: BLE001 - any unreadable file is recomputed
        return False


def _write_cache(path: Path, flows: np.ndarray, pairs: np.ndarray, clip_id: str, size: int, source_hw: tuple[int, int],
                 checkpoint: str, pool: int = 1) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        np.savez_compressed(tmp, format_version=np.int64(CACHE_FORMAT_VERSION),
                            flows=pool_flows(flows, pool).astype(np.float16), pool=np.int64(pool),
                            pairs=pairs.astype(np.int32), size=np.int64(size),
                            source_hw=np.asarray(source_hw, np.int64), clip_id=np.str_(clip_id),
                            checkpoint=np.str_(checkpoint))


def cache_flows(manifest: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                gaps: Sequence[int] = (1, 2, 4), splits: Sequence[str] | None = None, batch_size: int = 32,
                device: str = "auto", resume: bool = True, overwrite: bool = False, pool: int = DEFAULT_CACHE_POOL,
                progress: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Precompute OF-net flows of every frame pair of a manifest: what K2F trains on.

    For each clip (of ``splits``, default all), frames are resized to the model's
    ``sample_size`` S and the flows of all pairs ``frame_pairs(T, gaps)`` (both directions)
    computed in batches. Each clip gets ``out/flows/<clip_id>.npz``: ``flows`` **float16**
    ``(N, 2, S/pool, S/pool)`` (dx, dy pixels of the S×S frames, target grid, into the source,
    area-averaged over ``pool × pool`` blocks; rounding ≤ 2⁻¹¹ of the value), ``pairs`` int32
    ``(N, 2)`` (source, target), ``size``, ``pool``, ``source_hw`` (the clip's own frame size),
    ``clip_id``, ``checkpoint``, ``format_version``. Files are written atomically.
    ``out/flows.csv`` lists every clip (status ``computed`` or ``cached``).

    ``pool`` (default :data:`DEFAULT_CACHE_POOL` = 4, K2F's latent downsampling) keeps the flows at
    the resolution K2F diffuses: 16× less to store (about 2.6 kB per pair at 112×112 instead of
    about 40 kB; ``benchmarks/scale.py``), and K2F trains on exactly the same values
    (:func:`~echokdm.data.pairs.read_flow_file` repeats each value over its block, whose area
    average is the stored value). F2I then conditions on that block flow (K2F's resolution, as
    at sampling) instead of OF-net's full-resolution one. ``pool=1`` stores the full resolution
    (the files before this option; still read as they are).

    Parameters
    ----------
    resume : bool
        Skip clips whose file exists and is complete (same pairs, size, pooling and format);
        others are (re)computed.
    pool : int
        Area-average the flows over ``pool × pool`` blocks before storing them (1: full resolution).
    overwrite : bool
        Recompute every clip. Without ``resume`` or ``overwrite`` an existing file is an error.

    Returns
    -------
    (pandas.DataFrame, list of (clip_id, reason))
        The summary table and the clips skipped because they could not be read.
    """
    from tqdm.auto import tqdm

    frame = load_manifest(manifest)
    if splits is not None:
        frame = frame[frame["split"].isin(list(splits))]
    checkpoint = resolve_checkpoint(checkpoint, "ofnet")  # a folder or a packaged name; never the hub
    out = Path(out)
    (out / "flows").mkdir(parents=True, exist_ok=True)
    model = OFNet.from_pretrained(checkpoint).to(resolve_device(device)).eval()
    size = int(model.config.sample_size)
    rows, skipped = [], []
    for _, row in tqdm(list(frame.iterrows()), desc="caching flows", unit="clip", disable=not progress):
        clip_id = str(row["clip_id"])
        target = out / "flows" / f"{clip_file_stem(clip_id)}.npz"
        record = {"clip_id": clip_id, "patient_id": row["patient_id"], "dataset": row["dataset"],
                  "split": row["split"], "file": str(target.relative_to(out))}
        n_frames = int(row["n_frames"]) if np.isfinite(row["n_frames"]) else None
        if target.exists() and not overwrite:
            if not resume:
                raise FileExistsError(f"{target}: already exists; pass overwrite=True (--overwrite) or resume")
            if n_frames is not None and _cache_complete(target, frame_pairs(n_frames, gaps), size, pool):
                rows.append({**record, "n_frames": n_frames, "n_pairs": len(frame_pairs(n_frames, gaps)),
                             "status": "cached", "seconds": 0.0})
                continue
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cine = read_clip(row)
        except Exception as exc:  # noqa: BLE001 - listed and skipped
            skipped.append((clip_id, f"{type(exc).__name__}: {exc}"))
            continue
        pairs = frame_pairs(cine.n_frames, gaps)
        if resume and not overwrite and _cache_complete(target, pairs, size, pool):
            rows.append({**record, "n_frames": cine.n_frames, "n_pairs": len(pairs), "status": "cached",
                         "seconds": 0.0})
            continue
        frames = resize_images(cine.frames, size, dtype=np.uint8)  # (T, S, S)
        flows = predict_clip_flows(model, frames, pairs, batch_size=batch_size)
        _write_cache(target, flows, pairs, clip_id, size, cine.frames.shape[-2:], str(checkpoint), pool)
        rows.append({**record, "n_frames": cine.n_frames, "n_pairs": len(pairs), "status": "computed",
                     "seconds": round(time.perf_counter() - started, 3)})
    table = pd.DataFrame(rows, columns=["clip_id", "patient_id", "dataset", "split", "file", "n_frames", "n_pairs",
                                        "status", "seconds"])
    with atomic_output(out / "flows.csv", overwrite=True) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(out / "cache.json", json.dumps({"checkpoint": str(checkpoint), "gaps": list(gaps), "size": size,
                                                      "pool": pool, "format_version": CACHE_FORMAT_VERSION}, indent=2),
                      overwrite=True)
    return table, skipped
