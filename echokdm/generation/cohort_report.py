"""The report of a synthetic cohort: memorisation check, plots and summary tables.

:func:`~echokdm.generation.synthesize.synthesize_cohort` plans and makes the loops; this module
measures and writes what a reader of the cohort needs to trust it:

* the **memorisation check**: every model-made frame is compared with the training frames of the
  pipeline (:class:`NearestTraining`, :func:`memorisation_sets`), against real frames of patients
  outside training, with :class:`~echokdm.metrics.privacy.MemorisationReport` (one row of
  :data:`MEMORISATION_COLUMNS`). Its p-value is per patient (frames grouped by their loop's source
  patient, held-out frames by their patient): frames of one loop are strongly correlated, and a
  per-frame test (``mannwhitney_p_per_frame``, kept for comparison) raises false alarms;
* the plots ``memorisation.png`` (:func:`plot_memorisation`) and ``ef_distribution.png``
  (:func:`plot_ef_distribution`);
* the tables ``cohort.csv``, ``memorisation.csv``, ``skipped.csv`` and ``settings.json``
  (:func:`write_cohort_report`), and :class:`SynthesisResult` with its summary lines.

See :mod:`echokdm.generation.synthesize` for the choices behind the check.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.io.atomic import atomic_output

__all__ = [
    "COHORT_COLUMNS",
    "MEMORISATION_COLUMNS",
    "MemorisationSets",
    "NearestTraining",
    "SynthesisResult",
    "memorisation_sets",
    "plot_ef_distribution",
    "plot_memorisation",
    "write_cohort_report",
]

#: Columns of ``cohort.csv``: one row per loop written. ``ef_target`` is the drawn EF,
#: ``ef_achieved`` the EF re-measured by the segmentation model on the loop's frames (empty without
#: one), ``ef_trajectory`` the Simpson EF of the keypoint trajectory the loop was generated from
#: (above the drawn EF when the closed-loop EF control corrected it; equal to it, to 1e-9 for
#: square pixels, without a segmentation model), ``seed`` the loop's noise seed, ``fan_mask`` how the
#: source's ultrasound fan was found (:mod:`echokdm.io.fan`; every frame is 0 outside it), empty
#: when the loop is not masked; ``ef_achieved_note`` why ``ef_achieved`` is what it is (``"measured"``,
#: ``"no segmentation model"``, or which frames the segmentation lost when its reading was not of the
#: generated LV: :func:`echokdm.generation.loop.ef_reading`).
COHORT_COLUMNS = ("loop", "source_clip_id", "source_patient_id", "source_dataset", "source_frame",
                  "keypoints_source", "ef_target", "ef_achieved", "ef_trajectory", "heart_rate_bpm", "fps",
                  "n_frames", "seed", "fan_mask", "ef_achieved_note")
#: Columns of ``memorisation.csv`` (one row; :meth:`~echokdm.metrics.privacy.MemorisationReport.summary`
#: plus the number of training frames compared, ``loops_source_left_out`` the loops of training patients
#: whose frames were compared with the other patients' training frames only, and ``note`` saying why
#: the row is empty when it is, or what the comparison means). The test is per patient: the generated
#: frames are grouped by their loop's source patient, the held-out frames by their patient
#: (``test_unit`` "group", ``n_generated_groups``, ``n_held_out_groups``); ``mannwhitney_p`` is the
#: grouped p-value (:attr:`~echokdm.metrics.privacy.MemorisationReport.mannwhitney_p`),
#: ``mannwhitney_p_per_frame`` the per-frame one of earlier releases (overconfident: frames of one loop
#: are correlated), ``mannwhitney_p_min`` the smallest p the grouped test can give with these groups,
#: ``fraction_closer_low`` / ``_high`` the patient-bootstrap 95 % interval of ``fraction_closer``.
MEMORISATION_COLUMNS = ("metric", "n_generated", "n_held_out", "n_training_frames", "median_generated",
                        "median_held_out", "percentile", "threshold", "fraction_closer", "expected_fraction",
                        "mannwhitney_p", "loops_source_left_out", "note", "test_unit", "n_generated_groups",
                        "n_held_out_groups", "mannwhitney_p_per_frame", "mannwhitney_p_min", "fraction_closer_low",
                        "fraction_closer_high")


# ---------------------------------------------------------------------------------------------
# memorisation: reference frames and nearest-training distances
# ---------------------------------------------------------------------------------------------


def _to_size(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Frames ``(N, H, W)`` in [0, 1] → ``float32`` ``(N, *size)`` (bilinear, anti-aliased when shrinking)."""
    from echokdm.geometry.resize import resize_images

    return np.clip(resize_images(frames, size, antialias=True), 0.0, 1.0)


