"""The ``echokdm generate`` command: one source frame + a motion → a KDM cine loop.

Argument parsing, printing and writing only; the work is done by :mod:`echokdm.generation`.
:func:`register` adds the command to the ``echokdm`` parser's subparsers.

Outputs in ``--out`` (``<stem>`` defaults to ``<clip>_f<frame>_<motion>``):

* by :func:`echokdm.generation.export.write_loop`: the loop in each of ``--formats``,
  ``<stem>_keypoints.csv`` (per frame ``frame, x0 … x39, y0 … y39``; ``--target-keypoints``
  reads it, so a loop's keypoints can be edited and generated again), ``<stem>_preview.png``
  and, with ``--side-by-side``, ``<stem>_side_by_side.mp4``;
* ``<stem>_flows.npz``: ``flows`` ``float32`` ``(T, 2, H, W)`` (dx, dy px into the source),
  ``keypoints`` ``(T, 40, 2)``, ``gammas`` (empty in per-frame mode) and ``fps``;
* ``<stem>_generate.json``: the settings (the source by file name only, ``fan_mask``: how the
  ultrasound fan was found, or null when the outputs are not masked), the EF target and the EF
  achieved.

Echo outputs are masked to the source's ultrasound fan by default (:mod:`echokdm.io.fan`): every
pixel outside it is 0, so burned-in text, a name box or an ECG trace around the fan never reaches
a synthetic file, whose DICOM then says *Burned In Annotation* ``NO``. When the fan is not found
the outputs are not masked (one line says so, the DICOM says ``YES``); a source marked
``BurnedInAnnotation YES`` is then refused.

The pipeline folder names its keypoint adapter (``model_index.json``). A pipeline of another
adapter than echo (faces, poses) goes through the generic path of
:mod:`echokdm.generation.keypoint_edit`: SOURCE is an image, a folder of frames or a video,
``--keypoints`` the adapter's keypoint file(s) of it (``.pts``, OpenPose JSON, CSV …), the motion
``--target-keypoints``, ``--drag`` or ``--own`` (a sequence with a keypoint file per frame), and
the outputs MP4, GIF, PNG frames, keypoints (wide CSV and the adapter's own files), flows, a
preview and the settings (with the keypoint distance MD of re-detected keypoints, ``--detect``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from echokdm.cli._common import add_run_options, add_sampling_options, sampling_settings

# DEFAULT_FPS: the loop frame rate when neither --fps nor the motion's clip gives one
from echokdm.generation.settings import DEFAULT_FPS, SamplingSettings

__all__ = ["DEFAULT_FPS", "DEFAULT_PIPELINE", "DEFAULT_SEGMENTATION", "cmd_generate", "register"]

#: Packaged models ``echokdm generate`` uses when none is given (see :func:`_default_models`).
DEFAULT_PIPELINE = "kdm_phantom_112"
DEFAULT_SEGMENTATION = "seg_phantom_112"

_ECHO_FORMATS = "mp4,gif,dicom,nifti"
_MOTIONS = ("own", "transfer", "ef", "drag", "target_keypoints")
_MOTION_NAMES = {"own": "own", "transfer": "transfer", "ef": "synthetic", "drag": "drag",
                 "target_keypoints": "keypoints"}


# --------------------------------------------------------------------------------------------
# motion
# --------------------------------------------------------------------------------------------


def _chosen_motion(args: argparse.Namespace) -> str:
    chosen = [m for m in _MOTIONS if getattr(args, m) not in (None, False)]
    if len(chosen) != 1:
        raise ValueError("give exactly one motion: --own, --transfer FILE, --ef EF, --drag FILE or "
                         f"--target-keypoints FILE (got {len(chosen)})")
    return chosen[0]


def _stop(start: int, n_frames: int | None, total: int | None = None) -> int | None:
    """The frame after the last of at most ``n_frames`` from ``start`` (None: to the end), within ``total`` frames."""
    if n_frames is None:
        return None
    if n_frames < 1:
        raise ValueError(f"--frames must be >= 1, got {n_frames}")
    return start + n_frames if total is None else min(start + n_frames, total)


def _ed_index(keypoints: np.ndarray, fps: float | None, where: str) -> int:
    """The first end-diastole of a keypoint sequence (:func:`echokdm.generation.motion.first_end_diastole`)."""
    from echokdm.generation.motion import first_end_diastole

    try:
        return first_end_diastole(keypoints, fps, where)
    except ValueError as err:
        raise ValueError(f"{err} (give --transfer-ed)") from None


def _own(args, source, seg):
    """Own motion from --frame; applied to explicitly given source keypoints when there are some.

    ``--own-motion auto`` (the default) carries the source frame's keypoints through the clip by
    speckle tracking when the clip's keypoints would come from the segmentation network, and uses
    the given or labelled keypoints of every frame otherwise
    (:func:`echokdm.generation.tracking.own_beat_motion`). Returns ``(source keypoints, targets, fps, how)``.
    """
    from echokdm.generation.loop import clip_keypoints
    from echokdm.generation.tracking import own_beat_motion

    seq = _given_sequence(args, source)  # keypoints of every frame given in --keypoints: used as they are
    given = seq is not None
    if seq is None:
        seq = clip_keypoints(source.cine, seg, apex_direction=args.apex_direction)
    beat = own_beat_motion(source.cine, seq, args.frame, _stop(args.frame, args.frames, source.cine.n_frames),
                           method=getattr(args, "own_motion", "auto") or "auto", given_sequence=given,
                           source_keypoints=source.keypoints,
                           prefer_source=source.keypoints_source == "given" or bool(args.mask),
                           spacing_mm=source.spacing_mm, progress=not getattr(args, "no_progress", False))
    if beat.note:
        print(f"own motion: {beat.note} (--own-motion tracking forces tracking)")
    if beat.method == "tracking":
        ef = None if np.isnan(beat.ef_segmentation) else beat.ef_segmentation
        print("own motion: the source frame's keypoints carried through the clip by speckle tracking "
              "(--own-motion); the EF target is the segmentation's EF over the same frames, "
              f"{_percent(ef, 'n/a')} (the tracked keypoints' own EF reads low)")
    return beat.source_keypoints, beat.targets, source.fps, beat


def _given_sequence(args, source):
    """``(T, 40, 2)`` from --keypoints when the file holds a set for every frame of the clip, else None."""
    from echokdm.generation.motion import load_keypoints_file

    path = getattr(args, "keypoints", None)
    if not path or not Path(path).is_file() or Path(path).suffix.lower() not in (".csv", ".npy"):
        return None
    every = load_keypoints_file(path)
    return every if len(every) == source.cine.n_frames else None


def _transfer(args, source, seg):
    from echokdm.generation.loop import clip_keypoints, read_source
    from echokdm.generation.motion import load_keypoints_file, transfer_motion

    other = read_source(args.transfer, args.format)
    if args.transfer_keypoints:
        seq = load_keypoints_file(args.transfer_keypoints)
        if len(seq) != other.n_frames:
            raise ValueError(f"{args.transfer_keypoints}: {len(seq)} keypoint set(s) for the {other.n_frames} frames "
                             f"of {args.transfer}")
    else:
        seq = clip_keypoints(other, seg, apex_direction=args.apex_direction)
    ed = args.transfer_ed if args.transfer_ed is not None else _ed_index(seq, other.fps, str(args.transfer))
    return transfer_motion(source.keypoints, seq, ed, _stop(ed, args.frames, len(seq))), other.fps, ed


def _targets(args: argparse.Namespace, source, seg) -> tuple[np.ndarray, np.ndarray, float | None, dict]:
    """``(source keypoints, targets (T, 40, 2), fps of the motion or None, motion settings)``."""
    from echokdm.generation.motion import (
        drag_motion,
        load_drag_file,
        load_keypoints_file,
        synthetic_motion,
    )

    motion = _chosen_motion(args)
    if motion == "own":
        src, targets, fps, beat = _own(args, source, seg)
        return src, targets, fps, {"own_motion": beat.method, "own_beat": beat}
    if motion == "transfer":
        targets, fps, ed = _transfer(args, source, seg)
        return source.keypoints, targets, fps, {"transfer_ed": ed}
    if motion == "ef":
        fps = args.fps or source.fps or DEFAULT_FPS
        targets = synthetic_motion(source.keypoints, args.ef, args.heart_rate, fps, args.beats)
        return source.keypoints, targets, fps, {"ef_requested": args.ef, "heart_rate_bpm": args.heart_rate,
                                               "beats": args.beats}
    if motion == "drag":
        vectors = load_drag_file(args.drag)
        targets = drag_motion(source.keypoints, vectors, args.frames or 1, sigma=args.drag_sigma)
        return source.keypoints, targets, source.fps, {"drag_sigma": args.drag_sigma}
    return source.keypoints, load_keypoints_file(args.target_keypoints), source.fps, {}


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def _default_stem(cine, frame: int, motion: str) -> str:
    from echokdm.data.manifest import clip_file_stem

    name = cine.clip_id or (cine.source.name.split(".")[0] if cine.source else "loop")
    return f"{clip_file_stem(name)}_f{frame}_{_MOTION_NAMES[motion]}"


def _own_outputs(out: Path, stem: str) -> dict[str, Path]:
    return {name: out / f"{stem}_{name}" for name in ("flows.npz", "generate.json")}


def _check_free(out: Path, stem: str, overwrite: bool) -> None:
    """Fail before generating when an output of this stem exists and ``--overwrite`` was not given
    (``write_loop`` checks its own files again before writing)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: is not a folder (--out)")
    names = [f"{stem}_{n}" for n in ("flows.npz", "generate.json", "keypoints.csv", "preview.png",
                                     "side_by_side.mp4")]
    clashes = [out / n for n in names if (out / n).exists()]
    clashes += sorted(p for p in out.iterdir() if p.name.startswith(f"{stem}.")) if out.is_dir() else []
    if clashes and not overwrite:
        raise FileExistsError(f"{', '.join(map(str, clashes))}: already exist(s); pass --overwrite to replace, "
                              "or choose another --out or --stem")


