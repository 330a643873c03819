"""Train KDM (paper §3): the latent autoencoder, K2F, F2I and the "w/o K2F" F2I, in order, through
the one training loop (:class:`~echokdm.training.loop.Trainer`), then assemble the pipeline folder.

    echokdm train kdm --config configs/<adapter>/<config>.yaml --manifest MANIFEST --out runs/kdm

Training pairs ``(source frame, target frame, source keypoints, target keypoints, flow)`` come from a
manifest, through the keypoint adapter named by ``data.adapter`` (:func:`echokdm.adapters.get_adapter`):
the adapter reads its manifest, gives each clip's frames, keypoints, frame pairs and flows at the
working size (:class:`~echokdm.data.pairs.TrainingClip`; ``data.keypoints`` and ``data.flows``
choose among the adapter's sources, e.g. exact flows shipped with the data or OF-net flows cached
by ``echokdm flow``, the paper's setting for real data) and renders the conditioning images. This
module holds no domain-specific code (docs/adapters.md). Losses follow the paper:
ε-prediction with an L2 (or L1) loss for K2F (eq. 2) and F2I (eq. 3); L1 + LPIPS + a small KL term
for the autoencoder.

Run folder: ``<out>/autoencoder``, ``<out>/k2f``, ``<out>/f2i``, ``<out>/f2i_noflow`` (one run folder
each, see :mod:`echokdm.training.run`) and ``<out>/pipeline`` (the :class:`~echokdm.pipelines.KDMPipeline`
folder) plus ``<out>/pipeline_noflow`` (the "w/o K2F" ablation). A stage whose ``best/`` exists is
skipped unless ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from echokdm.adapters import DEFAULT_ADAPTER, get_adapter
from echokdm.config import load_config
from echokdm.geometry.flow import warp
from echokdm.models.conditions import (
    batch_to_frames,
    f2i_condition_channels,
    f2i_condition_from_render,
    frames_to_batch,
    k2f_condition_channels,
    k2f_condition_from_renders,
)
from echokdm.models.kdm import ConditionalUNet, encode_flow, make_autoencoder
from echokdm.pipelines.kdm import KDMPipeline, default_scheduler
from echokdm.training.distributed import is_main_process
from echokdm.training.loop import LoopConfig, Trainer
from echokdm.training.run import RunFolder

__all__ = [
    "KDMDataConfig", "AutoencoderConfig", "DiffusionStageConfig", "KDMConfig", "load_kdm_config",
    "PairBank", "build_pair_bank", "train_kdm", "STAGES",
]

STAGES = ("autoencoder", "k2f", "f2i", "f2i_noflow")


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class KDMDataConfig:
    """Training data. ``adapter`` names the keypoint adapter; ``keypoints`` and ``flows`` are its
    sources (None = the adapter's default; unknown values are an error naming the allowed ones)."""

    size: int = 112
    keypoints: str | None = None
    flows: str | None = None
    flow_cache: str | None = None
    segmentation: str | None = None
    pairs_per_clip: int = 24
    max_clips: int | None = None
    val_pairs: int = 24
    adapter: str = DEFAULT_ADAPTER
    appearance_augment: bool = False  # the adapter's random look, the same for both frames of a pair
    channels: int = 1  # frame channels: 1 grayscale (luma of colour data), 3 RGB (the adapter must allow it)

    def __post_init__(self) -> None:
        get_adapter(self.adapter).check_data_config(self)


@dataclasses.dataclass
class AutoencoderModelConfig:
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    latent_channels: int = 4
    layers_per_block: int = 1
    norm_num_groups: int = 32


@dataclasses.dataclass
class AutoencoderLossConfig:
    l1: float = 1.0
    lpips: float = 0.1
    lpips_net: Literal["alex", "vgg"] = "alex"
    lpips_backbone: str | None = None
    kl: float = 1e-6


@dataclasses.dataclass
class AutoencoderConfig:
    model: AutoencoderModelConfig = dataclasses.field(default_factory=AutoencoderModelConfig)
    loss: AutoencoderLossConfig = dataclasses.field(default_factory=AutoencoderLossConfig)
    train: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(steps=1500, batch_size=16, lr=1e-3))


