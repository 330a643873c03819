"""What the commands of :mod:`echokdm.cli` share: argument types, option adders, model resolution
and the checks and error lines of :func:`echokdm.cli.main`."""

from __future__ import annotations

import argparse
import errno
import math
import os
from pathlib import Path

__all__ = [
    "MODEL_OPTIONS",
    "SAMPLING_OPTIONS",
    "add_read_args",
    "add_run_options",
    "add_sampling_options",
    "check_output_folder",
    "command_name",
    "os_error_line",
    "output_folders",
    "positive_float",
    "positive_int",
    "read_kwargs",
    "resolve_model",
    "resolve_models",
    "sampling_settings",
]

# --------------------------------------------------------------------------------------------
# argument types and option adders
# --------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# argparse names a type by its __name__ when it cannot convert a value ("argument --workers: invalid
# _positive_int value: 'x'"); the names the commands have always shown are kept.
positive_int.__name__ = "_positive_int"
positive_float.__name__ = "_positive_float"


def add_run_options(p: argparse.ArgumentParser, overwrite: str) -> None:
    """``--overwrite`` (its help says what it replaces) and ``--no-progress``, the last options of most commands."""
    p.add_argument("--overwrite", action="store_true", help=overwrite)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


#: The sampling options :func:`add_sampling_options` can declare, by field of
#: :class:`~echokdm.generation.settings.SamplingSettings`.
SAMPLING_OPTIONS = {"mode": "--mode", "num_inference_steps": "--steps", "k": "--k", "seed": "--seed",
                    "batch_size": "--batch-size", "fit_keypoints": "--fit-keypoints", "detail": "--detail",
                    "keyframes": "--keyframes", "interpolation": "--interpolation", "fit_region": "--fit-region"}

_SAMPLING_HELP = {
    "mode": "gamma: one K2F flow scaled by gamma per frame; per_frame: one K2F flow per frame",
    "num_inference_steps": "DDIM steps (the paper's: 200)",
    "k": "F2I start step of --steps, 0 = warp only",
    "seed": "random seed, a non-negative integer",
    "batch_size": "frames per network call",
    "fit_keypoints": "fit K2F's flows so that they carry every keypoint exactly (echo motions larger than K2F saw "
                     "in training come out short without it); --no-fit-keypoints: the paper's KDM, K2F's flows "
                     "as they are",
    "detail": "the warp-residual detail path: each frame is the source warped by its flow plus F2I's edit, at the "
              "source's resolution, so its speckle survives the autoencoder; --no-detail: the paper's KDM, the "
              "decoded F2I latent",
    "fit_region": "near the keypoints, replace K2F's flow by the thin-plate spline through them, so the wall "
                  "around the contour moves with its keypoints (large motions re-measure closer to their EF); "
                  "--no-fit-region: K2F's flow everywhere",
    "keyframes": "run F2I on N evenly spaced frames only and interpolate its edit in time for the others "
                 "(about 4x faster with 8 of 32 frames); 0 = every frame (the paper)",
    "interpolation": "how the shown warp samples the source frame: bilinear (the paper's; its sub-pixel shifts blur "
                     "speckle) or bicubic (keeps speckle sharper)",
}


def _dest(name: str) -> str:
    """The ``args`` attribute of a sampling option (``steps`` for ``--steps``)."""
    return SAMPLING_OPTIONS[name].lstrip("-").replace("-", "_")


def add_sampling_options(p: argparse.ArgumentParser, defaults=None, *, names: tuple[str, ...] = tuple(SAMPLING_OPTIONS),
                         helps: dict[str, str] | None = None) -> None:
    """Declare the sampling options of a command, the same for every command: ``--mode``, ``--steps``,
    ``--k``, ``--seed``, ``--batch-size``, ``--fit-keypoints/--no-fit-keypoints``,
    ``--detail/--no-detail``, ``--keyframes``, ``--interpolation`` and (with ``--steps``) ``--paper-sampler``.

    Parameters
    ----------
    p : argparse.ArgumentParser
    defaults : SamplingSettings, optional
        The command's settings, shown as the options' defaults in their help. Every option's
        argparse default is ``None`` (not given), so that :func:`sampling_settings` applies only
        what was given over the command's settings (or over the paper's with ``--paper-sampler``).
    names : tuple of str
        The :class:`~echokdm.generation.settings.SamplingSettings` fields to declare (all by default).
    helps : dict, optional
        Help texts replacing the standard ones of some fields (the default is added to them).
    """
    from echokdm.generation.settings import INTERPOLATIONS, MODES

    texts = {**_SAMPLING_HELP, **(helps or {})}
    types = {"num_inference_steps": int, "k": int, "seed": int, "batch_size": int, "keyframes": int}
    for name in names:
        default = None if defaults is None else getattr(defaults, name)
        shown = "" if defaults is None else f" (default: {default})"
        kwargs = {"dest": _dest(name), "default": None}
        if name in ("fit_keypoints", "detail", "fit_region"):
            kwargs["action"] = argparse.BooleanOptionalAction
            option = SAMPLING_OPTIONS[name]
            shown = "" if defaults is None else f" (default: {option if default else '--no-' + option[2:]})"
        elif name == "keyframes":
            kwargs["type"] = int
            shown = "" if defaults is None else f" (default: {default or 'every frame'})"
        elif name == "mode":
            kwargs["choices"] = MODES
        elif name == "interpolation":
            kwargs["choices"] = INTERPOLATIONS
        else:
            kwargs["type"] = types[name]
        p.add_argument(SAMPLING_OPTIONS[name], help=texts[name] + shown, **kwargs)
    if "num_inference_steps" in names:
        p.add_argument("--paper-sampler", action="store_true",
                       help="the paper's sampler (200 DDIM steps, k = 100 on every frame, no detail path; 16x "
                            "slower than the default and farther from real frames, measured); the other options "
                            "given still apply over it")


