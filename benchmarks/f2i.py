"""Does F2I earn its place? KDM's frames against warping, the k-curve, and a loop's time.

Own beat from the end-diastolic frame, the user's path (:func:`echokdm.generation.generate_loop`:
γ mode, K2F's flow fitted to the keypoints, frames at the source's own size, masked to the fan),
one sample per case and seed (no best-of-N), scored against the real frames (MSE, SSIM, LPIPS-Alex)
and by the "pop" (the jump from the source to the first generated frame over the median later
frame-to-frame jump, :func:`echokdm.metrics.consistency.pop_ratio`; the real beat's is the
reference). Cases: pydicom's real apical four-chamber cine (keypoints from the packaged
segmentation), at its own size and resized to 112×112 as EchoNet-Dynamic stores clips, and
held-out realistic-phantom patients (seed 7, exact keypoints), with the packaged ``kdm_phantom_112``;
``--classic`` adds held-out classic-phantom patients with ``kdm_phantom_classic_112`` (the issue's
phantom figures).

Methods (the baselines in the same table):

- ``repeat source`` (no edit) and ``TPS warp`` (the source warped through the keypoints);
- ``oracle TV-L1 warp bilinear / bicubic``: the source warped by TV-L1 flows measured from it to
  each real frame: not a method (it sees the answer) but the best a warp of the source can do;
- ``w/o F2I``: the source warped by K2F's flow (k = 0; 25 K2F steps, and 4 as the fast setting);
- ``KDM paper 200``: 200 DDIM steps, k = 100, the decoded F2I latent (the paper's sampler);
- ``KDM 25``: 25 steps, k = 12, decoded latent;  ``KDM 25 +detail``: the same with the
  warp-residual detail path (frame = warp + F2I's edit, ``SamplingSettings(detail=True)``);
- ``KDM fast``: 25 steps, k = 3, detail, F2I on 8 keyframes (``keyframes=8``);
- ``... bicubic``: the same with the shown warp sampled bicubically (``interpolation="bicubic"``);
  the other rows use the bilinear warp. (k = 1 of 25 starts
  F2I at t = 0: it returns the warp, so it is not a fast F2I.)

``--k-curve`` adds LPIPS/SSIM against k (25 steps) with and without the detail path. The timing
part generates one 32-frame 112×112 loop with the paper's sampler and with each fast setting in
the same run (median of ``--repeats`` runs each, interleaved) and reports seconds and the ratio.

    python benchmarks/f2i.py [--quick] [--classic] [--k-curve] [--patients 4] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alex_lpips, save
from kdm_real import HELD_OUT_SEED, _phantom_cases, _real_case, _real_case_112

K_CURVE = (0, 1, 3, 6, 12, 25)


def _methods(quick: bool, k_curve: bool) -> dict:
    from echokdm.generation import SamplingSettings

    paper = SamplingSettings.paper(num_inference_steps=20, k=10) if quick else SamplingSettings.paper()
    # the named rows keep the warp they were measured with, and K2F's flow everywhere (fit_region off, as the
    # README's tables were measured, whatever generation's default)
    bilinear = SamplingSettings(interpolation="bilinear", fit_region=False)
    methods = {"w/o F2I": bilinear.replace(num_inference_steps=25, k=0),
               "w/o F2I bicubic": bilinear.replace(num_inference_steps=25, k=0, interpolation="bicubic"),
               "w/o F2I, 4 K2F steps": bilinear.replace(num_inference_steps=4, k=0),
               f"KDM paper {paper.num_inference_steps}": paper,
               "KDM 25": bilinear.replace(num_inference_steps=25, k=12, detail=False, keyframes=None),
               "KDM 25 +detail": bilinear.replace(num_inference_steps=25, k=12, keyframes=None),
               "KDM fast": bilinear.replace(num_inference_steps=25, k=3, keyframes=8),
               "KDM fast bicubic": bilinear.replace(num_inference_steps=25, k=3, keyframes=8, interpolation="bicubic")}
    if k_curve:
        for k in K_CURVE[1:]:
            methods[f"k={k}/25"] = bilinear.replace(num_inference_steps=25, k=k, detail=False, keyframes=None)
            methods[f"k={k}/25 +detail"] = bilinear.replace(num_inference_steps=25, k=k, keyframes=None)
    return methods


def _predictions(case, pipe, methods: dict, seeds: list[int]):
    from echokdm.baselines.flow import tvl1_flow
    from echokdm.baselines.tps import tps_warp
    from echokdm.generation import generate_loop
    from echokdm.geometry.flow import warp_frame
    from echokdm.io.fan import apply_fan

    src, kp = case["frames"][0], case["keypoints"]
    yield "repeat source", np.broadcast_to(src, case["frames"][1:].shape)
    yield "TPS warp", apply_fan(np.stack([tps_warp(src, kp[0], kp[t]) for t in range(1, len(kp))]), case["fan"])
    # an upper bound, not a method: the source warped by TV-L1 flows measured *to the real frames*
    flows = tvl1_flow(np.broadcast_to(src, case["frames"][1:].shape), case["frames"][1:])
    for mode in ("bilinear", "bicubic"):
        yield f"oracle TV-L1 warp {mode}", apply_fan(warp_frame(src, flows, mode), case["fan"])
    for name, settings in methods.items():
        for seed in seeds:
            loop = generate_loop(pipe, src, kp[0], kp, fps=case["fps"], sampling=settings.replace(seed=seed),
                                 fan_mask=case["fan"], progress=False, motion="own")
            yield name, loop.frames[1:]


def _timing(pipe, repeats: int, quick: bool) -> dict:
    """Seconds for one 32-frame 112×112 loop, each setting, interleaved runs (median)."""
    import torch

    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(np.random.default_rng(HELD_OUT_SEED), 0, style="realistic"), n_beats=2.0,
                         fps=25.0, size=112, seed=HELD_OUT_SEED)
    src, kp = clip.frames[0], clip.keypoints[:33]
    settings = {"paper": dict(num_inference_steps=20 if quick else 200, k=10 if quick else 100, detail=False),
                "25 steps +detail": dict(num_inference_steps=25, k=12, detail=True),
                "fast": dict(num_inference_steps=25, k=3, detail=True, keyframes=8, batch_size=32),
                "fast, every frame": dict(num_inference_steps=25, k=3, detail=True, batch_size=32),
                "fast bicubic": dict(num_inference_steps=25, k=3, detail=True, keyframes=8, batch_size=32,
                                     interpolation="bicubic")}
    times: dict[str, list[float]] = {name: [] for name in settings}
    pipe(src, kp[0], kp[1:3], num_inference_steps=2, k=1, progress=False)  # warm-up
    for _ in range(repeats):
        for name, kwargs in settings.items():
            start = time.perf_counter()
            pipe(src, kp[0], kp[1:], fit_keypoints=True, generator=torch.Generator().manual_seed(0), progress=False,
                 **{"batch_size": 16, **kwargs})
            times[name].append(time.perf_counter() - start)
    out = {f"seconds_{name.replace(' ', '_').replace(',', '')}": float(np.median(t)) for name, t in times.items()}
    out["speedup_fast_vs_paper"] = out["seconds_paper"] / out["seconds_fast"]
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from echokdm.metrics.consistency import pop_ratio
    from echokdm.metrics.image import mse, ssim
    from echokdm.pipelines import KDMPipeline
    from echokdm.pretrained import pretrained_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 phantom patient, 1 seed, 20 paper steps, 1 timing run")
    parser.add_argument("--patients", type=int, default=4, help="held-out phantom patients per style (default 4)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds (default 0 1)")
    parser.add_argument("--classic", action="store_true", help="also the classic phantom with the classic pipeline")
    parser.add_argument("--k-curve", action="store_true", help="LPIPS/SSIM against k, with and without detail")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs per setting (median; default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                        help="only these generated methods (the no-edit and TPS baselines always run)")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing part")
    parser.add_argument("--lpips-backbone", default=None, help="folder with alexnet_features.pth (offline LPIPS)")
    parser.add_argument("--pipeline", default=None, metavar="FOLDER",
                        help="a KDM pipeline folder instead of the packaged kdm_phantom_112")
    parser.add_argument("--tag", default=None, help="suffix of the results file (e.g. the pipeline's training steps)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.quick else args.seeds
    patients = 1 if args.quick else args.patients
    lpips = alex_lpips(args.lpips_backbone)
    methods = _methods(args.quick, args.k_curve)
    if args.methods:
        unknown = sorted(set(args.methods) - set(methods))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {sorted(methods)}")
        methods = {name: methods[name] for name in args.methods}
    pipes = {"packaged": KDMPipeline.from_pretrained(args.pipeline or pretrained_path("kdm_phantom_112"))}
    real = _real_case()
    groups = [("packaged", [real, _real_case_112(real), *_phantom_cases(patients, "realistic")])]
    if args.classic:
        pipes["classic"] = KDMPipeline.from_pretrained(pretrained_path("kdm_phantom_classic_112"))
        groups.append(("classic", list(_phantom_cases(patients, "classic"))))
    scores: dict[tuple[str, str], dict[str, list[float]]] = {}
    start = time.perf_counter()
    for pipe_name, cases in groups:
        for case in cases:
            real = case["frames"][1:]
            ref = scores.setdefault((case["name"], "real beat"), {"pop": []})
            ref["pop"].append(pop_ratio((np.diff(case["frames"], axis=0) ** 2).mean(axis=(1, 2))))
            for method, frames in _predictions(case, pipes[pipe_name], methods, seeds):
                entry = scores.setdefault((case["name"], method), {"mse": [], "ssim": [], "lpips_alex": [], "pop": []})
                entry["mse"].append(float(np.mean(mse(frames, real))))
                entry["ssim"].append(float(np.mean(ssim(frames, real))))
                loop = np.concatenate([case["frames"][:1], frames])
                entry["pop"].append(pop_ratio(((loop[1:] - loop[:-1]) ** 2).mean(axis=(1, 2))))
                if lpips is not None:
                    entry["lpips_alex"].append(float(np.mean(lpips(np.ascontiguousarray(frames), real))))
            print(f"  {case['name']} done ({time.perf_counter() - start:.0f} s)", flush=True)
    figures = {"seeds": len(seeds), "phantom_patients": patients}
    print(f"\n{'case':<18} {'method':<22} {'MSE':>8} {'SSIM':>7} {'LPIPS':>7} {'pop':>6}")
    for (case, method), entry in scores.items():
        row = {key: (round(float(np.nanmean(v)), 4) if v else None) for key, v in entry.items()}
        print(f"{case:<18} {method:<22} {str(row.get('mse')):>8} {str(row.get('ssim')):>7} "
              f"{str(row.get('lpips_alex')):>7} {str(row.get('pop')):>6}")
        for key, value in row.items():
            figures[f"{case.replace(' ', '_')}__{method.replace(' ', '_')}__{key}"] = value
    if not args.no_timing:
        timing = _timing(pipes["packaged"], 1 if args.quick else args.repeats, args.quick)
        print("\none 32-frame 112x112 loop, " + ", ".join(f"{k}: {v:.2f}" for k, v in timing.items()))
        figures.update(timing)
    suffix = "_" + "_".join(m.replace(" ", "-").replace("/", "") for m in args.methods) if args.methods else ""
    suffix += f"_{args.tag}" if args.tag else ""
    save(("f2i_quick" if args.quick else "f2i") + suffix, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
