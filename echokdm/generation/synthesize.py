"""A synthetic cohort for augmentation or data sharing (``echokdm synthesize``).

:func:`synthesize_cohort` animates the end-diastolic (ED) frames of a manifest split with KDM:
``n_loops`` loops, each a synthetic beat (:func:`~echokdm.generation.motion.synthetic_motion`)
at an EF drawn from a range or matched to a reference distribution and a heart rate drawn from
a range. It writes them in the EchoNet-Dynamic layout and checks them for memorisation.

Choices
-------
* **Sources.** The clips of ``split`` in manifest order, cycled when ``n_loops`` exceeds their
  number (loop ``i`` animates the ``i mod n``-th usable clip). The source frame is the ED frame,
  the frame of largest Simpson volume, and its 40 keypoints come from, in this order: the
  phantom's ground truth (``ground_truth.csv`` beside a phantom manifest; its first ED frame);
  the clip's masks when every frame is labelled (:func:`~echokdm.generation.loop.clip_keypoints`);
  its traced or masked frames (EchoNet tracings, CAMUS ED/ES masks: the largest of them); the
  segmentation model on every frame. A clip with none of these, or without all 40 keypoints at
  ED, is skipped and listed with its reason in ``skipped.csv``.
* **Randomness.** Loop ``i`` draws its EF, heart rate and the seed of its noise from generators
  seeded with ``(seed, i, stream)``: its loop does not depend on ``n_loops`` or on the order in
  which loops are made, and :func:`sample_efs` reproduces the EFs without generating anything.
* **EFs.** Uniform on ``ef_range`` (default 20–70 %); or, with ``ef_reference``, a *smoothed
  bootstrap* of the reference (sampling its Gaussian kernel density estimate): a reference EF
  picked at random plus Gaussian jitter of standard deviation ``h`` (Silverman's rule,
  ``h = 0.9 min(SD, IQR / 1.34) n^(-1/5)``), redrawn when it falls outside the reference's range
  widened by ``h``. Unlike quantile matching it needs no smooth reference CDF, keeps every mode
  of a multimodal reference and never repeats a reference value exactly.
* **Frame 0.** By default each loop starts with the real source frame (``include_source``), so
  it plays as a seamless loop. That frame is a real image of the source patient: for data that
  leave the institution, use sources that may be shared or pass ``include_source=False`` (every
  frame is then made by the model, the first at the source pose).
* **Memorisation.** Every model-made frame (frame 0 left out when it is the real source) is
  compared at the pipeline's working size with the training frames of the pipeline (the train
  split of ``training_manifest``, default the given manifest), against real frames of patients
  outside that split (the manifest's other patients), with
  :class:`~echokdm.metrics.privacy.MemorisationReport` (MSE, 5th-percentile threshold). At most
  ``memorisation_frames`` frames of each reference set are read, evenly spread over clips and
  frames. Loops animate real frames, so a loop made from a *training* patient (``split="train"`` or
  ``"all"``) is close to that patient's training frames by construction: its frames are compared
  with the training frames of the *other* patients only (leave the source patient out), as held-out
  frames are, and the report says so (``loops_source_left_out``, ``note``). The report measures
  closeness to the training set, not to the source patients.
* **The fan.** The source frame and every frame made from it are masked to the source's ultrasound
  fan (:mod:`echokdm.io.fan`; ``fan_mask=False`` turns this off): burned-in text, a name box or an
  ECG trace around the fan never reaches a synthetic loop. A clip whose fan is not found is used
  unmasked (``fan_mask`` empty in ``cohort.csv``), unless its DICOM says ``BurnedInAnnotation YES``:
  then it is skipped with the reason in ``skipped.csv``.
* **Memory.** Loops are made one at a time and streamed to the EchoNet writer; only the table
  rows and the nearest-training distances are kept.
* **Several processes.** Under ``accelerate launch --num_processes N -m echokdm synthesize ...``
  (:mod:`echokdm.distributed`) loop ``i`` is made by process ``i mod N`` (with its own seed, as
  above) and kept as a signed part in ``out/.synthesize.parts`` (resumable: run the same command
  again after an interruption); the main process then writes the cohort from them in loop order:
  the same files as one process. Parts hold the frames exactly (float32; about 2 MB a loop at
  112×112 until the cohort is written).

Outputs in ``out``: ``Videos/synthetic_00000.avi`` …, ``FileList.csv``, ``VolumeTracings.csv``
and ``echokdm_cohort.csv`` (:func:`~echokdm.generation.echonet_cohort.write_echonet_cohort`'s layout;
``EF`` is the achieved EF when a segmentation model measured it, else the target), ``cohort.csv``
(:data:`COHORT_COLUMNS`), ``memorisation.csv`` (:data:`MEMORISATION_COLUMNS`), ``skipped.csv``
(``item, reason``; header only when nothing was skipped), ``memorisation.png`` and
``ef_distribution.png``, and ``settings.json`` (the arguments, the echokdm version). Every one is
checked before anything is generated: nothing is replaced without ``overwrite``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# the report of the cohort (memorisation check, plots, tables); its column lists and result class
# are part of synthesize_cohort's outputs, so they stay importable from here
from echokdm.generation.cohort_report import (
    COHORT_COLUMNS,
    MEMORISATION_COLUMNS,
    NearestTraining,
    SynthesisResult,
    memorisation_sets,
    write_cohort_report,
)
from echokdm.generation.settings import DEFAULT_FPS, SamplingSettings, sampling_from_keywords

__all__ = [
    "COHORT_COLUMNS",
    "DEFAULT_EF_RANGE",
    "DEFAULT_HEART_RATE_RANGE",
    "MEMORISATION_COLUMNS",
    "SynthesisResult",
    "load_ef_reference",
    "loop_name",
    "loop_seed",
    "reference_bandwidth",
    "sample_efs",
    "sample_heart_rates",
    "synthesize_cohort",
]

#: EF range (percent) of :func:`synthesize_cohort` when no reference distribution is given.
DEFAULT_EF_RANGE = (20.0, 70.0)
#: Heart-rate range (beats per minute) of :func:`synthesize_cohort`.
DEFAULT_HEART_RATE_RANGE = (55.0, 95.0)
_REFERENCE_COLUMNS = ("EF", "ef", "ef_reference", "ef_target")  # tried in order by load_ef_reference
_EF_STREAM, _HEART_RATE_STREAM, _NOISE_STREAM = 0, 1, 2
_SPLITS = ("train", "val", "test", "all")
_OWN_FILES = ("cohort.csv", "memorisation.csv", "skipped.csv", "memorisation.png", "ef_distribution.png",
              "settings.json", "privacy_dropped.csv", "privacy_filter.csv")


# ---------------------------------------------------------------------------------------------
# EFs, heart rates and seeds per loop
# ---------------------------------------------------------------------------------------------


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of loop ``index`` for one stream (EF, heart rate, noise)."""
    return np.random.default_rng([int(seed), int(index), stream])


