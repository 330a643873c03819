"""The ``echokdm train <model>`` commands: ``seg``, ``kdm``, ``autoencoder`` and ``flow``.

Argument parsing and printing only; the work is done by
:func:`echokdm.echo.segmentation_training.train_segmentation`, :func:`echokdm.training.kdm.train_kdm`
and :func:`echokdm.training.flow.train_flow`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from echokdm.cli._common import add_run_options, positive_int

__all__ = ["cmd_train_autoencoder", "cmd_train_flow", "cmd_train_kdm", "cmd_train_seg", "register"]

_RUN_FOLDER = "(config.yaml, git.txt, log.csv, best/, last/)"


def _print_skipped(skipped) -> None:
    for clip, reason in skipped:
        print(f"  skipped {clip}: {reason}")


def cmd_train_seg(args: argparse.Namespace) -> int:
    """Train the LV segmentation network into a run folder."""
    from echokdm.echo.segmentation_training import load_seg_config, train_segmentation

    overrides = {"train": {"steps": args.steps}} if args.steps is not None else None
    config = load_seg_config(args.config, overrides)
    result = train_segmentation(config, args.manifest, args.out, resume=args.resume, overwrite=args.overwrite,
                                progress=not args.no_progress)
    print(f"trained {result['steps']} steps on {result['train_frames']} labelled frames; best mean per-patient "
          f"Dice on {result['validated_on']} ({result['val_frames']} frames): {result['best_dice']:.3f}")
    print(f"run folder: {result['run']} {_RUN_FOLDER}")
    _print_skipped(result["skipped"])
    return 0


def cmd_train_kdm(args: argparse.Namespace) -> int:
    """Train the KDM stages in order; print each stage and the pipeline folders."""
    from echokdm.training.kdm import STAGES, load_kdm_config, train_kdm

    config = load_kdm_config(args.config)
    result = train_kdm(config, args.manifest, args.out, stages=args.stages or STAGES, resume=args.resume,
                       overwrite=args.overwrite, progress=not args.no_progress)
    for stage in STAGES:
        if stage in result:
            info = result[stage]
            text = info if isinstance(info, str) else f"{info['steps']} steps, best {info['best']}, {info['seconds']} s"
            print(f"  {stage}: {text}")
    for folder in result["pipelines"]:
        print(f"pipeline: {folder}")
    _print_skipped(result["skipped_clips"])
    return 0


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    """KDM's latent autoencoder alone (the first stage of ``train kdm``); prints its best validation PSNR."""
    from echokdm.training.distributed import is_main_process
    from echokdm.training.kdm import load_kdm_config, train_kdm

    config = load_kdm_config(args.config)
    main_process = is_main_process()  # under accelerate launch / torchrun only rank 0 reports
    result = train_kdm(config, args.manifest, args.out, stages=("autoencoder",), resume=args.resume,
                       overwrite=args.overwrite, progress=not args.no_progress and main_process)
    if not main_process:
        return 0
    info = result["autoencoder"]
    folder = Path(args.out) / "autoencoder"
    if isinstance(info, str):
        print(f"autoencoder: {info}; run folder {folder} (pass --overwrite to retrain)")
    else:
        print(f"autoencoder: {info['steps']} steps in {info['seconds']} s; best validation PSNR "
              f"{info['best']:.2f} dB (weights: {folder / 'best'})")
        print(f"run folder: {info['run']} {_RUN_FOLDER}")
    _print_skipped(result["skipped_clips"])
    return 0


def cmd_train_flow(args: argparse.Namespace) -> int:
    """Train OF-net on a manifest's frame pairs into a run folder."""
    from echokdm.training.flow import load_flow_config, train_flow

    overrides = {"train": {"steps": args.steps}} if args.steps is not None else None
    config = load_flow_config(args.config, overrides)
    result = train_flow(config, args.manifest, args.out, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress)
    best = "n/a" if result["best"] is None else f"{result['best']:.4f}"
    print(f"trained {result['steps']} steps on {result['train_pairs']} frame pairs in {result['seconds']:.0f} s; "
          f"best {result['metric']} on {result['validated_on']} ({result['val_pairs']} pairs): {best}")
    row = result.get("last_row") or {}
    if "val_epe_zero" in row:
        print(f"  last validation: EPE {row['val_epe']:.3f} px (zero flow {row['val_epe_zero']:.3f} px), "
              f"photometric {row['val_photometric']:.4f}")
    print(f"run folder: {result['run']} {_RUN_FOLDER}")
    _print_skipped(result["skipped"])
    return 0


