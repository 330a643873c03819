"""``echokdm evaluate``: generate with fixed seeds and score KDM, its ablations and the baselines.

For every clip of the evaluated split (:mod:`echokdm.evaluation.cases`) each method predicts the
target frames of one beat from the ED source frame and the target keypoints, one sample per case
with a seed derived from the clip id (no best-of-N, and the same numbers whatever the order or
interruptions). Methods:

* ``no_edit`` — the source frame itself;
* ``tps`` — thin-plate-spline warp of the source by the keypoints;
* ``wo_f2i`` — the source warped by the K2F flow (the paper's "w/o F2I");
* ``wo_k2f`` — F2I trained without the flow (``pipeline_noflow``; the paper's "w/o K2F");
* ``kdm`` — K2F then F2I with the k-initialisation.

Per generated frame: MSE, PSNR, SSIM, LPIPS-Alex, LPIPS-VGG, flow EPE / MAE / RMSE against the exact
flow (phantom cohorts) over the whole frame, EPE inside the target LV (``epe_lv``: the motion that was
asked for; the whole-frame EPE also counts how a method moves the surroundings) and, with a segmentation
model, the keypoint mean distance MD (keypoints re-detected on the generated frame against the target
keypoints). Per clip: temporal warping error along the exact motion, EF of the generated beat against the
target's (segmentation model), seconds per frame. Per patient and per dataset: means with patient-level bootstrap 95 %
intervals; a Table-3-style markdown table; plots; and a memorisation check of the KDM frames
against the training split.

The run folder is resumable: each finished clip leaves ``parts/<clip>.frames.csv``,
``parts/<clip>.clip.csv`` and ``generated/<clip>.npz``; a rerun with the same settings skips
them, a rerun with different settings refuses (pass ``overwrite``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from echokdm.evaluation.cases import EvalCase, load_case
from echokdm.evaluation.realism import RealismResult, RealismSettings
from echokdm.generation.settings import SamplingSettings, apply_deprecated_fields, with_deprecated_fields
from echokdm.io.atomic import atomic_output, prepare_run_folder

__all__ = [
    "FRAME_METRICS",
    "METHODS",
    "METHOD_LABELS",
    "EvaluateConfig",
    "EvaluationResult",
    "announce_notes",
    "evaluate",
    "generate_case",
    "score_case",
    "summarise_frames",
    "table3_sampling",
    "write_csv",
]

METHODS = ("no_edit", "tps", "wo_f2i", "wo_k2f", "kdm")
METHOD_LABELS = {"no_edit": "no edit", "tps": "TPS warp", "wo_f2i": "w/o F2I", "wo_k2f": "w/o K2F", "kdm": "KDM",
                 "real": "real", "generated": "generated"}
FRAME_METRICS = ("mse", "psnr", "ssim", "lpips_alex", "lpips_vgg", "epe", "epe_lv", "flow_mae", "flow_rmse", "kp_md")
CLIP_METRICS = ("temporal_error", "ef_target", "ef_achieved", "ef_error", "edv_target", "edv_achieved", "esv_target",
                "esv_achieved", "seconds_per_frame")


def table3_sampling() -> SamplingSettings:
    """The sampling of the paper's Table 3 protocol, :class:`EvaluateConfig`'s default: one K2F flow per
    target frame (``per_frame``: every evaluated target has its own keypoints, where generate and
    synthesize make a whole beat from one flow scaled by γ) and K2F's flows as they are
    (``fit_keypoints=False``) and F2I's decoded latent without the warp-residual detail path
    (``detail=False``) on every frame: the paper's KDM, with its sampler
    (:meth:`SamplingSettings.paper`: 200 DDIM steps, k = 100; seed 0, batch 16)."""
    return SamplingSettings.paper(mode="per_frame", fit_keypoints=False)


@with_deprecated_fields
@dataclasses.dataclass
class EvaluateConfig:
    """Settings of :func:`evaluate` (all recorded in ``evaluate.json``).

    ``split``: manifest split to evaluate (``all`` = every clip); ``methods``: subset of
    :data:`METHODS`; ``max_targets`` frames per clip; ``max_clips`` (None = all); ``sampling``
    the :class:`~echokdm.generation.settings.SamplingSettings` of KDM (default
    :func:`table3_sampling`, the paper's protocol; its ``seed`` is the base seed each clip's seed
    derives from); ``lpips_nets`` and
    ``lpips_backbone`` (local folder of backbone weights, or None to download); ``segmentation``
    a segmentation model folder (keypoint MD and EF; None = those columns are NaN);
    ``keypoints``/``masks``/``own_motion`` how target keypoints are obtained
    (:func:`~echokdm.evaluation.cases.load_case`; ``own_motion="auto"`` speckle-tracks the keypoints of
    a real clip whose masks come from ``echokdm segment``);
    ``memorisation`` and ``memorisation_frames`` (most training frames compared) against the train
    split of ``training_manifest`` (default: the evaluated manifest's own train split); ``n_boot``
    bootstrap resamples; ``size`` frame size (None = the model's, 112 without a model); ``device``
    ``auto`` = CUDA when available; ``realism`` the
    :class:`~echokdm.evaluation.realism.RealismSettings` of the realism tables (FID, FVD, classifier
    two-sample test, warping error, pop per beat kind; None = none). The old separate fields
    ``num_inference_steps``, ``k``,
    ``mode``, ``fit_keypoints``, ``batch_size`` and ``seed`` are still accepted (and read) for one
    release, with a FutureWarning; they go into ``sampling``.
    """

    split: str = "test"
    methods: tuple[str, ...] = METHODS
    max_targets: int = 8
    max_clips: int | None = None
    sampling: SamplingSettings = dataclasses.field(default_factory=table3_sampling)
    lpips_nets: tuple[str, ...] = ("alex", "vgg")
    lpips_backbone: str | None = None
    segmentation: str | None = None
    keypoints: str = "auto"
    masks: str | None = None
    own_motion: str = "auto"
    memorisation: bool = True
    memorisation_frames: int = 2000
    training_manifest: str | None = None
    n_boot: int = 2000
    size: int | None = None
    device: str = "auto"
    realism: RealismSettings | None = None
    # deprecated for one release: the sampling settings as separate fields (None = not given)
    num_inference_steps: dataclasses.InitVar[int | None] = None
    k: dataclasses.InitVar[int | None] = None
    mode: dataclasses.InitVar[str | None] = None
    fit_keypoints: dataclasses.InitVar[bool | None] = None
    batch_size: dataclasses.InitVar[int | None] = None
    seed: dataclasses.InitVar[int | None] = None

    def __post_init__(self, num_inference_steps, k, mode, fit_keypoints, batch_size, seed) -> None:
        old = {"num_inference_steps": num_inference_steps, "k": k, "mode": mode, "fit_keypoints": fit_keypoints,
               "batch_size": batch_size, "seed": seed}
        self.sampling = apply_deprecated_fields(self.sampling, old, "EvaluateConfig", base="table3_sampling()")
        self.methods = tuple(self.methods)
        self.lpips_nets = tuple(self.lpips_nets)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; methods are {', '.join(METHODS)}")


@dataclasses.dataclass
class EvaluationResult:
    """Tables of one evaluation (also written as CSV in the run folder).

    ``frames``: one row per generated frame and method (:data:`FRAME_METRICS`); ``clips``: one
    row per clip and method (:data:`CLIP_METRICS`, plus a ``real`` row: the segmentation's EF on
    the real frames and the real loop's temporal error); ``patients``: per-patient means;
    ``summary``: per dataset and method, mean over patients with ``_low``/``_high`` bootstrap 95 %
    bounds; ``table3``: the markdown table; ``memorisation``: the privacy check (may be empty);
    ``out``: the run folder (None when nothing was written); ``notes``: one line each about what was
    left out (e.g. LPIPS without a backbone), also at the end of ``table3``; ``realism``: the
    :class:`~echokdm.evaluation.realism.RealismResult` when ``config.realism`` was set (else None).
    """

    frames: pd.DataFrame
    clips: pd.DataFrame
    patients: pd.DataFrame
    summary: pd.DataFrame
    table3: str
    memorisation: pd.DataFrame
    out: Path | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    realism: RealismResult | None = None


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------


def case_seed(clip_id: str, seed: int) -> int:
    """A seed from the clip id and the base seed (order-independent, stable across runs)."""
    digest = hashlib.sha256(f"{seed}:{clip_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _warp_source(source: np.ndarray, flows: np.ndarray) -> np.ndarray:
    from echokdm.geometry.flow import warp_frame

    return warp_frame(source, flows)


def generate_case(case: EvalCase, config: EvaluateConfig, pipeline: Any = None,
                  pipeline_noflow: Any = None) -> dict[str, dict[str, Any]]:
    """Every configured method's prediction of the case's targets.

    Returns
    -------
    dict
        ``method → {"frames": float32 (K, S, S), "flows": float32 (K, 2, S, S) or None,
        "seconds": float}``. Methods whose model is missing (``pipeline`` / ``pipeline_noflow``
        None) are left out.
    """
    from echokdm.baselines.tps import tps_flow

    src, src_kp = case.frames[case.source], case.keypoints[case.source]
    tgt_kp = case.keypoints[case.targets]
    n, shape = len(case.targets), src.shape
    out: dict[str, dict[str, Any]] = {}
    sampling = config.sampling.replace(seed=case_seed(case.clip_id, config.sampling.seed))
    if "no_edit" in config.methods:
        out["no_edit"] = {"frames": np.repeat(src[None], n, axis=0), "flows": np.zeros((n, 2, *shape), np.float32),
                          "seconds": 0.0}
    if "tps" in config.methods:
        start = time.perf_counter()
        flows = np.stack([tps_flow(src_kp, k, shape) for k in tgt_kp]).astype(np.float32)
        out["tps"] = {"frames": _warp_source(src, flows), "flows": flows, "seconds": time.perf_counter() - start}
    if pipeline is not None and ({"kdm", "wo_f2i"} & set(config.methods)):
        start = time.perf_counter()
        result = pipeline(src, src_kp, tgt_kp, **sampling.pipeline_kwargs(),
                          generator=torch.Generator().manual_seed(sampling.seed), shared_noise=True, progress=False)
        seconds = time.perf_counter() - start
        flows = result.flows.astype(np.float32)
        if "kdm" in config.methods:
            out["kdm"] = {"frames": result.frames.astype(np.float32), "flows": flows, "seconds": seconds}
        if "wo_f2i" in config.methods:
            out["wo_f2i"] = {"frames": _warp_source(src, flows), "flows": flows, "seconds": seconds}
    if pipeline_noflow is not None and "wo_k2f" in config.methods:
        start = time.perf_counter()
        frames = _without_flow(pipeline_noflow, src, tgt_kp, sampling)
        out["wo_k2f"] = {"frames": frames, "flows": None, "seconds": time.perf_counter() - start}
    return out


def _without_flow(pipeline_noflow, src: np.ndarray, tgt_kp: np.ndarray, sampling: SamplingSettings) -> np.ndarray:
    """``float32`` ``(K, S, S)``: F2I trained without the flow (the paper's "w/o K2F") from a zero flow,
    one noise shared by every target, in batches of ``sampling.batch_size``."""
    n, shape, batch = len(tgt_kp), src.shape, sampling.batch_size
    zeros = np.zeros((n, 2, *shape), np.float32)
    generator = torch.Generator().manual_seed(sampling.seed)
    d = pipeline_noflow.k2f.config.downsample
    noise = torch.randn((1, pipeline_noflow.vae.config.latent_channels, shape[0] // d, shape[1] // d),
                        generator=generator)
    frames = np.concatenate([
        pipeline_noflow.image_pipe(src, tgt_kp[i:i + batch], zeros[i:i + batch], k=sampling.k,
                                   num_inference_steps=sampling.num_inference_steps, detail=sampling.detail,
                                   noise=noise.expand(len(tgt_kp[i:i + batch]), -1, -1, -1))
        for i in range(0, n, batch)])
    return frames.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------


class _Scorers:
    """LPIPS models and the optional segmentation model, loaded once."""

    def __init__(self, config: EvaluateConfig, device: torch.device):
        from echokdm.metrics.lpips import lpips_metrics

        self.lpips_nets = tuple(config.lpips_nets)  # every one gets a column; NaN when left out (lpips_note)
        self.lpips, self.lpips_note = lpips_metrics(self.lpips_nets, config.lpips_backbone, device)
        self.segmentation = None
        if config.segmentation:
            from echokdm.echo.segmentation import LVSegmentationNet
            from echokdm.pretrained import resolve_checkpoint

            path = resolve_checkpoint(config.segmentation, "segmentation")  # a folder or a packaged name; never a hub
            self.segmentation = LVSegmentationNet.from_pretrained(path).eval().to(device)

    def keypoints(self, frames: np.ndarray, apex_direction="auto") -> np.ndarray:
        """Keypoints ``(T, 40, 2)`` re-detected on ``frames`` (NaN where detection fails) by the echo
        adapter's detector hook (:meth:`echokdm.adapters.echo.EchoAdapter.detect_keypoints`), the apex on
        ``apex_direction``'s side."""
        from echokdm.adapters import get_adapter

        return get_adapter("echo").detect_keypoints(frames, self.segmentation, apex_direction=apex_direction)


def _lv_function(volumes: np.ndarray) -> tuple[float, float, float]:
    """``(EF %, EDV, ESV)`` of a loop's volume curve: EDV its largest, ESV its smallest volume."""
    v = volumes[np.isfinite(volumes)]
    if len(v) < 2 or v.max() <= 0:
        return float("nan"), float("nan"), float("nan")
    return float(100.0 * (v.max() - v.min()) / v.max()), float(v.max()), float(v.min())


def _keypoint_distance(detected: np.ndarray, target: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        d = np.linalg.norm(detected - target, axis=-1)  # (K, 40)
    finite = np.isfinite(d).any(axis=1)
    out = np.full(len(d), np.nan)
    out[finite] = np.nanmean(d[finite], axis=1)
    return out


def score_case(case: EvalCase, generated: dict[str, dict[str, Any]],
               scorers: _Scorers) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-frame and per-clip metric rows of one case (see the module docstring)."""
    from echokdm.generation.loop import apex_side
    from echokdm.geometry.keypoints import keypoints_to_mask
    from echokdm.geometry.volumes import simpson_volume
    from echokdm.metrics.flow import endpoint_error, flow_mae, flow_rmse
    from echokdm.metrics.image import mse, psnr, ssim
    from echokdm.metrics.temporal import temporal_warping_error

    real = case.frames[case.targets]
    tgt_kp = case.keypoints[case.targets]
    ids = {"dataset": case.dataset, "patient_id": case.patient_id, "clip_id": case.clip_id}
    spacing = case.spacing_mm
    ef_kp = case.keypoints if case.ef_keypoints is None else case.ef_keypoints  # tracked motion: the segmentation's EF
    ef_target, edv_target, esv_target = _lv_function(simpson_volume(np.concatenate([ef_kp[case.source][None],
                                                                                    ef_kp[case.targets]]), spacing))
    lv_masks = np.stack([keypoints_to_mask(k, case.frames.shape[1:]) for k in tgt_kp])  # (K, S, S) target LV
    seg = scorers.segmentation is not None
    # generated frames keep the source's geometry: re-detected with its apex side, not one guessed per loop from
    # its masks (on pydicom's real cine the guess flipped the LV: a TPS warp read keypoints 32.6 px away)
    side = apex_side(case.keypoints[case.source])
    src_detected = scorers.keypoints(case.frames[case.source][None], side) if seg else None
    frame_rows, clip_rows = [], []

    def clip_row(method: str, frames: np.ndarray, detected: np.ndarray | None, seconds: float) -> dict:
        row = {**ids, "method": method, "n_frames": len(frames), "temporal_error": np.nan, "ef_target": ef_target,
               "ef_achieved": np.nan, "ef_error": np.nan, "edv_target": edv_target, "edv_achieved": np.nan,
               "esv_target": esv_target, "esv_achieved": np.nan, "volume_units": "mL" if spacing else "px^3",
               "seconds_per_frame": seconds / len(frames)}
        if case.step_flows is not None and len(frames) >= 2:
            row["temporal_error"] = temporal_warping_error(frames, case.step_flows).mean
        if detected is not None:
            ef, edv, esv = _lv_function(simpson_volume(np.concatenate([src_detected, detected]), spacing))
            row.update(ef_achieved=ef, ef_error=ef - ef_target, edv_achieved=edv, esv_achieved=esv)
        return row

    for method, pred in generated.items():
        frames = np.clip(pred["frames"], 0.0, 1.0)
        table = pd.DataFrame({**ids, "method": method, "frame": case.targets, "source_frame": case.source,
                              "mse": mse(frames, real), "psnr": psnr(frames, real), "ssim": ssim(frames, real)})
        for net in scorers.lpips_nets:
            table[f"lpips_{net}"] = scorers.lpips[net](frames, real) if net in scorers.lpips else np.nan
        for name in ("epe", "epe_lv", "flow_mae", "flow_rmse"):
            table[name] = np.nan
        if pred["flows"] is not None and case.reference_flows is not None:
            table["epe"] = endpoint_error(pred["flows"], case.reference_flows)
            table["epe_lv"] = endpoint_error(pred["flows"], case.reference_flows, mask=lv_masks)
            table["flow_mae"] = flow_mae(pred["flows"], case.reference_flows)
            table["flow_rmse"] = flow_rmse(pred["flows"], case.reference_flows)
        detected = scorers.keypoints(frames, side) if seg else None
        table["kp_md"] = _keypoint_distance(detected, tgt_kp) if seg else np.nan
        frame_rows.append(table)
        clip_rows.append(clip_row(method, frames, detected, pred["seconds"]))
    clip_rows.append(clip_row("real", real, scorers.keypoints(real, side) if seg else None, 0.0))
    clips = pd.DataFrame(clip_rows)
    clips.loc[clips["method"] == "real", "seconds_per_frame"] = np.nan
    return pd.concat(frame_rows, ignore_index=True), clips


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def _settings(config: EvaluateConfig, manifest: Path, pipeline: str | None, pipeline_noflow: str | None) -> dict:
    """What ``evaluate.json`` records (the sampling settings as top-level keys, as before they were one object)."""
    fields = dataclasses.asdict(config)
    fields.update(fields.pop("sampling"))
    realism = fields.pop("realism")
    if realism is not None:  # recorded only when asked, so that earlier run folders stay resumable
        fields["realism"] = {k: list(v) if isinstance(v, tuple) else v for k, v in realism.items()}
    return {"manifest": str(manifest.resolve()), "pipeline": str(Path(pipeline).resolve()) if pipeline else None,
            "pipeline_noflow": str(Path(pipeline_noflow).resolve()) if pipeline_noflow else None,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()
               if k not in ("device", "n_boot", "memorisation", "memorisation_frames", "training_manifest")}}


def _prepare_folder(out: Path, settings: dict, overwrite: bool) -> None:
    """Create ``out`` or check that a previous run there used the same settings."""
    prepare_run_folder(out, "evaluate.json", settings, overwrite=overwrite, kind="evaluation",
                       what="an evaluation", differs="different settings", derived=("parts", "generated"))


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a result table as CSV (no index), atomically: a rerun never reads a half-written table."""
    with atomic_output(path, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)


def _save_generated(path: Path, case: EvalCase, generated: dict) -> None:
    arrays = {f"{m}_frames": np.round(np.clip(g["frames"], 0, 1) * 255).astype(np.uint8) for m, g in generated.items()}
    arrays["real"] = np.round(case.frames[case.targets] * 255).astype(np.uint8)
    arrays["source"] = np.round(case.frames[case.source] * 255).astype(np.uint8)
    arrays["targets"] = case.targets
    with atomic_output(path, overwrite=True) as tmp:
        np.savez_compressed(tmp, **arrays)


def _load_pipeline(folder: str | None, device: torch.device):
    if not folder:
        return None
    from echokdm.pipelines.kdm import KDMPipeline

    return KDMPipeline.from_pretrained(folder).to(device)


def announce_notes(notes: list[str | None]) -> list[str]:
    """The notes that are set (``None`` left out), each also issued as an
    :class:`~echokdm.metrics.lpips.LPIPSSkippedWarning` now (before the long work), so that the Python
    API, notebooks and the CLI all show it; they end ``table3`` (:func:`summarise_frames`)."""
    from echokdm.metrics.lpips import LPIPSSkippedWarning

    notes = [n for n in notes if n]
    for note in notes:
        warnings.warn(note, LPIPSSkippedWarning, stacklevel=3)
    return notes


def summarise_frames(frames: pd.DataFrame, clips: pd.DataFrame, *, n_boot: int = 2000,
                     notes: list[str] | tuple[str, ...] = ()) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Per-patient table, per-dataset summary with bootstrap intervals, and the Table-3 markdown.

    Metrics without any value (e.g. LPIPS left out) are not summarised; ``notes`` (one line each,
    e.g. why LPIPS was left out) end the markdown as ``note: ...`` lines.
    """
    from echokdm.metrics.report import per_patient, summarise, table3_markdown

    metrics = [m for m in FRAME_METRICS if m in frames.columns and frames[m].notna().any()]
    patients = per_patient(frames, metrics)
    summary = summarise(frames, metrics, n_boot=n_boot)
    clip_metrics = [m for m in CLIP_METRICS if m in clips.columns and clips[m].notna().any()]
    if len(clips) and clip_metrics:
        clip_summary = summarise(clips.rename(columns={"n_frames": "clip_frames"}), clip_metrics, n_boot=n_boot)
        clip_summary = clip_summary.drop(columns=["n_frames"]).rename(columns={"n_patients": "n_patients_clips"})
        summary = summary.merge(clip_summary, on=["dataset", "method"], how="outer")
    order = [m for m in (*METHODS, "generated", "real") if m in set(summary["method"])]
    summary = summary.assign(_o=summary["method"].map({m: i for i, m in enumerate(order)}))
    summary = summary.sort_values(["dataset", "_o"]).drop(columns="_o").reset_index(drop=True)
    shown = summary[summary["method"] != "real"]
    shown = shown.assign(method=shown["method"].map(lambda m: METHOD_LABELS.get(m, m)))
    columns = [m for m in ("mse", "lpips_alex", "lpips_vgg", "ssim", "epe", "epe_lv", "kp_md", "ef_error")
               if m in shown.columns and shown[m].notna().any()]
    table3 = table3_markdown(shown, columns)
    if notes:
        table3 = table3.rstrip("\n") + "\n\n" + "\n".join(f"note: {n}" for n in notes) + "\n"
    return patients, summary, table3


def _memorisation(manifest: pd.DataFrame, out: Path | None, cases: list[EvalCase],
                  generated: dict[str, list[np.ndarray]], config: EvaluateConfig, size: int,
                  progress: bool) -> pd.DataFrame:
    """Nearest-training-frame distances of the KDM frames (``generated``: each method's frames, one array
    per case) against those of the real held-out targets, tested per patient (issue 21)."""
    from tqdm.auto import tqdm

    from echokdm.data.manifest import read_clip
    from echokdm.geometry.resize import resize_images
    from echokdm.metrics.privacy import memorisation_report

    if config.training_manifest:
        from echokdm.data.manifest import load_manifest

        manifest = load_manifest(config.training_manifest)
    elif config.split in ("train", "all"):
        return pd.DataFrame()  # the evaluated clips are (or include) the training clips
    train = manifest[manifest["split"] == "train"]
    if train.empty or not generated:
        return pd.DataFrame()
    per_clip = max(1, config.memorisation_frames // len(train))
    frames, unreadable = [], []
    for _, row in tqdm(list(train.iterrows()), desc="memorisation: training frames", unit="clip",
                       disable=not progress, leave=False):
        try:
            cine = read_clip(row)
        except Exception as exc:  # noqa: BLE001 - an unreadable training clip is reported, not compared
            unreadable.append(f"{row['clip_id']}: {type(exc).__name__}: {exc}")
            continue
        idx = np.unique(np.linspace(0, cine.n_frames - 1, min(per_clip, cine.n_frames)).astype(int))
        frames.append(resize_images(cine.frames[idx], size, dtype=np.uint8).astype(np.float32) / 255.0)
    if unreadable:
        warnings.warn(f"memorisation check: {len(unreadable)} training clip(s) could not be read and are left out: "
                      + "; ".join(unreadable[:3]), stacklevel=2)
    if not frames:
        return pd.DataFrame()
    training = np.concatenate(frames)
    held = np.concatenate([c.frames[c.targets] for c in cases])
    patient = [f"{c.dataset}\x00{c.patient_id}" for c in cases]
    held_groups = np.repeat(patient, [len(c.targets) for c in cases])
    rows = []
    for method, parts in generated.items():
        gen = np.concatenate(parts)
        groups = {}  # frames of one patient are correlated: the test is per patient when the cases are known
        if len(parts) == len(cases):
            groups = dict(generated_groups=np.repeat(patient, [len(f) for f in parts]), held_out_groups=held_groups)
        report = memorisation_report(gen, training, held, metric="mse", **groups)
        rows.append({"method": method, "n_training_frames": len(training), **report.summary()})
    table = pd.DataFrame(rows)
    if out is not None:
        write_csv(table, out / "memorisation.csv")
    return table


def evaluate(manifest: str | os.PathLike, pipeline: str | os.PathLike | None = None, *,
             pipeline_noflow: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
             config: EvaluateConfig | None = None, overwrite: bool = False, progress: bool = True,
             plots: bool = True) -> EvaluationResult:
    """Evaluate KDM (and its ablations and baselines) on a manifest split; see the module docstring.

    Parameters
    ----------
    manifest : path
        Manifest CSV (a phantom cohort gives exact keypoints and flows).
    pipeline : path, optional
        A KDM pipeline folder (``<run>/pipeline``); None scores only the baselines.
    pipeline_noflow : path, optional
        The "w/o K2F" pipeline folder; default ``<pipeline>/../pipeline_noflow`` when it exists.
    out : path, optional
        Run folder for the CSVs, plots and resumable parts; None keeps everything in memory.
    config : EvaluateConfig, optional
    overwrite : bool
        Discard a previous evaluation in ``out`` made with other settings.
    progress : bool
        Progress bars.
    plots : bool
        Write the plots (needs ``out``).

    Returns
    -------
    EvaluationResult or None
        None in every process but the main one under ``accelerate launch`` (clip ``i`` of the split
        is then evaluated by process ``i mod N`` into ``out``; the main process merges them from the
        run folder, as a resumed run does).
    """
    from echokdm.data.manifest import load_manifest
    from echokdm.training.loop import resolve_device

    config = config or EvaluateConfig()
    manifest_path = Path(manifest)
    table = load_manifest(manifest_path)
    rows = _evaluated_rows(table, config, manifest_path)
    if pipeline_noflow is None and pipeline is not None and (Path(pipeline).parent / "pipeline_noflow").is_dir():
        pipeline_noflow = Path(pipeline).parent / "pipeline_noflow"
    device = resolve_device(config.device)
    pipes = _load_pipeline(pipeline, device), _load_pipeline(pipeline_noflow, device)
    size = config.size or _model_size(pipes[0] or pipes[1])
    out_path = Path(out) if out is not None else None
    from echokdm.distributed import is_main_process, launched, shard_then_merge

    if launched() and out_path is None:
        raise ValueError("several processes (accelerate launch) share the clips through the run folder: give out")
    if out_path is not None and is_main_process():
        _prepare_folder(out_path, _settings(config, manifest_path, pipeline, pipeline_noflow), overwrite)
    scorers = _Scorers(config, device)
    notes = announce_notes([scorers.lpips_note])

    def shard(part: pd.DataFrame) -> None:  # each process's clips into the run folder's parts (issue 23)
        with contextlib.suppress(ValueError):  # a shard with no usable clip: the merge below says so
            _run_cases(part, manifest_path, size, config, pipes, scorers, out_path, progress and is_main_process())

    if not shard_then_merge(rows, shard):
        return None  # another process merges
    try:
        run = _run_cases(rows, manifest_path, size, config, pipes, scorers, out_path, progress)
    except ValueError:
        if out_path is not None:
            _remove_empty_run(out_path)
        raise
    frames_all = pd.concat(run.frame_parts, ignore_index=True)
    clips_all = pd.concat(run.clip_parts, ignore_index=True)
    patients, summary, table3 = summarise_frames(frames_all, clips_all, n_boot=config.n_boot, notes=notes)
    memo = pd.DataFrame()
    if config.memorisation:
        memo = _memorisation(table, out_path, run.cases, run.kdm_frames, config, size, progress)
    if out_path is not None:
        _write_results(out_path, frames_all, clips_all, patients, summary, table3, run.skipped, plots)
    realism = None
    if config.realism is not None:
        from echokdm.evaluation.realism import evaluate_realism

        lpips = scorers.lpips.get("alex") or next(iter(scorers.lpips.values()), None)
        realism = evaluate_realism(run.cases, run.own_frames, config, pipes, lpips, device, out_path, progress,
                                   plots)
    return EvaluationResult(frames_all, clips_all, patients, summary, table3, memo, out_path, notes, realism)


def _evaluated_rows(table: pd.DataFrame, config: EvaluateConfig, manifest: Path) -> pd.DataFrame:
    """The manifest rows of ``config.split`` (all for ``"all"``), at most ``config.max_clips``."""
    rows = table if config.split == "all" else table[table["split"] == config.split]
    if rows.empty:
        present = sorted(table["split"].unique())
        raise ValueError(f"{manifest}: no clips in split {config.split!r} (splits: {', '.join(present)}); "
                         f"choose one with --split ({' or '.join(present)}, or all)")
    return rows if config.max_clips is None else rows.iloc[: config.max_clips]


@dataclasses.dataclass
class _Run:
    """What the loop over the clips gathers: per-clip tables, the cases, KDM frames per method, skipped clips."""

    frame_parts: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    clip_parts: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    cases: list[EvalCase] = dataclasses.field(default_factory=list)
    kdm_frames: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    own_frames: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)  # clip → method → frames


def _read_part(out: Path, stem: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]]]:
    """The tables and every method's frames a finished clip left in the run folder (resume)."""
    ids = {"patient_id": str, "clip_id": str, "dataset": str}
    frames = pd.read_csv(out / "parts" / f"{stem}.frames.csv", dtype=ids)
    clips = pd.read_csv(out / "parts" / f"{stem}.clip.csv", dtype=ids)
    with np.load(out / "generated" / f"{stem}.npz") as saved:
        generated = {key.removesuffix("_frames"): {"frames": saved[key].astype(np.float32) / 255.0}
                     for key in saved.files if key.endswith("_frames")}
    return frames, clips, generated


def _run_cases(rows: pd.DataFrame, manifest: Path, size: int, config: EvaluateConfig, pipes: tuple[Any, Any],
               scorers: _Scorers, out: Path | None, progress: bool) -> _Run:
    """Load, generate and score every clip (or read a finished one back from ``out``); a ValueError when none
    could be evaluated."""
    from tqdm.auto import tqdm

    from echokdm.data.ground_truth import ground_truth_files
    from echokdm.data.manifest import clip_file_stem

    truth = ground_truth_files(manifest)
    run = _Run()
    for _, row in tqdm(list(rows.iterrows()), desc="evaluating", unit="clip", disable=not progress):
        stem = clip_file_stem(str(row["clip_id"]))
        try:
            case = load_case(row, manifest, size, max_targets=config.max_targets, keypoints=config.keypoints,
                             segmentation=config.masks, truth=truth, own_motion=config.own_motion,
                             segmentation_model=scorers.segmentation)
        except Exception as exc:  # noqa: BLE001 - listed, never silently dropped
            run.skipped.append((str(row["clip_id"]), f"{type(exc).__name__}: {exc}"))
            continue
        run.cases.append(case)
        if out is not None and (out / "parts" / f"{stem}.clip.csv").exists():
            frames_t, clips_t, generated = _read_part(out, stem)
        else:
            generated = generate_case(case, config, *pipes)
            frames_t, clips_t = score_case(case, generated, scorers)
            if out is not None:
                _save_generated(out / "generated" / f"{stem}.npz", case, generated)
                write_csv(frames_t, out / "parts" / f"{stem}.frames.csv")
                write_csv(clips_t, out / "parts" / f"{stem}.clip.csv")
        run.frame_parts.append(frames_t)
        run.clip_parts.append(clips_t)
        for method in ("kdm",):
            if method in generated:
                run.kdm_frames.setdefault(method, []).append(generated[method]["frames"])
        if config.realism is not None:
            run.own_frames[case.clip_id] = {m: g["frames"] for m, g in generated.items()}
    if not run.frame_parts:
        listed = "; ".join(f"{clip}: {' '.join(reason.split())[:200]}" for clip, reason in run.skipped[:5])
        more = f" (and {len(run.skipped) - 5} more)" if len(run.skipped) > 5 else ""
        raise ValueError(f"{manifest}: no clip could be evaluated ({len(run.skipped)} skipped): {listed}{more}")
    return run


def _remove_empty_run(out: Path) -> None:
    """After a run that evaluated no clip: remove the run record and the empty ``parts``/``generated`` folders it
    made (and ``out`` when nothing else is in it), so that no half-made evaluation folder is left behind. A folder
    holding any finished clip is left as it is (a rerun resumes it)."""
    import contextlib

    parts, generated = out / "parts", out / "generated"
    if any(p.is_dir() and any(p.iterdir()) for p in (parts, generated)):
        return
    for folder in (parts, generated):
        with contextlib.suppress(OSError):
            folder.rmdir()
    (out / "evaluate.json").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        out.rmdir()  # only when empty


def _write_results(out: Path, frames: pd.DataFrame, clips: pd.DataFrame, patients: pd.DataFrame,
                   summary: pd.DataFrame, table3: str, skipped: list[tuple[str, str]], plots: bool) -> None:
    """The tables, ``table3.md``, ``skipped.csv`` (when a clip was skipped) and the plots of a run."""
    write_csv(frames, out / "per_frame.csv")
    write_csv(clips, out / "per_clip.csv")
    write_csv(patients, out / "per_patient.csv")
    write_csv(summary, out / "summary.csv")
    (out / "table3.md").write_text(table3)
    if skipped:
        write_csv(pd.DataFrame(skipped, columns=["clip_id", "reason"]), out / "skipped.csv")
    if plots:
        from echokdm.evaluation.plots import write_plots

        write_plots(out, frames, clips, patients)


def _model_size(pipe: Any) -> int:
    """Frame size the pipeline was trained at (112 when there is no pipeline)."""
    if pipe is None:
        return 112
    return int(pipe.vae.config.sample_size)
