"""The ``echokdm keypoints`` and ``echokdm ef`` commands.

Argument parsing and printing only; the work is done by :mod:`echokdm.metrics.lv_function`, one
clip at a time through :func:`echokdm.cli.parallel.keypoints_table_parallel` (``--workers N``
processes; each clip's result is kept in a hidden parts folder next to the output until the table
is written, so an interrupted run continues where it stopped when run again). :func:`register`
adds both commands to the ``echokdm`` parser's subparsers.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from echokdm.cli._common import add_run_options, positive_int

__all__ = ["cmd_ef", "cmd_keypoints", "register"]

_DIRECTIONS = ("auto", "up", "down", "left", "right")


def _check_free(paths: list[Path], overwrite: bool) -> None:
    """Fail before any work when an output exists and ``--overwrite`` was not given."""
    clashes = [str(p) for p in paths if p.exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{', '.join(clashes)}: already exist(s); pass --overwrite to replace, "
                              "or choose another output")


def _print_skipped(skipped: list[tuple[str, str]], report: Path | None) -> None:
    if not skipped:
        return
    where = f" (also in {report})" if report else ""
    print(f"{len(skipped)} item(s) skipped{where}:")
    for item, reason in skipped:
        print(f"  {item}: {reason}")


def _write_skipped(skipped: list[tuple[str, str]], path: Path, overwrite: bool) -> Path | None:
    import pandas as pd

    from echokdm.metrics.lv_function import write_table

    if not skipped:
        return None
    return write_table(pd.DataFrame(skipped, columns=["item", "reason"]), path, overwrite=overwrite)


def _table(args: argparse.Namespace, parts: Path):
    """The keypoints table of the manifest, clip by clip in ``args.workers`` processes (or those of
    accelerate launch); per-clip results in ``parts`` (reused when the same command is run again after an
    interruption). None in a launched process other than the main one."""
    from echokdm.cli.parallel import keypoints_table_parallel

    if args.segmentation:
        from echokdm.metrics.lv_function import segmentation_source

        segmentation_source(args.segmentation)  # a value that is neither is refused here, once, not for every clip
    return keypoints_table_parallel(args.manifest, parts, workers=args.workers, smooth_sigma_frames=args.smooth_sigma,
                                    apex_direction=args.apex_direction, segmentation=args.segmentation,
                                    progress=not args.no_progress)


def _parts_folder(output: Path) -> Path:
    """The hidden folder of per-clip results beside ``output``."""
    return output.with_name(f".{output.name}.parts")


def cmd_keypoints(args: argparse.Namespace) -> int:
    """Per-frame keypoints, volume and flags of every clip of a manifest -> .parquet or .csv."""
    from echokdm.metrics.lv_function import write_table

    output = Path(args.output)
    if output.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"{output}: the output must end in .parquet or .csv")
    skipped_path = output.with_name(output.stem + "_skipped.csv")
    _check_free([output, skipped_path], args.overwrite)
    parts = _parts_folder(output)
    result = _table(args, parts)
    if result is None:  # a launched process whose clips are done: the main one writes and reports
        return 0
    frames = result.frames
    measured = int((~frames["flags"].astype(str).str.contains("failed:", regex=False)).sum()) if len(frames) else 0
    if not measured:  # every clip or frame failed: no table, the reasons in the skipped report, exit 1
        from echokdm.errors import NothingProducedError

        _print_skipped(result.skipped, _write_skipped(result.skipped, skipped_path, args.overwrite))
        shutil.rmtree(parts, ignore_errors=True)
        raise NothingProducedError(f"{args.manifest}: no frame got keypoints ({len(frames)} frame(s) failed, "
                                   f"{len(result.skipped)} item(s) skipped, listed above); {output} not written")
    write_table(frames, output, overwrite=args.overwrite)
    print(f"wrote {output}: {len(frames)} frame(s) of {len(result.clips)} clip(s) "
          f"({(frames['mask_source'] == 'mask').sum()} from masks, {(frames['mask_source'] == 'tracing').sum()} "
          "from tracings)")
    _print_skipped(result.skipped, _write_skipped(result.skipped, skipped_path, args.overwrite))
    shutil.rmtree(parts, ignore_errors=True)
    return 0 if len(result.clips) else 1


def _print_summary(summary) -> None:
    for rec in summary.to_dict("records"):
        print(f"  {rec['dataset']}: n={rec['n']}, MAE {rec['mae']:.2f} (95% CI {rec['mae_ci_low']:.2f}-"
              f"{rec['mae_ci_high']:.2f}), bias {rec['bias']:+.2f}, limits of agreement {rec['loa_low']:+.2f} "
              f"to {rec['loa_high']:+.2f}, Pearson r {rec['pearson_r']:.3f} (EF points)")


def _clip_plots(args: argparse.Namespace, frames, clips, folder: Path) -> None:
    """Pictures of what each chosen clip's EF was measured from (``--clip-plots``)."""
    from echokdm.data.manifest import load_manifest, read_clip
    from echokdm.metrics.ef_plots import write_clip_ef_plots

    if args.overwrite and folder.is_dir():  # an earlier run's pictures, of clips this run may not draw
        for old in folder.glob("*.png"):
            old.unlink()
    if args.clip_plots <= 0 or clips.empty:
        return
    rows = load_manifest(args.manifest)
    by_clip = {(str(r["dataset"]), str(r["clip_id"])): r for r in rows.to_dict("records")}

    def read(clip: dict):
        row = by_clip.get((str(clip["dataset"]), str(clip["clip_id"])))
        if row is None:
            raise ValueError("not in the manifest")
        return read_clip(row)

    written, why = write_clip_ef_plots(frames, clips, folder, limit=args.clip_plots, read_clip=read,
                                       overwrite=args.overwrite)
    more = "" if len(written) == len(clips) else f"; --clip-plots {len(clips)} for every clip"
    print(f"clip pictures (ED/ES frames with keypoints, volume curve): {len(written)} of {len(clips)} in "
          f"{folder} ({why}{more})")