def _write_npz(path: Path, loop, overwrite: bool) -> Path:
    from echokdm.io.atomic import atomic_output

    gammas = np.zeros(0) if loop.gammas is None else np.asarray(loop.gammas, np.float64)
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, flows=loop.flows, keypoints=loop.keypoints, gammas=gammas, fps=np.float64(loop.fps))
    return path


def _write_text(path: Path, text: str, overwrite: bool) -> Path:
    from echokdm.io.atomic import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return path


def _json_number(value):
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def _write_outputs(out: Path, stem: str, loop, args: argparse.Namespace, settings: dict, extras: dict):
    """Write the loop (``write_loop``), its flows and settings; returns the paths by name."""
    from echokdm.generation.export import write_loop

    overwrite = args.overwrite
    written = dict(write_loop(out, loop, formats=_formats(args.formats), stem=stem, overwrite=overwrite, **extras))
    own = _own_outputs(out, stem)
    written["flows"] = _write_npz(own["flows.npz"], loop, overwrite)
    record = {**settings, "n_frames": loop.n_frames, "fps": loop.fps, "ef_target": _json_number(loop.ef_target),
              "ef_achieved": _json_number(loop.ef_achieved),
              # the sampling settings the loop was made with, as generate_loop applied them
              **{name: loop.metadata.get(name) for name in ("fit_keypoints", "detail", "keyframes", "interpolation",
                                                            "fit_region")},
              "ef_achieved_note": loop.metadata.get("ef_achieved_note"),
              "ef_reading": loop.metadata.get("ef_reading"), "outputs": {k: str(v) for k, v in written.items()}}
    written["settings"] = _write_text(own["generate.json"], json.dumps(record, indent=2), overwrite)
    return written


