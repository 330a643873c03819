"""The ``echokdm`` command. It only parses arguments and calls the package's public functions;
imported by nothing in the package.

One module per command (or per tight group), each with ``register(subparsers)`` adding its
parser(s) and ``cmd_*(args) -> exit code`` functions; :data:`COMMANDS` lists them in the order of
``echokdm --help``. What they share (argument types, option adders, model resolution, the output
checks and error lines of :func:`main`) is in :mod:`echokdm.cli._common`; the batch work of
``segment``, ``keypoints``, ``ef`` and ``flow`` is :mod:`echokdm.cli.parallel`, on the engine of
:mod:`echokdm.distributed` (``--workers N`` or ``accelerate launch``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from echokdm.cli import (
    app,
    demo,
    evaluate,
    flow,
    generate,
    info,
    keypoints,
    manifest,
    phantom,
    preview,
    procedural,
    segment,
    synthesize,
    train,
    utility,
)
from echokdm.cli._common import check_output_folder, command_name, os_error_line, output_folders, resolve_models

__all__ = ["COMMANDS", "build_parser", "check_output_folder", "main"]

#: The command modules, in the order of ``echokdm --help`` (``keypoints`` adds ``keypoints`` and ``ef``;
#: ``train`` adds ``train seg``, ``kdm``, ``autoencoder`` and ``flow``).
COMMANDS = (demo, manifest, phantom, train, segment, keypoints, flow, evaluate, generate, synthesize, utility,
            procedural, info, preview, app)


def _packaged_names() -> list[str]:
    from echokdm.pretrained import available

    return available() or ["none installed"]


def build_parser() -> argparse.ArgumentParser:
    """The ``echokdm`` parser: ``--version`` and one sub-command per entry of :data:`COMMANDS`."""
    from echokdm import __version__

    parser = argparse.ArgumentParser(
        prog="echokdm",
        description="Echocardiography toolkit: read echo cine loops, build manifests, measure LV keypoints and "
                    "EF, and train and run the Key-point guided Diffusion Model (KDM) to generate cine loops. "
                    "Model options (--checkpoint, --pipeline, --segmentation) take a folder or the name of a "
                    "packaged checkpoint (" + ", ".join(_packaged_names()) + ").",
    )
    parser.add_argument("--version", action="version", version=f"echokdm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """One line per warning on the command line: ``warning: <message>`` (no file, line number or code)."""
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 = success, 1 = failure, 2 = usage error)."""
    from echokdm.errors import EchoKDMError

    parser = build_parser()
    args = parser.parse_args(argv)
    from echokdm.runtime import configure_threads

    configure_threads()  # fewer torch threads on a busy machine (one line on stderr); OMP_NUM_THREADS wins
    import warnings

    warnings.formatwarning = _warning_line  # a researcher's terminal: the message, not the source line that warned
    try:
        resolve_models(args)
        for folder in output_folders(args):
            check_output_folder(folder)
        return int(args.func(args) or 0)
    except (EchoKDMError, FileNotFoundError, FileExistsError, ValueError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, EchoKDMError) and exc.strerror:
            message = os_error_line(exc, args)
        else:
            message = str(exc)
        print(f"{command_name(args)}: error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:  # read-only folder, full disk ...: one line naming the path, no traceback
        print(f"{command_name(args)}: error: {os_error_line(exc, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: finished work is kept (batch commands resume); no traceback
        print(f"{command_name(args)}: interrupted; run the same command again to resume where it can",
              file=sys.stderr)
        return 130
