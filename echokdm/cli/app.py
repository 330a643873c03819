"""The ``echokdm app`` command: the local browser app (:mod:`echokdm.app`), served on this machine."""

from __future__ import annotations

import argparse

__all__ = ["cmd_app", "register"]


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the app until Ctrl-C; returns the exit code."""
    import importlib.util

    from echokdm.cli._common import resolve_model
    from echokdm.errors import MissingDependencyError

    if importlib.util.find_spec("gradio") is None:
        raise MissingDependencyError('echokdm app needs Gradio: pip install "echokdm[app]"')
    from echokdm.app import build_app, launch

    args.pipeline = resolve_model(args.pipeline, "pipeline")  # a clear error now, not at the first click
    if args.segmentation:
        args.segmentation = resolve_model(args.segmentation, "segmentation")

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {args.host}: other machines on that network can reach the app and its files")
    page = build_app(args.pipeline, args.segmentation, initial=args.source)
    print(f"echokdm app: open http://{args.host}:{args.port} in a browser (Ctrl-C stops it)")
    launch(page, host=args.host, port=args.port, block=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``app`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "app", help="local browser app: watch clips, generate and compare loops, browse results",
        description="A local web app (Gradio) on this machine: open a DICOM/AVI/NIfTI file or a manifest and play "
                    "the cine with its LV mask, 40 keypoints and volume curve, EF, ED/ES and flags; generate a loop "
                    "from a source frame and a motion (own beat, another clip's beat, EF and heart rate, dragged "
                    "keypoints) with a progress bar; compare real | generated with the re-measured EF; export "
                    "MP4/GIF/synthetic DICOM/NIfTI; browse echokdm evaluate or synthesize folders. Nothing leaves "
                    "the machine (no sharing link, no analytics).")
    p.add_argument("source", nargs="?", help="a file or manifest CSV to open at start")
    p.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default: %(default)s, this machine only)")
    p.add_argument("--pipeline", default="kdm_phantom_112", metavar="NAME|DIR",
                   help="KDM pipeline folder or packaged name (default: %(default)s)")
    p.add_argument("--segmentation", default="seg_phantom_112", metavar="NAME|DIR",
                   help="segmentation model folder or packaged name (default: %(default)s)")
    p.set_defaults(func=cmd_app)