def _checked_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _checked_count(n: Any, name: str, minimum: int = 1) -> int:
    """``int(n)`` or a ValueError naming ``name`` unless ``n`` is an integer ``>= minimum``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _checked_range(value: Any, name: str, low: float, high: float) -> tuple[float, float]:
    """``(a, b)`` floats with ``low < a <= b < high`` (``high`` may be ``inf``)."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {value!r}") from None
    if not (low < a <= b < high):
        raise ValueError(f"{name} must satisfy {low:g} < low <= high < {high:g}, got ({a:g}, {b:g})")
    return a, b


def loop_seed(seed: int, index: int) -> int:
    """Seed of the noise of loop ``index`` (for :func:`~echokdm.generation.loop.generate_loop`)."""
    return int(_rng(_checked_seed(seed), index, _NOISE_STREAM).integers(2**31 - 1))


def loop_name(index: int) -> str:
    """File name (without ``.avi``) of loop ``index``: ``synthetic_00000``, ``synthetic_00001`` …"""
    return f"synthetic_{int(index):05d}"


def sample_heart_rates(n: int, heart_rate_range: tuple[float, float] = DEFAULT_HEART_RATE_RANGE,
                       seed: int = 0) -> np.ndarray:
    """Heart rates ``float64`` ``(n,)`` in beats/min, uniform on ``heart_rate_range``; value ``i``
    is the one loop ``i`` of :func:`synthesize_cohort` gets with this ``seed``."""
    low, high = _checked_range(heart_rate_range, "heart_rate_range", 0.0, math.inf)
    seed = _checked_seed(seed)
    return np.array([_rng(seed, i, _HEART_RATE_STREAM).uniform(low, high)
                     for i in range(_checked_count(n, "n"))])


def reference_bandwidth(reference: np.ndarray) -> float:
    """Silverman's rule of thumb ``0.9 min(SD, IQR / 1.34) n^(-1/5)`` for the EF jitter (percent)."""
    ref = np.asarray(reference, dtype=np.float64)
    sd = float(np.std(ref, ddof=1))
    iqr = float(np.subtract(*np.percentile(ref, [75, 25])))
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    return 0.9 * spread * len(ref) ** -0.2


def _draw_from_reference(rng: np.random.Generator, reference: np.ndarray, h: float) -> float:
    """One smoothed-bootstrap draw, redrawn until within the reference's range widened by ``h``."""
    low = max(float(reference.min()) - h, 0.5)
    high = min(float(reference.max()) + h, 99.5)
    for _ in range(100):
        value = float(reference[rng.integers(len(reference))] + h * rng.standard_normal())
        if low <= value <= high:
            return value
    return float(np.clip(value, low, high))  # pragma: no cover - needs 100 draws beyond 1 h in a row


