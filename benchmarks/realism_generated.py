"""Realism of KDM's generated beats beyond paired scores (issue 20, part 3).

    python benchmarks/realism_generated.py [--quick] [--patients N] [--steps 25] [--detail | --fast [--fit-region]]

A held-out phantom cohort (seed 7, a seed the project never trains on; realistic style, 112 × 112,
50 fps) is evaluated with ``echokdm evaluate``'s realism tables for the packaged ``kdm_phantom_112``
(and its "w/o K2F" pipeline when one is packaged; ``kdm_phantom_112`` ships none) at 25 DDIM
steps, k = 100 of 200, per-frame mode (the Table 3 protocol), for three beat kinds per patient:
its own beat from ED, a synthetic beat at a new EF (30 or 65 %, whichever is farther from its own)
and another patient's transferred beat. Per method (no edit, TPS warp, w/o F2I, KDM) and beat:

* the real-vs-generated classifier two-sample test (a small CNN on whole 112 × 112 frames, folds by
  patient, held-out accuracy with a patient-bootstrap 95 % interval; 0.5 = indistinguishable);
* the warping error between consecutive generated frames along the requested motion (thin-plate
  spline of consecutive target keypoints) and the pop of the first generated frame (first step /
  median later step, by MSE, warped MSE and LPIPS-Alex), with the real own beat for reference;
* FID / FVD: empty unless Inception / I3D weights are available (``ECHOKDM_FID_WEIGHTS`` /
  ``ECHOKDM_FVD_WEIGHTS``, torch hub's cache, or a download).

LPIPS-Alex needs ``ECHOKDM_LPIPS_WEIGHTS`` (``shared/weights/lpips`` in CI); without it the LPIPS pop is
left out. Writes ``benchmarks/results/realism_generated.json`` and ``realism_generated.md``
(``*_quick.*`` with ``--quick``: 6 patients, 100 classifier steps, 3 folds).

The classifier's accuracy depends on the order of torch's CPU arithmetic: the same loops scored on 1
and on 2 threads differ by a few hundredths (the README's figures say which); compare methods within
one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

COLUMNS = ("classifier_acc", "classifier_acc_low", "classifier_acc_high", "warp_error", "pop_mse", "pop_warp",
           "pop_lpips", "fid", "fvd")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 patients, a lighter classifier (smoke run)")
    parser.add_argument("--patients", type=int, default=None, help="cohort size (default 16; quick: 6)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--detail", action="store_true",
                        help="KDM with the warp-residual detail path (SamplingSettings(detail=True)); "
                             "default: the paper's KDM")
    parser.add_argument("--fast", action="store_true",
                        help="KDM with generation's default sampler (SamplingSettings(): gamma mode, keypoints "
                             "fitted, 25 steps, k = 3, detail path, F2I on 8 keyframes; fit_region off, as the "
                             "README's figures were measured) instead of the Table 3 "
                             "protocol; every method then uses its flows")
    parser.add_argument("--fit-region", action="store_true",
                        help="with --fast: the wall's region moved by its keypoints (fit_region, opt-in in "
                             "generation; results *_fitregion)")
    parser.add_argument("--pipeline", default="kdm_phantom_112", help="pipeline folder or packaged name")
    parser.add_argument("--out", default=None, help="keep the evaluation folder here (default: a temporary one)")
    args = parser.parse_args(argv)

    from echokdm.data.phantom.export import write_cohort
    from echokdm.evaluation import EvaluateConfig, evaluate
    from echokdm.evaluation.realism import RealismSettings
    from echokdm.evaluation.runner import table3_sampling
    from echokdm.pretrained import resolve_checkpoint

    n_patients = args.patients or (6 if args.quick else 16)
    pipeline = resolve_checkpoint(args.pipeline, "pipeline")
    noflow = Path(str(pipeline) + "_noflow")
    settings = RealismSettings(beats=("own", "new_ef", "transfer"), classifier_folds=3 if args.quick else 5,
                               classifier_steps=100 if args.quick else 200)
    if args.fast:
        from echokdm.generation import SamplingSettings

        sampling = SamplingSettings(num_inference_steps=args.steps, fit_region=args.fit_region)  # off: as in the README
    else:
        sampling = table3_sampling().replace(num_inference_steps=args.steps, k=args.steps // 2,  # k = 100 of 200
                                             detail=args.detail)
    config = EvaluateConfig(split="all", sampling=sampling, max_targets=8, lpips_nets=("alex",), memorisation=False,
                            device="cpu", realism=settings)
    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "cohort"
        write_cohort(cohort, n_patients=n_patients, format="nifti", seed=7, style="realistic", size=112, fps=50.0,
                     n_beats=1.3, progress=False)
        out = Path(args.out) if args.out else Path(tmp) / "eval"
        start = time.perf_counter()
        result = evaluate(cohort / "manifest.csv", pipeline, pipeline_noflow=noflow if noflow.is_dir() else None,
                          out=out, config=config, progress=False, plots=False)
        seconds = time.perf_counter() - start
    summary = result.realism.summary
    figures = {"patients": n_patients, "ddim_steps": args.steps, "seconds": round(seconds, 1),
               "pipeline": Path(pipeline).name, "wo_k2f": noflow.is_dir(), "notes": result.realism.notes}
    for _, row in summary.iterrows():
        key = f"{row['beat']}/{row['method']}"
        figures[key] = {c: (None if not np.isfinite(row.get(c, np.nan)) else round(float(row[c]), 6))
                        for c in COLUMNS if c in summary}
    name = ("realism_generated_quick" if args.quick else "realism_generated") + ("_detail" if args.detail else "") \
        + ("_fast" if args.fast else "") + ("_fitregion" if args.fast and args.fit_region else "")
    save(name, figures)
    command = "python benchmarks/realism_generated.py" + (" --quick" if args.quick else "") + \
        (" --detail" if args.detail else "") + (" --fast" if args.fast else "") + \
        (" --fit-region" if args.fast and args.fit_region else "")
    (RESULTS / f"{name}.md").write_text(f"# Realism of generated beats ({command})\n\n"
                                        f"{n_patients} held-out phantom patients (seed 7, realistic), "
                                        f"{Path(pipeline).name}, {args.steps} DDIM steps, "
                                        + (f"the default fast sampler ({sampling}); " if args.fast else
                                           f"k = {args.steps // 2} (100 of 200); ") +
                                        f"{seconds:.0f} s on this machine.\n\n" + result.realism.table)
    print(result.realism.table)


if __name__ == "__main__":
    main()
