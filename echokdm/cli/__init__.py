"""The ``echokdm`` command. It only parses arguments and calls the package's public functions;
imported by nothing in the package."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
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
    models = {}
    if args.pipeline or args.segmentation:  # resolved in main(); the other one stays the packaged demo model
        if args.train:
            raise ValueError("--train retrains the demo checkpoints; it does not go with --pipeline/--segmentation")
        models = {"pipeline": args.pipeline or _resolve("kdm_phantom_112", "pipeline"),
                  "segmentation": args.segmentation or _resolve("seg_phantom_112", "segmentation")}
    run_demo(args.out, settings=settings, train=args.train, overwrite=args.overwrite, progress=not args.no_progress,
             **models)
    return 0


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------


def cmd_manifest(args: argparse.Namespace) -> int:
    from echokdm.data.manifest import check_manifest, scan_folder, write_manifest

    if args.check:
        extra = [name for name, given in (("FOLDER", args.folder), ("--format", args.format), ("-o/--output", args.output),
                                          ("--fps", args.fps), ("--clinical-csv", args.clinical_csv)) if given]
        if extra:
            raise ValueError(f"--check MANIFEST only validates an existing manifest; drop {', '.join(extra)} "
                             "(or drop --check to build one)")
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
    if output.is_dir():
        raise ValueError(f"-o/--output {output} is a folder; give the manifest's file name, e.g. {output / 'manifest.csv'}")
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{output}: already exists; pass --overwrite to replace it")
    if args.salt is not None and not args.salt.strip():
        raise ValueError("--salt is empty; give a secret salt, or leave --salt out to use $ECHOKDM_ID_SALT")
    if args.salt is not None and args.format not in ("dicom", "camus"):
        raise ValueError(f"--salt applies to --format dicom and camus only; {args.format} clips take their IDs "
                         "from file and folder names")
    if args.patient_from != "file" and args.format not in ("video", "nifti"):
        raise ValueError(f"--patient-from applies to --format video and nifti only; {args.format} files name "
                         "their patient themselves")
    if args.dataset is not None and not args.dataset.strip():
        raise ValueError("--dataset is empty; give a name, or leave it out to use the format's")
    reader_kwargs = {"salt": args.salt} if args.salt else None
    scan = scan_folder(args.folder, args.format, dataset=args.dataset, seed=args.seed, fractions=args.fractions,
                       patient_from=args.patient_from, reader_kwargs=reader_kwargs, progress=not args.no_progress,
                       fps=args.fps, clinical=args.clinical_csv)
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
    from echokdm.cli.parallel import segment_manifest_parallel

    table, skipped = segment_manifest_parallel(args.manifest, args.checkpoint, args.out, workers=args.workers,
                                               overwrite=args.overwrite, progress=not args.no_progress)
    if not len(table):
        from echokdm.errors import NothingProducedError

        for clip, reason in skipped:
            print(f"  skipped {clip}: {reason}")
        (Path(args.out) / "segmentation.csv").unlink(missing_ok=True)  # the empty report this run wrote
        with contextlib.suppress(OSError):
            (Path(args.out) / "masks").rmdir()  # only when empty
        raise NothingProducedError(f"{args.manifest}: no clip could be segmented ({len(skipped)} skipped, listed "
                                   "above)")
    print(f"segmented {len(table)} clip(s), {int(table['n_frames'].sum())} frames -> {args.out}")
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


def _together(write, out: Path, overwrite: bool) -> dict[str, Path]:
    """Run ``write(folder) -> {name: path}`` into a hidden folder inside ``out``, then move its files
    into ``out``: they appear together or not at all (a full disk leaves no PNG without its MP4)."""
    import shutil
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".partial-"))
    try:
        written = write(work)
        targets = {name: out / path.name for name, path in written.items()}
        clashes = [str(t) for t in targets.values() if t.exists()]
        if clashes and not overwrite:
            raise FileExistsError(f"{', '.join(clashes)}: already exist(s); pass --overwrite to replace")
        for name, path in written.items():
            os.replace(path, targets[name])
        return targets
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cmd_preview(args: argparse.Namespace) -> int:
    from echokdm.io.dispatch import guess_format, read_cine
    from echokdm.io.preview import write_preview

    fmt = args.format or guess_format(args.file)
    cine = read_cine(args.file, fmt, **_read_kwargs(args, fmt))
    written = _together(lambda folder: write_preview(cine, folder), Path(args.out), args.overwrite)
    for name, path in written.items():
        print(f"{name:>6}: {path}")
    return 0


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------


def _fractions(text: str) -> tuple[float, float, float]:
    """argparse type: three non-negative numbers 'train,val,test' summing to 1."""
    from echokdm.data.manifest import validate_fractions

    try:
        parts = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers 'train,val,test', got {text!r}") from None
    try:
        return validate_fractions(parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _packaged_names() -> list[str]:
    from echokdm.pretrained import available

    return available() or ["none installed"]


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from echokdm import __version__

    parser = argparse.ArgumentParser(
        prog="echokdm",
        description="Echocardiography toolkit: read echo cine loops, build manifests, measure LV keypoints and "
                    "EF, and train and run the Key-point guided Diffusion Model (KDM) to generate cine loops. "
                    "Model options (--checkpoint, --pipeline, --segmentation) take a folder or the name of a "
                    "packaged checkpoint (" + ", ".join(_packaged_names()) + ").",
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
                   help="retrain the demo checkpoints from scratch on the realistic phantom first (about an hour on a 2-core CPU)")
    p.add_argument("--pipeline", metavar="FOLDER", default=None,
                   help="KDM pipeline folder or packaged name to use instead of the packaged kdm_phantom_112")
    p.add_argument("--segmentation", metavar="MODEL", default=None,
                   help="segmentation model folder or packaged name to use instead of the packaged seg_phantom_112")
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
    p.add_argument("--salt", help="dicom/camus: salt of the pseudonymous patient IDs (default: $ECHOKDM_ID_SALT or a "
                                  "public default)")
    p.add_argument("--fps", type=_positive_float,
                   help="frame rate of the clips whose files state none (CAMUS, most NIfTI); files that state one "
                        "keep theirs")
    p.add_argument("--clinical-csv", metavar="CSV",
                   help="per-clip or per-patient values the files lack: a key column (clip_id, file or patient_id) "
                        "and fps and/or ef_reference (edv_reference, esv_reference); they replace the files' own. "
                        "Columns: data_manifests/README.md")
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
    t.add_argument("--steps", type=_positive_int, default=None, help="override train.steps (>= 1)")
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

    from echokdm.cli.flow import register as register_flow_command
    from echokdm.cli.flow import register_train as register_train_flow

    register_train_flow(train_sub)

    p = sub.add_parser("segment", help="LV masks for every frame of a manifest",
                       description="Segment every frame of every clip with a trained segmentation model; report "
                                   "Dice per clip and per patient on the frames that have labels.")
    p.add_argument("manifest", help="manifest CSV of the clips to segment")
    p.add_argument("--checkpoint", required=True,
                   help="segmentation model folder (a run's best/ or last/) or a packaged name, e.g. seg_phantom_112")
    p.add_argument("-o", "--out", required=True, help="output folder (masks/*.npz, segmentation.csv)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes, one clip at a time each (default: %(default)s); an interrupted run "
                        "continues where it stopped when run again")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier segmentation.csv")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_segment)

    from echokdm.cli.keypoints import register as register_keypoint_commands

    register_keypoint_commands(sub)
    register_flow_command(sub)

    from echokdm.cli.evaluate import register as register_evaluate_command

    register_evaluate_command(sub)

    from echokdm.cli.generate import register as register_generate_command

    register_generate_command(sub)

    from echokdm.cli.synthesize import register as register_synthesize_command

    register_synthesize_command(sub)

    from echokdm.cli.procedural import register as register_procedural_command

    register_procedural_command(sub)

    p = sub.add_parser("info", help="describe one echo file",
                       description="Read one file and print its frames, frame rate, calibration and metadata.")
    p.add_argument("file", help="echo file (DICOM, EchoNet AVI, CAMUS/NIfTI, video)")
    _add_common_read_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("preview", help="write first/middle/last frame PNGs and an MP4 of one file",
                       description="Write <clip>_first.png, _middle.png, _last.png and <clip>.mp4 into OUT.")
    p.add_argument("file", help="echo file (DICOM, EchoNet AVI, CAMUS/NIfTI, video)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing previews")
    _add_common_read_args(p)
    p.set_defaults(func=cmd_preview)
    return parser


# --------------------------------------------------------------------------------------------
# checks made before any command runs
# --------------------------------------------------------------------------------------------

#: Model options of each command and the kind of checkpoint they take. main() resolves them with
#: :func:`echokdm.pretrained.resolve_checkpoint` (a folder, else a packaged name, else a clear error;
#: never a model hub) before the command runs. (``keypoints``/``ef --segmentation`` is an output
#: folder of ``segment``, not a model, and is not listed.)
_MODEL_OPTIONS = {
    "demo": {"pipeline": "pipeline", "segmentation": "segmentation"},
    "segment": {"checkpoint": "segmentation"},
    "flow": {"checkpoint": "ofnet"},
    "evaluate": {"pipeline": "pipeline", "pipeline_noflow": "pipeline", "segmentation": "segmentation"},
    "generate": {"pipeline": "pipeline", "segmentation": "segmentation"},
    "synthesize": {"pipeline": "pipeline", "segmentation": "segmentation"},
}


def _resolve(value: str, kind: str) -> str:
    from echokdm.pretrained import resolve_checkpoint

    return str(resolve_checkpoint(value, kind))


def _resolve_models(args: argparse.Namespace) -> None:
    """Replace each model option of the command by the folder it names (see ``_MODEL_OPTIONS``)."""
    for name, kind in _MODEL_OPTIONS.get(args.command, {}).items():
        value = getattr(args, name, None)
        if value:
            setattr(args, name, _resolve(value, kind))


def _output_folders(args: argparse.Namespace) -> list[Path]:
    """The folders the command will write into: ``--out`` (a folder) and the folder of ``--output`` (a file)."""
    folders = []
    if getattr(args, "out", None):
        folders.append(Path(args.out))
    if getattr(args, "output", None):
        folders.append(Path(args.output).parent)
    return folders


def check_output_folder(folder: str | Path) -> Path:
    """Fail before any work when ``folder`` cannot be created or written to.

    The folder need not exist: its nearest existing parent must then be a writable folder (the
    command creates the rest). Returns ``folder``.

    Raises
    ------
    NotADirectoryError
        A file stands where the folder (or one of its parents) should be.
    PermissionError
        The folder, or the parent it would be created in, is not writable.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder (output)", str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "output folder is not writable", str(existing))
    return folder