def sampling_settings(args: argparse.Namespace, base=None):
    """The :class:`~echokdm.generation.settings.SamplingSettings` of a command: ``base`` (default
    ``SamplingSettings()``), or the paper's sampler over it with ``--paper-sampler``, with the options of
    :func:`add_sampling_options` that are set (not ``None``).

    Raises
    ------
    ValueError
        A setting out of range (the message names the option, e.g. ``--steps``).
    """
    from echokdm.generation.settings import SamplingSettings

    base = base or SamplingSettings()
    if getattr(args, "paper_sampler", False):
        base = SamplingSettings.paper(mode=base.mode, seed=base.seed, batch_size=base.batch_size,
                                      fit_keypoints=base.fit_keypoints)  # interpolation: the paper's bilinear
    given = {name: getattr(args, _dest(name)) for name in SAMPLING_OPTIONS
             if getattr(args, _dest(name), None) is not None}
    if given.get("keyframes") == 0:  # --keyframes 0: F2I on every frame
        given["keyframes"] = None
    return base.replace(**given) if given else base


def add_read_args(p: argparse.ArgumentParser) -> None:
    """``--format`` and ``--crop-to-fan`` of the commands that read one echo file (``info``, ``preview``)."""
    p.add_argument("--format", choices=("dicom", "echonet", "camus", "nifti", "video"),
                   help="file format (default: guessed from the file)")
    p.add_argument("--crop-to-fan", action="store_true",
                   help="DICOM only: crop to the ultrasound fan, removing burned-in text outside it")


def read_kwargs(args: argparse.Namespace, fmt: str) -> dict:
    """Keywords of :func:`echokdm.io.dispatch.read_cine` from the options of :func:`add_read_args`."""
    return {"crop_to_fan": True} if args.crop_to_fan and fmt == "dicom" else {}


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

#: Model options of each command and the kind of checkpoint they take. main() resolves them with
#: :func:`echokdm.pretrained.resolve_checkpoint` (a folder, else a packaged name, else a clear error;
#: never a model hub) before the command runs. (``keypoints``/``ef --segmentation`` is an output
#: folder of ``segment``, not a model, and is not listed.)
MODEL_OPTIONS = {
    "demo": {"pipeline": "pipeline", "segmentation": "segmentation"},
    "segment": {"checkpoint": "segmentation"},
    "flow": {"checkpoint": "ofnet"},
    "evaluate": {"pipeline": "pipeline", "pipeline_noflow": "pipeline", "segmentation": "segmentation"},
    "generate": {"pipeline": "pipeline", "segmentation": "segmentation"},
    "synthesize": {"pipeline": "pipeline", "segmentation": "segmentation"},
}


def resolve_model(value: str, kind: str) -> str:
    """The folder of a model option: ``value`` itself, else the packaged checkpoint of that name."""
    from echokdm.pretrained import resolve_checkpoint

    return str(resolve_checkpoint(value, kind))


def resolve_models(args: argparse.Namespace) -> None:
    """Replace each model option of the command by the folder it names (see :data:`MODEL_OPTIONS`)."""
    for name, kind in MODEL_OPTIONS.get(args.command, {}).items():
        value = getattr(args, name, None)
        if value:
            setattr(args, name, resolve_model(value, kind))


# --------------------------------------------------------------------------------------------
# output folders and error lines
# --------------------------------------------------------------------------------------------


def output_folders(args: argparse.Namespace) -> list[Path]:
    """The folders the command will write into: ``--out`` (a folder) and the folder of ``--output`` (a file)."""
    folders = []
    if getattr(args, "out", None):
        folders.append(Path(args.out))
    if getattr(args, "output", None):
        folders.append(Path(args.output).parent)
    return folders


def check_output_folder(folder: str | Path) -> Path:
    """Fail before any work when ``folder`` cannot be created or written to.

    The folder need not exist: its nearest existing parent must then be a writable folder (the
    command creates the rest). Returns ``folder``.

    Raises
    ------
    NotADirectoryError
        A file stands where the folder (or one of its parents) should be.
    PermissionError
        The folder, or the parent it would be created in, is not writable.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder (output)", str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "output folder is not writable", str(existing))
    return folder


def os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an operating-system error: the path it concerns and what went wrong."""
    where = exc.filename
    if where is None:  # e.g. a full disk while writing an open file: name the output
        folders = output_folders(args)
        where = folders[0] if folders else None
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where is not None else what


def command_name(args: argparse.Namespace) -> str:
    """``echokdm <command>`` (``echokdm train <model>`` for training), the prefix of error lines."""
    return f"echokdm {args.command}" + (f" {args.model}" if args.command == "train" else "")
