"""The ``echokdm demo`` command (argument parsing only; the work is :func:`echokdm.demo.run_demo`)."""

from __future__ import annotations

import argparse

from echokdm.cli._common import add_run_options, add_sampling_options, resolve_model, sampling_settings

__all__ = ["cmd_demo", "register"]


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo: real DICOM → phantom patients → keypoints → KDM loops → evaluation (echokdm.demo)."""
    from echokdm.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.patients is not None:
        settings.n_patients = args.patients
    if args.steps is not None and args.k is None and not args.paper_sampler:  # k stays, at most the steps
        settings.sampling = settings.sampling.replace(num_inference_steps=args.steps,
                                                      k=min(settings.sampling.k, args.steps))
    settings.sampling = sampling_settings(args, settings.sampling)  # and what else was given
    models = {}
    if args.pipeline or args.segmentation:  # resolved in main(); the other one stays the packaged demo model
        if args.train:
            raise ValueError("--train retrains the demo checkpoints; it does not go with --pipeline/--segmentation")
        models = {"pipeline": args.pipeline or resolve_model("kdm_phantom_112", "pipeline"),
                  "segmentation": args.segmentation or resolve_model("seg_phantom_112", "segmentation")}
    run_demo(args.out, settings=settings, train=args.train, overwrite=args.overwrite, progress=not args.no_progress,
             **models)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "demo", help="run the demo on the embedded default data",
        description="Read the real ultrasound cine that ships with pydicom; simulate held-out phantom patients as "
                    "DICOM; derive their keypoints; generate each patient's own beat and a beat at a new EF with "
                    "the packaged KDM checkpoint; write MP4/GIF/DICOM, a per-patient report (image metrics, EF "
                    "target vs re-measured) and a summary figure. Under a minute on a laptop CPU.")
    p.add_argument("--out", default="echokdm-demo", help="output folder (default: %(default)s)")
    p.add_argument("--patients", type=int, default=None, help="held-out phantom patients (default 3)")
    add_sampling_options(p, None, names=("num_inference_steps", "k", "keyframes", "seed", "interpolation",
                                         "fit_region"), helps={
        "num_inference_steps": "DDIM steps (default 25; the paper's sampler: --paper-sampler)",
        "k": "F2I start step of --steps, 0 = warp only (default 3)",
        "keyframes": "F2I on N evenly spaced frames, its edit interpolated between them; 0 = every frame "
                     "(default 8)",
        "seed": "random seed, a non-negative integer (default 0)",
        "interpolation": "how the shown warp samples the source: bilinear (default) or bicubic (sharper speckle)",
        "fit_region": "near the keypoints, the thin-plate spline through them replaces K2F's flow, so the wall moves "
                      "with its keypoints (default: off, K2F's flow everywhere, as the paper)"})
    p.add_argument("--quick", action="store_true", help="1 patient (a smoke run for CI)")
    p.add_argument("--train", action="store_true",
                   help="retrain the demo checkpoints from scratch on the realistic phantom first (about an hour "
                        "on a 2-core CPU)")
    p.add_argument("--pipeline", metavar="FOLDER", default=None,
                   help="KDM pipeline folder or packaged name to use instead of the packaged kdm_phantom_112")
    p.add_argument("--segmentation", metavar="MODEL", default=None,
                   help="segmentation model folder or packaged name to use instead of the packaged seg_phantom_112")
    add_run_options(p, overwrite="replace outputs of an earlier demo")
    p.set_defaults(func=cmd_demo)
