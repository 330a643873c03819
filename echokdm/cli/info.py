"""The ``echokdm info`` command: describe one echo file (:func:`echokdm.io.dispatch.read_cine`)."""

from __future__ import annotations

import argparse

from echokdm.cli._common import add_read_args, read_kwargs

__all__ = ["cmd_info", "register"]


def cmd_info(args: argparse.Namespace) -> int:
    """Print the clip's summary, format, value range and metadata."""
    from echokdm.io.dispatch import guess_format, read_cine

    fmt = args.format or guess_format(args.file)
    cine = read_cine(args.file, fmt, **read_kwargs(args, fmt))
    print(cine.summary())
    print(f"  format: {fmt}; source: {cine.source}")
    print(f"  value range: {float(cine.frames.min()):.3f} .. {float(cine.frames.max()):.3f}")
    for key, value in sorted(cine.metadata.items()):
        print(f"  {key}: {value}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "info", help="describe one echo file",
        description="Read one file and print its frames, frame rate, calibration and metadata.")
    p.add_argument("file", help="echo file (DICOM, EchoNet AVI, CAMUS/NIfTI, video)")
    add_read_args(p)
    p.set_defaults(func=cmd_info)
