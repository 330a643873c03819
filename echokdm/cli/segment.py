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

__all__ = ["DEFAULT_MODEL", "cmd_segment", "register"]

#: The model ``echokdm segment`` runs when no ``--checkpoint`` is given.
DEFAULT_MODEL = "seg_phantom_112"


def _print_skipped(skipped) -> None:
    for clip, reason in skipped:
        print(f"  skipped {clip}: {reason}")


def _pick_previews(table, limit: int):
    """The clips to preview: the lowest Dice first when labelled, else those with frames cut, then in order."""
    import numpy as np

    if limit <= 0 or not len(table):
        return table.iloc[:0]
    dice = table["dice"].astype(float) if "dice" in table else None
    if dice is not None and dice.notna().any():
        key = dice.fillna(np.inf).to_numpy()
    elif "frames_cut" in table:
        key = -table["frames_cut"].fillna(0).astype(float).to_numpy()
    else:
        key = np.zeros(len(table))
    return table.assign(_key=key).sort_values("_key", kind="stable").drop(columns="_key").head(limit)


def _write_previews(args: argparse.Namespace, table) -> None:
    """``OUT/previews/<clip>.mp4``: the clip inside its fan with the masks written, the keypoints measured on the
    network's masks (as ``echokdm ef`` reads them) and the volume curve (``--previews``)."""
    import dataclasses

    import numpy as np

    from echokdm.app.clip import open_clip
    from echokdm.app.render import write_overlay_video
    from echokdm.data.manifest import clip_file_stem, load_manifest
    from echokdm.metrics.ef_plots import shown_frames

    folder = Path(args.out) / "previews"
    if args.overwrite and folder.is_dir():  # the earlier run's previews show its masks, of clips this run may not show
        for old in folder.glob("*.mp4"):
            old.unlink()
    picked = _pick_previews(table, args.previews)
    if not len(picked):
        return
    rows = {str(r["clip_id"]): r for r in load_manifest(args.manifest).to_dict("records")}
    written, notes = 0, []
    for clip in picked.to_dict("records"):
        row = rows.get(str(clip["clip_id"]))
        target = folder / f"{clip_file_stem(str(clip['clip_id']))}.mp4"
        try:
            with np.load(Path(args.out) / str(clip["masks"])) as saved:
                predicted = (saved["masks"], saved["network"] if "network" in saved.files else saved["masks"])
            view = open_clip(row["path"], format=str(row["format"]), predicted=predicted)
            frames, note = shown_frames(view.cine)
            if frames is None:
                notes.append(f"{clip['clip_id']}: {note}")
                continue
            view = dataclasses.replace(view, cine=dataclasses.replace(view.cine, frames=frames))
            write_overlay_video(target, view, overwrite=args.overwrite)
            written += 1
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{clip['clip_id']}: no preview ({' '.join(str(exc).split())[:160]})")
    more = "" if len(picked) == len(table) else f"; --previews {len(table)} for every clip"
    print(f"  previews (frames inside the fan, masks, keypoints, volume curve): {written} in {folder}{more}")
    for line in notes:
        print(f"    {line}")


def cmd_segment(args: argparse.Namespace) -> int:
    """Segment every clip and print Dice per patient on the labelled frames; fails when no clip could be segmented."""
    from echokdm.cli.parallel import segment_manifest_parallel

    if args.checkpoint is None:
        from echokdm.cli._common import resolve_model

        args.checkpoint = resolve_model(DEFAULT_MODEL, "segmentation")
        print(f"model: {DEFAULT_MODEL} (packaged; trained on the realistic phantom only, no real echo: check its masks "
              "by eye, and train on your labelled clips with 'echokdm train seg'; --checkpoint to choose another)")
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
    _write_previews(args, table)
    _print_skipped(skipped)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "segment", help="LV masks for every frame of a manifest",
        description="Segment every frame of every clip with a trained segmentation model; report Dice per clip and "
                    "per patient on the frames that have labels.")
    p.add_argument("manifest", help="manifest CSV of the clips to segment")
    p.add_argument("--checkpoint", "--segmentation", dest="checkpoint", default=None, metavar="MODEL",
                   help="segmentation model folder (a run's best/ or last/) or a packaged name (--segmentation, as "
                        f"in the other commands, is the same option; default: the packaged {DEFAULT_MODEL}, trained "
                        "on the phantom only)")
    p.add_argument("-o", "--out", required=True, help="output folder (masks/*.npz, segmentation.csv)")
    p.add_argument("--network-masks", action="store_true",
                   help="write the network's masks as they are; by default they are repaired as the keypoints read "
                        "them (largest component, holes filled, a frame that leaks into the atrium cut at the annulus "
                        "line), the network's own kept beside them in each .npz as 'network'")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes on this machine, one clip at a time each (default: %(default)s; "
                        "ignored under accelerate launch, which makes its own); an interrupted run continues "
                        "where it stopped when run again")
    p.add_argument("--previews", type=int, default=6, metavar="N",
                   help="MP4s of N clips in OUT/previews/ (the lowest Dice first when the clips are labelled, else "
                        "those with frames cut): the frames inside the ultrasound fan with the masks, the keypoints "
                        "and the volume curve (default: %(default)s; 0 for none)")
    add_run_options(p, overwrite="replace an earlier segmentation.csv")
    p.set_defaults(func=cmd_segment)