# --------------------------------------------------------------------------------------------
# command
# --------------------------------------------------------------------------------------------


def _formats(text: str) -> tuple[str, ...]:
    """``--formats`` checked against :data:`echokdm.generation.export.LOOP_FORMATS`."""
    from echokdm.generation.export import LOOP_FORMATS

    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in LOOP_FORMATS]
    if not formats or unknown:
        raise ValueError(f"--formats {text!r}: choose one or more of {', '.join(LOOP_FORMATS)} (comma-separated)")
    return formats


def _export_extras(args: argparse.Namespace, source, n_frames: int, fan_mask) -> dict:
    """``write_loop`` keywords: the source DICOM (allow-listed attributes) and the real frames (masked
    to the fan like the loop)."""
    from echokdm.io.dispatch import guess_format
    from echokdm.io.fan import apply_fan

    extras = {}
    if source.cine.dataset != "image" and (args.format or guess_format(args.source)) == "dicom":
        extras["source_dataset"] = Path(args.source)
    if args.side_by_side:  # --own only (checked first)
        extras["side_by_side"] = apply_fan(source.cine.frames[args.frame : args.frame + n_frames], fan_mask)
    return extras


def _fan(args: argparse.Namespace, source):
    """The fan mask of the source (None with --no-fan-mask or when not found), after saying so in one
    line; refuses a source marked BurnedInAnnotation YES whose fan cannot be found."""
    from echokdm.io.fan import source_fan

    fan = source_fan(source.cine)
    if args.no_fan_mask:
        if fan.burned_in_annotation == "YES":
            raise ValueError(f"{args.source}: BurnedInAnnotation is YES; --no-fan-mask would copy its burned-in "
                             "text into synthetic outputs")
        print("note: --no-fan-mask: outputs keep the source's pixels around the ultrasound fan (DICOM "
              "BurnedInAnnotation YES)")
        return None, None
    fan.check(str(args.source))
    if fan.found:
        print(f"fan: outputs masked to the ultrasound fan of the source ({fan.note}); pixels outside it are 0")
        return fan.mask, fan.method
    print(f"note: ultrasound fan of the source {fan.note}; outputs are not masked (DICOM BurnedInAnnotation YES)")
    return None, None


