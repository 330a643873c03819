"""The ``echokdm evaluate`` command (argument parsing and printing; the work is in
:mod:`echokdm.evaluation`)."""

from __future__ import annotations

import argparse

from echokdm.cli._common import add_run_options, add_sampling_options, sampling_settings

__all__ = ["cmd_evaluate", "register"]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a pipeline on a manifest split, or score folders of generated loops."""
    from echokdm.evaluation import EvaluateConfig, evaluate, evaluate_folders
    from echokdm.evaluation.adapters import is_sequence_manifest, run_from_args
    from echokdm.evaluation.runner import table3_sampling
    from echokdm.generation.settings import SamplingSettings

    if args.manifest and not (args.generated or args.reference) and is_sequence_manifest(args.manifest):
        return run_from_args(args)  # faces and poses: the paper's Tables 1 and 2
    if args.generated or args.reference:
        if not (args.generated and args.reference):
            raise SystemExit("echokdm evaluate: --generated and --reference go together")
        result = evaluate_folders(args.generated, args.reference, out=args.out, lpips_nets=tuple(args.lpips_nets),
                                  lpips_backbone=args.lpips_backbone, progress=not args.no_progress)
    else:
        if not args.manifest:
            raise SystemExit("echokdm evaluate: give a manifest (and --pipeline), or --generated and --reference")
        if args.generate_sampler and args.paper_sampler:
            raise ValueError("--generate-sampler and --paper-sampler: choose one")
        base = SamplingSettings() if args.generate_sampler else table3_sampling()
        config = EvaluateConfig(split=args.split, methods=tuple(args.methods), max_targets=args.max_targets,
                                max_clips=args.max_clips, sampling=sampling_settings(args, base),
                                lpips_nets=tuple(args.lpips_nets), lpips_backbone=args.lpips_backbone,
                                segmentation=args.segmentation, masks=args.masks, own_motion=args.own_motion,
                                memorisation=not args.no_memorisation, training_manifest=args.training_manifest,
                                size=args.size, device=args.device, realism=_realism_settings(args))
        result = evaluate(args.manifest, args.pipeline, pipeline_noflow=args.pipeline_noflow, out=args.out,
                          config=config, overwrite=args.overwrite, progress=not args.no_progress)
        if result is None:  # accelerate launch: this process's clips are done; the main one merges and reports
            return 0
    print(result.table3)
    if not (args.generated or args.reference) and "kdm" in args.methods and args.pipeline:
        print(f"KDM sampled with {_sampler_line(config.sampling)}")
    n_patients = result.frames["patient_id"].nunique()
    print(f"{len(result.frames)} frame scores, {n_patients} patient(s); intervals: patient-level bootstrap 95 %")
    if len(result.memorisation):
        for row in result.memorisation.itertuples():
            print(f"memorisation ({row.method}): {100 * row.fraction_closer:.1f} % of generated frames closer to a "
                  "training frame than the 5th percentile of real held-out frames "
                  f"(one-sided p = {row.mannwhitney_p:.3g}, {_test_unit(row)})")
    if getattr(result, "realism", None) is not None:
        print(result.realism.table)
        print("realism: realism.csv, realism_per_clip.csv, realism.md")
    print(f"results: {result.out} (per_frame.csv, per_clip.csv, per_patient.csv, summary.csv, table3.md, plots/)")
    return 0


def _sampler_line(sampling) -> str:
    """Which sampler scored KDM, in words, and how to get the other."""
    from echokdm.generation.settings import SamplingSettings

    what = (f"{sampling.num_inference_steps} DDIM steps, k = {sampling.k}, {sampling.mode}"
            f"{', detail path' if sampling.detail else ''}"
            f"{f', {sampling.keyframes} keyframes' if sampling.keyframes else ''}"
            f"{', flows fitted to the keypoints' if sampling.fit_keypoints else ''}")
    if sampling == SamplingSettings():
        return f"echokdm generate's default sampler ({what})"
    if sampling.num_inference_steps == 200 and sampling.k == 100 and not sampling.detail:
        return (f"the paper's sampler, Table 3 protocol ({what}); --generate-sampler scores KDM as echokdm "
                "generate makes loops (25 steps, k = 3, the detail path)")
    return f"the settings given ({what})"


def _test_unit(row) -> str:
    """How the memorisation p-value was computed: per patient (frames of one patient are one unit) or per frame."""
    if getattr(row, "test_unit", "frame") == "group":
        smallest = getattr(row, "mannwhitney_p_min", float("nan"))
        return (f"per patient: {getattr(row, 'n_generated_groups', '?')} against "
                f"{getattr(row, 'n_held_out_groups', '?')}, smallest possible p {smallest:.2g}")
    return "per frame: frames of one loop are not independent, so it is too small"


def _comma_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _realism_settings(args: argparse.Namespace):
    """The realism settings of ``--realism`` / ``--beats`` (None when neither asks for them)."""
    from echokdm.evaluation.realism import RealismSettings

    beats = _comma_list(args.beats)
    if not args.realism and beats == ["own"]:
        return None
    try:
        new_efs = tuple(float(e) for e in _comma_list(args.new_ef))
    except ValueError as exc:
        raise ValueError(f"--new-ef {args.new_ef!r}: give comma-separated EFs in %, e.g. 30,65") from exc
    return RealismSettings(beats=tuple(beats), new_efs=new_efs, fid_weights=args.fid_weights,
                           fvd_weights=args.fvd_weights, classifier_folds=args.classifier_folds,
                           classifier_steps=args.classifier_steps)  # a ValueError is one error line (cli.main)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``echokdm`` sub-commands."""
    from echokdm.evaluation.runner import METHODS, table3_sampling

    p = subparsers.add_parser(
        "evaluate", help="score KDM, its ablations and baselines per frame, patient and dataset",
        description="Generate with fixed seeds (one sample per case, no best-of-N) on a manifest split and score "
                    "MSE, PSNR, SSIM, LPIPS-Alex/VGG, flow EPE, keypoint MD and EF per frame, clip, patient and "
                    "dataset, with patient-level bootstrap 95 % intervals. Resumable: rerun the same command after "
                    "an interruption. Or score folders of generated loops against references "
                    "(--generated, --reference).")
    p.add_argument("manifest", nargs="?", help="manifest CSV (phantom cohorts give exact keypoints and flows)")
    p.add_argument("--pipeline", help="KDM pipeline folder (<run>/pipeline) or a packaged name (kdm_phantom_112); "
                                      "omit to score the baselines only")
    p.add_argument("--pipeline-noflow",
                   help="'w/o K2F' pipeline folder or packaged name (default: <pipeline>/../pipeline_noflow)")
    p.add_argument("-o", "--out", required=True, help="output folder (created; resumed when it holds this evaluation)")
    p.add_argument("--split", default="test", help="manifest split, or 'all' (default: test)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to score")
    p.add_argument("--max-targets", type=int, default=8, help="target frames per clip, one beat (default 8)")
    p.add_argument("--max-clips", type=int, default=None, help="evaluate only the first N clips")
    # the paper's Table 3 protocol (per_frame, K2F's flows as they are): echokdm.evaluation.runner.table3_sampling
    add_sampling_options(p, table3_sampling(), helps={
        "mode": "per_frame: one K2F flow per target frame (each evaluated target has its own keypoints, as in the "
                "paper's Table 3); gamma: one flow scaled by gamma per frame (the default of generate and "
                "synthesize, which make a whole loop at a new EF)",
        "fit_keypoints": "fit K2F's flows to the target keypoints (--no-fit-keypoints: the paper's KDM, K2F's flows "
                         "as they are)",
        "seed": "base seed, a non-negative integer (each clip's seed derives from it and its id)"})
    p.add_argument("--generate-sampler", action="store_true",
                   help="score KDM with echokdm generate's default sampler (25 DDIM steps, k = 3, detail path, 8 "
                        "keyframes, flows fitted to the keypoints, gamma mode) instead of the paper's Table 3 "
                        "protocol; the other sampling options given still apply over it")
    p.add_argument("--lpips-nets", nargs="+", default=["alex", "vgg"], choices=("alex", "vgg", "squeeze"),
                   help="LPIPS backbones to score (default: alex vgg)")
    p.add_argument("--lpips-backbone", default=None,
                   help="folder with alexnet_features.pth / vgg16_features.pth for offline use "
                        "(default: $ECHOKDM_LPIPS_WEIGHTS, else download)")
    p.add_argument("--segmentation", default=None,
                   help="segmentation model folder or packaged name (seg_phantom_112): keypoint MD and EF of "
                        "generated loops, and the keypoints of real clips without masks when --masks is not given "
                        "(segmented here, inside each clip's fan)")
    p.add_argument("--masks", default=None,
                   help="output folder of `echokdm segment` (keypoints of real clips without masks)")
    p.add_argument("--own-motion", choices=("auto", "tracking", "segmentation"), default="auto",
                   help="where an own beat's target keypoints come from when --masks gives them: 'auto' and "
                        "'tracking' carry the ED frame's keypoints through the beat by speckle tracking ('auto' "
                        "falls back when the tracking loses the wall), 'segmentation' takes every frame's; the EF "
                        "target is the segmentation's either way (default: %(default)s)")
    p.add_argument("--size", type=int, default=None,
                   help="frame size without a pipeline (default: the model's, or 112)")
    p.add_argument("--training-manifest", default=None,
                   help="manifest whose train split trained the model (memorisation check; default: the evaluated one)")
    p.add_argument("--no-memorisation", action="store_true", help="skip the nearest-training-frame check")
    realism = p.add_argument_group("realism (FID, FVD, real-vs-generated classifier, warping error, pop; realism.md)")
    realism.add_argument("--realism", action="store_true",
                         help="write the realism tables for the beats of --beats (implied by a --beats other than own)")
    realism.add_argument("--beats", default="own",
                         help="comma-separated beat kinds: own (the clip's own beat, also scored pairwise), new_ef "
                              "(a synthetic beat at a new EF, as generate --ef), transfer (another test patient's "
                              "motion, as generate --transfer); default: own")
    realism.add_argument("--new-ef", default="30,65",
                         help="EFs (%%) of the new_ef beats; each clip gets the one farthest from its own "
                              "(default 30,65)")
    realism.add_argument("--fid-weights", default=None,
                         help="Inception weights (file, or folder with pt_inception-2015-12-05-6726825d.pth) "
                              "(default: $ECHOKDM_FID_WEIGHTS, torch hub's cache, else download, else FID left out)")
    realism.add_argument("--fvd-weights", default=None,
                         help="Kinetics-400 I3D weights (file, or folder with rgb_imagenet.pt) "
                              "(default: $ECHOKDM_FVD_WEIGHTS, torch hub's cache, else download, else FVD left out)")
    realism.add_argument("--classifier-folds", type=int, default=5,
                         help="folds (by patient) of the real-vs-generated classifier (default 5)")
    realism.add_argument("--classifier-steps", type=int, default=200,
                         help="training steps of the classifier per fold (default 200)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:0 ...")
    p.add_argument("--generated", help="folder of generated loops (folder mode)")
    p.add_argument("--reference", help="folder of reference loops, matched by file name (folder mode)")
    from echokdm.evaluation.adapters import add_sequence_options

    add_sequence_options(p)
    add_run_options(p, overwrite="discard an evaluation in --out made with other settings")
    p.set_defaults(func=cmd_evaluate)
