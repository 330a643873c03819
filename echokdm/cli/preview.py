"""The ``echokdm preview`` command: first/middle/last frame PNGs and an MP4 of one echo file
(:func:`echokdm.io.preview.write_preview`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from echokdm.cli._common import add_read_args, read_kwargs

__all__ = ["cmd_preview", "register"]


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
    """Write the previews of one file into ``--out`` and print their paths."""
    from echokdm.io.dispatch import guess_format, read_cine
    from echokdm.io.preview import write_preview

    fmt = args.format or guess_format(args.file)
    cine = read_cine(args.file, fmt, **read_kwargs(args, fmt))
    written = _together(lambda folder: write_preview(cine, folder), Path(args.out), args.overwrite)
    for name, path in written.items():
        print(f"{name:>6}: {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``preview`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "preview", help="write first/middle/last frame PNGs and an MP4 of one file",
        description="Write <clip>_first.png, _middle.png, _last.png and <clip>.mp4 into OUT.")
    p.add_argument("file", help="echo file (DICOM, EchoNet AVI, CAMUS/NIfTI, video)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing previews")
    add_read_args(p)
    p.set_defaults(func=cmd_preview)