def _frame_value(text: str):
    """``--frame``: an index or ``"ed"``."""
    if text.strip().lower() == "ed":
        return "ed"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame index or 'ed', got {text!r}") from None


def _default_models(args: argparse.Namespace):
    """The packaged pipeline when ``--pipeline`` is not given; the packaged segmentation when the source needs one
    (no ``--keypoints``/``--mask`` and a clip without masks or tracings, e.g. a scanner DICOM), each said in one
    line. Returns the clip when it had to be read for that (None otherwise)."""
    from echokdm.cli._common import resolve_model

    if args.pipeline is None:
        args.pipeline = resolve_model(DEFAULT_PIPELINE, "pipeline")
        print(f"pipeline: {DEFAULT_PIPELINE} (packaged; trained on the realistic phantom only; --pipeline for yours)")
    if args.segmentation is not None or args.keypoints is not None or args.mask is not None or args.no_segmentation:
        return None
    if _pipeline_adapter(args) != "echo":
        return None
    from echokdm.generation.loop import read_source

    cine = read_source(args.source, args.format, **_read_kwargs(args))
    if cine.masks is None and not cine.tracings:
        args.segmentation = resolve_model(DEFAULT_SEGMENTATION, "segmentation")
        print(f"segmentation: {DEFAULT_SEGMENTATION} (packaged, phantom-trained: the clip has no masks or tracings; "
              "it finds the LV keypoints and re-measures the EF; --segmentation for yours)")
    return cine


def _resolve_frame(args: argparse.Namespace, seg, motion: str, cine=None):
    """``args.frame`` as an index: the clip's end-diastolic frame for a beat by default (or ``--frame ed``), else 0;
    says which and why. Returns the clip when it had to be read for that (``cine`` when given)."""
    from echokdm.generation.loop import ed_frame, read_source

    asked = args.frame
    if isinstance(asked, int):
        return cine
    beat = motion in ("ef", "transfer")  # an own beat follows the clip from any frame: 0 covers the most of it
    if asked is None and (not beat or args.keypoints is not None or args.mask is not None):
        args.frame = 0
        return cine
    if args.keypoints is not None or args.mask is not None:
        raise ValueError("--frame ed with --keypoints/--mask: they belong to one frame; pass its index as --frame N")
    if cine is None:
        cine = read_source(args.source, args.format, **_read_kwargs(args))
    args.frame, how = ed_frame(cine, seg, apex_direction=args.apex_direction)
    print(f"source frame {args.frame}: {how} (--frame N picks another)")
    return cine


def _refuse_non_cardiac(args: argparse.Namespace, cine) -> None:
    """Refuse a source whose DICOM header says it is not of the heart (a beating lymph node is no use to anyone),
    unless ``--allow-non-cardiac``."""
    from echokdm.io.dicom import cine_non_cardiac_reason

    reason = cine_non_cardiac_reason(cine)
    if reason and not args.allow_non_cardiac:
        raise ValueError(f"{args.source}: not an echocardiogram by its header ({reason}); the LV models would animate "
                         "a ventricle that is not there, so nothing was generated (--allow-non-cardiac to go on)")


def _check_numbers(args: argparse.Namespace) -> SamplingSettings:
    """One clear error for a setting that cannot work, before anything is loaded; the sampling settings."""
    sampling = sampling_settings(args)
    if isinstance(args.frame, int) and args.frame < 0:
        raise ValueError(f"--frame must be >= 0, got {args.frame}")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    positive = {"--fps": args.fps, "--heart-rate": args.heart_rate, "--beats": args.beats,
                "--ef-tolerance": args.ef_tolerance}
    for flag, value in positive.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be a positive number, got {value:g}")
    if args.ef is not None and not (math.isfinite(args.ef) and 0 < args.ef < 100):
        raise ValueError(f"--ef must be a percentage within (0, 100), got {args.ef:g}")
    if args.ef_attempts < 1:
        raise ValueError(f"--ef-attempts must be >= 1, got {args.ef_attempts}")
    if args.drag_sigma is not None and not (math.isfinite(args.drag_sigma) and args.drag_sigma >= 0):
        raise ValueError(f"--drag-sigma must be >= 0, got {args.drag_sigma:g}")
    return sampling