@dataclasses.dataclass
class UNetConfig:
    block_out_channels: tuple[int, ...] = (64, 128, 256)
    layers_per_block: int = 2
    attention_levels: tuple[bool, ...] = (False, True, True)
    condition_embed_channels: int = 32
    norm_num_groups: int = 32
    flow_scale: float | None = 8.0  # px per unit of the flow code; null (K2F): RMS of the training flows
    displacement_sigma: float | None = None  # K2F: keypoint displacement condition width (px); null = paper
    warped_source: bool = False  # F2I: also condition on the source warped by the flow; false = paper


@dataclasses.dataclass
class DiffusionStageConfig:
    model: UNetConfig = dataclasses.field(default_factory=UNetConfig)
    loss: Literal["l2", "l1"] = "l2"
    prediction_type: Literal["epsilon", "sample", "v_prediction"] = "epsilon"  # the paper: epsilon
    train: LoopConfig = dataclasses.field(default_factory=lambda: LoopConfig(steps=3000, batch_size=16, lr=3e-4,
                                                                             ema_decay=0.999))


@dataclasses.dataclass
class SamplingConfig:
    num_train_timesteps: int = 1000
    num_inference_steps: int = 200
    k: int = 100
    val_inference_steps: int = 20


@dataclasses.dataclass
class KDMConfig:
    """``echokdm train kdm`` configuration (``configs/<adapter>/*.yaml``)."""

    data: KDMDataConfig = dataclasses.field(default_factory=KDMDataConfig)
    autoencoder: AutoencoderConfig = dataclasses.field(default_factory=AutoencoderConfig)
    k2f: DiffusionStageConfig = dataclasses.field(default_factory=DiffusionStageConfig)
    f2i: DiffusionStageConfig = dataclasses.field(default_factory=DiffusionStageConfig)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    train_noflow_ablation: bool = True


