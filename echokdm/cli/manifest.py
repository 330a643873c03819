"""The ``echokdm manifest`` command: build a manifest from a folder, or check one.

Argument parsing and printing only; the work is done by :mod:`echokdm.data.manifest`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from echokdm.cli._common import add_run_options, positive_float

__all__ = ["cmd_manifest", "register"]


def _split_counts(frame) -> str:
    counts = frame["split"].value_counts().to_dict()
    return ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test"))


def _check(args: argparse.Namespace) -> int:
    """``--check MANIFEST``: one line per problem (exit 1), else a one-line summary."""
    from echokdm.data.manifest import check_manifest, load_manifest

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
    frame = load_manifest(args.check)
    print(f"{args.check}: OK, {len(frame)} clip(s), {frame['patient_id'].nunique()} patient(s), "
          + _split_counts(frame))
    return 0


def _check_build_options(args: argparse.Namespace) -> Path:
    """The manifest file to write, after one clear error for any option that cannot work."""
    if args.folder is None or args.output is None:
        raise ValueError("building a manifest needs FOLDER and -o/--output (or use --check FILE)")
    if args.format is None:
        from echokdm.io.dispatch import guess_folder_format

        args.format, how = guess_folder_format(args.folder)
        print(f"format: {args.format} (detected from {how}; --format to choose another)")
    output = Path(args.output)
    if output.is_dir():
        raise ValueError(f"-o/--output {output} is a folder; give the manifest's file name, e.g. "
                         f"{output / 'manifest.csv'}")
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
    return output


def cmd_manifest(args: argparse.Namespace) -> int:
    """Build a manifest (exit 1 when it holds no clip), or check one with ``--check``."""
    if args.check:
        return _check(args)
    from echokdm.data.manifest import scan_folder, write_manifest

    output = _check_build_options(args)
    reader_kwargs = {"salt": args.salt} if args.salt else None
    scan = scan_folder(args.folder, args.format, dataset=args.dataset, seed=args.seed, fractions=args.fractions,
                       patient_from=args.patient_from, reader_kwargs=reader_kwargs, progress=not args.no_progress,
                       fps=args.fps, clinical=args.clinical_csv, skip_non_cardiac=args.skip_non_cardiac)
    write_manifest(scan.manifest, output, overwrite=args.overwrite)
    m = scan.manifest
    print(f"wrote {output}: {len(m)} clip(s), {m['patient_id'].nunique()} patient(s), " + _split_counts(m))
    if scan.skipped:
        import pandas as pd

        report = output.with_name(output.stem + "_skipped.csv")
        pd.DataFrame(scan.skipped, columns=["path", "reason"]).to_csv(report, index=False)
        print(f"{len(scan.skipped)} item(s) skipped or flagged (also in {report}):")
        for path, reason in scan.skipped:
            print(f"  {path}: {reason}")
    return 0 if len(m) else 1


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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``manifest`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "manifest", help="build a manifest from a folder, or check one",
        description="Scan FOLDER for clips of one format and write a manifest CSV (one row per clip, "
                    "patient-level splits), or validate a manifest with --check.")
    p.add_argument("folder", nargs="?", help="folder to scan")
    p.add_argument("--format", choices=("dicom", "echonet", "camus", "nifti", "video"),
                   help="format of the clips (default: detected from the folder: the EchoNet-Dynamic layout, or "
                        "the one format of its files)")
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
    p.add_argument("--fps", type=positive_float,
                   help="frame rate of the clips whose files state none (CAMUS, most NIfTI); files that state one "
                        "keep theirs")
    p.add_argument("--clinical-csv", metavar="CSV",
                   help="per-clip or per-patient values the files lack: a key column (clip_id, file or patient_id) "
                        "and fps and/or ef_reference (edv_reference, esv_reference); they replace the files' own. "
                        "Columns: data_manifests/README.md")
    p.add_argument("--skip-non-cardiac", action="store_true",
                   help="leave out (and list) DICOMs whose header says they are not echocardiograms (another exam, or "
                        "a linear or curved-array probe); by default they are kept with a warning")
    add_run_options(p, overwrite="replace an existing manifest")
    p.set_defaults(func=cmd_manifest)
