"""How close do EF-targeted loops come to their EF? The distribution on held-out phantom patients.

For each held-out phantom patient (seed 1000, never seen by the demo checkpoints) the keypoints
are found by the segmentation model (as ``echokdm demo`` and ``echokdm generate`` do on scanner
files), the ED frame is the source, and a synthetic beat is built for each target EF
(:func:`echokdm.generation.synthetic_motion`). Each loop is generated with the demo settings (γ
mode, 200 DDIM steps, k = 100) and its EF re-measured by the segmentation model on the generated
frames. To show where an error comes from, the same re-measurement is made on

* ``real``: the patient's real frames (the measurement's own error against the phantom's truth),
* ``tps``: the source warped by a thin-plate spline through the target keypoints (the error of
  measuring a warped frame when the keypoints move exactly as asked),
* ``k2f_warp``: the source warped by the loop's K2F flows ("w/o F2I"),
* ``kdm``: the generated loop.

    python benchmarks/ef_targets.py            # 12 patients x EF 30/45/60, ~15 min on 2 cores
    python benchmarks/ef_targets.py --quick    # 2 patients x EF 45, 20 DDIM steps

Writes ``benchmarks/results/ef_targets.json`` (figures) and ``ef_targets.csv`` (every loop).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

HELD_OUT_SEED = 1000


def _distribution(errors: list[float]) -> dict:
    e = np.asarray([x for x in errors if x is not None and np.isfinite(x)], dtype=np.float64)
    if not len(e):
        return {"n": 0}
    a = np.abs(e)
    return {"n": int(len(e)), "mean_error": round(float(e.mean()), 2), "mean_abs_error": round(float(a.mean()), 2),
            "median_abs_error": round(float(np.median(a)), 2), "p90_abs_error": round(float(np.percentile(a, 90)), 2),
            "max_abs_error": round(float(a.max()), 2), "within_5": round(float((a <= 5).mean()), 3)}


def _patient(index: int, seg, fps: float):
    """A held-out phantom clip as a Cine, its segmentation keypoints, ED index and heart rate."""
    from echokdm.data.phantom import sample_patient, simulate_clip
    from echokdm.generation import clip_keypoints
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

    clip = simulate_clip(sample_patient(HELD_OUT_SEED, index), n_beats=1.3, size=112, fps=fps)
    cine = clip.to_cine()
    kp = clip_keypoints(cine, seg)
    cycle = cardiac_cycle(simpson_volume(kp, cine.spacing_mm), cine.fps)
    ed = int(cycle.ed_frames[0]) if len(cycle.ed_frames) else 0
    return clip, cine, kp, ed


def run(args) -> dict:
    import torch

    from echokdm.baselines.tps import tps_warp
    from echokdm.generation import generate_loop, synthetic_motion
    from echokdm.generation.loop import _detect_keypoints, load_segmentation, loop_ef
    from echokdm.geometry.flow import warp
    from echokdm.pipelines import KDMPipeline
    from echokdm.pretrained import pretrained_path

    torch.set_num_threads(args.threads)
    pipe = KDMPipeline.from_pretrained(args.pipeline or pretrained_path("kdm_phantom_112"))
    seg = load_segmentation(args.segmentation or pretrained_path("seg_phantom_112"))

    def measured(frames, spacing):
        return loop_ef(_detect_keypoints(seg, frames), spacing)

    rows = []
    start = time.perf_counter()
    for i in range(args.patients):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clip, cine, kp, ed = _patient(i, seg, args.fps)
        real_ef = measured(cine.frames, cine.spacing_mm)
        for target in args.efs:
            targets = synthetic_motion(kp[ed], target, clip.patient.heart_rate_bpm, cine.fps, 1.0)
            loop = generate_loop(pipe, cine.frames[ed], kp[ed], targets, fps=cine.fps, spacing_mm=cine.spacing_mm,
                                 mode="gamma", k=args.k, num_inference_steps=args.steps, seed=0, segmentation=seg,
                                 progress=False, motion="synthetic")
            source = cine.frames[ed]
            tps = np.stack([tps_warp(source, kp[ed], t) for t in targets])
            k2f = warp(np.repeat(source[None, None], len(loop.flows), 0), loop.flows)[:, 0]
            row = {"patient": i, "ef_truth": clip.ef, "ef_real_measured": real_ef, "ef_target": loop.ef_target,
                   "ef_tps": measured(tps, cine.spacing_mm), "ef_k2f_warp": measured(k2f, cine.spacing_mm),
                   "ef_kdm": loop.ef_achieved, "frames": loop.n_frames}
            rows.append(row)
            print(f"patient {i} target {row['ef_target']:.1f}: tps {row['ef_tps']:.1f}  k2f warp "
                  f"{row['ef_k2f_warp']:.1f}  kdm {row['ef_kdm']:.1f}  (real: truth {clip.ef:.1f}, measured "
                  f"{real_ef:.1f})", flush=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    table.to_csv(RESULTS / f"ef_targets{'_quick' if args.quick else ''}.csv", index=False)
    per_patient = table.drop_duplicates("patient")
    figures = {"patients": args.patients, "target_efs": list(args.efs), "loops": len(rows), "ddim_steps": args.steps,
               "k": args.k, "seconds": round(time.perf_counter() - start, 1),
               "real_measured_vs_truth": _distribution(list(per_patient.ef_real_measured - per_patient.ef_truth))}
    for method in ("tps", "k2f_warp", "kdm"):
        figures[method] = _distribution(list(table[f"ef_{method}"] - table.ef_target))
    return figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 patients, EF 45, 20 DDIM steps (k = 10)")
    p.add_argument("--patients", type=int, default=12)
    p.add_argument("--efs", type=float, nargs="+", default=[30.0, 45.0, 60.0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--pipeline", default=None, help="pipeline folder (default: the packaged demo checkpoint)")
    p.add_argument("--segmentation", default=None, help="segmentation model folder (default: packaged)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.patients, args.efs, args.steps, args.k = 2, [45.0], 20, 10
    figures = run(args)
    save("ef_targets_quick" if args.quick else "ef_targets", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