def load_kdm_config(path: str | os.PathLike | dict | None = None, overrides: dict | None = None) -> KDMConfig:
    """Read and validate a KDM config (defaults when ``path`` is None)."""
    return load_config(path, KDMConfig, overrides)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PairBank:
    """Frames, rendered keypoints and frame pairs of one split, in memory.

    ``frames`` ``float32`` ``(F, S, S)`` (``(F, S, S, C)`` in colour) in [0, 1]; ``keypoints`` ``(F, N, 2)``;
    ``renders`` ``uint8``
    ``(F, C, S, S)`` (the adapter's conditioning image of each frame's keypoints); ``pairs`` ``(P, 2)``
    global frame indices (source, target); ``flows`` ``float16`` ``(P, 2, S, S)`` source → target;
    ``patient_ids`` per pair.
    """

    frames: np.ndarray
    keypoints: np.ndarray
    renders: np.ndarray
    pairs: np.ndarray
    flows: np.ndarray
    patient_ids: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        return int(len(self.pairs))

    @property
    def channels(self) -> int:
        """Frame channels: 1 for ``(F, S, S)`` frames, ``C`` for ``(F, S, S, C)``."""
        return int(self.frames.shape[-1]) if self.frames.ndim == 4 else 1

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensors of the pairs ``index`` (CPU): source/target ``(B, C, S, S)``, renders in [-1, 1], flow,
        source/target keypoints ``(B, N, 2)``."""
        idx = index.numpy()
        s, t = self.pairs[idx, 0], self.pairs[idx, 1]
        return {
            "source": frames_to_batch(self.frames[s], self.channels),
            "target": frames_to_batch(self.frames[t], self.channels),
            "source_render": torch.from_numpy(self.renders[s]).float() / 127.5 - 1,
            "target_render": torch.from_numpy(self.renders[t]).float() / 127.5 - 1,
            "flow": torch.from_numpy(self.flows[idx].astype(np.float32)),
            "source_kp": torch.from_numpy(self.keypoints[s].astype(np.float32)),
            "target_kp": torch.from_numpy(self.keypoints[t].astype(np.float32)),
        }


def build_pair_bank(manifest: pd.DataFrame, manifest_path: str | os.PathLike, split: str, data: KDMDataConfig,
                    *, seed: int = 0, progress: bool = True) -> PairBank:
    """Collect the training pairs of one split through the adapter's clip loader (module docstring).

    Clips that cannot be used are listed in ``skipped`` with their reason, never dropped silently.
    """
    from tqdm.auto import tqdm

    adapter = get_adapter(data.adapter)
    load = adapter.clip_loader(manifest_path, data)
    rng = np.random.default_rng(seed)
    rows = manifest[manifest["split"] == split]
    if data.max_clips is not None:
        rows = rows.iloc[: data.max_clips]
    frames, kps, renders, pairs, flows, pids, skipped = [], [], [], [], [], [], []
    offset = 0
    for _, row in tqdm(list(rows.iterrows()), desc=f"loading {split} pairs", unit="clip", disable=not progress):
        try:
            clip = load(row, rng)
        except Exception as exc:  # noqa: BLE001 - listed and skipped, never silently
            skipped.append((str(row["clip_id"]), f"{type(exc).__name__}: {exc}"))
            continue
        frames.append(clip.frames.astype(np.float32) / 255.0)
        kps.append(clip.keypoints)
        shape = (data.size, data.size)
        renders.append(np.stack([np.round(adapter.render(k, shape) * 255) for k in clip.keypoints]).astype(np.uint8))
        pairs.append(clip.pairs + offset)
        flows.append(clip.flows.astype(np.float16))
        pids += [str(row["patient_id"])] * len(clip.pairs)
        offset += len(clip.frames)
    if not frames:
        raise ValueError(f"{manifest_path}: no usable clips in split {split!r}: {skipped[:5]}")
    return PairBank(np.concatenate(frames), np.concatenate(kps), np.concatenate(renders), np.concatenate(pairs),
                    np.concatenate(flows), pids, skipped)


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------


def _appearance(data: KDMDataConfig):
    """``look(images, generator)`` of the adapter when ``data.appearance_augment``, else None."""
    return get_adapter(data.adapter).augment_appearance if data.appearance_augment else None


def _frames_batch(bank: PairBank, batch_size: int, look=None):
    def batch_fn(generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(bank.frames), (batch_size,), generator=generator)
        frames = bank.frames[idx.numpy()]  # (B, S, S) or (B, S, S, C)
        image = frames_to_batch(frames, frames.shape[-1] if frames.ndim == 4 else 1)  # (B, C, S, S)
        return {"image": image if look is None else look(image, generator)}
    return batch_fn


def _pairs_batch(bank: PairBank, batch_size: int, look=None):
    def batch_fn(generator: torch.Generator) -> dict[str, torch.Tensor]:
        batch = bank.batch(torch.randint(len(bank), (batch_size,), generator=generator))
        if look is not None:  # one look per pair: source and target from the same generator state
            state = generator.get_state()
            batch["source"] = look(batch["source"], generator)
            after = generator.get_state()
            generator.set_state(state)
            batch["target"] = look(batch["target"], generator)
            generator.set_state(after)
        return batch
    return batch_fn


def _autoencoder_stage(config: KDMConfig, train: PairBank, val: PairBank, run: RunFolder, resume: bool,
                       progress: bool) -> dict:
    from echokdm.metrics.image import psnr, ssim

    cfg = config.autoencoder
    m = cfg.model
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every run and every process
    vae = make_autoencoder(m.block_out_channels, m.latent_channels, config.data.size, m.layers_per_block,
                           m.norm_num_groups, channels=config.data.channels)
    lpips_model = None
    if cfg.loss.lpips > 0:
        from echokdm.metrics.lpips import LPIPSMetric

        lpips_model = LPIPSMetric(cfg.loss.lpips_net, cfg.loss.lpips_backbone).model

    def loss_fn(model, batch, step):
        x = batch["image"] * 2 - 1
        posterior = model.encode(x).latent_dist
        recon = model.decode(posterior.sample()).sample
        l1 = F.l1_loss(recon, x)
        kl = posterior.kl().mean()
        loss = cfg.loss.l1 * l1 + cfg.loss.kl * kl
        parts = {"l1": float(l1.detach()), "kl": float(kl.detach())}
        if lpips_model is not None:
            rgb = 3 // x.shape[1]  # grayscale is repeated to RGB, colour goes in as it is
            lp = lpips_model.to(x.device)(recon.repeat(1, rgb, 1, 1), x.repeat(1, rgb, 1, 1)).mean()
            loss = loss + cfg.loss.lpips * lp
            parts["lpips"] = float(lp.detach())
        return loss, parts

    held_out = frames_to_batch(val.frames[: 64], val.channels)  # (B, C, S, S)

    @torch.inference_mode()
    def validate_fn(model):
        dev = next(model.parameters()).device
        x = held_out.to(dev) * 2 - 1
        recon = batch_to_frames(((model.decode(model.encode(x).latent_dist.mean).sample + 1) / 2).clamp(0, 1))
        ref = batch_to_frames(held_out)
        axis = -1 if held_out.shape[1] > 1 else None  # colour frames (N, S, S, C)
        return {"val_psnr": float(np.mean(psnr(recon, ref, channel_axis=axis))),
                "val_ssim": float(np.mean(ssim(recon, ref, channel_axis=axis)))}

    trainer = Trainer(vae, run, dataclasses.replace(cfg.train, best_mode="max"),
                      batch_fn=_frames_batch(train, cfg.train.batch_size, _appearance(config.data)),
                      loss_fn=loss_fn, validate_fn=validate_fn,
                      best_metric="val_psnr", resume=resume, progress=progress, description="autoencoder")
    return trainer.fit()


def _diffusion_loss(kind: str):
    return F.mse_loss if kind == "l2" else F.l1_loss


def _unet(stage: DiffusionStageConfig, sample_channels: int, condition_channels: int, size: int, downsample: int,
          flow_scale: float | None = None, displacement_sigma: float | None = None, warped_source: bool = False,
          frame_channels: int = 1):
    m = stage.model
    torch.manual_seed(stage.train.seed)  # the same initial weights on every run and every process
    return ConditionalUNet(sample_channels=sample_channels, condition_channels=condition_channels,
                           condition_embed_channels=m.condition_embed_channels, downsample=downsample,
                           sample_size=size // downsample, block_out_channels=m.block_out_channels,
                           layers_per_block=m.layers_per_block, attention_levels=m.attention_levels,
                           norm_num_groups=m.norm_num_groups, flow_scale=flow_scale or m.flow_scale or 1.0,
                           prediction_type=stage.prediction_type, displacement_sigma=displacement_sigma,
                           warped_source=warped_source, frame_channels=frame_channels)


def _target(scheduler, kind: str, clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the network is trained to predict: ε (the paper), x0 or v."""
    if kind == "epsilon":
        return noise
    if kind == "sample":
        return clean
    return scheduler.get_velocity(clean, noise, t)