def _read_kwargs(args: argparse.Namespace) -> dict:
    """The reader's options (``--crop-to-fan``, DICOM only)."""
    from echokdm.io.dispatch import guess_format

    if not args.crop_to_fan:
        return {}
    if (args.format or guess_format(args.source)) != "dicom":
        raise ValueError(f"{args.source}: --crop-to-fan applies to DICOM files only")
    return {"crop_to_fan": True}


def _read_the_source(args: argparse.Namespace, seg, cine=None):
    from echokdm.generation.loop import source_from_file

    return source_from_file(args.source, args.frame, keypoints=args.keypoints, mask=args.mask, segmentation=seg,
                            format=args.format, apex_direction=args.apex_direction, cine=cine, **_read_kwargs(args))


def _load_pipeline(folder: str, device: str | None):
    import torch

    from echokdm.pipelines.kdm import KDMPipeline

    pipe = KDMPipeline.from_pretrained(folder)
    return pipe.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _sampling_record(sampling: SamplingSettings) -> dict:
    """The sampling keys of ``generate.json`` (``steps`` for the DDIM steps, as always; ``fit_keypoints``,
    ``detail``, ``keyframes``, ``interpolation`` and ``fit_region`` come from the loop, the batch size is not
    recorded)."""
    record = dataclasses.asdict(sampling)
    return {"mode": record["mode"], "k": record["k"], "steps": record["num_inference_steps"], "seed": record["seed"]}


def _settings(args: argparse.Namespace, motion: str, source, extra: dict, sampling: SamplingSettings) -> dict:
    return {"source": Path(args.source).name, "frame": args.frame, "motion": _MOTION_NAMES[motion],
            "keypoints_source": source.keypoints_source, "pipeline": str(Path(args.pipeline).resolve()),
            **_sampling_record(sampling), **extra}


def _percent(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:.1f} %"


def _print_result(loop, written: dict) -> None:
    achieved = _percent(loop.ef_achieved, f"not measured ({loop.metadata.get('ef_achieved_note', 'n/a')})")
    print(f"generated {loop.n_frames} frame(s) {loop.frames.shape[1]}x{loop.frames.shape[2]} at {loop.fps:.3g} fps "
          f"({loop.motion} motion)")
    print(f"  EF target {_percent(loop.ef_target, 'not measurable (missing keypoints)')}, achieved {achieved}")
    attempts = loop.metadata.get("ef_attempts") or []
    if len(attempts) > 1 or (attempts and not loop.metadata.get("ef_calibrated")):
        state = "within" if loop.metadata.get("ef_calibrated") else "NOT within"
        print(f"  EF control: {len(attempts)} loop(s) generated, re-measured EF {state} tolerance; the keypoint "
              f"trajectory moves at EF {_percent(loop.metadata.get('ef_trajectory'), 'n/a')}")
    for name, path in written.items():
        print(f"  {name:>9}: {path}")