# --------------------------------------------------------------------------------------------
# parsers
# --------------------------------------------------------------------------------------------


def _add_seg(train_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser(
        "seg", help="LV segmentation network on the labelled frames of a manifest",
        description="Train the LV blood-pool segmentation U-Net on the train split's labelled frames, validating "
                    "Dice per patient on the val split.")
    t.add_argument("--config", default=None, help="YAML config (default: built-in defaults = configs/echo/seg.yaml)")
    t.add_argument("--manifest", required=True, help="manifest CSV with masks or tracings")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--steps", type=positive_int, default=None, help="override train.steps (>= 1)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_run_options(t, overwrite="start afresh in an existing run folder")
    t.set_defaults(func=cmd_train_seg)


def _add_kdm(train_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser(
        "kdm", help="KDM: autoencoder, K2F, F2I (and the w/o-K2F F2I), then the pipeline",
        description="Train the KDM stages in order on a manifest's frame pairs; a stage whose best/ exists is "
                    "skipped. Writes <out>/pipeline (and pipeline_noflow). The config's data.adapter (echo, face, "
                    "pose …) chooses the keypoints, the manifest kind and the conditioning images "
                    "(docs/adapters.md).")
    t.add_argument("--config", required=True,
                   help="YAML config, e.g. configs/echo/kdm_112.yaml, configs/face/kdm_224.yaml, "
                        "configs/pose/kdm_224.yaml")
    t.add_argument("--manifest", required=True,
                   help="manifest CSV: echo (a phantom cohort, or real data with masks) or, for face/pose, a sequence "
                        "manifest (echokdm procedural writes one)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--stages", nargs="+", choices=("autoencoder", "k2f", "f2i", "f2i_noflow"),
                   help="train only these stages (default: all, in order)")
    t.add_argument("--resume", action="store_true", help="continue interrupted stages")
    add_run_options(t, overwrite="retrain stages that already finished")
    t.set_defaults(func=cmd_train_kdm)


def _add_autoencoder(train_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser(
        "autoencoder", help="KDM's latent autoencoder alone (the first stage of train kdm)",
        description="Train KDM's latent autoencoder (AutoencoderKL; L1 + LPIPS + KL) on the frames of a manifest's "
                    "train split, selecting best/ by the validation PSNR on the val split. Writes "
                    "<out>/autoencoder, the folder train kdm reads (its later stages then skip this one).")
    t.add_argument("--config", required=True,
                   help="YAML config, e.g. configs/echo/kdm_112.yaml (its autoencoder and data sections are used)")
    t.add_argument("--manifest", required=True, help="manifest CSV (a phantom cohort, or real data with masks)")
    t.add_argument("--out", required=True, help="KDM run folder (the autoencoder goes to <out>/autoencoder)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run")
    add_run_options(t, overwrite="retrain an autoencoder that already finished")
    t.set_defaults(func=cmd_train_autoencoder)


def _add_flow(train_sub: argparse._SubParsersAction) -> None:
    t = train_sub.add_parser(
        "flow", help="OF-net optical flow, unsupervised, on frame pairs of a manifest",
        description="Train OF-net (PWC-Net style) on frame pairs of the train split with a photometric, smoothness "
                    "and occlusion-aware loss; validate on the val split (end-point error against the exact flow "
                    "for a phantom cohort, else photometric error).")
    t.add_argument("--config", default=None,
                   help="YAML config (default: built-in defaults = configs/echo/flow.yaml)")
    t.add_argument("--manifest", required=True, help="manifest CSV")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--steps", type=positive_int, default=None, help="override train.steps (>= 1)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_run_options(t, overwrite="start afresh in an existing run folder")
    t.set_defaults(func=cmd_train_flow)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and its models (``seg``, ``kdm``, ``autoencoder``, ``flow``) to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser("train", help="train a model (seg, flow, kdm, autoencoder)",
                              description="Train one of echokdm's models.")
    train_sub = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    for add in (_add_seg, _add_kdm, _add_autoencoder, _add_flow):
        add(train_sub)
