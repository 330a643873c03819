"""The ``echokdm phantom`` command: a synthetic echo cohort with exact ground truth.

Argument parsing and printing only; the work is :func:`echokdm.data.phantom.export.write_cohort`.
"""

from __future__ import annotations

import argparse

from echokdm.cli._common import add_run_options

__all__ = ["cmd_phantom", "register"]


def cmd_phantom(args: argparse.Namespace) -> int:
    """Write the cohort and print where its parts are; exit 1 when a patient's clip is missing."""
    from echokdm.data.phantom.export import write_cohort

    result = write_cohort(
        args.out, args.patients, args.format, seed=args.seed, size=args.size, fps=args.fps, n_beats=args.beats,
        decorrelation=args.decorrelation, noise=args.noise, style=args.style, overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    m, gt = result.manifest, result.ground_truth
    counts = m["split"].value_counts().to_dict()
    splits = ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test"))
    print(f"wrote {len(m)} synthetic {args.format} clip(s) ({args.style} style) to {result.out.resolve()}")
    print(f"  manifest:     {result.out / 'manifest.csv'} ({splits})")
    print(f"  ground truth: {result.out / 'ground_truth.csv'} and ground_truth/*.npz (masks, keypoints, volumes, "
          "flows)")
    print(f"  EF {gt.ef_percent.min():.0f}-{gt.ef_percent.max():.0f} %, heart rate "
          f"{gt.heart_rate_bpm.min():.0f}-{gt.heart_rate_bpm.max():.0f} bpm, {int(gt.n_frames.sum())} frames")
    for path, reason in result.skipped:
        print(f"  skipped {path}: {reason}")
    return 0 if len(m) == len(gt) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``phantom`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "phantom", help="simulate a synthetic echo cohort with exact ground truth",
        description="Simulate apical four-chamber echo cine loops of synthetic patients (known masks, 40 keypoints, "
                    "volumes, EF and dense motion) and write them in a real format, with a manifest and the ground "
                    "truth.")
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
    add_run_options(p, overwrite="replace files of an earlier cohort")
    p.set_defaults(func=cmd_phantom)
