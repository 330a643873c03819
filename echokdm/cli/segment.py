"""The ``echokdm segment`` command: LV masks for every frame of a manifest.

Argument parsing and printing only; the work is
:func:`echokdm.echo.segmentation_training.segment_manifest`, one clip at a time through
:func:`echokdm.cli.parallel.segment_manifest_parallel` (``--workers N`` processes or
``accelerate launch --num_processes N -m echokdm segment ...``; resumable).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from echokdm.cli._common import add_run_options

__all__ = ["cmd_segment", "register"]


def _print_skipped(skipped) -> None:
    for clip, reason in skipped:
        print(f"  skipped {clip}: {reason}")


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment every clip and print Dice per patient on the labelled frames; fails when no clip could be segmented."""
    from echokdm.cli.parallel import segment_manifest_parallel

    merged = segment_manifest_parallel(args.manifest, args.checkpoint, args.out, workers=args.workers,
                                       overwrite=args.overwrite, progress=not args.no_progress,
                                       repair=not args.network_masks)
    if merged is None:  # a launched process whose clips are done: the main one writes and reports
        return 0
    table, skipped = merged
    if not len(table):
        from echokdm.errors import NothingProducedError

        _print_skipped(skipped)
        (Path(args.out) / "segmentation.csv").unlink(missing_ok=True)  # the empty report this run wrote
        with contextlib.suppress(OSError):
            (Path(args.out) / "masks").rmdir()  # only when empty
        raise NothingProducedError(f"{args.manifest}: no clip could be segmented ({len(skipped)} skipped, listed "
                                   "above)")
    print(f"segmented {len(table)} clip(s), {int(table['n_frames'].sum())} frames -> {args.out}")
    scored = table.dropna(subset=["dice"]) if len(table) else table
    if len(scored):
        network = (scored.groupby(["split", "patient_id"])["dice_network"].mean().groupby("split").mean()
                   if "dice_network" in scored else {})
        per_patient = scored.groupby(["split", "patient_id"])["dice"].mean().groupby("split")
        for split, values in per_patient:
            own = f"; the network's own masks {network[split]:.3f}" if split in network else ""
            print(f"  {split}: Dice on labelled frames, mean per patient {values.mean():.3f} "
                  f"(min {values.min():.3f}, {len(values)} patients{own})")
    if "frames_cut" in table and table["frames_cut"].fillna(0).sum():
        cut = table[table["frames_cut"].fillna(0) > 0]
        print(f"  {int(cut['frames_cut'].sum())} frame(s) of {len(cut)} clip(s) cut at the annulus line (leaks into "
              "the atrium; segmentation.csv: frames_cut, repair_note; the network's own masks are kept in each .npz "
              "as 'network', which echokdm ef measures; --network-masks writes them as they are)")
    _print_skipped(skipped)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "segment", help="LV masks for every frame of a manifest",
        description="Segment every frame of every clip with a trained segmentation model; report Dice per clip and "
                    "per patient on the frames that have labels.")
    p.add_argument("manifest", help="manifest CSV of the clips to segment")
    p.add_argument("--checkpoint", "--segmentation", dest="checkpoint", required=True, metavar="MODEL",
                   help="segmentation model folder (a run's best/ or last/) or a packaged name, e.g. seg_phantom_112 "
                        "(--segmentation, as in the other commands, is the same option)")
    p.add_argument("-o", "--out", required=True, help="output folder (masks/*.npz, segmentation.csv)")
    p.add_argument("--network-masks", action="store_true",
                   help="write the network's masks as they are; by default they are repaired as the keypoints read "
                        "them (largest component, holes filled, a frame that leaks into the atrium cut at the annulus "
                        "line), the network's own kept beside them in each .npz as 'network'")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes on this machine, one clip at a time each (default: %(default)s; "
                        "ignored under accelerate launch, which makes its own); an interrupted run continues "
                        "where it stopped when run again")
    add_run_options(p, overwrite="replace an earlier segmentation.csv")
    p.set_defaults(func=cmd_segment)
