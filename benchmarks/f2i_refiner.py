"""A one-step F2I refiner against the warp: does a frame-resolution network beat it, on the phantom and on real echo?

The experiment behind README "Does F2I earn its place?" (the refiner paragraph). Steps:

1. **Pairs.** Realistic-phantom patients (``--train-seed``, default 0, the packaged KDM's own
   training seed; 60 patients): the own beat from the first ED and from the first ES frame through
   :func:`echokdm.generation.generate_loop` with ``k = 0`` (the source warped by the packaged K2F
   flow fitted to the exact keypoints: the "w/o F2I" frames a user gets), paired with the true frames.
2. **Training.** :class:`echokdm.models.refiner.WarpRefiner` (16-32-64 U-Net, zero-initialised
   residual on the warp) on 64×64 crops, batch 8, AdamW 2e-4, L1 + LPIPS-VGG (LPIPS-Alex, the
   metric reported, is not a training loss); with ``--look`` the scanner look of
   :func:`echokdm.echo.augment.random_ultrasound_look` is drawn per pair (source and target side by
   side, the warp recomputed from the changed source), so that it cannot lean on the phantom's texture.
3. **Evaluation** (held out): 4 realistic-phantom patients of seed 7 (the seed of
   ``benchmarks/f2i.py``) and pydicom's real apical four-chamber cine (keypoints from
   ``seg_phantom_112``), at its own size (the refiner's edit made at 112 and added to the
   full-resolution warp, as the detail path does) and resized to 112×112 as EchoNet-Dynamic stores
   its clips; own beat from ED, sampling seeds 0 and 1; MSE / SSIM / LPIPS-Alex against the real
   frames, with repeating the source, the warp (w/o F2I) and the fast KDM (k = 3 of 25, every
   frame) in the same table, each with and without the refiner.

    python benchmarks/f2i_refiner.py [--look] [--steps 3000] [--threads 2] [--lpips-backbone DIR]
    python benchmarks/f2i_refiner.py --quick      # a smoke run (3 patients, 20 steps, L1 only)

About 20 minutes on 2 busy CPU cores at the defaults (pairs 1 min, training 17 min, evaluation 3 min).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, alex_lpips, save
from kdm_real import _phantom_cases, _real_case, _real_case_112

SIZE = 112


def make_pairs(pipe, seed: int, patients: int) -> dict[str, np.ndarray]:
    """(source, warp, flow, target) frames of own beats from ED and ES of ``patients`` realistic-phantom patients."""
    from echokdm.data.phantom import sample_patient, simulate_clip
    from echokdm.generation import SamplingSettings, generate_loop

    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"source": [], "warp": [], "flow": [], "target": []}
    for i in range(patients):
        clip = simulate_clip(sample_patient(rng, i, style="realistic"), n_beats=1.5, fps=25.0, size=SIZE,
                             seed=seed * 100 + i)
        starts = [int(clip.ed_frames[0]) if len(clip.ed_frames) else 0,
                  int(clip.es_frames[0]) if len(clip.es_frames) else clip.n_frames // 3]
        for s0 in starts:
            frames, kp = clip.frames[s0:s0 + 26], clip.keypoints[s0:s0 + 26]
            if len(frames) < 8:
                continue
            loop = generate_loop(pipe, frames[0], kp[0], kp, fps=clip.fps,
                                 sampling=SamplingSettings(k=0, seed=i, fit_region=False),
                                 fan_mask=clip.fan_mask, progress=False, motion="own")
            parts["source"].append(np.broadcast_to(frames[0], frames[1:].shape))
            parts["warp"].append(loop.frames[1:])
            parts["flow"].append(loop.flows[1:])
            parts["target"].append(frames[1:])
    return {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}


def train(pairs: dict[str, np.ndarray], steps: int, *, look: bool, lpips_backbone: str | None, quick: bool):
    """A :class:`WarpRefiner` trained on ``pairs`` (see the module docstring); returns it in eval mode."""
    import torch
    import torch.nn.functional as F

    from echokdm.echo.augment import LookAugmentation, random_ultrasound_look
    from echokdm.geometry.flow import warp
    from echokdm.models.refiner import WarpRefiner

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    perceptual = None
    if not quick:
        from echokdm.metrics.lpips import LPIPSMetric

        perceptual = LPIPSMetric("vgg", lpips_backbone).model.eval()
        for p in perceptual.parameters():
            p.requires_grad_(False)
    net = WarpRefiner()
    opt = torch.optim.AdamW(net.parameters(), 2e-4, weight_decay=1e-4)
    n, crop, start = len(pairs["warp"]), 64, time.perf_counter()
    for step in range(1, steps + 1):
        idx = np.sort(rng.choice(n, min(8, n), replace=False))
        s, t = (torch.from_numpy(pairs[k][idx])[:, None] for k in ("source", "target"))
        f = torch.from_numpy(pairs["flow"][idx])
        if look:  # one look per pair (side by side), the warp remade from the changed source
            both = random_ultrasound_look(torch.cat([s, t], -1), None, gen, LookAugmentation(p_noisy_outside=0.3))
            s, t = both[..., :SIZE].contiguous(), both[..., SIZE:].contiguous()
            w = warp(s, f).clamp(0, 1)
        else:
            w = torch.from_numpy(pairs["warp"][idx])[:, None]
        if rng.random() < 0.5:  # left-right flip: dx changes sign
            w, s, t, f = w.flip(-1), s.flip(-1), t.flip(-1), f.flip(-1) * torch.tensor([-1.0, 1.0])[None, :, None, None]
        y0, x0 = rng.integers(0, SIZE - crop + 1, 2)
        w, s, t, f = (a[..., y0:y0 + crop, x0:x0 + crop] for a in (w, s, t, f))
        out = net(w, s, f)
        loss = F.l1_loss(out, t)
        if perceptual is not None:
            loss = loss + perceptual(out.expand(-1, 3, -1, -1) * 2 - 1, t.expand(-1, 3, -1, -1) * 2 - 1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps:
            eta = (time.perf_counter() - start) / step * (steps - step)
            print(f"  step {step}/{steps}  loss {loss.item():.4f}  ETA {eta / 60:.1f} min", flush=True)
    return net.eval()


class _Refined:
    """A KDM pipeline whose F2I output goes through ``refiner`` (on ``every`` frame; ``None``: off)."""

    def __init__(self, pipe):
        import echokdm.pipelines.kdm as kdm

        self.refiner = None
        image_call = kdm.FlowToImagePipeline.__call__
        outer = self

        def call(pipeline, source_frame, target_keypoints, flow, **kwargs):
            import torch

            frames = image_call(pipeline, source_frame, target_keypoints, flow, **kwargs)
            if outer.refiner is None:
                return frames
            with torch.inference_mode():
                f = torch.as_tensor(np.asarray(flow), dtype=torch.float32)
                f = f[None] if f.ndim == 3 else f
                w = torch.as_tensor(np.asarray(frames), dtype=torch.float32)[:, None]
                s = torch.as_tensor(np.asarray(source_frame), dtype=torch.float32).reshape(1, 1, SIZE, SIZE)
                return outer.refiner(w, s, f)[:, 0].numpy()

        pipe.image_pipe.__class__ = type("RefinedF2I", (kdm.FlowToImagePipeline,), {"__call__": call})
        self.pipe = pipe


def main(argv: list[str] | None = None) -> int:
    import torch

    from echokdm.generation import SamplingSettings, generate_loop
    from echokdm.metrics.image import mse, ssim
    from echokdm.pipelines import KDMPipeline
    from echokdm.pretrained import pretrained_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 patients, 20 steps, L1 only, 1 seed")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--patients", type=int, default=60, help="training patients (default 60)")
    parser.add_argument("--train-seed", type=int, default=0, help="phantom seed of the training patients (default 0)")
    parser.add_argument("--look", action="store_true", help="random scanner look per training pair")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--lpips-backbone", default=None, help="folder with alexnet/vgg16_features.pth (offline LPIPS)")
    parser.add_argument("--save", default=None, metavar="FOLDER", help="also save the trained refiner there")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    patients, steps = (3, 20) if args.quick else (args.patients, args.steps)
    seeds = [0] if args.quick else [0, 1]
    pipe = KDMPipeline.from_pretrained(pretrained_path("kdm_phantom_112"))
    start = time.perf_counter()
    pairs = make_pairs(pipe, args.train_seed, patients)
    print(f"{len(pairs['warp'])} training pairs from {patients} patients ({time.perf_counter() - start:.0f} s)")
    refiner = train(pairs, steps, look=args.look, lpips_backbone=args.lpips_backbone, quick=args.quick)
    if args.save:
        refiner.save_pretrained(args.save)
    lpips = alex_lpips(args.lpips_backbone)
    refined = _Refined(pipe)
    real = _real_case()
    cases = [real, _real_case_112(real), *_phantom_cases(1 if args.quick else 4)]
    methods = {"w/o F2I": SamplingSettings(k=0, keyframes=None, fit_region=False),  # as measured in the README
               "KDM k=3": SamplingSettings(keyframes=None, fit_region=False)}
    scores: dict[tuple[str, str], list[tuple[float, float, float]]] = {}

    def score(case_name, method, frames, truth):
        value = float(np.mean(lpips(np.ascontiguousarray(frames), truth))) if lpips is not None else float("nan")
        scores.setdefault((case_name, method), []).append(
            (float(np.mean(mse(frames, truth))), float(np.mean(ssim(frames, truth))), value))

    for case in cases:
        src, kp, truth = case["frames"][0], case["keypoints"], case["frames"][1:]
        score(case["name"], "repeat source", np.broadcast_to(src, truth.shape), truth)
        for name, settings in methods.items():
            for on in (False, True):
                refined.refiner = refiner if on else None
                for seed in seeds:
                    loop = generate_loop(refined.pipe, src, kp[0], kp, fps=case["fps"], progress=False,
                                         sampling=settings.replace(seed=seed), fan_mask=case["fan"], motion="own")
                    score(case["name"], name + (" + refiner" if on else ""), loop.frames[1:], truth)
    figures = {"look": args.look, "steps": steps, "patients": patients, "pairs": len(pairs["warp"]),
               "seeds": len(seeds)}
    print(f"\n{'case':<18} {'method':<22} {'MSE':>8} {'SSIM':>7} {'LPIPS':>7}")
    for (case, method), values in scores.items():
        m, s, p = np.nanmean(values, axis=0)
        print(f"{case:<18} {method:<22} {m:8.4f} {s:7.3f} {p:7.3f}")
        key = f"{case.replace(' ', '_')}__{method.replace(' ', '_')}"
        figures.update({f"{key}__mse": round(m, 5), f"{key}__ssim": round(s, 4), f"{key}__lpips_alex": round(p, 4)})
    name = "f2i_refiner" + ("_quick" if args.quick else "") + ("_look" if args.look else "")
    save(name, figures)
    print(f"(results in {RESULTS})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
