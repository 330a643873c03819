"""Realism of generated beats beyond paired scores (issue 20, part 3), for ``echokdm evaluate``.

Paired scores (MSE, LPIPS, SSIM) exist only for a patient's own beat; a beat at a new EF or
another patient's motion has no real target. For every method and beat kind
(:data:`~echokdm.evaluation.cases.BEATS`: ``own``, ``new_ef``, ``transfer``) this module scores
the generated beats against the real frames of the evaluated clips:

* per clip (:func:`clip_rows`, :func:`echokdm.metrics.consistency.loop_consistency`): the warping
  error between consecutive generated frames along the requested motion, and the pop of the
  first generated frame (MSE, motion-compensated MSE, LPIPS-Alex), with the same statistics of the
  real own beat as ``real`` rows. "The requested motion" is the thin-plate spline between
  consecutive target keypoints (:func:`step_flows`), the one flow every beat kind has;
* per dataset, beat and method (:func:`set_scores`): FID of the generated frames and FVD of the
  loops (source + generated frames) against the real own-beat frames and loops of the same clips
  (standard Inception / I3D weights, :mod:`echokdm.metrics.fid`, :mod:`echokdm.metrics.fvd`; left
  out with a note without them), and the classifier two-sample test (real vs generated frames,
  folds by patient, :func:`echokdm.metrics.two_sample.classifier_two_sample_test`; 0.5 =
  indistinguishable).

Written to the run folder as ``realism_per_clip.csv``, ``realism.csv`` and ``realism.md``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from echokdm.errors import EchoKDMWarning
from echokdm.evaluation.cases import BEATS, EvalCase

__all__ = ["REALISM_METRICS", "RealismResult", "RealismSettings", "RealismScorers", "clip_rows", "realism_markdown",
           "set_scores", "step_flows", "summarise_realism"]

#: Per-clip statistics (means over patients with bootstrap intervals in ``realism.csv``).
REALISM_METRICS = ("warp_error", "pop_mse", "pop_warp", "pop_lpips")
#: Columns of the realism table, in order, with their titles.
TABLE_COLUMNS = {"fid": "FID", "fvd": "FVD", "classifier_acc": "classifier acc.", "warp_error": "warp error",
                 "pop_mse": "pop (MSE)", "pop_warp": "pop (warped)", "pop_lpips": "pop (LPIPS)"}


@dataclasses.dataclass
class RealismSettings:
    """What the realism part of :func:`~echokdm.evaluation.evaluate` does (recorded in ``evaluate.json``).

    ``beats``: subset of :data:`~echokdm.evaluation.cases.BEATS`; ``new_efs``: each clip's new-EF
    beat gets the value farthest from its own EF; ``fid_weights`` / ``fvd_weights``: local weight
    files or folders (None: ``$ECHOKDM_FID_WEIGHTS`` / ``$ECHOKDM_FVD_WEIGHTS``, torch hub's cache,
    then a download unless ``download`` is False); ``classifier`` (``cnn`` / ``logistic``),
    ``classifier_folds``, ``classifier_steps``: the two-sample test.
    """

    beats: tuple[str, ...] = ("own",)
    new_efs: tuple[float, ...] = (30.0, 65.0)
    fid_weights: str | None = None
    fvd_weights: str | None = None
    download: bool = True
    classifier: str = "cnn"
    classifier_folds: int = 5
    classifier_steps: int = 200

    def __post_init__(self) -> None:
        self.beats, self.new_efs = tuple(self.beats), tuple(float(e) for e in self.new_efs)
        unknown = [b for b in self.beats if b not in BEATS]
        if unknown or not self.beats:
            raise ValueError(f"unknown or no beat kind(s) {unknown or list(self.beats)}; beats are {', '.join(BEATS)}")
        if not self.new_efs or not all(0 < e < 100 for e in self.new_efs):
            raise ValueError(f"new_efs must be EFs within (0, 100) %, got {self.new_efs}")
        if self.classifier not in ("cnn", "logistic"):
            raise ValueError(f"classifier must be 'cnn' or 'logistic', got {self.classifier!r}")
        if self.classifier_folds < 2 or self.classifier_steps < 1:
            raise ValueError(f"classifier_folds must be >= 2 and classifier_steps >= 1, got {self.classifier_folds} "
                             f"and {self.classifier_steps}")


@dataclasses.dataclass
class RealismResult:
    """``clips``: one row per clip, beat and method (and ``real``); ``summary``: per dataset, beat and
    method; ``table``: the markdown; ``notes``: what was left out and why."""

    clips: pd.DataFrame
    summary: pd.DataFrame
    table: str
    notes: list[str]


class RealismScorers:
    """The FID / FVD feature networks (None with a note when no weights) and an LPIPS distance."""

    def __init__(self, settings: RealismSettings, device: Any, lpips: Callable | None = None):
        from echokdm.metrics.fid import load_fid_extractor
        from echokdm.metrics.fvd import load_fvd_extractor

        self.fid, fid_note = load_fid_extractor(settings.fid_weights, device, download=settings.download)
        self.fvd, fvd_note = load_fvd_extractor(settings.fvd_weights, device, download=settings.download)
        self.lpips = lpips
        self.notes = [n for n in (fid_note, fvd_note) if n]
        for note in self.notes:
            warnings.warn(note, EchoKDMWarning, stacklevel=2)


def step_flows(keypoints: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``float32`` ``(K, 2, H, W)``: thin-plate-spline flows of consecutive poses ``keypoints`` ``(K + 1, N, 2)``
    (flow ``t`` on the grid of pose ``t + 1`` pointing into pose ``t``, :func:`echokdm.baselines.tps.tps_flow`)."""
    from echokdm.baselines.tps import tps_flow

    return np.stack([tps_flow(a, b, shape) for a, b in zip(keypoints[:-1], keypoints[1:], strict=True)])


