"""The ``echokdm synthesize`` command: a synthetic cohort in the EchoNet-Dynamic layout.

Argument parsing and printing only; the work is done by
:func:`echokdm.generation.synthesize.synthesize_cohort` (in one process, or sharded under
``accelerate launch --num_processes N -m echokdm synthesize ...``). :func:`register` adds the command to the
``echokdm`` parser's subparsers. ``--pipeline`` and ``--segmentation`` default to the packaged
phantom demo checkpoints (:mod:`echokdm.pretrained`) when this installation has them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from echokdm.cli._common import add_run_options, add_sampling_options, sampling_settings
from echokdm.generation.settings import DEFAULT_FPS, SamplingSettings

__all__ = ["cmd_synthesize", "register"]

_DEFAULT_PIPELINE = "kdm_phantom_112"
_DEFAULT_SEGMENTATION = "seg_phantom_112"


def _packaged(name: str) -> Path | None:
    """The packaged checkpoint folder ``name``, or None when this installation lacks it."""
    from echokdm.pretrained import CHECKPOINTS

    path = CHECKPOINTS / name
    return path if path.is_dir() else None


def _pipeline_folder(args: argparse.Namespace) -> Path:
    if args.pipeline:
        return Path(args.pipeline)
    packaged = _packaged(_DEFAULT_PIPELINE)
    if packaged is None:
        from echokdm.pretrained import CHECKPOINTS

        raise FileNotFoundError(f"{CHECKPOINTS / _DEFAULT_PIPELINE}: the packaged demo pipeline is not installed; "
                                "give --pipeline FOLDER (a KDM pipeline saved by echokdm train)")
    return packaged


def _segmentation_folder(args: argparse.Namespace) -> Path | None:
    if args.no_segmentation:
        return None
    return Path(args.segmentation) if args.segmentation else _packaged(_DEFAULT_SEGMENTATION)


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Generate the cohort and print its summary and files; returns the exit code (0 = success, 1 = no
    loop could be made)."""
    from echokdm.distributed import is_main_process
    from echokdm.generation.synthesize import synthesize_cohort

    pipeline = _pipeline_folder(args)
    segmentation = _segmentation_folder(args)
    if is_main_process():
        print(f"pipeline: {pipeline}")
        print(f"segmentation: {segmentation or 'none (EF achieved is not measured)'}")
    result = synthesize_cohort(
        args.manifest, pipeline, args.out, n_loops=args.n, split=args.split,
        ef_range=tuple(args.ef_range) if args.ef_range else None, ef_reference=args.ef_reference,
        heart_rate_range=tuple(args.heart_rate_range), fps=args.fps, n_beats=args.beats,
        sampling=sampling_settings(args), segmentation=segmentation, training_manifest=args.training_manifest,
        include_source=not args.no_source_frame, ef_attempts=args.ef_attempts, fan_mask=not args.no_fan_mask,
        memorisation_frames=args.memorisation_frames, device=args.device,
        overwrite=args.overwrite, progress=not args.no_progress, privacy_filter=args.privacy_filter)
    if result is None:  # a launched process whose loops are made: the main one writes and reports
        return 0
    for line in result.summary_lines():
        print(line)
    if args.privacy_filter:
        print(result.privacy.summary_line())
        for row in result.privacy.table[result.privacy.table["dropped"]].itertuples(index=False):
            print(f"  dropped {row.loop}: nearest training patient {row.nearest_patient_id} at {row.distance:.4g}")
    for item, reason in result.skipped.itertuples(index=False):
        print(f"  skipped {item}: {reason}")
    print(f"cohort: {result.out}")
    for name, path in result.paths.items():
        print(f"  {name:>17}: {path}")
    return 0 if len(result.cohort) else 1


