"""``echokdm evaluate`` for face and pose sequence manifests: the paper's Tables 1 and 2.

For every sequence of the evaluated split, frame 0 is the source and up to ``max_targets`` later
frames (evenly spaced) are the targets; each method predicts every target frame from the source
frame and the target keypoints, one sample per case with a seed derived from the clip id:

* ``no_edit`` — the source frame itself;
* ``tps`` — the source warped by a thin-plate spline through the keypoints;
* ``wo_f2i`` — the source warped by the K2F flow (the paper's "w/o F2I": F2I at k = 0);
* ``wo_k2f`` — F2I trained without the flow (``pipeline_noflow``) from a zero flow;
* ``kdm`` — K2F then F2I with the k-initialisation (per-frame K2F flows, the paper's protocol).

Frames are compared at the pipeline's size (colour when the pipeline is colour): MSE, PSNR, SSIM,
LPIPS-Alex and LPIPS-VGG (on RGB frames as they are) and the keypoint distance MD (px): keypoints
re-detected on the generated frame against the target keypoints. The detector (``detector``):

* ``auto`` — faces: ``face-alignment`` / ``dlib`` when installed; otherwise (and for poses, as
  OpenPose is not a Python package) the small heatmap detector packaged for the adapter
  (:mod:`echokdm.adapters.detector`, trained on procedural data);
* ``adapter`` — the adapter's own detector only (face-alignment / dlib);
* ``heatmap`` or a detector folder — the small detector;
* ``openpose`` — OpenPose JSON files of the generated frames: run OpenPose with ``--write_json`` on
  ``<out>/generated/<method>/<clip>/`` (written on a first run) into ``<out>/openpose/<method>/<clip>/``
  and run the evaluation again;
* ``none`` — no MD.

The report says which detector was used (``evaluate.json``, a note under ``table.md``). Outputs in
``out``: ``per_frame.csv``, ``summary.csv`` (per method: mean over subjects with subject-level
bootstrap 95 % intervals), ``table.md`` (the paper's Table 1 (faces) / Table 2 (poses) layout:
MSE_img, MD, LPIPS_alx, LPIPS_vgg) and ``evaluate.json`` (settings and detector).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echokdm.generation.settings import SamplingSettings

__all__ = ["SEQUENCE_METHODS", "SequenceEvalConfig", "SequenceEvaluation", "evaluate_sequences",
           "is_sequence_manifest", "sequence_cases"]

SEQUENCE_METHODS = ("no_edit", "tps", "wo_f2i", "wo_k2f", "kdm")
_LABELS = {"no_edit": "No edit", "tps": "TPS warp", "wo_f2i": "w/o F2I", "wo_k2f": "w/o K2F", "kdm": "KDM"}
_TABLES = {"face": "Table 1 (facial expression editing)", "pose": "Table 2 (human pose synthesis)",
           "pose_coco18": "Table 2 (human pose synthesis)"}
_METRICS = ("mse", "psnr", "ssim", "lpips_alex", "lpips_vgg", "kp_md")


def _paper_sampling() -> SamplingSettings:
    """Per-frame K2F flows taken as they are, with the paper's sampler (the paper's protocol)."""
    return SamplingSettings.paper(mode="per_frame", fit_keypoints=False)


@dataclasses.dataclass
class SequenceEvalConfig:
    """Settings of :func:`evaluate_sequences` (see the module docstring)."""

    split: str = "test"
    methods: tuple[str, ...] = SEQUENCE_METHODS
    max_targets: int = 8
    max_clips: int | None = None
    sampling: SamplingSettings = dataclasses.field(default_factory=_paper_sampling)
    lpips_nets: tuple[str, ...] = ("alex", "vgg")
    lpips_backbone: str | None = None
    detector: str = "auto"
    size: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in SEQUENCE_METHODS]
        if unknown:
            raise ValueError(f"methods {unknown}: choose among {', '.join(SEQUENCE_METHODS)}")
        if self.max_targets < 1:
            raise ValueError(f"max_targets must be >= 1, got {self.max_targets}")


@dataclasses.dataclass
class SequenceEvaluation:
    """``frames`` (per generated frame), ``summary`` (per method), ``table`` (markdown), ``detector``
    (the MD detector used, in words), ``out`` (the folder, or None)."""

    frames: pd.DataFrame
    summary: pd.DataFrame
    table: str
    detector: str
    adapter: str
    out: Path | None = None

    @property
    def table3(self) -> str:  # what the echo evaluation prints; the CLI prints either
        return self.table


def is_sequence_manifest(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sequence manifest (faces, poses): it has a ``keypoints_path`` column."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except Exception:  # noqa: BLE001 - not a readable CSV: not ours to judge here
        return False
    return "keypoints_path" in header and "format" in header


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Case:
    clip_id: str
    patient_id: str
    dataset: str
    frames: np.ndarray  # (T, S, S) or (T, S, S, C) in [0, 1]
    keypoints: np.ndarray  # (T, N, 2) at S
    targets: np.ndarray  # frame indices


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    from echokdm.geometry.resize import resize_images

    if frames.ndim == 4:
        return np.moveaxis(resize_images(np.moveaxis(frames, -1, 1), size, antialias=True), 1, -1).clip(0, 1)
    return resize_images(frames, size, antialias=True).clip(0, 1)


def sequence_cases(manifest: pd.DataFrame, adapter, size: int, channels: int, config: SequenceEvalConfig):
    """Yield one evaluation case per manifest row: frames and keypoints at ``size``, the target indices."""
    from echokdm.data.pairs import scale_keypoints
    from echokdm.data.sequences import read_sequence_frames, read_sequence_keypoints

    for _, row in manifest.iterrows():
        frames = read_sequence_frames(row, channels)
        kp = read_sequence_keypoints(row, adapter.read_keypoints, len(frames))
        if len(frames) < 2:
            continue
        n = min(config.max_targets, len(frames) - 1)
        targets = np.unique(np.round(np.linspace(1, len(frames) - 1, n)).astype(int))
        yield _Case(str(row["clip_id"]), str(row["patient_id"]), str(row["dataset"]), _resize(frames, size),
                    scale_keypoints(kp, frames.shape[1:3], size), targets)


def _seed(base: int, clip_id: str) -> int:
    return (base + int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16)) % (2**31)


def _generate(case: _Case, config: SequenceEvalConfig, pipe, pipe_noflow) -> dict[str, tuple[np.ndarray, float]]:
    """``{method: (frames (K, S, S[, C]), seconds)}`` for the configured methods that can run."""
    from echokdm.baselines.tps import tps_warp

    s = config.sampling
    src, src_kp = case.frames[0], case.keypoints[0]
    tgt_kp = case.keypoints[case.targets]
    axis = -1 if src.ndim == 3 else None
    out: dict[str, tuple[np.ndarray, float]] = {}
    if "no_edit" in config.methods:
        out["no_edit"] = (np.repeat(src[None], len(tgt_kp), 0), 0.0)
    if "tps" in config.methods:
        start = time.perf_counter()
        warped = [tps_warp(src, src_kp, k, channel_axis=axis) for k in tgt_kp]
        out["tps"] = (np.clip(np.stack(warped), 0, 1).astype(np.float32), time.perf_counter() - start)
    seed = _seed(s.seed, case.clip_id)
    if pipe is not None and {"kdm", "wo_f2i"} & set(config.methods):
        start = time.perf_counter()
        result = pipe(src, src_kp, tgt_kp, mode="per_frame", k=s.k, num_inference_steps=s.num_inference_steps,
                      batch_size=s.batch_size, generator=torch.Generator().manual_seed(seed), progress=False,
                      detail=s.detail)
        if "kdm" in config.methods:
            out["kdm"] = (result.frames, time.perf_counter() - start)
        if "wo_f2i" in config.methods:  # the same K2F flows, F2I at k = 0: the warp itself
            out["wo_f2i"] = (pipe.image_pipe(src, tgt_kp, result.flows, k=0), 0.0)
    if pipe_noflow is not None and "wo_k2f" in config.methods:
        start = time.perf_counter()
        d = pipe_noflow.k2f.config.downsample
        h, w = src.shape[:2]
        noise = torch.randn((1, pipe_noflow.vae.config.latent_channels, h // d, w // d),
                            generator=torch.Generator().manual_seed(seed))
        zeros = np.zeros((len(tgt_kp), 2, h, w), np.float32)
        frames = np.concatenate([
            pipe_noflow.image_pipe(src, tgt_kp[i:i + s.batch_size], zeros[i:i + s.batch_size], k=s.k,
                                   num_inference_steps=s.num_inference_steps, detail=s.detail,
                                   noise=noise.expand(len(tgt_kp[i:i + s.batch_size]), -1, -1, -1))
            for i in range(0, len(tgt_kp), s.batch_size)])
        out["wo_k2f"] = (frames, time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------------------
# detectors
# ---------------------------------------------------------------------------------------------


class _Detector:
    """The MD detector chosen by ``config.detector`` (module docstring); ``name`` says which."""

    def __init__(self, choice: str, adapter, out: Path | None):
        self.adapter, self.out, self.choice = adapter, out, choice
        self.model, self.name = None, "none"
        if choice == "none":
            return
        if choice == "openpose":
            if out is None:
                raise ValueError("detector openpose reads OpenPose JSON files under <out>/openpose: give an out folder")
            self.name = f"OpenPose JSON files ({out / 'openpose'})"
            return
        if choice in ("auto", "adapter") and adapter.name == "face" and self._face_package():
            self.name = f"face landmarks: {self._face_package()} (the adapter's detector)"
            self.choice = "adapter"
            return
        if choice == "adapter":
            raise ValueError(f"detector adapter: adapter {adapter.name!r} has no installed detector "
                             "(faces: pip install face-alignment); use --detector heatmap or none")
        from echokdm.adapters.detector import PACKAGED_DETECTORS, load_detector

        source = PACKAGED_DETECTORS.get(adapter.name) if choice in ("auto", "heatmap") else choice
        if source is None:
            raise ValueError(f"no packaged heatmap detector for adapter {adapter.name!r}; give a detector folder")
        self.model = load_detector(source)
        if self.model.config.adapter != adapter.name:
            raise ValueError(f"detector {source} was trained for adapter {self.model.config.adapter!r}, "
                             f"not {adapter.name!r}")
        self.choice = "heatmap"
        self.name = (f"small heatmap detector {Path(str(source)).name} (trained on procedural "
                     f"{adapter.name} data, echokdm.adapters.detector), not {self._paper_detector()}")

    def _paper_detector(self) -> str:
        return "the paper's face landmark detector" if self.adapter.name == "face" else "OpenPose"

    @staticmethod
    def _face_package() -> str | None:
        import importlib.util

        for name in ("face_alignment", "dlib"):
            if importlib.util.find_spec(name) is not None:
                return name.replace("_", "-")
        return None

    def __call__(self, frames: np.ndarray, method: str, clip_id: str) -> np.ndarray | None:
        """``(K, N, 2)`` keypoints of the generated frames, or None (no detector / no files yet)."""
        if self.choice == "none":
            return None
        if self.choice == "adapter":
            return self.adapter.detect_keypoints(frames)
        if self.choice == "heatmap":
            from echokdm.adapters.detector import detect_with_heatmaps

            return detect_with_heatmaps(frames, self.model)
        folder = self.out / "openpose" / method / clip_id
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if len(files) != len(frames):
            return None
        return np.concatenate([self.adapter.read_keypoints(f) for f in files]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# scoring and the run
# ---------------------------------------------------------------------------------------------


def _score(case: _Case, method: str, frames: np.ndarray, seconds: float, lpips: dict, detect: _Detector) -> list[dict]:
    from echokdm.generation.keypoint_edit import keypoint_distance
    from echokdm.metrics.image import mse, psnr, ssim

    real = case.frames[case.targets]
    axis = -1 if real.ndim == 4 else None
    values = {"mse": mse(frames, real, channel_axis=axis), "psnr": psnr(frames, real, channel_axis=axis),
              "ssim": ssim(frames, real, channel_axis=axis)}
    for net, metric in lpips.items():
        values[f"lpips_{net}"] = metric(frames, real, channel_axis=axis)
    detected = detect(frames, method, case.clip_id)
    values["kp_md"] = (keypoint_distance(detected, case.keypoints[case.targets]) if detected is not None
                       else np.full(len(frames), np.nan))
    return [{"dataset": case.dataset, "patient_id": case.patient_id, "clip_id": case.clip_id, "method": method,
             "frame": int(t), "seconds_per_frame": seconds / len(frames),
             **{k: float(v[i]) for k, v in values.items()}} for i, t in enumerate(case.targets)]


def _load(pipeline, device: str):
    if pipeline is None:
        return None
    from echokdm.pipelines.kdm import KDMPipeline

    return KDMPipeline.from_pretrained(pipeline).to(device)


def _write_generated(out: Path, method: str, case: _Case, frames: np.ndarray) -> None:
    """PNG frames of one method and clip (for OpenPose, and to look at)."""
    from echokdm.io.preview import write_png

    folder = out / "generated" / method / case.clip_id
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in zip(case.targets, frames, strict=True):
        write_png(folder / f"{int(t):04d}.png", frame, overwrite=True)


def evaluate_sequences(manifest: str | os.PathLike, pipeline: str | os.PathLike | None = None, *,
                       pipeline_noflow: str | os.PathLike | None = None, adapter: str | None = None,
                       out: str | os.PathLike | None = None, config: SequenceEvalConfig | None = None,
                       progress: bool = True, n_boot: int = 2000) -> SequenceEvaluation:
    """Score no edit, TPS, w/o F2I, w/o K2F and KDM on a face or pose sequence manifest (module docstring).

    Parameters
    ----------
    manifest : path
        A sequence manifest (:mod:`echokdm.data.sequences`).
    pipeline, pipeline_noflow : path or packaged name, optional
        The KDM pipeline folder and its "w/o K2F" ablation (default ``<pipeline>/../pipeline_noflow``
        when it exists). Without a pipeline only the baselines are scored.
    adapter : str, optional
        The keypoint adapter; default the pipeline's (needed without a pipeline).
    out : path, optional
        Output folder (``per_frame.csv``, ``summary.csv``, ``table.md``, ``evaluate.json``,
        ``generated/``); None keeps the tables in memory.
    config : SequenceEvalConfig, optional
    """
    from echokdm.adapters import get_adapter
    from echokdm.data.sequences import load_sequence_manifest
    from echokdm.metrics.lpips import lpips_metrics
    from echokdm.metrics.report import summarise, table3_markdown

    config = config or SequenceEvalConfig()
    if pipeline_noflow is None and pipeline is not None and (Path(pipeline).parent / "pipeline_noflow").is_dir():
        pipeline_noflow = Path(pipeline).parent / "pipeline_noflow"
    pipe, pipe_noflow = _load(pipeline, config.device), _load(pipeline_noflow, config.device)
    model = pipe or pipe_noflow
    name = adapter or (model.adapter if model is not None else None)
    if name is None:
        raise ValueError("give the keypoint adapter (--adapter face|pose) when no pipeline is given")
    if model is not None and model.adapter != name:
        raise ValueError(f"adapter {name!r} differs from the pipeline's {model.adapter!r}")
    ad = get_adapter(name)
    if model is not None:
        from echokdm.generation.loop import pipeline_size

        size, channels = pipeline_size(model)[0], model.vae.config.in_channels
    else:
        size, channels = config.size or 64, 3
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
    detect = _Detector(config.detector, ad, out_path)
    lpips, note = lpips_metrics(config.lpips_nets, config.lpips_backbone, config.device)
    rows = load_sequence_manifest(manifest)
    rows = rows if config.split == "all" else rows[rows["split"] == config.split]
    if config.max_clips is not None:
        rows = rows.iloc[:config.max_clips]
    if rows.empty:
        raise ValueError(f"{manifest}: no sequences in split {config.split!r}")
    from tqdm.auto import tqdm

    records = []
    for case in tqdm(list(sequence_cases(rows, ad, size, channels, config)), desc="evaluate", disable=not progress):
        for method, (frames, seconds) in _generate(case, config, pipe, pipe_noflow).items():
            if out_path is not None:
                _write_generated(out_path, method, case, frames)
            records += _score(case, method, frames, seconds, lpips, detect)
    frames_table = pd.DataFrame(records)
    metrics = [m for m in _METRICS if m in frames_table and frames_table[m].notna().any()]
    summary = summarise(frames_table, metrics, n_boot=n_boot)
    order = {m: i for i, m in enumerate(SEQUENCE_METHODS)}
    summary = summary.assign(_o=summary["method"].map(order)).sort_values("_o").drop(columns="_o")
    shown = summary.assign(method=summary["method"].map(_LABELS))
    columns = [m for m in ("mse", "kp_md", "lpips_alex", "lpips_vgg")  # the paper's column order
               if m in shown and shown[m].notna().any()]
    table = (f"{_TABLES.get(name, name)} layout; adapter {name}, split {config.split}, {size}x{size} "
             f"{'RGB' if channels == 3 else 'grayscale'} frames, {frames_table['clip_id'].nunique()} sequence(s), "
             f"{frames_table['patient_id'].nunique()} subject(s); mean [subject-level bootstrap 95 % interval]\n\n"
             + table3_markdown(shown, columns) + f"\nMD detector: {detect.name}\n")
    if note:
        table += f"note: {note}\n"
    if out_path is not None:
        frames_table.to_csv(out_path / "per_frame.csv", index=False)
        summary.to_csv(out_path / "summary.csv", index=False)
        (out_path / "table.md").write_text(table)
        settings = {**dataclasses.asdict(config), "manifest": str(Path(manifest).resolve()), "adapter": name,
                    "pipeline": str(pipeline) if pipeline else None,
                    "pipeline_noflow": str(pipeline_noflow) if pipeline_noflow else None, "size": size,
                    "channels": channels, "detector_used": detect.name}
        (out_path / "evaluate.json").write_text(json.dumps(settings, indent=2, default=str))
    return SequenceEvaluation(frames_table, summary.reset_index(drop=True), table, detect.name, name, out_path)


# ---------------------------------------------------------------------------------------------
# command line (``echokdm evaluate`` dispatches here for sequence manifests)
# ---------------------------------------------------------------------------------------------


def add_sequence_options(parser) -> None:
    """The options ``echokdm evaluate`` has only for face and pose sequence manifests."""
    group = parser.add_argument_group("faces and poses (sequence manifests: the paper's Tables 1 and 2)")
    group.add_argument("--adapter", default=None,
                       help="keypoint adapter of a sequence manifest scored without a pipeline (face, pose)")
    group.add_argument("--detector", default="auto",
                       help="MD detector: auto (face-alignment/dlib when installed, else the packaged heatmap "
                            "detector), adapter, heatmap, openpose (JSON files under <out>/openpose), none, or a "
                            "detector folder (default: auto)")


def run_from_args(args) -> int:
    """``echokdm evaluate MANIFEST`` for a sequence manifest: evaluate and print the table."""
    from echokdm.cli._common import sampling_settings
    from echokdm.training.loop import resolve_device

    methods = tuple(m for m in args.methods if m in SEQUENCE_METHODS)
    config = SequenceEvalConfig(split=args.split, methods=methods, max_targets=args.max_targets,
                                max_clips=args.max_clips, sampling=sampling_settings(args, _paper_sampling()),
                                lpips_nets=tuple(n for n in args.lpips_nets if n in ("alex", "vgg")),
                                lpips_backbone=args.lpips_backbone, detector=getattr(args, "detector", "auto"),
                                size=args.size, device=str(resolve_device(args.device)))
    result = evaluate_sequences(args.manifest, args.pipeline, pipeline_noflow=args.pipeline_noflow,
                                adapter=getattr(args, "adapter", None), out=args.out, config=config,
                                progress=not args.no_progress)
    print(result.table)
    print(f"results: {result.out} (per_frame.csv, summary.csv, table.md, evaluate.json, generated/)")
    return 0
