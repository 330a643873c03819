"""KDM inference pipelines (paper §3.4 and appendices B-C): keypoints → flow → image.

Inference only. Each pipeline is a diffusers ``DiffusionPipeline``, writes its DDIM loop out, takes
a ``torch.Generator`` (noise is drawn on the CPU with ``randn_tensor`` so CPU and GPU runs start
from the same noise, DESIGN.md) and returns numpy arrays in the package's conventions: frames
``(T, H, W)`` in [0, 1] (``(T, H, W, C)`` for a colour model, whose autoencoder has ``C`` channels),
flows ``(T, 2, H, W)`` in pixels on the target grid pointing into the source.

* :class:`KeypointToFlowPipeline` — K2F: Gaussian noise → flow at the latent resolution → flow.
* :class:`FlowToImagePipeline` — F2I with the k-initialisation: the source warped by the flow is
  encoded, noised to step ``k`` of ``num_inference_steps`` and denoised; ``k = 0`` returns the
  warp itself ("w/o F2I"), ``k = num_inference_steps`` starts from pure noise.
* :class:`KDMPipeline` — both, for one target or a keypoint sequence, either one K2F flow per
  frame or one K2F flow scaled by γ per frame (appendix B), γ taken from the keypoint motion.

A pipeline folder is diffusers' layout: ``model_index.json`` (each component's class, the keypoint
``adapter`` name and ``use_flow``, whether F2I takes the flow) and one ``save_pretrained`` folder per
component (``k2f/``, ``f2i/``, ``vae/``, ``scheduler/``). ``from_pretrained`` takes a folder or a
packaged checkpoint name (:func:`echokdm.pretrained.resolve_checkpoint`, never a model hub), and
still reads the folders of the old layout (``kdm_pipeline.json``, see :mod:`echokdm.pipelines.convert`).
The condition images come from :mod:`echokdm.models.conditions`, the contract training also uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor

from echokdm.adapters import DEFAULT_ADAPTER, get_adapter
from echokdm.generation.settings import INTERPOLATIONS
from echokdm.geometry.flow import fit_flow_to_keypoints, keypoint_region_flow, warp, warp_frame
from echokdm.models.conditions import batch_to_frames, f2i_condition, frame_shape, frames_to_batch, k2f_condition
from echokdm.models.kdm import ConditionalUNet, decode_flow
from echokdm.pipelines.layout import (
    COMPONENTS,
    LEGACY_FILE,
    is_legacy_pipeline_folder,
    legacy_settings,
    load_components,
)
from echokdm.pretrained import resolve_checkpoint

__all__ = [
    "default_scheduler",
    "scheduler_for",
    "gamma_from_keypoints",
    "saved_adapter",
    "KeypointToFlowPipeline",
    "FlowToImagePipeline",
    "KDMPipeline",
    "KDMOutput",
]


def default_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """DDIM with ``clip_sample=False`` (flows and latents are not bounded to [-1, 1])."""
    return DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule="linear", clip_sample=False,
                         set_alpha_to_one=True, prediction_type="epsilon")


def gamma_from_keypoints(source_kp: np.ndarray, sequence: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """γ per frame (appendix B): the projection of each frame's keypoint motion onto the reference
    motion, ``γ_t = <kp_t − kp_src, kp_ref − kp_src> / |kp_ref − kp_src|²`` clipped to [0, 1].

    Each frame uses the coordinates finite in it, the source and the reference (a keypoint missing
    on one frame does not change the others' γ); a frame with none gets γ interpolated in time
    from its neighbours (0 when no frame has any)."""
    d_ref = (np.asarray(reference, np.float64) - source_kp).reshape(-1)
    d = (np.asarray(sequence, np.float64) - source_kp).reshape(len(sequence), -1)
    ok = np.isfinite(d_ref)[None] & np.isfinite(d)  # (T, 2N)
    ref = np.where(ok, d_ref[None], 0.0)
    denom = (ref * ref).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gammas = np.where(denom > 0, (np.where(ok, d, 0.0) * ref).sum(axis=1) / denom, np.nan)
    known = np.isfinite(gammas)
    if not known.any():
        return np.zeros(len(sequence))
    gammas = np.clip(gammas, 0.0, 1.0)
    if not known.all():
        t = np.arange(len(sequence))
        gammas = np.interp(t, t[known], gammas[known])
    return gammas


def saved_adapter(folder: str | os.PathLike) -> str:
    """The keypoint adapter a pipeline folder was trained for: ``adapter`` of ``model_index.json``
    (or of ``kdm_pipeline.json`` in the old layout); the default adapter for folders that name none."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if index.is_file():
        return json.loads(index.read_text()).get("adapter", DEFAULT_ADAPTER)
    return legacy_settings(folder)["adapter"]


def _as_batch(frames, device, channels: int = 1) -> torch.Tensor:
    """Frames in [0, 1] → ``(B, C, H, W)`` float32: ``(H, W)`` / ``(B, H, W)`` / ``(B, 1, H, W)`` for one
    channel, ``(H, W, C)`` / ``(B, H, W, C)`` / ``(B, C, H, W)`` for ``channels`` > 1."""
    return frames_to_batch(frames, channels).to(device)


def scheduler_for(scheduler: DDIMScheduler, model: ConditionalUNet) -> DDIMScheduler:
    """``scheduler`` set to the model's ``prediction_type`` (ε for models saved before it existed)."""
    kind = model.config.get("prediction_type", "epsilon")
    if scheduler.config.prediction_type == kind:
        return scheduler
    return DDIMScheduler.from_config(scheduler.config, prediction_type=kind)


def _noise(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Standard normal noise drawn on the CPU (the same on every device), then moved to ``device``."""
    return randn_tensor(tuple(shape), generator=generator, device=torch.device("cpu"), dtype=torch.float32).to(device)


_PRECISIONS = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, mixed_precision: str):
    """Autocast context for ``mixed_precision`` (``"no"``: none) on ``device``'s type."""
    if mixed_precision not in _PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {', '.join(_PRECISIONS)}, got {mixed_precision!r}")
    dtype = _PRECISIONS[mixed_precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _compiled(pipeline, name: str) -> Callable:
    """``torch.compile`` of the pipeline's network ``name``, built on first use and kept on the pipeline."""
    cache = pipeline.__dict__.setdefault("_compiled_networks", {})
    if name not in cache:
        cache[name] = torch.compile(getattr(pipeline, name))
    return cache[name]


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading pipeline components" bar from diffusers (the pipelines never showed one)."""
    was_enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            diffusers_logging.enable_progress_bar()


class _FolderPipeline(DiffusionPipeline):
    """What the three pipelines share: folder loading (packaged names, the old layout), the keypoint
    renderer of their adapter, and a progress bar switched by a ``progress`` argument."""

    _optional_components = ["scheduler"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
        """Load a pipeline folder or a packaged checkpoint name (never a model hub).

        A folder of the old layout (``kdm_pipeline.json``, no ``model_index.json``) is converted on
        load, with a ``FutureWarning``; ``python -m echokdm.pipelines.convert`` converts it on disk.
        ``kwargs`` go to ``DiffusionPipeline.from_pretrained`` (e.g. ``torch_dtype``).

        Raises
        ------
        echokdm.errors.CheckpointError
            (a ``FileNotFoundError``) naming the value when it is neither a pipeline folder nor a
            packaged pipeline.
        """
        folder = resolve_checkpoint(pretrained_model_name_or_path, "pipeline")
        torch_dtype = kwargs.get("torch_dtype")
        if is_legacy_pipeline_folder(folder):
            warnings.warn(f"{folder}: a KDM pipeline folder of the old layout ({LEGACY_FILE}, no model_index.json); "
                          f"converted on load. Convert it once with: python -m echokdm.pipelines.convert {folder} NEW",
                          FutureWarning, stacklevel=2)
            return cls.from_component_folders(folder, legacy_settings(folder), torch_dtype)
        index = json.loads((folder / "model_index.json").read_text())
        if index.get("_class_name") != cls.__name__:  # e.g. K2F from a KDM folder: its own components only
            return cls.from_component_folders(folder, index, torch_dtype)
        with _quiet_loading():
            return super().from_pretrained(os.fspath(folder), **kwargs)

    @classmethod
    def from_component_folders(cls, folder: str | os.PathLike, settings: dict,
                               torch_dtype: torch.dtype | dict | None = None):
        """The pipeline of the ``save_pretrained`` sub-folders of ``folder`` that its ``__init__`` takes
        (``k2f/``, ``f2i/``, ``vae/``, ``scheduler/``), with the entries of ``settings`` it takes
        (``adapter``, ``use_flow``). For old-layout folders and for a part of a KDM pipeline folder.
        ``torch_dtype``: one dtype, or one per component name (None: float32)."""
        parameters = inspect.signature(cls.__init__).parameters
        kept = {k: v for k, v in settings.items() if k in parameters and k not in COMPONENTS}
        names = [n for n in parameters if n in COMPONENTS]
        return cls(**load_components(folder, names, torch_dtype), **kept)

    @property
    def renderer(self) -> Callable:
        """The conditioning-image renderer of the pipeline's keypoint adapter."""
        return get_adapter(self.adapter).render

    def _steps_bar(self, progress: bool, iterable=None, total: int | None = None, **options):
        """``self.progress_bar`` over ``iterable`` (or ``total`` steps), shown when ``progress``."""
        self.set_progress_bar_config(disable=not progress, leave=False, **options)
        return self.progress_bar(iterable, total)


class KeypointToFlowPipeline(_FolderPipeline):
    """K2F: a flow from the source frame and a source → target keypoint edit."""

    model_cpu_offload_seq = "k2f"

    def __init__(self, k2f: ConditionalUNet, scheduler: DDIMScheduler | None = None, adapter: str = DEFAULT_ADAPTER):
        super().__init__()
        get_adapter(adapter)  # ValueError listing the available adapters when unknown
        self.register_modules(k2f=k2f, scheduler=scheduler or default_scheduler())
        self.register_to_config(adapter=adapter)
        self.adapter = adapter

    @torch.inference_mode()
    def __call__(self, source_frame, source_keypoints, target_keypoints, *, num_inference_steps: int = 200,
                 generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                 progress: bool = False, callback: Callable[[], None] | None = None) -> np.ndarray:
        """Flows ``(B, 2, H, W)`` in pixels for frames ``(B, H, W)`` (``(B, H, W, C)`` for a colour model)
        and keypoints ``(B, N, 2)``.

        ``callback()`` is called after each DDIM step (:class:`KDMPipeline`'s progress bar)."""
        device = self._execution_device
        src = _as_batch(source_frame, device, self.k2f.config.get("frame_channels", 1))
        src_kp, tgt_kp = np.asarray(source_keypoints, np.float32), np.asarray(target_keypoints, np.float32)
        src_kp = src_kp[None] if src_kp.ndim == 2 else src_kp
        tgt_kp = tgt_kp[None] if tgt_kp.ndim == 2 else tgt_kp
        if tgt_kp.shape[0] != src.shape[0]:
            src = src.expand(tgt_kp.shape[0], -1, -1, -1)
            src_kp = np.broadcast_to(src_kp, tgt_kp.shape)
        cfg = self.k2f.config
        cond = k2f_condition(src, src_kp, tgt_kp, self.renderer, cfg.get("displacement_sigma"), cfg.flow_scale)
        h, w = src.shape[-2] // cfg.downsample, src.shape[-1] // cfg.downsample
        x = noise.to(device) if noise is not None else _noise((src.shape[0], 2, h, w), generator, device)
        scheduler = scheduler_for(self.scheduler, self.k2f)
        scheduler.set_timesteps(num_inference_steps)
        embedded = self.k2f.embed(cond)  # Ψ does not depend on the step: once per call
        for t in self._steps_bar(progress, scheduler.timesteps, desc=type(self).__name__):
            out = self.k2f(x, t, embedded=embedded)
            x = scheduler.step(out, t, x).prev_sample
            if callback is not None:
                callback()
        return decode_flow(x, cfg.downsample, cfg.flow_scale).cpu().numpy()


class FlowToImagePipeline(_FolderPipeline):
    """F2I: a frame from the source, the target keypoints and a flow, with the k-initialisation."""

    model_cpu_offload_seq = "f2i->vae"

    def __init__(self, f2i: ConditionalUNet, vae: AutoencoderKL, scheduler: DDIMScheduler | None = None,
                 adapter: str = DEFAULT_ADAPTER, use_flow: bool = True):
        super().__init__()
        get_adapter(adapter)
        self.register_modules(f2i=f2i, vae=vae, scheduler=scheduler or default_scheduler())
        self.register_to_config(adapter=adapter, use_flow=use_flow)
        self.adapter, self.use_flow = adapter, use_flow

    @torch.inference_mode()
    def __call__(self, source_frame, target_keypoints, flow, *, k: int = 100, num_inference_steps: int = 200,
                 generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None, progress: bool = False, mixed_precision: str = "no",
                 compile: bool = False, callback: Callable[[], None] | None = None,
                 detail: bool = False, interpolation: str = "bilinear") -> np.ndarray:
        """Frames ``(B, H, W)`` (``(B, H, W, C)`` in colour) in [0, 1]. ``flow`` ``(B, 2, H, W)`` px (zeros for
        the "w/o K2F" F2I).

        ``detail=False`` (the paper) returns the decoded F2I latent. ``detail=True`` (the warp-residual
        detail path, a departure) returns the warped source plus what F2I changed in latent space,
        ``warp + (D(z) - D(z_0)) / 2`` with ``z_0`` the encoded warp: the speckle the autoencoder
        cannot represent is kept from the warp (moved by the flow), and F2I contributes only its edit.
        ``k = 0`` returns the warp either way.

        ``interpolation`` (``"bilinear"``, the paper's, or ``"bicubic"``) is how the warp that is *shown*
        samples the source: the frame returned at ``k = 0`` and the warp of the detail path. F2I's
        condition and its starting latent always use the bilinear warp it was trained with. Bilinear
        sub-pixel shifts blur speckle; ``benchmarks/f2i.py`` measures both.

        ``mixed_precision`` (``"no"``, ``"bf16"``, ``"fp16"``) runs the denoising network under
        autocast (the autoencoder and the DDIM updates stay float32); ``compile`` runs it through
        ``torch.compile`` (compiled once per pipeline; worth it on a GPU, not on a CPU, see
        ``benchmarks/generation.py``). Ψ(condition) is computed once, not at every step.
        ``callback()`` is called after each DDIM step (:class:`KDMPipeline`'s progress bar).
        """
        if not 0 <= k <= num_inference_steps:
            raise ValueError(f"k must be in 0..num_inference_steps ({num_inference_steps}), got {k}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        device = self._execution_device
        flow_t = torch.as_tensor(np.asarray(flow) if not isinstance(flow, torch.Tensor) else flow).float().to(device)
        if flow_t.ndim == 3:
            flow_t = flow_t[None]
        src = _as_batch(source_frame, device, self.vae.config.in_channels).expand(flow_t.shape[0], -1, -1, -1)
        warped = warp(src, flow_t).clamp(0, 1)  # (B, C, H, W)
        # the warp that is shown (k = 0, the detail path); F2I's condition and start latent keep the bilinear one
        shown = warped if interpolation == "bilinear" or not (k == 0 or detail) else \
            warp(src, flow_t, mode=interpolation).clamp(0, 1)
        if k == 0:
            return batch_to_frames(shown)
        tgt_kp = np.asarray(target_keypoints, np.float32)
        tgt_kp = tgt_kp[None] if tgt_kp.ndim == 2 else tgt_kp
        cond = f2i_condition(src, tgt_kp, flow_t if self.use_flow else None, self.renderer, self.f2i.config.flow_scale,
                             warped if self.use_flow and self.f2i.config.get("warped_source", False) else None)
        z0 = self.vae.encode(warped * 2 - 1).latent_dist.mean * self.vae.config.scaling_factor
        eps0 = noise.to(device) if noise is not None else _noise(z0.shape, generator, device)
        scheduler = scheduler_for(self.scheduler, self.f2i)
        scheduler.set_timesteps(num_inference_steps)
        timesteps = scheduler.timesteps[num_inference_steps - k:]
        z = eps0 if k == num_inference_steps else scheduler.add_noise(z0, eps0, timesteps[:1])
        denoiser = _compiled(self, "f2i") if compile else self.f2i
        with _autocast(device, mixed_precision):
            embedded = self.f2i.embed(cond)  # (B, Ce, h, w), constant over the steps
            for t in self._steps_bar(progress, timesteps, desc=type(self).__name__):
                out = denoiser(z, t, embedded=embedded).float()
                z = scheduler.step(out, t, z).prev_sample
                if callback is not None:
                    callback()
        image = self.vae.decode(z / self.vae.config.scaling_factor).sample
        if detail:  # the warp plus F2I's edit of the warp's latent (its reconstruction error cancels)
            image = image - self.vae.decode(z0 / self.vae.config.scaling_factor).sample + (shown * 2 - 1)
        return batch_to_frames(((image + 1) / 2).clamp(0, 1))  # (B, H, W) or (B, H, W, C)


@dataclasses.dataclass
class KDMOutput(BaseOutput):
    """Output of :class:`KDMPipeline`: generated ``frames`` ``(T, H, W)`` in [0, 1], the ``flows``
    ``(T, 2, H, W)`` used for each frame, and ``gammas`` ``(T,)`` (None in per-frame mode)."""

    frames: np.ndarray
    flows: np.ndarray
    gammas: np.ndarray | None


class KDMPipeline(_FolderPipeline):
    """KDM: one frame and a keypoint motion → new frames (paper Fig. 2, appendices B and C).

    ``flow_pipe`` and ``image_pipe`` are the :class:`KeypointToFlowPipeline` and
    :class:`FlowToImagePipeline` over the same components. ``enable_model_cpu_offload()`` keeps one
    network at a time on the GPU (K2F, then F2I and the autoencoder).
    """

    model_cpu_offload_seq = "k2f->f2i->vae"

    def __init__(self, k2f: ConditionalUNet, f2i: ConditionalUNet, vae: AutoencoderKL,
                 scheduler: DDIMScheduler | None = None, adapter: str = DEFAULT_ADAPTER, use_flow: bool = True):
        super().__init__()
        get_adapter(adapter)
        self.register_modules(k2f=k2f, f2i=f2i, vae=vae, scheduler=scheduler or default_scheduler())
        self.register_to_config(adapter=adapter, use_flow=use_flow)
        self.adapter, self.use_flow = adapter, use_flow

    @property
    def flow_pipe(self) -> KeypointToFlowPipeline:
        """K2F over this pipeline's ``k2f``, scheduler and adapter."""
        return self._part("flow_pipe", KeypointToFlowPipeline, self.k2f, self.scheduler, self.adapter)

    @property
    def image_pipe(self) -> FlowToImagePipeline:
        """F2I over this pipeline's ``f2i``, ``vae``, scheduler, adapter and ``use_flow``."""
        return self._part("image_pipe", FlowToImagePipeline, self.f2i, self.vae, self.scheduler, self.adapter,
                          self.use_flow)

    def _part(self, name: str, cls: type, *parts):
        """The sub-pipeline ``cls(*parts)``, kept while its parts stay the same (a compiled F2I is kept with it)."""
        key, pipe = self.__dict__.get(f"_{name}", (None, None))
        if key != parts:
            pipe = cls(*parts)
            self.__dict__[f"_{name}"] = (parts, pipe)
        return pipe

    @torch.inference_mode()
    def __call__(self, source_frame, source_keypoints, target_keypoints, *, mode: str = "gamma", k: int = 100,
                 num_inference_steps: int = 200, generator: torch.Generator | None = None,
                 shared_noise: bool = True, batch_size: int = 16, progress: bool = True, mixed_precision: str = "no",
                 compile: bool = False, fit_keypoints: bool = False, detail: bool = False,
                 keyframes: int | None = None, interpolation: str = "bilinear", fit_region: bool = False,
                 return_dict: bool = True) -> KDMOutput | tuple:
        """Generate one frame per target keypoint set.

        Parameters
        ----------
        source_frame : array ``(H, W)`` in [0, 1] (``(H, W, C)`` for a colour model)
        source_keypoints : array ``(N, 2)``
        target_keypoints : array ``(N, 2)`` or ``(T, N, 2)``
        mode : {"gamma", "per_frame"}
            ``"gamma"``: one K2F flow towards the target farthest from the source, scaled by γ per
            frame (appendix B); ``"per_frame"``: one K2F flow per target.
        k : int
            F2I start step (appendix C); 0 returns the warp.
        shared_noise : bool
            Use the same initial noise for every frame (temporal consistency).
        batch_size : int
            Frames denoised together (F2I, and K2F in per-frame mode). On a 2-core CPU 8 to 16 is
            fastest per frame; on a GPU use the whole loop (e.g. 32).
        mixed_precision : {"no", "bf16", "fp16"}
            Autocast for the denoising networks (K2F and F2I); the autoencoder and the DDIM updates
            stay float32. For GPUs; bf16 on a CPU is faster where it has AMX but does not give the
            float32 frames (``benchmarks/generation.py`` measures the difference).
        compile : bool
            ``torch.compile`` the F2I network (first call compiles, about a minute; for GPUs).
        progress : bool
            A tqdm bar over every DDIM step of the call (K2F and F2I), with the time left.
        fit_keypoints : bool
            ``False`` (the paper) uses K2F's flow as it is. ``True`` corrects it near the keypoints
            so that it carries every target keypoint exactly onto its source keypoint
            (:func:`echokdm.geometry.flow.fit_flow_to_keypoints`; in γ mode the reference flow,
            before scaling). For motions larger than K2F saw in training, which it renders short.
        fit_region : bool
            ``False`` (the paper). ``True``: near the target keypoints (about the myocardium's
            thickness) K2F's flow is replaced by the thin-plate spline through them, fading back
            into K2F's flow (:func:`echokdm.geometry.flow.keypoint_region_flow`), before the fit: the
            wall moves with its keypoints, not only the contour.
        detail : bool
            ``False`` (the paper): the decoded F2I latent. ``True``: the warp-residual detail path of
            :class:`FlowToImagePipeline` (the warped source plus F2I's edit), which keeps the source's
            speckle that the autoencoder cannot represent.
        keyframes : int, optional
            Run F2I on this many frames only, evenly spaced over the targets (first and last
            included); every other frame is its warp plus F2I's edit (generated − warped)
            interpolated linearly in time from the two nearest keyframes. ``None`` (the paper): F2I on
            every frame. F2I and the autoencoder are most of a loop's time, so 8 keyframes of a
            32-frame loop cut it about 4× (``benchmarks/f2i.py`` measures time and quality).
        interpolation : {"bilinear", "bicubic"}
            How the warp that is shown samples the source (the frames at ``k = 0``, the detail path's
            warp and the keyframes' in-between warps); ``"bilinear"`` is the paper's. See
            :class:`FlowToImagePipeline`.
        return_dict : bool
            A :class:`KDMOutput` (True) or the tuple ``(frames, flows, gammas)``.
        """
        if mode not in ("gamma", "per_frame"):
            raise ValueError(f"mode must be 'gamma' or 'per_frame', got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if keyframes is not None and (isinstance(keyframes, bool) or int(keyframes) != keyframes or keyframes < 2):
            raise ValueError(f"keyframes must be None or an integer >= 2, got {keyframes!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        device = self._execution_device
        _autocast(device, mixed_precision)  # checks the name before any work
        src = np.asarray(source_frame, np.float32)
        src_kp = np.asarray(source_keypoints, np.float32)
        targets = np.asarray(target_keypoints, np.float32)
        targets = targets[None] if targets.ndim == 2 else targets
        steps = {"num_inference_steps": num_inference_steps}
        batches = -(-len(targets) // batch_size)
        k2f_runs = 1 if mode == "gamma" else batches
        f2i_batches = -(-min(len(targets), keyframes or len(targets)) // batch_size)
        total = k2f_runs * num_inference_steps + f2i_batches * min(max(k, 0), num_inference_steps)
        bar = self._steps_bar(progress, total=total, desc="KDM sampling", unit="step", mininterval=1.0)
        try:
            with _autocast(device, mixed_precision):
                flows, gammas = self._flows(src, src_kp, targets, mode, generator, shared_noise, batch_size, steps,
                                            fit_keypoints, callback=bar.update, fit_region=fit_region)
            frames = self._keyframes(src, targets, flows, k, keyframes, generator, shared_noise, batch_size, steps,
                                  {"mixed_precision": mixed_precision, "compile": compile, "callback": bar.update,
                                   "detail": detail, "interpolation": interpolation})
        finally:
            bar.close()
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames, flows, gammas
        return KDMOutput(frames=frames, flows=flows, gammas=gammas)

    def _keyframes(self, src: np.ndarray, targets: np.ndarray, flows: np.ndarray, k: int, keyframes: int | None,
                   generator: torch.Generator | None, shared_noise: bool, batch_size: int, steps: dict,
                   options: dict) -> np.ndarray:
        """:meth:`_frames` on every frame, or on ``keyframes`` evenly spaced frames with F2I's edit
        (generated − warped) interpolated linearly in time onto the warps of the others."""
        n = len(targets)
        if keyframes is None or keyframes >= n or k == 0:
            return self._frames(src, targets, flows, k, generator, shared_noise, batch_size, steps, options)
        index = np.unique(np.round(np.linspace(0, n - 1, int(keyframes))).astype(int))
        generated = self._frames(src, targets[index], flows[index], k, generator, shared_noise, batch_size, steps,
                                 options)
        warped = warp_frame(src, flows, options["interpolation"])  # (T, H, W[, C]), as F2I's shown warp
        edits = generated - warped[index]
        position = np.interp(np.arange(n), index, np.arange(len(index)))  # fractional keyframe index per frame
        lo = np.floor(position).astype(int)
        hi = np.minimum(lo + 1, len(index) - 1)
        w = (position - lo).reshape(-1, *([1] * (edits.ndim - 1))).astype(np.float32)
        return np.clip(warped + (1 - w) * edits[lo] + w * edits[hi], 0.0, 1.0).astype(np.float32)

    def _frames(self, src: np.ndarray, targets: np.ndarray, flows: np.ndarray, k: int,
                generator: torch.Generator | None, shared_noise: bool, batch_size: int, steps: dict,
                options: dict) -> np.ndarray:
        """F2I frames ``(T, H, W)`` (``(T, H, W, C)`` in colour) for targets ``(T, N, 2)`` and flows
        ``(T, 2, H, W)``, in batches."""
        h, w = frame_shape(src, self.vae.config.in_channels)
        d = self.k2f.config.downsample
        latent_shape = (1, self.vae.config.latent_channels, h // d, w // d)
        image_noise = _noise(latent_shape, generator, "cpu")
        frames = []
        for i in range(0, len(targets), batch_size):
            b = len(targets[i:i + batch_size])
            noise = (image_noise.expand(b, -1, -1, -1) if shared_noise
                     else _noise((b, *latent_shape[1:]), generator, "cpu"))
            frames.append(self.image_pipe(src, targets[i:i + batch_size], flows[i:i + batch_size], k=k,
                                          noise=noise, **options, **steps))
        return np.concatenate(frames)

    def _flows(self, src: np.ndarray, src_kp: np.ndarray, targets: np.ndarray, mode: str,
               generator: torch.Generator | None, shared_noise: bool, batch_size: int,
               steps: dict, fit_keypoints: bool = False,
               callback: Callable[[], None] | None = None,
               fit_region: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """K2F flows ``(T, 2, H, W)`` (px) for targets ``(T, N, 2)``, and γ ``(T,)`` in γ mode (else None)."""

        def fitted(flow: np.ndarray, tgt: np.ndarray) -> np.ndarray:
            if fit_region:
                flow = keypoint_region_flow(flow, src_kp, tgt)
            return fit_flow_to_keypoints(flow, src_kp, tgt) if fit_keypoints else flow

        h, w = frame_shape(src, self.vae.config.in_channels)
        d = self.k2f.config.downsample
        flow_noise = _noise((1, 2, h // d, w // d), generator, "cpu")
        if mode == "gamma":
            motion = np.nan_to_num(np.linalg.norm(targets - src_kp, axis=-1)).mean(axis=-1)  # (T,)
            ref = targets[int(np.argmax(motion))]
            flow_ref = self.flow_pipe(src, src_kp, ref, noise=flow_noise, callback=callback, **steps)  # (1, 2, H, W)
            flow_ref = fitted(flow_ref, ref[None])
            gammas = gamma_from_keypoints(src_kp, targets, ref)
            return gammas[:, None, None, None].astype(np.float32) * flow_ref, gammas  # (T, 2, H, W)
        flows = []
        for i in range(0, len(targets), batch_size):
            b = len(targets[i:i + batch_size])
            noise = (flow_noise.expand(b, -1, -1, -1) if shared_noise
                     else _noise((b, 2, h // d, w // d), generator, "cpu"))
            flow = self.flow_pipe(src, src_kp, targets[i:i + batch_size], noise=noise, callback=callback, **steps)
            flows.append(fitted(flow, targets[i:i + batch_size]))
        return np.concatenate(flows), None