def _os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an operating-system error: the path it concerns and what went wrong."""
    where = exc.filename
    if where is None:  # e.g. a full disk while writing an open file: name the output
        folders = _output_folders(args)
        where = folders[0] if folders else None
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where is not None else what


def _prog(args: argparse.Namespace) -> str:
    """``echokdm <command>`` (``echokdm train <model>`` for training), the prefix of error lines."""
    return f"echokdm {args.command}" + (f" {args.model}" if args.command == "train" else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 = success, 1 = failure, 2 = usage error)."""
    from echokdm.errors import EchoKDMError

    parser = build_parser()
    args = parser.parse_args(argv)
    from echokdm.runtime import configure_threads

    configure_threads()  # fewer torch threads on a busy machine (one line on stderr); OMP_NUM_THREADS wins
    try:
        _resolve_models(args)
        for folder in _output_folders(args):
            check_output_folder(folder)
        return int(args.func(args) or 0)
    except (EchoKDMError, FileNotFoundError, FileExistsError, ValueError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, EchoKDMError) and exc.strerror:
            message = _os_error_line(exc, args)
        else:
            message = str(exc)
        print(f"{_prog(args)}: error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:  # read-only folder, full disk ...: one line naming the path, no traceback
        print(f"{_prog(args)}: error: {_os_error_line(exc, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: finished work is kept (batch commands resume); no traceback
        print(f"{_prog(args)}: interrupted; run the same command again to resume where it can", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