def _add_motion_args(p: argparse.ArgumentParser) -> None:
    ef = p.add_mutually_exclusive_group()
    ef.add_argument("--ef-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="target EFs uniform on this range, percent (default: 20 70)")
    ef.add_argument("--ef-reference", metavar="CSV[:COLUMN]",
                    help="match the EF distribution of a CSV column (default column: EF, ef, ef_reference or "
                         "ef_target; e.g. an EchoNet FileList.csv or a manifest)")
    p.add_argument("--heart-rate-range", type=float, nargs=2, metavar=("LOW", "HIGH"), default=[55.0, 95.0],
                   help="heart rates uniform on this range, bpm (default: 55 95)")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frame rate of the loops (default: %(default)s)")
    p.add_argument("--beats", type=float, default=1.0, help="beats per loop (default: %(default)s)")
    p.add_argument("--ef-attempts", type=int, default=3,
                   help="with a segmentation model: loops generated at most per cohort loop to bring its re-measured "
                        "EF within 2 points of the drawn EF; 1 = keypoints at the drawn EF (default: %(default)s)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", metavar="FOLDER",
                   help=f"KDM pipeline folder (default: the packaged demo {_DEFAULT_PIPELINE}, phantom only)")
    seg = p.add_mutually_exclusive_group()
    seg.add_argument("--segmentation", metavar="MODEL",
                     help="segmentation model folder: source keypoints of clips without masks and the achieved EF "
                          f"(default: the packaged {_DEFAULT_SEGMENTATION} when installed)")
    seg.add_argument("--no-segmentation", action="store_true",
                     help="use no segmentation model (the achieved EF is not measured)")
    add_sampling_options(p, SamplingSettings(), names=("mode", "num_inference_steps", "k", "fit_keypoints",
                                                       "batch_size", "detail", "keyframes", "interpolation",
                                                       "fit_region"))
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synthesize`` command to an argparse subparsers object (``args.func(args)`` runs it)."""
    p = subparsers.add_parser(
        "synthesize", help="generate a synthetic cohort (EchoNet-Dynamic layout) with a memorisation check",
        description="Animate the end-diastolic frames of a manifest split with KDM: N loops with EFs drawn from a "
                    "range or matched to a reference distribution and heart rates from a range. Writes them in the "
                    "EchoNet-Dynamic layout (Videos/, FileList.csv, VolumeTracings.csv) with cohort.csv, a "
                    "memorisation check of the generated frames against the pipeline's training frames "
                    "(memorisation.csv, memorisation.png) and ef_distribution.png.")
    p.add_argument("manifest", help="manifest CSV of the source clips")
    p.add_argument("-o", "--out", required=True, help="cohort folder (created)")
    p.add_argument("--n", type=int, required=True, help="number of loops")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="split of the source clips; loops keep their source's split (default: %(default)s; use "
                        "train to augment training data)")
    _add_motion_args(p)
    _add_model_args(p)
    p.add_argument("--training-manifest", metavar="M",
                   help="manifest whose train split trained the pipeline (default: MANIFEST), for the memorisation "
                        "check")
    p.add_argument("--memorisation-frames", type=int, default=2000,
                   help="most training (and held-out) frames read for the memorisation check (default: %(default)s)")
    p.add_argument("--no-fan-mask", action="store_true",
                   help="keep the source pixels outside the ultrasound fan (default: set to 0 in every loop, so "
                        "burned-in text never reaches the cohort; sources marked BurnedInAnnotation YES are then "
                        "skipped)")
    p.add_argument("--privacy-filter", action="store_true",
                   help="drop the loops closer to a training patient (other than their source) than 95 %% of real "
                        "held-out patients are, in an identity feature space; listed in privacy_dropped.csv")
    p.add_argument("--no-source-frame", action="store_true",
                   help="make every frame with the model (default: frame 0 of each loop is the real source frame)")
    add_sampling_options(p, SamplingSettings(), names=("seed",),
                         helps={"seed": "random seed, a non-negative integer; loop i depends only on it, i and its "
                                        "source"})
    add_run_options(p, overwrite="replace existing outputs")
    p.set_defaults(func=cmd_synthesize)
