"""Generation speed and quality, all in one run so that the ratios compare like with like.

    python benchmarks/generation.py [--quick] [--device cpu|cuda] [--mixed-precision bf16] [--compile]

What is measured (default settings = the demo's: γ mode, 200 DDIM steps, k = 100, batch 16):

* **speed at 112×112**, the packaged checkpoint (``echokdm/checkpoints/kdm_phantom_112``):
  seconds per 32-frame loop and per generated frame, for several batch sizes; bf16 autocast
  against float32 (time, and the largest frame difference);
* **speed at 224×224**, an *untrained* model of the ``configs/echo/kdm_224_paper.yaml``
  architecture (random weights: timing only, its frames mean nothing). On a CPU the 200-step loop
  (about half an hour) is not run: it is predicted from timed pieces (one K2F and one F2I network
  step, and the fixed cost of a K2F and an F2I call: the loop is linear in the steps), a model
  checked at 112 where the loop is also measured (``loop_112_seconds_predicted_from_pieces``).
  On a GPU the full loop runs;
* **per-frame vs γ mode** (appendix B): time ratio and quality against the real frames of
  held-out phantom patients (seed 1000, never seen in training: ED source, the next 32 frames as
  targets);
* **DDIM steps vs quality**: 25, 50, 100, 200 steps (k = steps / 2), same patients: MSE, SSIM and
  LPIPS-Alex (when ``$ECHOKDM_LPIPS_WEIGHTS`` names the backbone folder, or the shared weights are
  found), and seconds per loop;
* **peak memory**: the process's peak resident memory (``ru_maxrss``, never goes down: read after
  each stage, in the order run) on a CPU; ``torch.cuda.max_memory_allocated`` per stage on a GPU.

Results: ``benchmarks/results/generation.json`` (``generation_quick.json`` with ``--quick``: one
patient, an 8-frame loop, few steps; a smoke run, not figures to quote). The machine's load
average is recorded with the figures: on a shared machine, timings are only comparable at equal load.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "echokdm" / "checkpoints" / "kdm_phantom_112"
PAPER_CONFIG = ROOT / "configs" / "echo" / "kdm_224_paper.yaml"
SHARED_LPIPS = ROOT.parent / "shared" / "weights" / "lpips"
HELD_OUT_SEED = 1000


class Settings:
    """What one run measures (``--quick`` shrinks everything to a smoke run)."""

    def __init__(self, args: argparse.Namespace):
        quick = args.quick
        self.device, self.quick = args.device, quick
        self.patients = 1 if quick else args.patients
        self.frames = 8 if quick else 32
        self.steps, self.k = (10, 5) if quick else (200, 100)
        self.sweep = (4, 10) if quick else (25, 50, 100, 200)
        self.batch_sizes = (8,) if quick else (8, 16, 32)
        self.batch_size = args.batch_size
        self.mixed_precision, self.compile = args.mixed_precision, args.compile


# --------------------------------------------------------------------------------------------
# inputs, timing, memory
# --------------------------------------------------------------------------------------------


def _cases(n_patients: int, n_frames: int, size: int = 112) -> list[dict]:
    """Held-out phantom loops: ED source frame and keypoints, the next ``n_frames`` real frames and keypoints."""
    from echokdm.data.phantom import sample_patient, simulate_clip

    cases = []
    for i in range(n_patients):
        clip = simulate_clip(sample_patient(HELD_OUT_SEED, i), n_beats=2.0, fps=50.0, size=size, decorrelation=0.03,
                             noise=0.002, seed=HELD_OUT_SEED)
        ed = int(clip.ed_frames[0])
        targets = np.arange(ed + 1, min(ed + 1 + n_frames, clip.n_frames))
        cases.append({"source": clip.frames[ed], "source_kp": clip.keypoints[ed], "frames": clip.frames[targets],
                      "keypoints": clip.keypoints[targets]})
    return cases


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _generate(pipe, case: dict, settings: Settings, **overrides) -> tuple[np.ndarray, float]:
    """(frames ``(T, H, W)``, seconds) of one loop; options default to the run's settings."""
    import torch

    options = {"mode": "gamma", "k": settings.k, "num_inference_steps": settings.steps,
               "batch_size": settings.batch_size, "mixed_precision": settings.mixed_precision,
               "compile": settings.compile}
    options.update(overrides)
    _sync(settings.device)
    start = time.perf_counter()
    out = pipe(case["source"], case["source_kp"], case["keypoints"], generator=torch.Generator().manual_seed(0),
               progress=False, **options)
    _sync(settings.device)
    return out.frames, time.perf_counter() - start


