"""The ``echokdm`` command. It only parses arguments and calls the package's public functions;
imported by nothing in the package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _add_common_read_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("dicom", "echonet", "camus", "nifti", "video"),
                   help="file format (default: guessed from the file)")
    p.add_argument("--crop-to-fan", action="store_true",
                   help="DICOM only: crop to the ultrasound fan, removing burned-in text outside it")


def _read_kwargs(args: argparse.Namespace, fmt: str) -> dict:
    return {"crop_to_fan": True} if args.crop_to_fan and fmt == "dicom" else {}


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo: real DICOM → phantom patients → keypoints → KDM loops → evaluation (echokdm.demo)."""
    from echokdm.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.patients is not None:
        settings.n_patients = args.patients
    if args.steps is not None:
        settings.num_inference_steps, settings.k = args.steps, args.steps // 2
    run_demo(args.out, settings=settings, train=args.train, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------


def cmd_manifest(args: argparse.Namespace) -> int:
    from echokdm.data.manifest import check_manifest, scan_folder, write_manifest

    if args.check:
        problems = check_manifest(args.check)
        for line in problems:
            print(f"{args.check}: {line}")
        if problems:
            print(f"{len(problems)} problem(s) found in {args.check}", file=sys.stderr)
            return 1
        from echokdm.data.manifest import load_manifest

        frame = load_manifest(args.check)
        counts = frame["split"].value_counts().to_dict()
        print(f"{args.check}: OK, {len(frame)} clip(s), {frame['patient_id'].nunique()} patient(s), "
              + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")))
        return 0
    if args.folder is None or args.format is None or args.output is None:
        raise ValueError("building a manifest needs FOLDER, --format and -o/--output (or use --check FILE)")
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output}: already exists; pass --overwrite to replace it")
    reader_kwargs = {"salt": args.salt} if args.salt and args.format in ("dicom", "camus") else None
    scan = scan_folder(args.folder, args.format, dataset=args.dataset, seed=args.seed, fractions=args.fractions,
                       patient_from=args.patient_from, reader_kwargs=reader_kwargs, progress=not args.no_progress)
    write_manifest(scan.manifest, output, overwrite=args.overwrite)
    m = scan.manifest
    counts = m["split"].value_counts().to_dict()
    print(f"wrote {output}: {len(m)} clip(s), {m['patient_id'].nunique()} patient(s), "
          + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")))
    if scan.skipped:
        import pandas as pd

        report = output.with_name(output.stem + "_skipped.csv")
        pd.DataFrame(scan.skipped, columns=["path", "reason"]).to_csv(report, index=False)
        print(f"{len(scan.skipped)} item(s) skipped or flagged (also in {report}):")
        for path, reason in scan.skipped:
            print(f"  {path}: {reason}")
    return 0 if len(m) else 1


# --------------------------------------------------------------------------------------------
# phantom
# --------------------------------------------------------------------------------------------


def cmd_phantom(args: argparse.Namespace) -> int:
    from echokdm.data.phantom.export import write_cohort

    result = write_cohort(
        args.out, args.patients, args.format, seed=args.seed, size=args.size, fps=args.fps, n_beats=args.beats,
        decorrelation=args.decorrelation, noise=args.noise, style=args.style, overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    m, gt = result.manifest, result.ground_truth
    counts = m["split"].value_counts().to_dict()
    print(f"wrote {len(m)} synthetic {args.format} clip(s) ({args.style} style) to {result.out.resolve()}")
    print(f"  manifest:     {result.out / 'manifest.csv'} (" + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")) + ")")
    print(f"  ground truth: {result.out / 'ground_truth.csv'} and ground_truth/*.npz (masks, keypoints, volumes, flows)")
    print(f"  EF {gt.ef_percent.min():.0f}-{gt.ef_percent.max():.0f} %, heart rate "
          f"{gt.heart_rate_bpm.min():.0f}-{gt.heart_rate_bpm.max():.0f} bpm, {int(gt.n_frames.sum())} frames")
    for path, reason in result.skipped:
        print(f"  skipped {path}: {reason}")
    return 0 if len(m) == len(gt) else 1


# --------------------------------------------------------------------------------------------
# train / segment
# --------------------------------------------------------------------------------------------


def cmd_train_seg(args: argparse.Namespace) -> int:
    from echokdm.echo.segmentation_training import load_seg_config, train_segmentation

    overrides = {"train": {"steps": args.steps}} if args.steps is not None else None
    config = load_seg_config(args.config, overrides)
    result = train_segmentation(config, args.manifest, args.out, resume=args.resume, overwrite=args.overwrite,
                                progress=not args.no_progress)
    print(f"trained {result['steps']} steps on {result['train_frames']} labelled frames; best mean per-patient "
          f"Dice on {result['validated_on']} ({result['val_frames']} frames): {result['best_dice']:.3f}")
    print(f"run folder: {result['run']} (config.yaml, git.txt, log.csv, best/, last/)")
    for clip, reason in result["skipped"]:
        print(f"  skipped {clip}: {reason}")
    return 0


def cmd_train_kdm(args: argparse.Namespace) -> int:
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
    for clip, reason in result["skipped_clips"]:
        print(f"  skipped {clip}: {reason}")
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
        print(f"run folder: {info['run']} (config.yaml, git.txt, log.csv, best/, last/)")
    for clip, reason in result["skipped_clips"]:
        print(f"  skipped {clip}: {reason}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from echokdm.parallel import segment_manifest_parallel

    table, skipped = segment_manifest_parallel(args.manifest, args.checkpoint, args.out, workers=args.workers,
                                               overwrite=args.overwrite, progress=not args.no_progress)
    print(f"segmented {len(table)} clip(s), {int(table['n_frames'].sum()) if len(table) else 0} frames -> {args.out}")
    scored = table.dropna(subset=["dice"]) if len(table) else table
    if len(scored):
        per_patient = scored.groupby(["split", "patient_id"])["dice"].mean().groupby("split")
        for split, values in per_patient:
            print(f"  {split}: Dice on labelled frames, mean per patient {values.mean():.3f} "
                  f"(min {values.min():.3f}, {len(values)} patients)")
    for clip, reason in skipped:
        print(f"  skipped {clip}: {reason}")
    return 0


# --------------------------------------------------------------------------------------------
# info / preview
# --------------------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from echokdm.io.dispatch import guess_format, read_cine

    fmt = args.format or guess_format(args.file)
    cine = read_cine(args.file, fmt, **_read_kwargs(args, fmt))
    print(cine.summary())
    print(f"  format: {fmt}; source: {cine.source}")
    print(f"  value range: {float(cine.frames.min()):.3f} .. {float(cine.frames.max()):.3f}")
    for key, value in sorted(cine.metadata.items()):
        print(f"  {key}: {value}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from echokdm.io.dispatch import guess_format, read_cine
    from echokdm.io.preview import write_preview

    fmt = args.format or guess_format(args.file)
    cine = read_cine(args.file, fmt, **_read_kwargs(args, fmt))
    written = write_preview(cine, args.out, overwrite=args.overwrite)
    for name, path in written.items():
        print(f"{name:>6}: {path}")
    return 0


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def _fractions(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.replace(",", " ").split()]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers 'train,val,test', got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    from echokdm import __version__

    parser = argparse.ArgumentParser(
        prog="echokdm",
        description="Echocardiography toolkit: read echo cine loops, build manifests, "
                    "and (in later releases) train and run the Key-point guided Diffusion Model.",
    )
    parser.add_argument("--version", action="version", version=f"echokdm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="run the demo on the embedded default data",
                       description="Read the real ultrasound cine that ships with pydicom; simulate held-out phantom "
                                   "patients as DICOM; derive their keypoints; generate each patient's own beat and a "
                                   "beat at a new EF with the packaged KDM checkpoint; write MP4/GIF/DICOM, a per-patient "
                                   "report (image metrics, EF target vs re-measured) and a summary figure. A few minutes "
                                   "on a laptop CPU.")
    p.add_argument("--out", default="echokdm-demo", help="output folder (default: %(default)s)")
    p.add_argument("--patients", type=int, default=None, help="held-out phantom patients (default 3)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 200, the paper's; k = steps / 2)")
    p.add_argument("--quick", action="store_true", help="1 patient, 20 DDIM steps (a smoke run for CI)")
    p.add_argument("--train", action="store_true",
                   help="retrain the demo checkpoints from scratch first (about 45 min on a 2-core CPU)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier demo")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("manifest", help="build a manifest from a folder, or check one",
                       description="Scan FOLDER for clips of one format and write a manifest CSV (one row per "
                                   "clip, patient-level splits), or validate a manifest with --check.")
    p.add_argument("folder", nargs="?", help="folder to scan")
    p.add_argument("--format", choices=("dicom", "echonet", "camus", "nifti", "video"), help="format of the clips")
    p.add_argument("-o", "--output", help="manifest CSV to write")
    p.add_argument("--check", metavar="MANIFEST", help="validate MANIFEST and print one line per problem")
    p.add_argument("--dataset", help="value of the dataset column (default: the format)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level split (default: %(default)s)")
    p.add_argument("--fractions", type=_fractions, default=(0.7, 0.15, 0.15),
                   help="train,val,test fractions for datasets without their own split (default: 0.7,0.15,0.15)")
    p.add_argument("--patient-from", choices=("file", "folder"), default="file",
                   help="videos/NIfTI: one patient per file, or per folder (default: %(default)s)")
    p.add_argument("--salt", help="salt of the pseudonymous patient IDs (default: $ECHOKDM_ID_SALT or a public default)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("phantom", help="simulate a synthetic echo cohort with exact ground truth",
                       description="Simulate apical four-chamber echo cine loops of synthetic patients (known masks, "
                                   "40 keypoints, volumes, EF and dense motion) and write them in a real format, "
                                   "with a manifest and the ground truth.")
    p.add_argument("--patients", type=int, default=20, help="number of patients, one clip each (default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=("echonet", "camus", "dicom", "nifti"), default="echonet",
                   help="file format (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="draws the patients and splits (default: %(default)s)")
    p.add_argument("--size", type=int, default=112, help="frame size in pixels (default: %(default)s)")
    p.add_argument("--fps", type=float, default=50.0, help="frame rate (default: %(default)s)")
    p.add_argument("--beats", type=float, default=2.0, help="heart beats per clip (default: %(default)s)")
    p.add_argument("--style", choices=("classic", "realistic"), default="classic",
                   help="classic phantom, or realistic: dark blood, valves, clutter, dropout, vendor looks and "
                        "compression randomised per patient (default: %(default)s)")
    p.add_argument("--decorrelation", type=float, default=None,
                   help="fraction of speckle redrawn per frame, as in real echo (default: 0.03 classic, "
                        "per patient realistic)")
    p.add_argument("--noise", type=float, default=None,
                   help="electronic noise level (default: 0.002 classic, per patient realistic)")
    p.add_argument("--overwrite", action="store_true", help="replace files of an earlier cohort")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("train", help="train a model (seg, flow, kdm, autoencoder)",
                       description="Train one of echokdm's models.")
    train_sub = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    t = train_sub.add_parser("seg", help="LV segmentation network on the labelled frames of a manifest",
                             description="Train the LV blood-pool segmentation U-Net on the train split's labelled "
                                         "frames, validating Dice per patient on the val split.")
    t.add_argument("--config", default=None, help="YAML config (default: built-in defaults = configs/echo/seg.yaml)")
    t.add_argument("--manifest", required=True, help="manifest CSV with masks or tracings")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--steps", type=int, default=None, help="override train.steps")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="start afresh in an existing run folder")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.set_defaults(func=cmd_train_seg)

    t = train_sub.add_parser("kdm", help="KDM: autoencoder, K2F, F2I (and the w/o-K2F F2I), then the pipeline",
                             description="Train the KDM stages in order on a manifest's frame pairs; a stage whose "
                                         "best/ exists is skipped. Writes <out>/pipeline (and pipeline_noflow). The "
                                         "config's data.adapter (echo, face, pose …) chooses the keypoints, the "
                                         "manifest kind and the conditioning images (docs/adapters.md).")
    t.add_argument("--config", required=True,
                   help="YAML config, e.g. configs/echo/kdm_112.yaml, configs/face/kdm_224.yaml, configs/pose/kdm_224.yaml")
    t.add_argument("--manifest", required=True,
                   help="manifest CSV: echo (a phantom cohort, or real data with masks) or, for face/pose, a sequence "
                        "manifest (echokdm procedural writes one)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--stages", nargs="+", choices=("autoencoder", "k2f", "f2i", "f2i_noflow"),
                   help="train only these stages (default: all, in order)")
    t.add_argument("--resume", action="store_true", help="continue interrupted stages")
    t.add_argument("--overwrite", action="store_true", help="retrain stages that already finished")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.set_defaults(func=cmd_train_kdm)

    t = train_sub.add_parser("autoencoder", help="KDM's latent autoencoder alone (the first stage of train kdm)",
                             description="Train KDM's latent autoencoder (AutoencoderKL; L1 + LPIPS + KL) on the "
                                         "frames of a manifest's train split, selecting best/ by the validation "
                                         "PSNR on the val split. Writes <out>/autoencoder, the folder train kdm "
                                         "reads (its later stages then skip this one).")
    t.add_argument("--config", required=True, help="YAML config, e.g. configs/echo/kdm_112.yaml (its autoencoder "
                                                   "and data sections are used)")
    t.add_argument("--manifest", required=True, help="manifest CSV (a phantom cohort, or real data with masks)")
    t.add_argument("--out", required=True, help="KDM run folder (the autoencoder goes to <out>/autoencoder)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run")
    t.add_argument("--overwrite", action="store_true", help="retrain an autoencoder that already finished")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.set_defaults(func=cmd_train_autoencoder)

    from echokdm.cli_flow import register as register_flow_command
    from echokdm.cli_flow import register_train as register_train_flow

    register_train_flow(train_sub)

    p = sub.add_parser("segment", help="LV masks for every frame of a manifest",
                       description="Segment every frame of every clip with a trained segmentation model; report "
                                   "Dice per clip and per patient on the frames that have labels.")
    p.add_argument("manifest")
    p.add_argument("--checkpoint", required=True, help="model folder (a run's best/ or last/)")
    p.add_argument("-o", "--out", required=True, help="output folder (masks/*.npz, segmentation.csv)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes, one clip at a time each (default: %(default)s); an interrupted run "
                        "continues where it stopped when run again")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier segmentation.csv")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_segment)

    from echokdm.cli_keypoints import register as register_keypoint_commands

    register_keypoint_commands(sub)
    register_flow_command(sub)

    from echokdm.cli_evaluate import register as register_evaluate_command

    register_evaluate_command(sub)

    from echokdm.cli_generate import register as register_generate_command

    register_generate_command(sub)

    from echokdm.cli_synthesize import register as register_synthesize_command

    register_synthesize_command(sub)

    from echokdm.cli_procedural import register as register_procedural_command

    register_procedural_command(sub)

    p = sub.add_parser("info", help="describe one echo file",
                       description="Read one file and print its frames, frame rate, calibration and metadata.")
    p.add_argument("file")
    _add_common_read_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("preview", help="write first/middle/last frame PNGs and an MP4 of one file",
                       description="Write <clip>_first.png, _middle.png, _last.png and <clip>.mp4 into OUT.")
    p.add_argument("file")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing previews")
    _add_common_read_args(p)
    p.set_defaults(func=cmd_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 = success, 1 = failure, 2 = usage error)."""
    from echokdm.errors import EchoKDMError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (EchoKDMError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"echokdm {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