def _patient_key(dataset: Any, patient_id: Any) -> str:
    return f"{dataset}\x00{patient_id}"


def _reference_frames(rows: pd.DataFrame, size: tuple[int, int], budget: int, what: str, progress: bool,
                      skipped: list[tuple[str, str]]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """At most ``budget`` frames ``(N, *size)`` evenly spread over the clips of ``rows`` and their frames,
    and the patient of each (``(N,)`` keys of :func:`_patient_key`)."""
    from tqdm.auto import tqdm

    from echokdm.data.manifest import read_clip

    if rows.empty:
        return None, None
    picked = np.unique(np.linspace(0, len(rows) - 1, min(budget, len(rows))).round().astype(int))
    per_clip = max(1, budget // len(picked))
    frames, keys = [], []
    for _, row in tqdm(rows.iloc[picked].iterrows(), total=len(picked), desc=f"memorisation: {what} frames",
                       unit="clip", disable=not progress, leave=False):
        try:
            cine = read_clip(row)
        except (ValueError, OSError) as exc:
            skipped.append((f"{what} clip {row['clip_id']}", f"{type(exc).__name__}: {exc}"))
            continue
        index = np.unique(np.linspace(0, cine.n_frames - 1, min(per_clip, cine.n_frames)).round().astype(int))
        frames.append(_to_size(cine.frames[index], size))
        keys += [_patient_key(row["dataset"], row["patient_id"])] * len(index)
    return (np.concatenate(frames), np.array(keys)) if frames else (None, None)


class NearestTraining:
    """Nearest-training MSE of frames added a loop at a time, computed in chunks of ``chunk`` frames.

    A loop animates its source frame, so a loop of a *training* patient is close to that patient's
    training frames by construction, not by memorisation: its frames are compared with the training
    frames of the other patients (``exclude``, the source patient's key), as held-out frames are (their
    patients are not in training). ``left_out`` counts the loops this applied to, ``uncompared`` the
    frames that had no training frame of another patient to be compared with. :meth:`groups` gives
    the group of every frame compared (the loop's source patient: loops of one source share its
    anatomy, so the patient, not the loop or the frame, is the independent unit of the test)."""

    def __init__(self, training: np.ndarray, keys: np.ndarray | None = None, chunk: int = 1024):
        self.training, self.chunk = training, chunk
        self.keys = np.full(len(training), "", dtype=object) if keys is None else np.asarray(keys, dtype=object)
        self.pending: list[tuple[np.ndarray, str | None]] = []
        self.distance: list[np.ndarray] = []
        self.index: list[np.ndarray] = []
        self.group_labels: list[str | None] = []  # one per frame compared, in order
        self.left_out = self.uncompared = 0

    def add_loop(self, frames: np.ndarray, dataset: Any, patient_id: Any) -> None:
        """Add a loop's model-made frames ``(n, H, W)`` in [0, 1], resized to the training frames' size;
        its source patient (``dataset``, ``patient_id``) is left out when it is a training patient."""
        key = _patient_key(dataset, patient_id)
        self.add(_to_size(frames, tuple(self.training.shape[1:])), exclude=key, group=key)

    def add(self, frames: np.ndarray, exclude: str | None = None, group: str | None = None) -> None:
        """Add frames ``(n, *size)``; ``exclude``: the patient key whose training frames they skip;
        ``group``: the frames' group in the test (their source patient; None: unknown)."""
        if exclude is not None and exclude in set(self.keys.tolist()):
            self.left_out += 1
            if (self.keys == exclude).all():
                self.uncompared += len(frames)
                return
        else:
            exclude = None
        self.group_labels += [group] * len(frames)
        self.pending.append((frames, exclude))
        if sum(len(f) for f, _ in self.pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        from echokdm.metrics.privacy import nearest_distance

        if not self.pending:
            return
        n = sum(len(f) for f, _ in self.pending)
        distance, index = np.zeros(n), np.zeros(n, dtype=np.int64)
        offsets = np.cumsum([0] + [len(f) for f, _ in self.pending])
        for key in dict.fromkeys(k for _, k in self.pending):
            parts = [j for j, (_, k) in enumerate(self.pending) if k == key]
            keep = np.flatnonzero(self.keys != key) if key is not None else np.arange(len(self.training))
            d, i = nearest_distance(np.concatenate([self.pending[j][0] for j in parts]), self.training[keep], "mse")
            at = np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in parts])
            distance[at], index[at] = d, keep[i]
        self.distance.append(distance)
        self.index.append(index)
        self.pending = []

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(distance float64 (N,), index int64 (N,))`` of every frame added, in order."""
        self._flush()
        if not self.distance:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        return np.concatenate(self.distance), np.concatenate(self.index)

    def groups(self) -> np.ndarray | None:
        """The group (source patient key) of every frame of :meth:`result`, in order; None when a frame's is unknown."""
        if any(g is None for g in self.group_labels):
            return None
        return np.array(self.group_labels, dtype=object)


@dataclasses.dataclass
class MemorisationSets:
    """Reference frames of the memorisation check, or why there are none (``note``).

    ``training`` and ``held_out`` are ``float32`` ``(N, H, W)`` at the pipeline's working size;
    ``training_keys`` / ``held_out_keys`` the patient of each training / held-out frame; ``ready``
    when both sets are present.
    """

    training: np.ndarray | None
    held_out: np.ndarray | None
    note: str
    training_keys: np.ndarray | None = None  # (N,) patient of each training frame
    held_out_keys: np.ndarray | None = None  # (N_held,) patient of each held-out frame

    @property
    def ready(self) -> bool:
        return self.training is not None and self.held_out is not None


def memorisation_sets(table: pd.DataFrame, training_table: pd.DataFrame, size: tuple[int, int], budget: int,
                       progress: bool, skipped: list[tuple[str, str]]) -> MemorisationSets:
    """Training frames (train split of ``training_table``) and held-out real frames (the patients of
    ``table`` outside it), each at most ``budget`` frames at the pipeline's ``size``."""
    train = training_table[training_table["split"] == "train"]
    if train.empty:
        return MemorisationSets(None, None, "the training manifest has no train split")
    train_patients = set(zip(train["dataset"], train["patient_id"], strict=True))
    outside = [(d, p) not in train_patients for d, p in zip(table["dataset"], table["patient_id"], strict=True)]
    held_rows = table[outside]
    if held_rows.empty:
        return MemorisationSets(None, None, "every patient of the manifest is in the training split")
    training, keys = _reference_frames(train, size, budget, "training", progress, skipped)
    held_out, held_keys = _reference_frames(held_rows, size, budget, "held-out", progress, skipped)
    if training is None or held_out is None:
        return MemorisationSets(None, None, "no training or held-out clip could be read (see skipped.csv)")
    return MemorisationSets(training, held_out, "", keys, held_keys)


def _memorisation_row(report, n_training: int, note: str, left_out: int = 0) -> dict[str, Any]:
    """The row of ``memorisation.csv`` (:data:`MEMORISATION_COLUMNS`)."""
    row: dict[str, Any] = {column: np.nan for column in MEMORISATION_COLUMNS}
    row.update(metric="mse", n_training_frames=n_training, note=note, loops_source_left_out=left_out)
    if report is not None:
        row.update(report.summary())
    return row


def _write_table(table: pd.DataFrame, path: Path, overwrite: bool) -> Path:

    with atomic_output(path, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False)
    return path



# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def _save_figure(fig, path: Path, overwrite: bool) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg


    FigureCanvasAgg(fig)
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_memorisation(report, path: Path, *, note: str = "", overwrite: bool = False) -> Path:
    """Histograms of the nearest-training MSE of generated and of held-out real frames, with the
    threshold (the held-out ``percentile``); the ``note`` alone when there is no report."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    if report is None:
        ax.text(0.5, 0.5, f"memorisation check not run:\n{note}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return _save_figure(fig, path, overwrite)
    both = np.concatenate([report.generated_distance, report.held_out_distance])
    bins = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1e-6, 31)
    ax.hist(report.held_out_distance, bins=bins, density=True, alpha=0.6, color="tab:blue",
            label=f"real held-out (n={report.held_out_distance.size})")
    ax.hist(report.generated_distance, bins=bins, density=True, alpha=0.6, color="tab:orange",
            label=f"generated (n={report.generated_distance.size})")
    ax.axvline(report.threshold, color="k", linestyle="--",
               label=f"{report.percentile:g}th percentile of held-out: {100 * report.fraction_closer:.1f} % "
                     "of generated below")
    ax.set_xlabel("MSE to the nearest training frame")
    ax.set_ylabel("density")
    if report.test_unit == "group":
        p_text = (f"one-sided p = {report.mannwhitney_p:.2g} over {report.n_generated_groups} vs "
                  f"{report.n_held_out_groups} patients (per frame {report.mannwhitney_p_per_frame:.2g})")
    else:
        p_text = f"one-sided p = {report.mannwhitney_p:.2g} per frame (overconfident)"
    ax.set_title(f"Memorisation check: {p_text}", fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(fig, path, overwrite)


def plot_ef_distribution(cohort: pd.DataFrame, path: Path, *, reference: np.ndarray | None = None,
                         overwrite: bool = False) -> Path:
    """Histograms of the target EFs, the achieved EFs (when measured) and the reference EFs."""
    from matplotlib.figure import Figure

    series = [("target", cohort["ef_target"].to_numpy(np.float64), "tab:blue"),
              ("achieved", cohort["ef_achieved"].to_numpy(np.float64), "tab:orange")]
    if reference is not None:
        series.append(("reference", np.asarray(reference, np.float64), "tab:gray"))
    series = [(label, v[np.isfinite(v)], colour) for label, v, colour in series if np.isfinite(v).any()]
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    values = np.concatenate([v for _, v, _ in series]) if series else np.array([0.0, 100.0])
    bins = np.linspace(np.floor(values.min()) - 1, np.ceil(values.max()) + 1, 26)
    for label, v, colour in series:
        ax.hist(v, bins=bins, density=True, alpha=0.5, color=colour, label=f"{label} (n={v.size})")
    ax.set_xlabel("ejection fraction (%)")
    ax.set_ylabel("density")
    ax.set_title("EF of the synthetic cohort")
    if series:
        ax.legend(fontsize=7)
    return _save_figure(fig, path, overwrite)


# ---------------------------------------------------------------------------------------------
# the result and the files written after the loops
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SynthesisResult:
    """What :func:`synthesize_cohort` made.

    Attributes
    ----------
    cohort : pandas.DataFrame
        One row per loop written (:data:`COHORT_COLUMNS`).
    memorisation : dict
        The ``memorisation.csv`` row (:data:`MEMORISATION_COLUMNS`); NaN values and a ``note``
        when the check could not run.
    report : MemorisationReport or None
        The distances behind it.
    skipped : pandas.DataFrame
        ``item, reason`` of every clip or loop left out.
    out : pathlib.Path
        The cohort folder.
    paths : dict of str to pathlib.Path
        The files written, by name (``filelist``, ``tracings``, ``side_table``, ``videos``,
        ``cohort``, ``memorisation``, ``skipped``, ``memorisation_plot``, ``ef_plot``, ``settings``).
    ef_reference : numpy.ndarray or None
        The reference EFs matched, if any.
    """

    cohort: pd.DataFrame
    memorisation: dict[str, Any]
    report: Any
    skipped: pd.DataFrame
    out: Path
    paths: dict[str, Path]
    ef_reference: np.ndarray | None = None

    def summary_lines(self) -> list[str]:
        """A few lines for a person: loops, EF target vs achieved (mean ± SD), memorisation."""
        cohort = self.cohort
        lines = [(f"{len(cohort)} loop(s) from {cohort['source_clip_id'].nunique()} source clip(s) of "
                  f"{cohort['source_patient_id'].nunique()} patient(s); {len(self.skipped)} item(s) skipped")]
        target = _mean_sd(self.cohort["ef_target"])
        lines.append(f"EF target {target}; achieved {_achieved_summary(cohort)}")
        masked = int((cohort["fan_mask"].fillna("").astype(str) != "").sum())
        lines.append(f"fan: {masked} of {len(cohort)} loop(s) masked to their source's ultrasound fan (pixels outside "
                     "it are 0)" + ("" if masked == len(cohort) else "; the others keep the pixels around the fan"))
        if self.ef_reference is not None:
            lines.append(f"EF reference {_mean_sd(pd.Series(self.ef_reference))} (n={len(self.ef_reference)})")
        memo = self.memorisation
        if self.report is None:
            lines.append(f"memorisation: not checked ({memo.get('note', '')})")
        else:
            note = str(memo.get("note") or "")
            other = " of another patient" if memo.get("loops_source_left_out", 0) else ""
            lines.append(f"memorisation (MSE): {100 * memo['fraction_closer']:.1f} % of {memo['n_generated']} "
                         f"generated frames are closer to their nearest training frame{other} than "
                         f"{100 - memo['percentile']:g} % of {memo['n_held_out']} real held-out frames (of patients "
                         f"outside training) are to theirs; expected {100 * memo['expected_fraction']:.1f} % for a "
                         f"model that does not copy training frames ({_memorisation_test(memo)})")
            if note:
                lines.append(f"  note: {note}")
        return lines


def _memorisation_test(memo: dict[str, Any]) -> str:
    """The p-value(s) of the memorisation row in words: per patient when the groups are known, else per frame."""
    if memo.get("test_unit") != "group":
        return (f"one-sided Mann-Whitney p = {memo['mannwhitney_p']:.3g} per frame, too small: the frames of one "
                "loop are correlated")
    return (f"fraction closer: 95 % interval over patients {100 * memo['fraction_closer_low']:.1f}-"
            f"{100 * memo['fraction_closer_high']:.1f} %; one-sided Mann-Whitney p = {memo['mannwhitney_p']:.3g} "
            f"per patient, {memo['n_generated_groups']} source vs {memo['n_held_out_groups']} held-out patient(s), "
            f"the smallest p possible with them {memo['mannwhitney_p_min']:.3g}; per frame, counting correlated "
            f"frames as independent, p = {memo['mannwhitney_p_per_frame']:.3g}")


def _mean_sd(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(np.float64)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.1f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.1f} %"


def _write_json(record: dict[str, Any], path: Path, overwrite: bool) -> Path:
    import json


    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return path


def _left_out_note(nearest: NearestTraining, n_loops: int) -> str:
    """What the comparison means when loops animate training patients (see :class:`NearestTraining`)."""
    if not nearest.left_out:
        return ""
    text = (f"{nearest.left_out} of {n_loops} loop(s) animate a training patient's frame: their frames are "
            "compared with the training frames of the other patients (a loop is close to its own source by "
            "construction)")
    if nearest.uncompared:
        text += f"; {nearest.uncompared} frame(s) not compared (no training frame of another patient)"
    return text


def _achieved_summary(cohort: pd.DataFrame) -> str:
    """``"mean ± SD (n measured)"`` of the re-measured EFs, and why the others have none."""
    from echokdm.generation.loop import UNREAD_NOTE

    achieved = cohort["ef_achieved"].dropna()
    notes = cohort.get("ef_achieved_note", pd.Series("", index=cohort.index)).fillna("").astype(str)
    unread = int(notes.str.startswith(UNREAD_NOTE).sum())
    lost = (f"{unread} loop(s) not read: the segmentation lost the generated LV (ef_achieved_note in cohort.csv; "
            "check them by eye)") if unread else ""
    if len(achieved):
        return f"{_mean_sd(achieved)} ({len(achieved)} measured" + (f"; {lost}" if lost else "") + ")"
    if lost:
        return f"not measured: {lost}"
    if len(notes) and notes.isin(["", "no segmentation model"]).all():
        return "not measured (no segmentation model)"
    return "not measured (ef_achieved_note in cohort.csv says why)"


def write_cohort_report(out: Path, cohort_rows: list[dict], skipped: list[tuple[str, str]],
                        memo: MemorisationSets, nearest: NearestTraining | None, reference: np.ndarray | None,
                        settings: dict[str, Any], overwrite: bool) -> SynthesisResult:
    """Write ``cohort.csv``, ``memorisation.csv``, ``skipped.csv``, the two plots and ``settings.json``
    after the loops of :func:`~echokdm.generation.synthesize.synthesize_cohort`; the result.

    ``cohort_rows`` are the rows of ``cohort.csv`` (:data:`COHORT_COLUMNS`), ``skipped`` the
    ``(item, reason)`` pairs, ``memo`` and ``nearest`` the memorisation sets and the distances of
    the generated frames (None when the check could not run), ``reference`` the reference EFs
    matched, ``settings`` the record of ``settings.json``. Nothing is replaced without ``overwrite``.
    """
    from echokdm.generation.echonet_cohort import COHORT_CSV_NAME
    from echokdm.metrics.privacy import MemorisationReport, nearest_distance

    cohort = pd.DataFrame(cohort_rows, columns=list(COHORT_COLUMNS))
    report, note = None, memo.note
    if nearest is not None:
        generated_distance, generated_index = nearest.result()
        if generated_distance.size:
            held_distance, held_index = nearest_distance(memo.held_out, memo.training, "mse")
            generated_groups, held_groups = nearest.groups(), memo.held_out_keys
            if generated_groups is None or held_groups is None:  # a group unknown: the test per frame
                generated_groups = held_groups = None
            report = MemorisationReport("mse", generated_distance, generated_index, held_distance, held_index,
                                        generated_groups=generated_groups, held_out_groups=held_groups)
        else:
            note = "no generated frames to compare"
        note = "; ".join(n for n in (note, _left_out_note(nearest, len(cohort_rows))) if n)
    n_training = 0 if memo.training is None else len(memo.training)
    memorisation = _memorisation_row(report, n_training, note, 0 if nearest is None else nearest.left_out)
    skipped_table = pd.DataFrame(skipped, columns=["item", "reason"])
    paths = {"filelist": out / "FileList.csv", "tracings": out / "VolumeTracings.csv",
             "side_table": out / COHORT_CSV_NAME, "videos": out / "Videos",
             "cohort": _write_table(cohort, out / "cohort.csv", overwrite),
             "memorisation": _write_table(pd.DataFrame([memorisation], columns=list(MEMORISATION_COLUMNS)),
                                          out / "memorisation.csv", overwrite),
             "skipped": _write_table(skipped_table, out / "skipped.csv", overwrite),
             "memorisation_plot": plot_memorisation(report, out / "memorisation.png", note=note, overwrite=overwrite),
             "ef_plot": plot_ef_distribution(cohort, out / "ef_distribution.png", reference=reference,
                                             overwrite=overwrite),
             "settings": _write_json(settings, out / "settings.json", overwrite)}
    return SynthesisResult(cohort=cohort, memorisation=memorisation, report=report, skipped=skipped_table, out=out,
                           paths=paths, ef_reference=reference)