def sample_efs(n: int, *, ef_range: tuple[float, float] | None = None, reference: Any = None,
               seed: int = 0) -> np.ndarray:
    """Target EFs ``float64`` ``(n,)`` in percent, as :func:`synthesize_cohort` draws them.

    Parameters
    ----------
    n : int
        Number of EFs; value ``i`` is loop ``i``'s for this ``seed`` whatever ``n`` is.
    ef_range : (low, high), optional
        Uniform EFs on this range (default :data:`DEFAULT_EF_RANGE`), within (0, 100).
    reference : array_like or path, optional
        EFs whose distribution to match (see :func:`load_ef_reference` for files): a smoothed
        bootstrap (module docstring). Not together with ``ef_range``.
    seed : int
        Non-negative seed.

    Examples
    --------
    >>> efs = sample_efs(4, ef_range=(30, 40), seed=1)
    >>> bool(((efs >= 30) & (efs <= 40)).all()), bool((sample_efs(2, ef_range=(30, 40), seed=1) == efs[:2]).all())
    (True, True)
    """
    n, seed = _checked_count(n, "n"), _checked_seed(seed)
    if reference is not None and ef_range is not None:
        raise ValueError("give either ef_range or an EF reference distribution, not both")
    if reference is None:
        low, high = _checked_range(DEFAULT_EF_RANGE if ef_range is None else ef_range, "ef_range", 0.0, 100.0)
        return np.array([_rng(seed, i, _EF_STREAM).uniform(low, high) for i in range(n)])
    ref = load_ef_reference(reference)
    h = reference_bandwidth(ref)
    return np.array([_draw_from_reference(_rng(seed, i, _EF_STREAM), ref, h) for i in range(n)])


# ---------------------------------------------------------------------------------------------
# the reference distribution
# ---------------------------------------------------------------------------------------------


def _split_reference_spec(spec: str) -> tuple[Path, str | None]:
    """``"file.csv:column"`` → ``(file.csv, column)``; a path that exists as given is kept whole."""
    if Path(spec).exists() or ":" not in spec:
        return Path(spec), None
    path, column = spec.rsplit(":", 1)
    if not column or any(sep in column for sep in "/\\"):
        return Path(spec), None
    return Path(path), column


def _reference_column(table: pd.DataFrame, path: Path, column: str | None) -> str:
    if column is not None:
        if column not in table.columns:
            raise ValueError(f"{path}: no column {column!r}; columns are {', '.join(map(str, table.columns))}")
        return column
    found = [c for c in _REFERENCE_COLUMNS if c in table.columns]
    if found:
        return found[0]
    if len(table.columns) == 1:
        return str(table.columns[0])
    raise ValueError(f"{path}: no EF column ({', '.join(_REFERENCE_COLUMNS)}); name one as {path}:COLUMN "
                     f"(columns: {', '.join(map(str, table.columns))})")