def _flow_rms(bank: PairBank, downsample: int, n: int = 4096) -> float:
    """RMS (px) of the training flows at the latent resolution: the K2F flow scale that gives the
    diffused flow code unit variance, as the latent diffusion recipe scales its latents.

    With ε-prediction a code of small variance is ruinous: the x0 estimate at large t divides
    the ε error by ``sqrt(ᾱ_t)`` (≈ 0.006 at t = T), so a code of standard deviation 0.05 (flows of
    ~0.4 px over a scale of 8 px) comes out of DDIM tens of pixels off.
    """
    idx = np.linspace(0, len(bank) - 1, min(n, len(bank))).astype(int)
    code = encode_flow(torch.from_numpy(bank.flows[idx].astype(np.float32)), downsample, 1.0)
    return max(float(code.pow(2).mean().sqrt()), 1e-3)


def _k2f_stage(config: KDMConfig, train: PairBank, val: PairBank, run: RunFolder, resume: bool,
               progress: bool) -> dict:
    from echokdm.metrics.flow import endpoint_error
    from echokdm.pipelines.kdm import KeypointToFlowPipeline

    stage = config.k2f
    downsample = 2 ** (len(config.autoencoder.model.block_out_channels) - 1)
    channels = train.renders.shape[1]
    flow_scale = stage.model.flow_scale or _flow_rms(train, downsample)
    sigma = stage.model.displacement_sigma
    model = _unet(stage, 2, k2f_condition_channels(channels, bool(sigma), train.channels), config.data.size,
                  downsample, flow_scale, sigma, frame_channels=train.channels)
    scheduler = default_scheduler(config.sampling.num_train_timesteps)
    loss_of = _diffusion_loss(stage.loss)

    def loss_fn(model, batch, step):
        code = encode_flow(batch["flow"], downsample, flow_scale)
        noise = torch.randn_like(code)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (code.shape[0],), device=code.device)
        noisy = scheduler.add_noise(code, noise, t)
        cond = k2f_condition_from_renders(batch["source"], batch["source_render"], batch["target_render"],
                                          batch["source_kp"], batch["target_kp"], sigma, flow_scale)
        return loss_of(model(noisy, t, cond), _target(scheduler, stage.prediction_type, code, noise, t)), {}

    n_val = min(config.data.val_pairs, len(val))
    vb = val.batch(torch.arange(n_val))

    def validate_fn(model):
        pipe = KeypointToFlowPipeline(model, default_scheduler(config.sampling.num_train_timesteps),
                                      config.data.adapter)
        s, t = val.pairs[:n_val, 0], val.pairs[:n_val, 1]
        flow = pipe(vb["source"], val.keypoints[s], val.keypoints[t],
                    num_inference_steps=config.sampling.val_inference_steps,
                    generator=torch.Generator().manual_seed(0))
        return {"val_flow_epe": float(np.mean(endpoint_error(flow, vb["flow"].numpy())))}

    trainer = Trainer(model, run, stage.train,
                      batch_fn=_pairs_batch(train, stage.train.batch_size, _appearance(config.data)), loss_fn=loss_fn,
                      validate_fn=validate_fn, best_metric="val_flow_epe", resume=resume, progress=progress,
                      description="K2F")
    return trainer.fit()