def cmd_ef(args: argparse.Namespace) -> int:
    """Per-clip EDV, ESV, EF and beats; agreement with ef_reference and Bland–Altman plot."""
    from echokdm.metrics.lv_function import (
        ef_agreement,
        ef_table,
        plot_ef_agreement,
        write_table,
    )

    out = Path(args.out)
    paths = {name: out / f"ef_{name}" for name in ("per_clip.csv", "summary.csv", "skipped.csv",
                                                  "bland_altman.png", "scatter.png")}
    _check_free(list(paths.values()) + [out / "ef_clips"], args.overwrite)
    parts = _parts_folder(out / "ef_keypoints")
    table = _table(args, parts)
    if table is None:  # a launched process whose clips are done: the main one writes and reports
        return 0
    result = ef_table(table)
    write_table(result.clips, paths["per_clip.csv"], overwrite=args.overwrite)
    measured = result.clips["ef"].notna().sum()
    print(f"wrote {paths['per_clip.csv']}: EF of {measured} of {len(result.clips)} clip(s)")
    summary = ef_agreement(result.clips)
    if len(summary):
        write_table(summary, paths["summary.csv"], overwrite=args.overwrite)
        plots = plot_ef_agreement(result.clips, out, overwrite=args.overwrite)
        print(f"agreement with ef_reference (also in {paths['summary.csv']}):")
        _print_summary(summary)
        print(f"plots: {plots['bland_altman']}, {plots['scatter']}")
    else:
        print("no clip has both an EF and an ef_reference: no agreement summary or plots")
    _clip_plots(args, table.frames, result.clips, out / "ef_clips")
    skipped = table.skipped + result.skipped
    _print_skipped(skipped, _write_skipped(skipped, paths["skipped.csv"], args.overwrite))
    shutil.rmtree(parts, ignore_errors=True)
    return 0 if measured else 1


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="manifest CSV (see data_manifests/README.md)")
    p.add_argument("--segmentation", metavar="DIR|MODEL", default=None,
                   help="output folder of 'echokdm segment', or a segmentation model folder or packaged name "
                        "(e.g. seg_phantom_112, run here inside each clip's fan): the predicted mask of every "
                        "frame (whole cardiac cycles for EchoNet clips traced on two frames)")
    p.add_argument("--smooth-sigma", type=float, default=1.0, metavar="FRAMES",
                   help="Gaussian smoothing of apex/annulus over consecutive labelled frames, in frames; "
                        "0 for none (default: %(default)s)")
    p.add_argument("--apex-direction", choices=_DIRECTIONS, default="auto",
                   help="where the apex points in the image; 'auto' detects it per clip from the masks' shape, "
                        "records it in the apex_direction column and flags a clip whose masks cannot tell "
                        "(default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="worker processes, one clip at a time each (default: %(default)s); an interrupted run "
                        "continues where it stopped when run again")
    add_run_options(p, overwrite="replace existing outputs")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``keypoints`` and ``ef`` commands to an argparse subparsers object.

    Each parser's ``func`` default is the command function: ``args.func(args)`` returns the
    exit code (0 = success, 1 = nothing could be measured).
    """
    p = subparsers.add_parser(
        "keypoints", help="40 LV keypoints, volume and flags of every labelled frame of a manifest",
        description="For every clip of MANIFEST and every frame with a mask or tracing: the 40 LV blood-pool "
                    "keypoints (x0..x39, y0..y39 in pixels), the Simpson volume (mL with pixel spacing, else "
                    "pixel^3) and flags. Clips without masks or tracings are listed as skipped.")
    _add_common(p)
    p.add_argument("-o", "--output", default="keypoints.parquet",
                   help="output table, .parquet or .csv (default: %(default)s)")
    p.set_defaults(func=cmd_keypoints)

    p = subparsers.add_parser(
        "ef", help="EDV, ESV and EF per clip of a manifest, against ef_reference",
        description="Volumes and ejection fraction per clip (per beat when every frame is labelled, else from "
                    "the labelled ED/ES frames); against the manifest's ef_reference: MAE, bias, limits of "
                    "agreement, Pearson r and a Bland-Altman plot.")
    _add_common(p)
    p.add_argument("-o", "--out", default=".", help="output folder (default: the current folder)")
    p.add_argument("--clip-plots", type=int, default=12, metavar="N",
                   help="pictures of the ED and ES frames with their keypoints and the volume curve with the beats "
                        "and flagged frames, for N clips in OUT/ef_clips/: the furthest from ef_reference first, "
                        "else the flagged ones; frames inside the ultrasound fan only (default: %(default)s; "
                        "0 for none)")
    p.set_defaults(func=cmd_ef)