def _peak_memory_mb(device: str) -> float:
    """Peak memory so far: CUDA allocations since the last reset, else the process's peak RSS."""
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


def _reset_memory(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()


def _quality(frames: np.ndarray, reference: np.ndarray, lpips) -> dict[str, float]:
    from echokdm.metrics.image import mse, ssim

    scores = {"mse": float(np.mean(mse(frames, reference))), "ssim": float(np.mean(ssim(frames, reference)))}
    if lpips is not None:
        scores["lpips_alex"] = float(np.mean(lpips(frames, reference)))
    return scores


def _mean_scores(rows: list[dict]) -> dict[str, float]:
    return {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}


def _lpips(device: str):
    """LPIPS-Alex from ``$ECHOKDM_LPIPS_WEIGHTS`` or the shared weights folder; None when neither exists."""
    from echokdm.metrics.lpips import LPIPS_WEIGHTS_ENV, LPIPSMetric

    folder = os.environ.get(LPIPS_WEIGHTS_ENV) or (str(SHARED_LPIPS) if SHARED_LPIPS.is_dir() else None)
    return LPIPSMetric("alex", folder, device=device) if folder else None


# --------------------------------------------------------------------------------------------
# the stages
# --------------------------------------------------------------------------------------------


def _speed_112(pipe, case: dict, settings: Settings, figures: dict) -> np.ndarray:
    """Loop time at 112 for each batch size, bf16 against float32; returns the default loop's frames."""
    _generate(pipe, {**case, "keypoints": case["keypoints"][:2]}, settings, num_inference_steps=4, k=2)  # warm-up
    _reset_memory(settings.device)
    frames = None
    for batch in settings.batch_sizes:
        out, seconds = _generate(pipe, case, settings, batch_size=batch)
        figures[f"loop_112_seconds_batch{batch}"] = round(seconds, 2)
        if batch == settings.batch_size or frames is None:
            frames, figures["loop_112_seconds"] = out, round(seconds, 2)
    n = len(case["keypoints"])
    figures["loop_112_frames"] = n
    figures["seconds_per_frame_112"] = round(figures["loop_112_seconds"] / n, 3)
    figures["loops_per_second_112"] = round(1.0 / figures["loop_112_seconds"], 4)
    figures["peak_memory_mb_112"] = _peak_memory_mb(settings.device)
    model = _loop_model(pipe, case, settings)
    figures.update({f"loop_112_{key}": value for key, value in model.items() if key != "loop_seconds"})
    figures["loop_112_seconds_predicted_from_pieces"] = model["loop_seconds"]
    if settings.mixed_precision == "no":
        bf16, seconds = _generate(pipe, case, settings, mixed_precision="bf16")
        figures["loop_112_seconds_bf16"] = round(seconds, 2)
        figures["bf16_speedup"] = round(figures["loop_112_seconds"] / seconds, 2)
        figures["bf16_max_abs_frame_difference"] = float(f"{np.abs(bf16 - frames).max():.3g}")
        figures["bf16_mean_abs_frame_difference"] = float(f"{np.abs(bf16 - frames).mean():.3g}")
    return frames


def _pipeline_224(device: str):
    """A KDMPipeline of the kdm_224_paper.yaml architecture with random (seeded) weights."""
    import torch

    from echokdm.models.kdm import ConditionalUNet, make_autoencoder
    from echokdm.pipelines import KDMPipeline
    from echokdm.training.kdm import load_kdm_config

    config = load_kdm_config(PAPER_CONFIG)
    torch.manual_seed(0)
    a = config.autoencoder.model
    vae = make_autoencoder(a.block_out_channels, a.latent_channels, config.data.size, a.layers_per_block,
                           a.norm_num_groups)
    down = 2 ** (len(a.block_out_channels) - 1)

    def unet(stage, sample_channels, condition_channels):
        m = stage.model
        extra = 3 if getattr(m, "displacement_sigma", None) else 0
        return ConditionalUNet(sample_channels=sample_channels, condition_channels=condition_channels + extra,
                               condition_embed_channels=m.condition_embed_channels, downsample=down,
                               sample_size=config.data.size // down, block_out_channels=m.block_out_channels,
                               layers_per_block=m.layers_per_block, attention_levels=m.attention_levels,
                               norm_num_groups=m.norm_num_groups, flow_scale=m.flow_scale or 1.0,
                               prediction_type=stage.prediction_type, **(
                                   {"displacement_sigma": m.displacement_sigma} if extra else {}))

    k2f, f2i = unet(config.k2f, 2, 7), unet(config.f2i, a.latent_channels, 6)
    pipe = KDMPipeline(k2f.eval(), f2i.eval(), vae.eval()).to(device)
    params = sum(p.numel() for m in (k2f, f2i, vae) for p in m.parameters())
    return pipe, config, params


def _best(fn, device: str, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _loop_model(pipe, case: dict, settings: Settings) -> dict:
    """The γ loop's cost from timed pieces (the loop is linear in the DDIM steps).

    K2F: one 1-step call (rendering, noise, decoding) plus ``steps - 1`` network steps at batch 1;
    F2I, per batch of frames: one call with k = 1 (warp, condition, autoencoder in and out, one
    step) plus ``k - 1`` network steps at that batch size.
    """
    import torch

    n, batch, device = len(case["keypoints"]), min(settings.batch_size, len(case["keypoints"])), settings.device
    h, w = case["source"].shape
    k2f, f2i = pipe.k2f, pipe.f2i
    d = k2f.config.downsample
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16 if settings.mixed_precision == "bf16"
                              else torch.float16, enabled=settings.mixed_precision != "no")
    noise = torch.zeros(1, 2, h // d, w // d)
    t_k2f1 = _best(lambda: pipe.flow_pipe(case["source"], case["source_kp"], case["keypoints"][-1],
                                          num_inference_steps=1, noise=noise), device, 1)
    x, cond = torch.randn(1, 2, h // d, w // d, device=device), torch.randn(1, k2f.config.condition_channels, h, w,
                                                                           device=device)
    with torch.inference_mode(), autocast:
        t_k2f = _best(lambda: k2f(x, 500, cond), device)  # Ψ included: the K2F pipeline applies it at every step
        z = torch.randn(batch, f2i.config.sample_channels, h // d, w // d, device=device)
        emb = f2i.embed(torch.randn(batch, f2i.config.condition_channels, h, w, device=device))
        t_f2i = _best(lambda: f2i(z, 500, embedded=emb), device)
    flows = np.zeros((batch, 2, h, w), np.float32)
    t_f2i1 = _best(lambda: pipe.image_pipe(case["source"], case["keypoints"][:batch], flows, k=1,
                                           num_inference_steps=settings.steps,
                                           mixed_precision=settings.mixed_precision), device, 1)
    batches = math.ceil(n / batch)
    k2f_total = t_k2f1 + (settings.steps - 1) * t_k2f
    f2i_total = batches * (t_f2i1 + (settings.k - 1) * t_f2i)
    return {"k2f_step_ms": round(1000 * t_k2f, 2), "f2i_step_ms_per_frame": round(1000 * t_f2i / batch, 2),
            "f2i_fixed_seconds_per_batch": round(t_f2i1 - t_f2i, 3), "k2f_seconds": round(k2f_total, 2),
            "f2i_seconds": round(f2i_total, 2), "loop_seconds": round(k2f_total + f2i_total, 2)}


def _speed_224(settings: Settings, figures: dict) -> None:
    """Loop time at 224: measured on a GPU; on a CPU predicted from timed pieces (:func:`_loop_model`)."""
    pipe, config, params = _pipeline_224(settings.device)
    figures["model_224_parameters_millions"] = round(params / 1e6, 1)
    figures["model_224_untrained"] = True
    case = _cases(1, 2 if settings.quick else settings.frames, size=config.data.size)[0]
    _reset_memory(settings.device)
    model = _loop_model(pipe, case, settings)
    figures.update({f"loop_224_{key}": value for key, value in model.items() if key != "loop_seconds"})
    if settings.device == "cuda" and not settings.quick:
        _, seconds = _generate(pipe, case, settings)
        figures["loop_224_seconds"] = round(seconds, 2)
    else:
        seconds = figures["loop_224_seconds"] = model["loop_seconds"]
        figures["loop_224_predicted_from_pieces"] = True
    n = len(case["keypoints"])
    figures["loop_224_frames"] = n
    figures["seconds_per_frame_224"] = round(seconds / n, 3)
    figures["loops_per_second_224"] = round(1.0 / seconds, 5)
    figures["peak_memory_mb_224"] = _peak_memory_mb(settings.device)


def _modes(pipe, cases: list[dict], settings: Settings, lpips, figures: dict) -> None:
    """Per-frame K2F against one γ-scaled K2F flow: time ratio and quality against the real frames."""
    rows: dict[str, list] = {"gamma": [], "per_frame": []}
    seconds = {"gamma": 0.0, "per_frame": 0.0}
    for case in cases:
        for mode in ("gamma", "per_frame"):
            frames, t = _generate(pipe, case, settings, mode=mode)
            seconds[mode] += t
            rows[mode].append(_quality(frames, case["frames"], lpips))
    for mode, scores in rows.items():
        for key, value in _mean_scores(scores).items():
            figures[f"{mode}_{key}"] = value
        figures[f"{mode}_seconds_per_loop"] = round(seconds[mode] / len(cases), 2)
    figures["per_frame_over_gamma_time"] = round(seconds["per_frame"] / seconds["gamma"], 2)


def _sweep(pipe, cases: list[dict], settings: Settings, lpips, figures: dict) -> None:
    """DDIM steps (k = steps / 2) against quality and time, γ mode."""
    table = []
    for steps in settings.sweep:
        rows, total = [], 0.0
        for case in cases:
            frames, t = _generate(pipe, case, settings, num_inference_steps=steps, k=steps // 2)
            total += t
            rows.append(_quality(frames, case["frames"], lpips))
        table.append({"steps": steps, "k": steps // 2, "seconds_per_loop": round(total / len(cases), 2),
                      **_mean_scores(rows)})
    figures["ddim_sweep"] = table
    # the warp alone (k = 0, "w/o F2I"): what the diffusion steps add
    rows = [_quality(_generate(pipe, case, settings, k=0)[0], case["frames"], lpips) for case in cases]
    figures["warp_only_k0"] = _mean_scores(rows)


def _load_112(settings: Settings):
    from echokdm.pipelines import KDMPipeline

    if not PACKAGED.is_dir():
        raise SystemExit(f"{PACKAGED}: the packaged pipeline is missing")
    return KDMPipeline.from_pretrained(PACKAGED).to(settings.device)


def _device(name: str) -> str:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 patient, 8 frames, 10 DDIM steps")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to generate (default cpu)")
    parser.add_argument("--patients", type=int, default=3, help="held-out phantom patients (default 3)")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per batch (default 16, the demo's)")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"),
                        help="autocast for the denoising networks (default no)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the F2I network")
    parser.add_argument("--skip-224", action="store_true", help="leave out the 224×224 timing")
    args = parser.parse_args(argv)
    args.device = _device(args.device)
    settings = Settings(args)

    import torch

    started = time.perf_counter()
    figures: dict = {"device": settings.device, "torch_threads": torch.get_num_threads(),
                     "load_average_start": [round(x, 2) for x in os.getloadavg()],
                     "ddim_steps": settings.steps, "k": settings.k, "mode": "gamma", "batch_size": settings.batch_size,
                     "mixed_precision": settings.mixed_precision, "compile": settings.compile,
                     "pipeline_112": str(PACKAGED.relative_to(ROOT))}
    if settings.device == "cuda":
        figures["gpu"] = torch.cuda.get_device_name()
    lpips = _lpips(settings.device)
    figures["lpips"] = "alex" if lpips is not None else "not available (set ECHOKDM_LPIPS_WEIGHTS)"
    pipe = _load_112(settings)
    cases = _cases(settings.patients, settings.frames)
    figures["patients"] = len(cases)
    _speed_112(pipe, cases[0], settings, figures)
    _modes(pipe, cases, settings, lpips, figures)
    _sweep(pipe, cases, settings, lpips, figures)
    if not args.skip_224:
        _speed_224(settings, figures)
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    figures["target_loop_112_seconds"] = 30
    figures["target_met"] = bool(figures["loop_112_seconds"] <= 30) if not settings.quick else None
    save("generation_quick" if settings.quick else "generation", figures)
    _print_sweep(figures)
    return 0


def _print_sweep(figures: dict) -> None:
    print("DDIM steps vs quality (γ mode, mean over patients):")
    for row in figures["ddim_sweep"]:
        print("  " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if not math.isnan(figures.get("per_frame_over_gamma_time", math.nan)):
        print(f"per-frame K2F / γ-scaled K2F time: {figures['per_frame_over_gamma_time']}x")


if __name__ == "__main__":
    sys.exit(main())