def _f2i_stage(config: KDMConfig, train: PairBank, val: PairBank, run: RunFolder, vae, use_flow: bool,
               resume: bool, progress: bool) -> dict:
    from echokdm.metrics.image import mse
    from echokdm.pipelines.kdm import FlowToImagePipeline

    stage = config.f2i
    downsample = 2 ** (len(config.autoencoder.model.block_out_channels) - 1)
    channels = train.renders.shape[1]
    warped_source = bool(use_flow and stage.model.warped_source)  # the w/o-flow ablation has no flow to warp by
    model = _unet(stage, vae.config.latent_channels,
                  f2i_condition_channels(channels, use_flow, warped_source, train.channels),
                  config.data.size, downsample, warped_source=warped_source, frame_channels=train.channels)
    scheduler = default_scheduler(config.sampling.num_train_timesteps)
    loss_of = _diffusion_loss(stage.loss)
    vae.eval().requires_grad_(False)

    def loss_fn(model, batch, step):
        with torch.no_grad():
            latents = vae.to(batch["target"].device).encode(batch["target"] * 2 - 1).latent_dist.mean
            z = latents * vae.config.scaling_factor
        noise = torch.randn_like(z)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (z.shape[0],), device=z.device)
        flow = batch["flow"] if use_flow else None
        warped = warp(batch["source"], flow).clamp(0, 1) if warped_source else None
        cond = f2i_condition_from_render(batch["source"], batch["target_render"], flow, stage.model.flow_scale, warped)
        target = _target(scheduler, stage.prediction_type, z, noise, t)
        return loss_of(model(scheduler.add_noise(z, noise, t), t, cond), target), {}

    n_val = min(config.data.val_pairs, len(val))
    vb = val.batch(torch.arange(n_val))

    def validate_fn(model):
        pipe = FlowToImagePipeline(model, vae, default_scheduler(config.sampling.num_train_timesteps),
                                   config.data.adapter, use_flow)
        steps = config.sampling.val_inference_steps
        k = max(1, round(steps * config.sampling.k / config.sampling.num_inference_steps))
        flow = vb["flow"] if use_flow else torch.zeros_like(vb["flow"])
        out = pipe(vb["source"], val.keypoints[val.pairs[:n_val, 1]], flow, k=k, num_inference_steps=steps,
                   generator=torch.Generator().manual_seed(0))
        axis = -1 if vb["target"].shape[1] > 1 else None  # colour frames (N, S, S, C)
        return {"val_mse": float(np.mean(mse(out, batch_to_frames(vb["target"]), channel_axis=axis)))}

    trainer = Trainer(model, run, stage.train,
                      batch_fn=_pairs_batch(train, stage.train.batch_size, _appearance(config.data)), loss_fn=loss_fn,
                      validate_fn=validate_fn, best_metric="val_mse", resume=resume, progress=progress,
                      description="F2I" if use_flow else "F2I w/o flow")
    return trainer.fit()