def clip_rows(case: EvalCase, generated: dict[str, np.ndarray], lpips: Callable | None = None) -> list[dict]:
    """Per-clip realism rows of one case: one per method in ``generated`` (``method → (K, S, S)``
    frames following the source), plus a ``real`` row for the own beat (its real target frames)."""
    from echokdm.metrics.consistency import loop_consistency

    source = case.frames[case.source]
    flows = step_flows(case.keypoints[[case.source, *case.targets]], source.shape)  # (K, 2, S, S)
    ids = {"dataset": case.dataset, "patient_id": case.patient_id, "clip_id": case.clip_id, "beat": case.beat,
           "motion": case.motion}
    loops = dict(generated)
    if case.beat == "own":
        loops["real"] = case.frames[case.targets]
    rows = []
    for method, frames in loops.items():
        stats = loop_consistency(source, np.clip(frames, 0, 1), flows, lpips) if len(frames) >= 2 else {}
        rows.append({**ids, "method": method, "n_frames": len(frames),
                     **{m: stats.get(m, np.nan) for m in REALISM_METRICS}})
    return rows


def set_scores(real_frames: np.ndarray, real_groups: np.ndarray, real_loops: list[np.ndarray],
               frames: np.ndarray, groups: np.ndarray, loops: list[np.ndarray], scorers: RealismScorers,
               settings: RealismSettings, seed: int = 0) -> dict[str, float]:
    """FID, FVD and the classifier two-sample test of one generated set against the real set.

    ``*_frames`` ``(N, S, S)`` with patient ids ``*_groups`` ``(N,)``; ``*_loops`` lists of
    ``(T, S, S)`` (source then frames). FID / FVD are NaN without their network.
    """
    from echokdm.metrics.fid import frechet_inception_distance
    from echokdm.metrics.fvd import frechet_video_distance
    from echokdm.metrics.two_sample import classifier_two_sample_test

    out: dict[str, float] = {"fid": np.nan, "fvd": np.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the few-samples warning is issued once per run (summarise_realism)
        if scorers.fid is not None:
            out["fid"] = frechet_inception_distance(real_frames, frames, scorers.fid)
        if scorers.fvd is not None and len(real_loops) >= 2 and len(loops) >= 2:
            out["fvd"] = frechet_video_distance(real_loops, loops, scorers.fvd)
    try:
        test = classifier_two_sample_test(real_frames, frames, real_groups, groups, folds=settings.classifier_folds,
                                          model=settings.classifier, steps=settings.classifier_steps, seed=seed)
        out.update(test.summary())
    except ValueError as exc:  # fewer than two patients: no held-out patient
        out.update(classifier_acc=np.nan, classifier_acc_low=np.nan, classifier_acc_high=np.nan,
                   classifier_note=str(exc))
    return out


def summarise_realism(clips: pd.DataFrame, sets: pd.DataFrame, *, n_boot: int = 2000,
                      notes: list[str] | None = None) -> RealismResult:
    """Per dataset, beat and method: the per-clip statistics as means over patients with patient-level
    bootstrap intervals (:func:`echokdm.metrics.report.summarise`) joined with the set scores
    (``sets``: one row per dataset, beat and method with :func:`set_scores`' columns)."""
    from echokdm.metrics.report import summarise

    notes = list(notes or [])
    metrics = [m for m in REALISM_METRICS if m in clips.columns and clips[m].notna().any()]
    summary = summarise(clips, metrics, by=("dataset", "beat", "method"), n_boot=n_boot) if metrics else \
        clips.groupby(["dataset", "beat", "method"]).size().rename("n_frames").reset_index()
    if len(sets):
        summary = summary.merge(sets, on=["dataset", "beat", "method"], how="outer")
    beat_order = {b: i for i, b in enumerate(BEATS)}
    method_order = {m: i for i, m in enumerate(("no_edit", "tps", "wo_f2i", "wo_k2f", "kdm", "real"))}
    summary = summary.assign(_b=summary["beat"].map(beat_order), _m=summary["method"].map(method_order).fillna(99))
    summary = summary.sort_values(["dataset", "_b", "_m"]).drop(columns=["_b", "_m"]).reset_index(drop=True)
    n_min = int(sets["n_generated_frames"].min()) if len(sets) and "n_generated_frames" in sets else 0
    if len(sets) and sets[["fid", "fvd"]].notna().any().any():
        from echokdm.metrics.fid import FID_MIN_SAMPLES, warn_few_samples

        note = warn_few_samples("FID/FVD", n_min, FID_MIN_SAMPLES, stacklevel=3)
        notes += [note] if note else []
    return RealismResult(clips, summary, realism_markdown(summary, notes), notes)


def _cell(row: pd.Series, metric: str) -> str:
    value = row.get(metric, np.nan)
    if value is None or not np.isfinite(value):
        return "–"
    low, high = row.get(f"{metric}_low", np.nan), row.get(f"{metric}_high", np.nan)
    digits = 1 if metric in ("fid", "fvd") else 3 if metric.startswith("classifier") or metric == "warp_error" \
        else 2
    text = f"{value:.{digits}f}" if metric != "warp_error" else f"{value:.2e}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]" if metric != "warp_error" else ""
    return text


def realism_markdown(summary: pd.DataFrame, notes: list[str] | tuple[str, ...] = ()) -> str:
    """The realism table: one row per dataset, beat and method; classifier accuracy with its
    bootstrap interval, per-clip statistics as means over patients [95 % interval]."""
    from echokdm.evaluation.runner import METHOD_LABELS

    header = ["dataset", "beat", "method", *TABLE_COLUMNS.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in summary.iterrows():
        cells = [str(row["dataset"]), str(row["beat"]), METHOD_LABELS.get(row["method"], row["method"])]
        cells += [_cell(row, metric) for metric in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    text += ("\nclassifier acc.: held-out accuracy of a small CNN telling real from generated frames (folds by "
             "patient; 0.5 = indistinguishable); pop: first step (source → first generated frame) over the median "
             "later step, to be read against the real row (the real own beat, same frame timing: the first target "
             "is the frame after the source, later ones are spread over the beat, so a real beat's pop is below 1); "
             "warp error: MSE between consecutive generated frames after warping along the requested motion "
             "(a real beat's includes its speckle decorrelation and noise).\n")
    if notes:
        text += "\n" + "\n".join(f"note: {n}" for n in notes) + "\n"
    return text


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def _quantised(frames: np.ndarray) -> np.ndarray:
    """Frames as the run folder stores them (8 bits), so a resumed run scores the same numbers."""
    return (np.round(np.clip(frames, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _donor(cases: list[EvalCase], index: int) -> EvalCase | None:
    """The next case (cyclically) of another patient: whose motion the ``transfer`` beat borrows."""
    for step in range(1, len(cases)):
        other = cases[(index + step) % len(cases)]
        if other.patient_id != cases[index].patient_id:
            return other
    return None


def beat_case(cases: list[EvalCase], index: int, beat: str, settings: RealismSettings) -> EvalCase | None:
    """The case of ``beat`` for ``cases[index]`` (None: a transfer with a single patient)."""
    from echokdm.evaluation.cases import new_ef_case, own_ef, transfer_case

    case = cases[index]
    if beat == "own":
        return case
    if beat == "new_ef":
        ef = own_ef(case)
        return new_ef_case(case, max(settings.new_efs, key=lambda e: abs(e - ef) if np.isfinite(ef) else e))
    donor = _donor(cases, index)
    return None if donor is None else transfer_case(case, donor)


def _generated(case: EvalCase, config: Any, pipes: tuple[Any, Any], out: Any) -> dict[str, np.ndarray]:
    """Every method's frames of a beat case, from ``generated/<clip>.<beat>.npz`` when a run left them for
    the same motion, else generated (:func:`echokdm.evaluation.runner.generate_case`) and saved there."""
    from echokdm.data.manifest import clip_file_stem
    from echokdm.evaluation.runner import generate_case
    from echokdm.io.atomic import atomic_output

    path = None if out is None else out / "generated" / f"{clip_file_stem(case.clip_id)}.{case.beat}.npz"
    if path is not None and path.exists():
        with np.load(path) as saved:
            if str(saved["motion"]) == case.motion:
                return {k.removesuffix("_frames"): saved[k].astype(np.float32) / 255.0
                        for k in saved.files if k.endswith("_frames")}
    generated = {m: _quantised(g["frames"]) for m, g in generate_case(case, config, *pipes).items()}
    if path is not None:
        arrays = {f"{m}_frames": np.round(f * 255).astype(np.uint8) for m, f in generated.items()}
        with atomic_output(path, overwrite=True) as tmp:
            np.savez_compressed(tmp, motion=np.array(case.motion), keypoints=case.keypoints, **arrays)
    return generated


@dataclasses.dataclass
class _Sets:
    """Frames (with patient ids) and loops of one group (real, or one dataset × beat × method)."""

    frames: list[np.ndarray] = dataclasses.field(default_factory=list)
    groups: list[str] = dataclasses.field(default_factory=list)
    loops: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, source: np.ndarray, frames: np.ndarray, patient_id: str) -> None:
        self.frames.append(frames)
        self.groups += [patient_id] * len(frames)
        self.loops.append(np.concatenate([source[None], frames]))


def _set_rows(real: dict[str, _Sets], generated: dict[tuple[str, str, str], _Sets], scorers: RealismScorers,
              settings: RealismSettings, progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm

    rows = []
    for (dataset, beat, method), s in tqdm(list(generated.items()), desc="realism: FID, FVD, classifier",
                                           disable=not progress, leave=False):
        r = real[dataset]
        frames = np.concatenate(s.frames)
        scores = set_scores(np.concatenate(r.frames), np.array(r.groups), r.loops, frames, np.array(s.groups),
                            s.loops, scorers, settings)
        rows.append({"dataset": dataset, "beat": beat, "method": method, "n_generated_frames": len(frames),
                     "n_real_frames": len(r.groups), **scores})
    return pd.DataFrame(rows)


def evaluate_realism(cases: list[EvalCase], own_frames: dict[str, dict[str, np.ndarray]], config: Any,
                     pipes: tuple[Any, Any], lpips: Callable | None, device: Any, out: Any,
                     progress: bool = True, plots: bool = True) -> RealismResult:
    """The realism tables of an evaluation (see the module docstring); written to ``out`` when given.

    ``cases`` are the evaluated own-beat cases; ``own_frames`` ``clip → method → (K, S, S)`` their
    generated frames; ``config`` the :class:`~echokdm.evaluation.runner.EvaluateConfig` (its
    ``realism`` set); ``pipes`` ``(pipeline, pipeline_noflow)``; ``lpips`` a distance for ``pop_lpips``.
    """
    from tqdm.auto import tqdm

    settings: RealismSettings = config.realism
    scorers = RealismScorers(settings, device, lpips)
    real: dict[str, _Sets] = {}
    generated: dict[tuple[str, str, str], _Sets] = {}
    rows: list[dict] = []
    skipped: list[str] = []
    for case in cases:
        real.setdefault(case.dataset, _Sets()).add(case.frames[case.source], case.frames[case.targets],
                                                   case.patient_id)
    for beat in settings.beats:
        for i in tqdm(range(len(cases)), desc=f"realism: {beat} beats", disable=not progress, leave=False):
            case = beat_case(cases, i, beat, settings)
            if case is None:
                skipped.append(f"{beat} beat of {cases[i].clip_id}: no other patient to take the motion from")
                continue
            frames = ({m: _quantised(f) for m, f in own_frames.get(case.clip_id, {}).items()} if beat == "own"
                      else _generated(case, config, pipes, out))
            rows += [r for r in clip_rows(case, frames, lpips) if r["method"] != "real"]
            for method, f in frames.items():
                generated.setdefault((case.dataset, beat, method), _Sets()).add(case.frames[case.source], f,
                                                                                case.patient_id)
    rows += [r for case in cases for r in clip_rows(case, {}, lpips)]  # the real own beats: the reference
    notes = scorers.notes + ([f"{len(skipped)} beat(s) skipped: {skipped[0]}"] if skipped else [])
    result = summarise_realism(pd.DataFrame(rows), _set_rows(real, generated, scorers, settings, progress),
                               n_boot=config.n_boot, notes=notes)
    if out is not None:
        from echokdm.evaluation.runner import write_csv
        from echokdm.io.atomic import atomic_output

        write_csv(result.clips, out / "realism_per_clip.csv")
        write_csv(result.summary, out / "realism.csv")
        with atomic_output(out / "realism.md", overwrite=True) as tmp:
            tmp.write_text(result.table)
        if plots:
            from echokdm.evaluation.plots import realism_bars

            (out / "plots").mkdir(exist_ok=True)
            realism_bars(result.summary, out / "plots" / "realism.png")
    return result