def _pipeline_adapter(args: argparse.Namespace) -> str:
    """The adapter named by the pipeline folder (``model_index.json``, or the old ``kdm_pipeline.json``;
    echo for older folders); ``--adapter`` must agree with it."""
    from echokdm.pipelines.kdm import saved_adapter

    folder = Path(args.pipeline)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such pipeline folder (--pipeline)")
    saved = saved_adapter(folder)
    if args.adapter is not None and args.adapter != saved:
        raise ValueError(f"--adapter {args.adapter}: the pipeline {folder} was trained for adapter {saved!r}")
    return saved


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate one loop and write it; returns the exit code (0 = success)."""
    motion = _chosen_motion(args)
    sampling = _check_numbers(args)
    cine = _default_models(args)
    adapter = _pipeline_adapter(args)
    if adapter != "echo":
        return _cmd_generate_edit(args, adapter, sampling)
    args.formats = args.formats or _ECHO_FORMATS
    args.drag_sigma = 3.0 if args.drag_sigma is None else args.drag_sigma
    _formats(args.formats)
    if args.side_by_side and motion != "own":
        raise ValueError("--side-by-side needs --own (the real frames of the clip are the reference)")
    from echokdm.generation.loop import generate_loop, load_segmentation

    pipe = _load_pipeline(args.pipeline, args.device)
    seg = None if args.segmentation is None else load_segmentation(args.segmentation)
    source = _read_the_source(args, seg, _resolve_frame(args, seg, motion, cine))
    _refuse_non_cardiac(args, source.cine)
    out = Path(args.out)
    stem = args.stem or _default_stem(source.cine, args.frame, motion)
    _check_free(out, stem, args.overwrite)
    fan_mask, fan_method = _fan(args, source)
    src_kp, targets, motion_fps, extra = _targets(args, source, seg)
    fps = args.fps or motion_fps or DEFAULT_FPS
    beat = extra.pop("own_beat", None)
    settings = _settings(args, motion, source, {**extra, "fan_mask": fan_method}, sampling)
    common = {"spacing_mm": source.spacing_mm, "sampling": sampling, "segmentation": seg,
              "progress": not args.no_progress, "fan_mask": fan_mask, "source_index": args.frame,
              "patient_id": source.patient_id,
              "metadata": {k: v for k, v in settings.items() if k not in ("source", "pipeline")}}
    if motion == "ef":
        from echokdm.generation.ef_control import generate_ef_loop

        calibrate = seg is not None and args.ef_attempts > 1
        if seg is None:
            print("note: no --segmentation model: the EF of the generated frames is neither measured nor corrected "
                  f"(the keypoints move at EF {args.ef:g} %)")
        loop = generate_ef_loop(pipe, source.frame, src_kp, args.ef, heart_rate_bpm=args.heart_rate, fps=fps,
                                n_beats=args.beats, calibrate=calibrate, tolerance=args.ef_tolerance,
                                max_attempts=args.ef_attempts, **common)
        settings.update({k: loop.metadata[k] for k in ("ef_trajectory", "ef_attempts", "ef_calibrated")})
    else:
        loop = generate_loop(pipe, source.frame, src_kp, targets, fps=fps, motion=_MOTION_NAMES[motion], **common)
        if beat is not None:
            from echokdm.generation.tracking import clip_ef_target

            loop = clip_ef_target(loop, beat)
    out.mkdir(parents=True, exist_ok=True)
    extras = _export_extras(args, source, loop.n_frames, fan_mask)
    _print_result(loop, _write_outputs(out, stem, loop, args, settings, extras))
    return 0


# --------------------------------------------------------------------------------------------
# other adapters (faces, poses): echokdm.generation.keypoint_edit
# --------------------------------------------------------------------------------------------

#: Options that only echo has (hearts: EF, masks, segmentation, DICOM …).
_ECHO_ONLY = {"transfer": "--transfer", "ef": "--ef", "mask": "--mask", "segmentation": "--segmentation",
              "crop_to_fan": "--crop-to-fan", "no_fan_mask": "--no-fan-mask", "side_by_side": "--side-by-side",
              "format": "--format", "no_segmentation": "--no-segmentation",
              "transfer_keypoints": "--transfer-keypoints", "transfer_ed": "--transfer-ed"}


def _edit_targets(args: argparse.Namespace, adapter, source) -> tuple[np.ndarray, np.ndarray]:
    """``(source keypoints (N, 2), targets (T, N, 2))`` of the chosen motion for a non-echo adapter."""
    from echokdm.generation.keypoint_edit import read_keypoint_sequence
    from echokdm.generation.motion import drag_motion, load_drag_file

    motion = _chosen_motion(args)
    if motion == "own":
        if source.sequence is None:
            raise ValueError("--own needs a sequence: SOURCE a folder of frames or a video and --keypoints a folder "
                             "(one file per frame) or a file holding every frame")
        return source.sequence[args.frame], source.sequence[args.frame:_stop(args.frame, args.frames)]
    if motion == "drag":
        vectors = load_drag_file(args.drag, n_keypoints=adapter.n_keypoints)
        sigma = 0.0 if args.drag_sigma is None else args.drag_sigma
        return source.keypoints, drag_motion(source.keypoints, vectors, args.frames or 1, sigma=sigma)
    return source.keypoints, read_keypoint_sequence(args.target_keypoints, adapter)


def _cmd_generate_edit(args: argparse.Namespace, adapter_name: str, sampling: SamplingSettings) -> int:
    """``echokdm generate`` for a pipeline of another adapter than echo (see the module docstring)."""
    from echokdm.adapters import get_adapter
    from echokdm.generation.keypoint_edit import (
        generate_keypoint_edit,
        read_edit_source,
        write_keypoint_edit,
    )

    used = [flag for name, flag in _ECHO_ONLY.items() if getattr(args, name, None) not in (None, False)]
    if used:
        raise ValueError(f"{', '.join(used)}: echo only; this pipeline is for adapter {adapter_name!r} (motions: "
                         "--target-keypoints, --drag, --own)")
    adapter = get_adapter(adapter_name)
    motion = _chosen_motion(args)
    if not isinstance(args.frame, int):
        if args.frame == "ed":
            raise ValueError(f"--frame ed: an end-diastolic frame is echo only; this pipeline is for adapter "
                             f"{adapter_name!r} (pass --frame N)")
        args.frame = 0
    formats = args.formats or "mp4,gif,png"
    pipe = _load_pipeline(args.pipeline, args.device)
    source = read_edit_source(args.source, args.frame, adapter, args.keypoints,
                              channels=pipe.vae.config.in_channels)
    out = Path(args.out)
    stem = args.stem or f"{Path(args.source).name.split('.')[0]}_f{args.frame}_{_MOTION_NAMES[motion]}"
    _check_free(out, stem, args.overwrite)
    src_kp, targets = _edit_targets(args, adapter, source)
    settings = {"source": Path(args.source).name, "frame": args.frame, "motion": _MOTION_NAMES[motion],
                "keypoints_source": source.keypoints_source, "pipeline": str(Path(args.pipeline).resolve()),
                "steps": sampling.num_inference_steps}
    edit = generate_keypoint_edit(pipe, source.frame, src_kp, targets, fps=args.fps or DEFAULT_FPS, sampling=sampling,
                                  detect=args.detect, progress=not args.no_progress)
    written = write_keypoint_edit(out, edit, stem=stem, formats=formats, settings=settings, overwrite=args.overwrite)
    h, w = edit.frames.shape[1:3]
    print(f"generated {edit.n_frames} frame(s) {h}x{w} at {edit.fps:.3g} fps ({adapter_name}, {_MOTION_NAMES[motion]} "
          "motion)")
    if edit.kp_md is not None:
        print(f"  keypoint distance MD (re-detected vs target): {np.nanmean(edit.kp_md[1:]):.2f} px")
    for name, path in written.items():
        print(f"  {name:>14}: {path}")
    return 0


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="source clip or image: DICOM, AVI/MP4, NIfTI, CAMUS, EchoNet Videos/*.avi, PNG; "
                                  "for face/pose pipelines an image, a folder of frames or a video")
    p.add_argument("--adapter", help="keypoint adapter (echo, face, pose …); default, and checked against: the "
                                     "pipeline's own (model_index.json)")
    p.add_argument("--frame", type=_frame_value, default=None, metavar="N|ed",
                   help="source frame: an index (0-based) or 'ed', the clip's end-diastolic frame from its volume "
                        "curve (default: ed for a synthetic or transferred beat, --ef/--transfer, which starts at "
                        "end-diastole, when the clip's labels or --segmentation can find it; else 0: --own follows "
                        "the clip from any frame, edits (--drag/--target-keypoints) edit one, and --keypoints/--mask "
                        "belong to one)")
    p.add_argument("--format", choices=("dicom", "echonet", "camus", "nifti", "video"),
                   help="file format of SOURCE and --transfer (default: guessed from the file)")
    p.add_argument("--crop-to-fan", action="store_true",
                   help="DICOM only: crop to the ultrasound image (the outputs are masked to the fan either way)")
    p.add_argument("--no-fan-mask", action="store_true",
                   help="echo: keep the source's pixels outside the ultrasound fan (default: they are set to 0 in "
                        "every output, so burned-in text never reaches it; refused for a source marked "
                        "BurnedInAnnotation YES)")
    kp = p.add_mutually_exclusive_group()
    kp.add_argument("--keypoints", metavar="FILE",
                    help="source keypoints: .csv (frame, x0..x{N-1}, y0..y{N-1}) or .npy (N, 2) / (T, N, 2); "
                         "face: .pts/.json, pose: OpenPose .json; a folder of one file per frame for sequences")
    kp.add_argument("--mask", metavar="FILE", help="LV mask of the source frame: .npy, .png or .nii.gz")
    p.add_argument("--segmentation", metavar="MODEL",
                   help="segmentation model folder: source keypoints when neither --keypoints, --mask nor the "
                        "clip's own mask/tracing of the frame gives them, keypoints of every frame for --own and "
                        "--transfer when the clip is not labelled on every frame, and the achieved EF (default: "
                        f"the packaged {DEFAULT_SEGMENTATION} for a clip with no masks or tracings and no --keypoints "
                        "or --mask)")
    p.add_argument("--allow-non-cardiac", action="store_true",
                   help="generate from a DICOM whose header says it is not an echocardiogram (another exam, or a "
                        "linear or curved-array probe); refused by default")
    p.add_argument("--no-segmentation", action="store_true",
                   help="no segmentation model, even for an unlabelled clip (then --keypoints or --mask is needed, "
                        "and the EF of the loop is neither measured nor corrected)")
    p.add_argument("--apex-direction", choices=("auto", "up", "down", "left", "right"), default="auto",
                   help="where the apex points in the image; 'auto' detects it from the masks' shape "
                        "(default: %(default)s)")


def _add_motion_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("motion (exactly one)").add_mutually_exclusive_group(required=True)
    g.add_argument("--own", action="store_true", help="the clip's own motion from --frame on")
    g.add_argument("--transfer", metavar="OTHER", help="another clip whose motion is transferred onto the source")
    g.add_argument("--ef", type=float, metavar="EF", help="a synthetic beat with this ejection fraction (percent)")
    g.add_argument("--drag", metavar="FILE",
                   help="drag vectors (appendix D, target = source + v): .npy (N, 2) dx, dy px, or .csv (keypoint, "
                        "dx, dy) spread to neighbours")
    g.add_argument("--target-keypoints", metavar="FILE",
                   help="target keypoints (T, N, 2): .csv or .npy (face/pose also .pts/.json, or a folder of files)")
    o = p.add_argument_group("motion options")
    o.add_argument("--own-motion", choices=("auto", "tracking", "segmentation"), default="auto",
                   help="--own: where the clip's motion comes from: 'tracking' carries the source frame's keypoints "
                        "through the clip by speckle tracking (optical flow; closer to the real frames, but its EF "
                        "is biased low: measure EF with 'echokdm ef'), 'segmentation' takes every frame's "
                        "keypoints from the segmentation model; 'auto' tracks when the keypoints would come from "
                        "the segmentation model, else uses the given or labelled keypoints (default: %(default)s)")
    o.add_argument("--transfer-keypoints", metavar="FILE", help="keypoints of every frame of OTHER (.csv or .npy)")
    o.add_argument("--transfer-ed", type=int, metavar="N", help="OTHER's end-diastolic frame (default: detected)")
    o.add_argument("--frames", type=int, metavar="N",
                   help="--own/--transfer: at most N frames (default: to the end of the clip); --drag: loop "
                        "length, source -> target -> back (default: 1, the edited frame alone)")
    o.add_argument("--heart-rate", type=float, default=70.0, help="--ef: heart rate in bpm (default: %(default)s)")
    o.add_argument("--beats", type=float, default=1.0, help="--ef: number of beats (default: %(default)s)")
    o.add_argument("--ef-attempts", type=int, default=3,
                   help="--ef: loops generated at most to bring the EF re-measured on the frames (by --segmentation) "
                        "within --ef-tolerance of EF; 1 = one loop whose keypoints move at EF (default: %(default)s)")
    o.add_argument("--ef-tolerance", type=float, default=2.0,
                   help="--ef: EF points (default: %(default)s)")
    o.add_argument("--drag-sigma", type=float, default=None,
                   help="--drag with sparse vectors: spread along the keypoint index (echo: along the wall) in "
                        "keypoints (default: 3 for echo, 0 = only the listed keypoints for other adapters)")
    o.add_argument("--fps", type=float,
                   help=f"frame rate of the loop (default: the motion's clip, else {DEFAULT_FPS:g})")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` command to an argparse subparsers object (``args.func(args)`` runs it)."""
    p = subparsers.add_parser(
        "generate", help="generate a cine loop from one frame and a keypoint motion with KDM",
        description="Generate a cine loop with a KDM pipeline from one SOURCE frame and a motion of its 40 LV "
                    "keypoints: the clip's own motion, another clip's motion transferred onto this heart, a "
                    "synthetic beat at a chosen EF, a drag edit, or given target keypoints. Writes the loop, its "
                    "keypoints, flows and settings, and prints the EF target and achieved. A face or pose "
                    "pipeline (its folder names the adapter) takes an image, frames folder or video with its "
                    "keypoint files and --target-keypoints, --drag or --own, and writes MP4/GIF/PNG frames, "
                    "keypoints, flows and a preview.")
    _add_source_args(p)
    _add_motion_args(p)
    p.add_argument("--pipeline", default=None, metavar="FOLDER",
                   help=f"KDM pipeline folder (save_pretrained) or packaged name (default: {DEFAULT_PIPELINE}, "
                        "trained on the realistic phantom)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--stem", help="output file name stem (default: <clip>_f<frame>_<motion>)")
    p.add_argument("--formats", default=None,
                   help=f"comma-separated loop formats (default: {_ECHO_FORMATS} for echo, mp4,gif,png otherwise)")
    add_sampling_options(p, SamplingSettings())  # face/pose pipelines never fit the keypoints (keypoint_edit)
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--detect", action="store_true",
                   help="face/pose: re-detect keypoints on the generated frames with the adapter's detector and "
                        "report the keypoint distance MD (face: needs face-alignment or dlib)")
    p.add_argument("--side-by-side", action="store_true",
                   help="with --own: also write <stem>_side_by_side.mp4, the real clip | the generated loop")
    add_run_options(p, overwrite="replace existing outputs")
    p.set_defaults(func=cmd_generate)