def _check_lpips_loss(loss: AutoencoderLossConfig) -> None:
    """Load the backbone of the autoencoder's LPIPS loss now (``loss.lpips > 0``), or stop with one line.

    Raises ``LPIPSUnavailableError`` naming ``autoencoder.loss.lpips_backbone`` and
    ``ECHOKDM_LPIPS_WEIGHTS`` when no local backbone is set and torchvision's weights are neither
    cached nor downloadable; a configured path that is wrong raises its own error, prefixed with the
    config key. The loaded model is cached, so the autoencoder stage reuses it.
    """
    if loss.lpips <= 0:
        return
    from echokdm.metrics.lpips import BACKBONE_FILES, LPIPS_WEIGHTS_ENV, LPIPSMetric, LPIPSUnavailableError

    key = "autoencoder.loss.lpips_backbone"
    try:
        LPIPSMetric(loss.lpips_net, loss.lpips_backbone).model  # noqa: B018 - loads (or downloads) the backbone
    except LPIPSUnavailableError as exc:
        name = BACKBONE_FILES[exc.net][0]
        raise LPIPSUnavailableError(exc.net, exc.reason, (
            f"the autoencoder's LPIPS loss (autoencoder.loss.lpips = {loss.lpips:g}) needs the LPIPS-{exc.net} "
            f"backbone: {exc.reason}; set {key}: DIR in the config or the environment variable "
            f"{LPIPS_WEIGHTS_ENV}=DIR (DIR holding {name}), or autoencoder.loss.lpips: 0 to train without it")
        ) from None
    except (FileNotFoundError, ValueError) as exc:
        source = key if loss.lpips_backbone is not None else f"${LPIPS_WEIGHTS_ENV}"
        raise type(exc)(f"{source}: {exc}") from None


def train_kdm(config: KDMConfig, manifest: str | os.PathLike, out: str | os.PathLike, *,
              stages: Sequence[str] = STAGES, resume: bool = False, overwrite: bool = False,
              progress: bool = True) -> dict:
    """Train the KDM stages in order (skipping finished ones) and assemble the pipeline folders."""
    from diffusers import AutoencoderKL

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    out = Path(out)
    if "autoencoder" in stages and (overwrite or resume or not (out / "autoencoder" / "best").exists()):
        _check_lpips_loss(config.autoencoder.loss)  # before any data is read: offline, fail now, not after loading
    frame = get_adapter(config.data.adapter).load_manifest(manifest)
    train = build_pair_bank(frame, manifest, "train", config.data, seed=0, progress=progress)
    val = build_pair_bank(frame, manifest, "val", config.data, seed=1, progress=progress)
    results: dict[str, dict | str] = {}
    for stage in stages:
        if stage == "f2i_noflow" and not config.train_noflow_ablation:
            continue
        folder = out / stage
        if (folder / "best").exists() and not (overwrite or resume):
            results[stage] = "skipped (best/ exists)"
            continue
        stage_resume = resume and (folder / "last" / "trainer_state.pt").exists()
        run = RunFolder(folder, config, resume=stage_resume, overwrite=overwrite or (resume and not stage_resume))
        if stage == "autoencoder":
            results[stage] = _autoencoder_stage(config, train, val, run, stage_resume, progress)
        elif stage == "k2f":
            results[stage] = _k2f_stage(config, train, val, run, stage_resume, progress)
        else:
            vae = AutoencoderKL.from_pretrained(out / "autoencoder" / "best")
            results[stage] = _f2i_stage(config, train, val, run, vae, stage == "f2i", stage_resume, progress)
    results["pipelines"] = _assemble(out, config) if is_main_process() else []
    results["skipped_clips"] = train.skipped + val.skipped
    return results


def _assemble(out: Path, config: KDMConfig) -> list[str]:
    """Write ``pipeline/`` (and ``pipeline_noflow/``) from the stages' ``best/`` folders."""
    from diffusers import AutoencoderKL

    made = []
    for name, f2i_stage, use_flow in (("pipeline", "f2i", True), ("pipeline_noflow", "f2i_noflow", False)):
        needed = [out / s / "best" for s in ("autoencoder", "k2f", f2i_stage)]
        if not all(p.exists() for p in needed):
            continue
        pipe = KDMPipeline(ConditionalUNet.from_pretrained(needed[1]), ConditionalUNet.from_pretrained(needed[2]),
                           AutoencoderKL.from_pretrained(needed[0]),
                           default_scheduler(config.sampling.num_train_timesteps), config.data.adapter, use_flow)
        pipe.save_pretrained(out / name)  # diffusers' layout: model_index.json and one folder per component
        made.append(str(out / name))
    return made
