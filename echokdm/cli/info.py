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
    print(f"  {_labels_line(cine)}")
    print(f"  {_fan_line(cine)}")
    for key, value in sorted(cine.metadata.items()):
        print(f"  {key}: {value}")
    return 0


def _labels_line(cine) -> str:
    """What the clip carries to measure the LV with (and what the commands do without it)."""
    if cine.masks is not None:
        n = cine.n_frames if cine.labelled_frames is None else len(cine.labelled_frames)
        return f"labels: LV masks on {n} of {cine.n_frames} frame(s)"
    if cine.tracings:
        return f"labels: tracings of frame(s) {', '.join(str(f) for f in sorted(cine.tracings))}"
    return "labels: none (segment, ef, generate and the app find the LV with the packaged seg_phantom_112)"


def _fan_line(cine) -> str:
    """The ultrasound fan as the commands find it: outputs are masked to it, a network's apex side read from it."""
    from echokdm.io.fan import fan_apex_direction, source_fan

    try:
        fan = source_fan(cine)
    except (ValueError, OSError) as exc:
        return f"fan: not looked for ({exc})"
    burned = f"; BurnedInAnnotation {fan.burned_in_annotation}" if fan.burned_in_annotation else ""
    if not fan.found:
        return f"fan: not found ({fan.note}){burned}"
    side = fan_apex_direction(fan.mask)
    apex = f"; apex of the sector: {side}" if side else ""
    return f"fan: {fan.note}{apex}{burned}"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "info", help="describe one echo file",
        description="Read one file and print its frames, frame rate, calibration and metadata.")
    p.add_argument("file", help="echo file (DICOM, EchoNet AVI, CAMUS/NIfTI, video)")
    add_read_args(p)
    p.set_defaults(func=cmd_info)
