"""The ``echokdm procedural`` command: write a procedural face or pose dataset.

Argument parsing and printing only; the work is :func:`echokdm.data.procedural.write_procedural_dataset`.
:func:`register` adds the command to the ``echokdm`` parser's subparsers.
"""

from __future__ import annotations

import argparse

from echokdm.cli._common import add_run_options

__all__ = ["cmd_procedural", "register"]


def cmd_procedural(args: argparse.Namespace) -> int:
    """Write the dataset and print where its parts are; returns the exit code."""
    from echokdm.data.procedural import write_procedural_dataset

    result = write_procedural_dataset(
        args.out, args.kind, n_subjects=args.subjects, sequences_per_subject=args.sequences_per_subject,
        n_frames=args.frames, size=args.size, fps=args.fps, pairs_per_sequence=args.pairs, missing=args.missing,
        skeleton=args.skeleton, seed=args.seed, overwrite=args.overwrite, progress=not args.no_progress)
    m = result.manifest
    counts = m["split"].value_counts().to_dict()
    adapter = "face" if args.kind == "face" else ("pose" if args.skeleton == "body25" else "pose_coco18")
    print(f"wrote {len(m)} procedural {args.kind} sequence(s) of {args.frames} frames at {args.size}x{args.size} "
          f"to {result.out.resolve()}")
    print(f"  manifest: {result.out / 'manifest.csv'} ("
          + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")) + ")")
    print(f"  frames, keypoints: {result.out / 'sequences'}/<clip>/frames, keypoints; exact flows: "
          f"{result.out / 'flows'}; exact keypoints: {result.out / 'truth'}")
    empty = [k for k in ("train", "val") if not counts.get(k)]
    if empty:
        print(f"  note: no {' or '.join(empty)} sequence (splits are by subject: {args.subjects} subject(s)); "
              "echokdm train kdm needs both, use more --subjects")
    print(f"  train: echokdm train kdm --config configs/{args.kind}/kdm_224.yaml "
          f"--manifest {result.out / 'manifest.csv'} --out RUN   (adapter {adapter})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``procedural`` command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "procedural", help="write a procedural face or pose dataset (test data with exact keypoints and flows)",
        description="Simulate cartoon faces (68 iBUG landmarks moving with expression and head motion) or "
                    "articulated textured figures (OpenPose joints moving with an action) and write them as a "
                    "sequence manifest: PNG frames, one keypoint file per frame (.pts or OpenPose JSON), exact "
                    "flows of frame pairs and exact keypoints.")
    p.add_argument("kind", choices=("face", "pose"), help="faces or figures")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--subjects", type=int, default=8, help="number of subjects (default: %(default)s)")
    p.add_argument("--sequences-per-subject", type=int, default=2,
                   help="sequences (motions) per subject; splits are by subject (default: %(default)s)")
    p.add_argument("--frames", type=int, default=16, help="frames per sequence (default: %(default)s)")
    p.add_argument("--size", type=int, default=224, help="frame size in pixels, square (default: %(default)s)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default: %(default)s)")
    p.add_argument("--pairs", type=int, default=24,
                   help="frame pairs per sequence whose exact flow is stored (default: %(default)s)")
    p.add_argument("--missing", type=float, default=0.03,
                   help="pose: probability that an eye, ear or foot joint is written as not found "
                        "(default: %(default)s)")
    p.add_argument("--skeleton", choices=("body25", "coco18"), default="body25",
                   help="pose: joints written to the OpenPose files (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="draws subjects, motions and splits (default: %(default)s)")
    add_run_options(p, overwrite="replace files of an earlier dataset")
    p.set_defaults(func=cmd_procedural)