def load_ef_reference(reference: Any, column: str | None = None) -> np.ndarray:
    """EFs (percent) whose distribution a synthetic cohort should match, ``float64`` ``(n,)``.

    Parameters
    ----------
    reference : array_like, path or str
        Values, or a CSV file: an EchoNet ``FileList.csv`` (``EF``), a manifest
        (``ef_reference``), a ``cohort.csv`` (``ef_target``) or any table; ``"file.csv:column"``
        names the column. Empty cells are left out.
    column : str, optional
        Column of the CSV (overrides one given after ``:``).

    Raises
    ------
    FileNotFoundError
        The CSV does not exist.
    ValueError
        No EF column, a value that is not a number, fewer than 2 values, or a value outside
        (0, 100) (the file and column are named).
    """
    if isinstance(reference, (str, os.PathLike)):
        path, given = _split_reference_spec(os.fspath(reference))
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such EF reference file")
        table = pd.read_csv(path)
        name = _reference_column(table, path, column or given)
        values = pd.to_numeric(table[name], errors="coerce")
        bad = table[name][values.isna() & table[name].notna()]
        if len(bad):
            raise ValueError(f"{path}: column {name!r} holds non-numbers, e.g. {bad.iloc[0]!r}")
        where = f"{path}: column {name!r}"
        values = values.to_numpy(np.float64)
    else:
        where, values = "ef_reference", np.asarray(reference, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if len(values) < 2 or not np.isfinite(values).all():
        raise ValueError(f"{where}: needs at least 2 finite EF values, got {len(values)}")
    if values.min() <= 0 or values.max() >= 100:
        raise ValueError(f"{where}: EFs must be percentages within (0, 100), got [{values.min():g}, {values.max():g}]")
    return values


# ---------------------------------------------------------------------------------------------
# sources: the ED frame of each clip and its keypoints
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
    """One source: ``frame`` ``float32`` ``(H, W)``, ``keypoints`` ``(40, 2)`` ``(x, y)`` px."""

    clip_id: str
    patient_id: str
    dataset: str
    split: str
    index: int
    frame: np.ndarray
    keypoints: np.ndarray
    spacing_mm: tuple[float, float] | None
    keypoints_source: str
    fan: np.ndarray | None = None  # (H, W) bool: the ultrasound fan, None when the loop is not masked
    fan_method: str | None = None


def _largest(keypoints: dict[int, np.ndarray] | np.ndarray, spacing_mm) -> int:
    """Frame of the largest Simpson volume among keypoint sets with all 40 points."""
    from echokdm.geometry.volumes import simpson_volume

    frames = list(keypoints) if isinstance(keypoints, dict) else list(range(len(keypoints)))
    volumes = np.array([simpson_volume(keypoints[f], spacing_mm) for f in frames], dtype=np.float64)
    if not np.isfinite(volumes).any():
        raise ValueError("no frame has all 40 keypoints")
    return int(frames[int(np.nanargmax(volumes))])


def _labelled_keypoints(cine) -> tuple[dict[int, np.ndarray], str]:
    """Keypoints of the traced frames (EchoNet), else of the masked frames (CAMUS), by frame."""
    from echokdm.geometry.keypoints import (
        KeypointError,
        mask_keypoints,
        tracing_keypoints,
    )

    found: dict[int, np.ndarray] = {}
    if cine.tracings:
        for frame, segments in cine.tracings.items():
            try:
                found[int(frame)] = tracing_keypoints(segments).keypoints
            except KeypointError:
                continue
        return found, "tracing"
    if cine.masks is not None and cine.labelled_frames is not None:
        for frame in np.asarray(cine.labelled_frames).tolist():
            if cine.masks[frame].any():
                try:
                    found[int(frame)] = mask_keypoints(cine.masks[frame]).keypoints
                except KeypointError:
                    continue
    return found, "mask"


def _ed_keypoints(cine, truth: Path | None, segmentation) -> tuple[int, np.ndarray, str]:
    """``(ED frame, keypoints (40, 2), how)``, trying the sources of the module docstring in order."""
    from echokdm.generation.loop import clip_keypoints, fully_labelled

    if truth is not None:
        from echokdm.data.phantom import load_npz

        clip = load_npz(truth)
        if clip.frames.shape == cine.frames.shape:
            ed = int(clip.ed_frames[0]) if len(clip.ed_frames) else _largest(clip.keypoints, None)
            return ed, clip.keypoints[ed], "phantom"
    every_frame = fully_labelled(cine)
    labelled, how = ({}, "mask") if every_frame else _labelled_keypoints(cine)
    if every_frame or (not labelled and segmentation is not None):
        sequence = clip_keypoints(cine, None if every_frame else segmentation)  # (T, 40, 2)
        ed = _largest(sequence, cine.spacing_mm)
        return ed, sequence[ed], "mask" if every_frame else "segmentation"
    if labelled:
        ed = _largest(labelled, cine.spacing_mm)
        return ed, labelled[ed], how
    raise ValueError("no phantom ground truth, masks or tracings, and no segmentation model")


def _source_fan(cine, mask_fan: bool) -> tuple[np.ndarray | None, str | None]:
    """The fan mask and how it was found (``None, None`` when not masked); ValueError for a source
    marked BurnedInAnnotation YES whose fan is not found or not to be masked."""
    from echokdm.io.fan import source_fan

    fan = source_fan(cine)
    if not mask_fan:
        if fan.burned_in_annotation == "YES":
            raise ValueError("BurnedInAnnotation is YES and fan masking is off (--no-fan-mask); refusing to copy "
                             "its burned-in text into synthetic loops")
        return None, None
    fan.check("source")
    return fan.mask, fan.method


def _source_from_row(row: pd.Series, truth: Path | None, segmentation, mask_fan: bool = True) -> _Source:
    """The source of one manifest row; ValueError/OSError when it cannot be used."""
    from echokdm.data.manifest import read_clip
    from echokdm.io.dicom import cine_non_cardiac_reason

    cine = read_clip(row)
    not_heart = cine_non_cardiac_reason(cine)
    if not_heart:
        raise ValueError(f"not an echocardiogram by its header ({not_heart}): left out (the LV models would animate a "
                         "ventricle that is not there)")
    fan, fan_method = _source_fan(cine, mask_fan)
    ed, keypoints, how = _ed_keypoints(cine, truth, segmentation)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (40, 2) or not np.isfinite(keypoints).all():
        raise ValueError(f"frame {ed} (ED) lacks some of the 40 keypoints ({how})")
    return _Source(clip_id=str(row["clip_id"]), patient_id=str(row["patient_id"]), dataset=str(row["dataset"]),
                   split=str(row["split"]), index=ed, frame=np.asarray(cine.frames[ed], dtype=np.float32),
                   keypoints=keypoints, spacing_mm=cine.spacing_mm, keypoints_source=how, fan=fan,
                   fan_method=fan_method)


def _prepare_sources(rows: pd.DataFrame, n_needed: int, truth: dict[str, Path], segmentation, progress: bool,
                     skipped: list[tuple[str, str]], mask_fan: bool = True) -> list[_Source]:
    """Sources of the first ``n_needed`` usable rows; unusable ones go to ``skipped``."""
    from tqdm.auto import tqdm

    sources: list[_Source] = []
    for _, row in tqdm(rows.iterrows(), total=len(rows), desc="sources", unit="clip", disable=not progress,
                       leave=False):
        if len(sources) == n_needed:
            break
        try:
            sources.append(_source_from_row(row, truth.get(str(row["clip_id"])), segmentation, mask_fan))
        except (ValueError, OSError) as exc:
            skipped.append((f"clip {row['clip_id']}", f"{type(exc).__name__}: {exc}"))
    return sources


# ---------------------------------------------------------------------------------------------
# generation and writing
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every loop gets: EFs, heart rates and seeds ``(n_loops,)``, and the shared settings."""

    efs: np.ndarray
    heart_rates: np.ndarray
    seeds: np.ndarray
    fps: float
    n_beats: float
    sampling: SamplingSettings  # its seed is the cohort's; loop i samples with seeds[i]
    include_source: bool
    ef_attempts: int = 3


def _make_loop(pipe, seg, source: _Source, plan: _Plan, i: int):
    """Loop ``i``: the synthetic beat of ``source`` at the planned EF and heart rate (closed-loop EF
    control with a segmentation model, :func:`~echokdm.generation.ef_control.generate_ef_loop`)."""
    import warnings

    from echokdm.generation.ef_control import generate_ef_loop

    info = {"heart_rate_bpm": float(plan.heart_rates[i]), "n_beats": plan.n_beats,
            "keypoints_source": source.keypoints_source}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missed EF shows in cohort.csv (ef_target vs ef_achieved)
        return generate_ef_loop(pipe, source.frame, source.keypoints, float(plan.efs[i]),
                                heart_rate_bpm=float(plan.heart_rates[i]), fps=plan.fps, n_beats=plan.n_beats,
                                segmentation=seg, calibrate=seg is not None and plan.ef_attempts > 1,
                                max_attempts=plan.ef_attempts, spacing_mm=source.spacing_mm,
                                sampling=plan.sampling.replace(seed=int(plan.seeds[i])),
                                include_source=plan.include_source, progress=False, fan_mask=source.fan,
                                source_index=source.index, patient_id=source.patient_id, metadata=info)


def _cohort_row(name: str, loop, source: _Source, plan: _Plan, i: int) -> dict[str, Any]:
    return {"loop": name, "source_clip_id": source.clip_id, "source_patient_id": source.patient_id,
            "source_dataset": source.dataset, "source_frame": source.index,
            "keypoints_source": source.keypoints_source, "ef_target": float(plan.efs[i]),
            "ef_achieved": np.nan if loop.ef_achieved is None else float(loop.ef_achieved),
            "ef_trajectory": loop.metadata.get("ef_trajectory", np.nan),
            "heart_rate_bpm": float(plan.heart_rates[i]), "fps": loop.fps, "n_frames": loop.n_frames,
            "seed": int(plan.seeds[i]), "fan_mask": source.fan_method or "",
            "ef_achieved_note": str(loop.metadata.get("ef_achieved_note", ""))}


def _loops(pipe, seg, sources: list[_Source], plan: _Plan, nearest: NearestTraining | None,
           rows: list[dict], skipped: list[tuple[str, str]], progress: bool,
           made_elsewhere: list | None = None) -> Iterator[tuple[str, Any, str]]:
    """Generate the loops one at a time: yield ``(name, loop, split)`` (the source's split); fill
    ``rows``, ``skipped`` and ``nearest``. ``made_elsewhere``: the loops made by several processes
    (:func:`_made_by_processes`), taken in order instead of generated here."""
    from tqdm.auto import tqdm

    quiet = not progress or made_elsewhere is not None  # loops made elsewhere: their processes showed progress
    for i in tqdm(range(len(plan.efs)), desc="synthesizing", unit="loop", disable=quiet):
        source, name = sources[i % len(sources)], loop_name(i)
        try:
            loop = (_make_loop(pipe, seg, source, plan, i) if made_elsewhere is None
                    else _MadeLoop.from_part(made_elsewhere[i]))
        except ValueError as exc:
            skipped.append((f"loop {name} (clip {source.clip_id})", f"{type(exc).__name__}: {exc}"))
            continue
        if nearest is not None:
            made = loop.frames[1:] if plan.include_source else loop.frames  # model-made frames only
            if len(made):
                nearest.add_loop(made, source.dataset, source.patient_id)
        rows.append(_cohort_row(name, loop, source, plan, i))
        yield name, loop, source.split


# ---------------------------------------------------------------------------------------------
# several processes (accelerate launch): loops sharded, then written by the main process
# ---------------------------------------------------------------------------------------------

_LOOP_FIELDS = ("frames", "fps", "keypoints", "ef_target", "spacing_mm", "ef_achieved", "source_frame", "motion",
                "patient_id", "detected_keypoints")


@dataclasses.dataclass
class _MadeLoop:
    """What the cohort's writers read of a loop made by another process (frames exact: float32)."""

    frames: np.ndarray
    fps: float
    keypoints: np.ndarray
    ef_target: float | None
    spacing_mm: tuple[float, float] | None
    ef_achieved: float | None
    source_frame: int | None
    motion: str
    patient_id: str | None
    detected_keypoints: np.ndarray | None
    metadata: dict[str, Any]

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @staticmethod
    def to_part(loop) -> dict[str, Any]:
        fields = {name: getattr(loop, name) for name in _LOOP_FIELDS}
        fields["metadata"] = {key: loop.metadata[key] for key in ("fan_masked", "ef_trajectory", "ef_achieved_note")
                              if key in loop.metadata}
        return {"loop": fields}

    @classmethod
    def from_part(cls, part: dict[str, Any]) -> _MadeLoop:
        if "skipped" in part:  # a ValueError in the process that made it, as generating it here would raise
            raise ValueError(part["skipped"])
        fields = dict(part["loop"])
        if fields["spacing_mm"] is not None:
            fields["spacing_mm"] = tuple(fields["spacing_mm"])
        return cls(**fields)


def _loop_part(rows: pd.DataFrame, pipe, seg, sources: list[_Source], plan: _Plan) -> dict[str, Any]:
    """The engine's task: loop ``rows.index[0]`` as plain data (or why it was skipped)."""
    i = int(rows.index[0])
    try:
        return _MadeLoop.to_part(_make_loop(pipe, seg, sources[i % len(sources)], plan, i))
    except ValueError as exc:
        return {"skipped": str(exc)}


def _made_by_processes(pipe, seg, sources: list[_Source], plan: _Plan, out: Path, settings: dict[str, Any],
                       progress: bool) -> list | None:
    """Every loop, made by the launched processes (loop ``i`` by process ``i mod N``, with its own seed:
    the loops of one process), kept as resumable parts in ``out/.synthesize.parts``; the list in the main
    process, None in the others."""
    import functools

    from echokdm.distributed import map_clips

    names = [loop_name(i) for i in range(len(plan.efs))]
    loops = pd.DataFrame({"dataset": "synthesize", "clip_id": names, "path": str(out.resolve())})
    task = functools.partial(_loop_part, pipe=pipe, seg=seg, sources=sources, plan=plan)
    what = {"synthesize": 1, "settings": json.loads(json.dumps(settings, default=str)),
            "sources": [s.clip_id for s in sources], "device": str(getattr(pipe, "device", ""))}
    done = map_clips(loops, task, out / ".synthesize.parts", settings=what, progress=progress, desc="synthesizing")
    if done is None:
        return None
    if done.failed:
        raise RuntimeError("loops not made: " + "; ".join(f"{item}: {reason}" for item, reason in done.failed)
                           + f" (the finished loops are kept in {out / '.synthesize.parts'}; run again to go on)")
    return done.results


def _planned_paths(out: Path, n_loops: int) -> list[Path]:
    """Every file :func:`synthesize_cohort` may write."""
    from echokdm.generation.echonet_cohort import COHORT_CSV_NAME

    echonet = [out / "FileList.csv", out / "VolumeTracings.csv", out / COHORT_CSV_NAME]
    videos = [out / "Videos" / f"{loop_name(i)}.avi" for i in range(n_loops)]
    return [*echonet, *(out / name for name in _OWN_FILES), *videos]


def _refuse_existing(out: Path, n_loops: int, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: is not a folder (out)")
    existing = [p for p in _planned_paths(out, n_loops) if p.exists()]
    if existing and not overwrite:
        shown = ", ".join(map(str, existing[:3])) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise FileExistsError(f"{shown}: already exist(s); pass overwrite=True (--overwrite) or choose another folder")


# ---------------------------------------------------------------------------------------------
# synthesize_cohort
# ---------------------------------------------------------------------------------------------


def _load_pipeline(pipeline, device):
    """A KDM pipeline from an instance or its folder, on ``device`` (None: CUDA when available for a
    folder, the instance's own device otherwise)."""
    import torch

    from echokdm.pipelines.kdm import KDMPipeline

    if isinstance(pipeline, (str, os.PathLike)):
        path = Path(pipeline)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no KDM pipeline folder (save_pretrained output)")
        pipeline = KDMPipeline.from_pretrained(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return pipeline.to(device) if device else pipeline


def _source_rows(table: pd.DataFrame, split: str, where: Path) -> pd.DataFrame:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}, got {split!r}")
    rows = table if split == "all" else table[table["split"] == split]
    if rows.empty:
        present = sorted(set(table["split"]))
        raise ValueError(f"{where}: no clips in split {split!r} (splits present: {', '.join(present)}); "
                         f"choose one with --split ({' or '.join(present)}, or all)")
    return rows


def _plan(n_loops, *, ef_range, ef_reference, heart_rate_range, fps, n_beats, sampling: SamplingSettings,
          include_source, ef_attempts=3) -> tuple[_Plan, np.ndarray | None]:
    """Validated settings and the draws of every loop (``sampling`` is checked already); the reference
    EFs when given."""
    from echokdm.generation.motion import synthetic_volume_curve

    n_loops, seed = _checked_count(n_loops, "n_loops"), sampling.seed
    reference = None if ef_reference is None else load_ef_reference(ef_reference)
    efs = sample_efs(n_loops, ef_range=ef_range, reference=reference, seed=seed)
    for value, name in ((fps, "fps"), (n_beats, "n_beats")):
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    plan = _Plan(efs=efs, heart_rates=sample_heart_rates(n_loops, heart_rate_range, seed),
                 seeds=np.array([loop_seed(seed, i) for i in range(n_loops)]), fps=float(fps),
                 n_beats=float(n_beats), sampling=sampling, include_source=bool(include_source),
                 ef_attempts=_checked_count(ef_attempts, "ef_attempts"))
    # the fastest heart gives the shortest loop: it must still have 2 frames (raises otherwise)
    synthetic_volume_curve(float(efs[0]), float(plan.heart_rates.max()), plan.fps, plan.n_beats)
    return plan, reference


def synthesize_cohort(
    manifest: str | os.PathLike, pipeline, out: str | os.PathLike, *, n_loops: int, split: str = "test",
    ef_range: tuple[float, float] | None = None, ef_reference: Any = None,
    heart_rate_range: tuple[float, float] = DEFAULT_HEART_RATE_RANGE, fps: float = DEFAULT_FPS,
    n_beats: float = 1.0, sampling: SamplingSettings | None = None, segmentation=None,
    training_manifest: str | os.PathLike | None = None, include_source: bool = True, ef_attempts: int = 3,
    fan_mask: bool = True, memorisation_frames: int = 2000, device: str | None = None, overwrite: bool = False,
    progress: bool = True, privacy_filter: bool = False, **deprecated: Any,
) -> SynthesisResult:
    """Generate a synthetic cohort of ``n_loops`` KDM loops in the EchoNet-Dynamic layout.

    See the module docstring for the choices (sources, EF draws, seeds, memorisation) and the
    files written.

    Parameters
    ----------
    manifest : path
        Manifest CSV of the source clips (a phantom cohort's gives exact keypoints).
    pipeline : KDMPipeline or path
        The pipeline, or its ``save_pretrained`` folder.
    out : path
        Cohort folder (created).
    n_loops : int
        Number of loops; sources are cycled when there are fewer usable clips.
    split : {"test", "val", "train", "all"}
        Split of the source clips. Loops keep their source's split in ``FileList.csv``: to augment
        the training of a model evaluated on this manifest, use ``"train"`` so that no test patient
        reaches its training data.
    ef_range : (low, high), optional
        Uniform target EFs in percent (default :data:`DEFAULT_EF_RANGE`).
    ef_reference : array_like or path, optional
        EFs whose distribution to match instead (:func:`load_ef_reference`; ``"file.csv:column"``).
    heart_rate_range : (low, high)
        Uniform heart rates in beats/min.
    fps, n_beats : float
        Frame rate of the loops and beats per loop: ``round(n_beats · 60 / HR · fps)`` frames.
    sampling : SamplingSettings, optional
        As in :func:`~echokdm.generation.loop.generate_loop` (default ``SamplingSettings()``); its
        ``seed`` (non-negative) is the cohort's: loop ``i`` depends only on ``(seed, i)`` and its
        source (module docstring).
    segmentation : LVSegmentationNet or path, optional
        Segmentation model (folder): source keypoints of clips without masks, tracings or phantom
        truth, and ``ef_achieved`` re-measured on every loop.
    training_manifest : path, optional
        Manifest whose train split trained the pipeline (default: ``manifest``), for the
        memorisation check.
    include_source : bool
        Frame 0 of each loop is the real source frame (default), or made by the model too.
    ef_attempts : int
        With a segmentation model, loops generated at most per cohort loop to bring the EF
        re-measured on its frames within 2 points of the drawn EF
        (:func:`~echokdm.generation.ef_control.generate_ef_loop`); 1 = one loop whose keypoints move
        at the drawn EF. ``cohort.csv`` keeps the trajectory EF that was used (``ef_trajectory``).
    fan_mask : bool
        Mask every loop to its source's ultrasound fan (module docstring).
    memorisation_frames : int
        Most training frames, and most held-out frames, read for the memorisation check.
    device : str, optional
        Torch device of the pipeline (default: CUDA when available for a folder).
    overwrite : bool
        Replace existing outputs; otherwise any existing one raises before anything is generated.
    progress : bool
        Progress bars (one over the loops).
    privacy_filter : bool
        Drop (and list in ``privacy_dropped.csv``) loops closer to a training patient than real held-out
        patients are (:func:`~echokdm.generation.privacy_filter.filter_cohort`).
    **deprecated
        The old separate settings (``seed``, ``mode``, ``k``, ``num_inference_steps``,
        ``batch_size``, ``fit_keypoints``): mapped onto ``sampling`` with a FutureWarning (for one
        release).

    Returns
    -------
    SynthesisResult or None
        None in every launched process but the main one (module docstring, several processes).

    Raises
    ------
    FileNotFoundError
        The manifest, pipeline, segmentation model or reference file does not exist.
    FileExistsError
        An output exists and ``overwrite`` is false.
    ValueError
        Bad settings, an empty split, or no usable source clip (every reason listed).
    """
    sampling = sampling_from_keywords(sampling, deprecated, "synthesize_cohort")
    plan, reference = _plan(n_loops, ef_range=ef_range, ef_reference=ef_reference,
                            heart_rate_range=heart_rate_range, fps=fps, n_beats=n_beats, sampling=sampling,
                            include_source=include_source, ef_attempts=ef_attempts)
    budget = _checked_count(memorisation_frames, "memorisation_frames")
    out = Path(out)
    _refuse_existing(out, len(plan.efs), overwrite)
    settings = _settings(manifest, pipeline, segmentation, training_manifest, ef_reference, plan,
                         split=split, ef_range=ef_range, heart_rate_range=heart_rate_range,
                         memorisation_frames=budget, fan_mask=bool(fan_mask))
    models = (pipeline, segmentation, device)
    result = _make_cohort(out, Path(manifest), models, split, training_manifest, plan, reference, budget, settings,
                          fan_mask=bool(fan_mask), progress=progress, overwrite=overwrite)
    return _privacy_filtered(result, manifest, training_manifest, overwrite) if privacy_filter else result


def _privacy_filtered(result: SynthesisResult | None, manifest, training_manifest, overwrite: bool):
    """``result`` after the privacy filter (:func:`~echokdm.generation.privacy_filter.apply_to_result`)."""
    if result is not None:
        from echokdm.generation.privacy_filter import apply_to_result

        apply_to_result(result, manifest, training_manifest, overwrite=overwrite)
    return result


def _load_segmentation(segmentation):
    """The segmentation model (instance or folder), or None."""
    from echokdm.generation.loop import load_segmentation

    return None if segmentation is None else load_segmentation(segmentation)


def _make_cohort(out: Path, manifest: Path, models: tuple[Any, Any, str | None], split: str, training_manifest,
                 plan: _Plan, reference: np.ndarray | None, budget: int, settings: dict[str, Any], *,
                 fan_mask: bool, progress: bool, overwrite: bool) -> SynthesisResult:
    """Read the sources and the memorisation sets, stream the loops to the EchoNet writer, write the report."""
    from echokdm.data.manifest import load_manifest
    from echokdm.generation.echonet_cohort import write_echonet_items
    from echokdm.generation.loop import pipeline_size

    table = load_manifest(manifest)
    rows = _source_rows(table, split, manifest)
    from echokdm.distributed import launched

    pipeline, segmentation, device = models
    pipe, seg = _load_pipeline(pipeline, device), _load_segmentation(segmentation)
    skipped: list[tuple[str, str]] = []
    sources = _usable_sources(rows, manifest, split, len(plan.efs), seg, progress, skipped, fan_mask)
    out.mkdir(parents=True, exist_ok=True)
    made = None
    if launched():  # accelerate launch: the loops are shared by the processes; the main one writes
        made = _made_by_processes(pipe, seg, sources, plan, out, settings, progress)
        if made is None:
            return None
    training_table = table if training_manifest is None else load_manifest(training_manifest)
    memo = memorisation_sets(table, training_table, pipeline_size(pipe), budget, progress, skipped)
    nearest = NearestTraining(memo.training, memo.training_keys) if memo.ready else None
    cohort_rows: list[dict[str, Any]] = []
    loops = _loops(pipe, seg, sources, plan, nearest, cohort_rows, skipped, progress, made)
    write_echonet_items(out, ((name, loop, split.upper()) for name, loop, split in loops), overwrite=overwrite)
    result = write_cohort_report(out, cohort_rows, skipped, memo, nearest, reference, settings, overwrite)
    if made is not None:
        import shutil

        shutil.rmtree(out / ".synthesize.parts", ignore_errors=True)
    return result


def _usable_sources(rows: pd.DataFrame, manifest: Path, split: str, n_needed: int, seg, progress: bool,
                    skipped: list[tuple[str, str]], fan_mask: bool) -> list[_Source]:
    """The sources of :func:`_prepare_sources`; a :class:`ValueError` listing every reason when there is none."""
    from echokdm.data.ground_truth import ground_truth_files

    sources = _prepare_sources(rows, n_needed, ground_truth_files(manifest), seg, progress, skipped, fan_mask)
    if not sources:
        raise ValueError(f"{manifest}: no usable source clip in split {split!r}: "
                         + "; ".join(f"{item}: {reason}" for item, reason in skipped))
    return sources


def _described(value: Any) -> str | None:
    """A path as an absolute path, an in-memory object by its type (for ``settings.json``)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return str(Path(value).resolve())
    return f"<{type(value).__name__} object>"


def _settings(manifest, pipeline, segmentation, training_manifest, ef_reference, plan: _Plan,
              **given: Any) -> dict[str, Any]:
    """What ``settings.json`` records: enough, with the same pipeline, to make the cohort again."""
    from echokdm import __version__

    if ef_reference is None or isinstance(ef_reference, (str, os.PathLike)):
        reference = None if ef_reference is None else os.fspath(ef_reference)  # may end in ":column"
    else:
        reference = np.asarray(ef_reference, np.float64).ravel().tolist()
    return {"echokdm_version": __version__, "manifest": _described(manifest), "pipeline": _described(pipeline),
            "segmentation": _described(segmentation), "training_manifest": _described(training_manifest),
            "ef_reference": reference,
            "n_loops": len(plan.efs), "fps": plan.fps, "n_beats": plan.n_beats, **dataclasses.asdict(plan.sampling),
            "include_source": plan.include_source, "ef_attempts": plan.ef_attempts,
            **{key: list(value) if isinstance(value, tuple) else value for key, value in given.items()}}
