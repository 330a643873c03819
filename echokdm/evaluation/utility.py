"""Does a synthetic cohort train models that work on real patients? (``echokdm utility``)

:func:`run_utility` trains the downstream models a researcher would train, on real clips, on the
synthetic cohort and on both, and tests every one on real patients that neither the models nor the
generator saw:

* **seg**: the LV segmentation network of ``echokdm train seg``
  (:func:`~echokdm.echo.segmentation_training.train_segmentation`, the same trainer) on the labelled
  frames; on the real test clips, the Dice of its masks on their labelled frames (``dice``, per
  patient) and the EF measured from its masks of every frame through echokdm's keypoints
  (:func:`~echokdm.metrics.lv_function.keypoints_table` then
  :func:`~echokdm.metrics.lv_function.ef_table`, the path of ``echokdm ef``), against the
  manifest's ``ef_reference`` (``ef_mae``, per patient).
* **ef**: EF regression from the video (:mod:`echokdm.echo.ef_regression`, a small (2+1)D CNN);
  ``ef_mae`` (per patient) and ``ef_r2`` (over the test patients).

Choices
-------
* **The real split.** Without ``test_fraction`` the REAL manifest's ``test`` split is the test set
  and its ``train`` and ``val`` splits the training pool: make the synthetic cohort from the train
  split (``echokdm synthesize REAL.csv --split train``) and the pipeline's training data from it too,
  and the test patients are patients the generator never saw. With ``test_fraction`` the patients
  are split afresh (seeded): then make sure yourself that the generator never saw them.
* **Labels of the synthetic cohort.** Its manifest (``echokdm manifest COHORT --format echonet``)
  carries what ``echokdm synthesize`` wrote: tracings at the ED and ES frames, drawn from the
  keypoints re-detected on the frames (or the driving keypoints without a segmentation model), read
  back as the masks of those two frames, exactly as EchoNet-Dynamic's tracings are; and the EF
  (``ef_reference`` = FileList ``EF``: the EF re-measured on the frames, else the target). The
  segmentation network trains on those masks, the EF network on that EF. Every row of the synthetic
  manifest is training data, whatever its split.
* **Source patients.** A synthetic loop's source patient is read from ``echokdm_cohort.csv`` next to
  its ``FileList.csv`` (the manifest names the patient after the loop). Loops made from a *test*
  patient are left out of training, and listed.
* **Training sets and sizes.** For ``n`` of ``real_patients`` (``"all"``: the whole pool), the
  first ``n`` patients of a permutation of the pool drawn with the seed (so the subsets of one seed
  are nested). ``real`` trains on them, ``real+synthetic`` on them and the synthetic cohort,
  ``synthetic`` on the cohort alone (``n_real_patients = 0``). With ``privacy_filter`` the loops
  the filter drops (:mod:`echokdm.generation.privacy_filter`, calibrated on the test patients'
  distances to the pool) are left out of ``synthetic-filtered`` and ``real+synthetic-filtered`` (not
  trained when the filter drops nothing).
* **Intervals.** A metric's value is the mean over seeds; its 95 % interval is the percentile
  bootstrap over test patients (:func:`~echokdm.metrics.report.bootstrap_ci`) of the seed-averaged
  per-patient values (for R², of the R² of resampled patients).
* **Resumable.** Each finished cell (task, training set, n, seed) is saved as
  ``cells/<cell>.json``; running the same command again trains only what is missing. A folder
  holding a run with other inputs or settings is refused unless ``overwrite`` (which discards it).

Outputs in ``out``: ``utility.csv`` (:data:`UTILITY_COLUMNS`), ``patients.csv`` (per test
patient), ``summary.md``, ``plots/utility.png``, ``skipped.csv``, ``utility.json`` (the settings)
and, with the filter, ``privacy_dropped.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.io.atomic import atomic_output, prepare_run_folder

__all__ = ["TASKS", "TRAINING_SETS", "UTILITY_COLUMNS", "UtilityResult", "UtilitySettings", "plan_cells",
           "run_utility", "split_real"]

TASKS = ("seg", "ef")
#: Training sets, in the order of the tables (the filtered ones only with the privacy filter).
TRAINING_SETS = ("real", "synthetic", "real+synthetic", "synthetic-filtered", "real+synthetic-filtered")
#: Columns of ``utility.csv``: one row per cell and metric.
UTILITY_COLUMNS = ("task", "training_set", "n_real_patients", "seed", "metric", "value", "n_train_clips",
                   "n_test_patients", "seconds")
_METRICS = {"seg": ("dice", "ef_mae"), "ef": ("ef_mae", "ef_r2")}
METRIC_LABELS = {"dice": "Dice (test frames)", "ef_mae": "EF MAE (points)", "ef_r2": "EF R²"}


@dataclasses.dataclass(frozen=True)
class UtilitySettings:
    """What :func:`run_utility` trains: tasks, real training sizes, seeds and the models' budgets.

    ``real_patients`` holds integers and/or ``"all"``. The defaults are the full protocol (about
    1 CPU-minute per segmentation cell and 2 per EF cell at 112 / 56 px); :meth:`quick` is a smoke run.
    """

    tasks: tuple[str, ...] = TASKS
    real_patients: tuple[Any, ...] = (2, 4, 8, "all")
    seeds: tuple[int, ...] = (0, 1, 2)
    test_fraction: float | None = None
    privacy_filter: bool = False
    seg_steps: int = 600
    seg_batch_size: int = 16
    seg_size: int = 112
    seg_channels: tuple[int, ...] = (16, 32, 64, 128)
    seg_look_augment: bool = False
    ef_steps: int = 600
    ef_batch_size: int = 8
    ef_frames: int = 32
    ef_size: int = 56
    ef_channels: tuple[int, ...] = (8, 16, 32, 64)
    n_boot: int = 1000

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            given = ", ".join(map(str, self.tasks)) or "none"
            raise ValueError(f"tasks must be some of {', '.join(TASKS)}, got {given}")
        for n in self.real_patients:
            if n != "all" and not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1):
                raise ValueError(f"real_patients must be integers >= 1 or 'all', got {n!r}")
        if not self.real_patients or not self.seeds:
            raise ValueError("real_patients and seeds must not be empty")
        if self.test_fraction is not None and not 0.0 < float(self.test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be within (0, 1), got {self.test_fraction!r}")
        for name in ("seg_steps", "seg_batch_size", "ef_steps", "ef_batch_size", "ef_frames", "n_boot"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        self.ef_train_settings(0)  # raises on a bad EF network setting
        if self.seg_size % 2 ** (len(self.seg_channels) - 1):
            raise ValueError(f"seg_size must be divisible by 2 ** (len(seg_channels) - 1), got {self.seg_size}")

    def ef_train_settings(self, seed: int):
        """The :class:`~echokdm.echo.ef_regression.EFTrainSettings` of the EF cells."""
        from echokdm.echo.ef_regression import EFTrainSettings

        return EFTrainSettings(channels=tuple(self.ef_channels), n_frames=self.ef_frames, size=self.ef_size,
                               steps=self.ef_steps, batch_size=self.ef_batch_size, seed=int(seed))

    @classmethod
    def quick(cls, **changes: Any) -> UtilitySettings:
        """A smoke run: tiny models, a few dozen steps, small frames (seconds per cell on a CPU)."""
        base = dict(seg_steps=30, seg_batch_size=8, seg_size=64, seg_channels=(8, 16, 32), ef_steps=30,
                    ef_batch_size=4, ef_frames=8, ef_size=32, ef_channels=(4, 8, 16), n_boot=200)
        return cls(**{**base, **changes})

    def record(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def split_real(real: pd.DataFrame, test_fraction: float | None = None,
               seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(training pool, test)`` rows of a real manifest, split by patient (module docstring)."""
    keys = real["dataset"].astype(str) + "\x00" + real["patient_id"].astype(str)
    if test_fraction is None:
        test = real["split"] == "test"
    else:
        patients = np.array(sorted(set(keys)))
        rng = np.random.default_rng([int(seed), 21])
        n_test = max(1, int(round(float(test_fraction) * len(patients))))
        test = keys.isin(set(rng.permutation(patients)[:n_test]))
    pool, held = real[~test], real[test]
    leaked = set(keys[~test]) & set(keys[test])
    assert not leaked, f"patients in both: {sorted(leaked)[:3]}"  # split by patient above
    return pool.reset_index(drop=True), held.reset_index(drop=True)


def _source_patients(synthetic: pd.DataFrame) -> pd.Series:
    """The source patient of each synthetic row (``echokdm_cohort.csv`` beside its videos), else ''."""
    from echokdm.data.manifest import cohort_patients

    tables: dict[Path, dict[str, str]] = {}
    sources = pd.Series("", index=synthetic.index, dtype=object)
    for i, path in synthetic["path"].items():
        root = Path(str(path)).parent.parent
        if root not in tables:
            tables[root] = cohort_patients(root)
        sources[i] = tables[root].get(Path(str(path)).stem, "")
    return sources


@dataclasses.dataclass
class _Data:
    pool: pd.DataFrame
    test: pd.DataFrame
    synthetic: pd.DataFrame  # with a "source_patient_id" column
    pool_patients: list[str]
    skipped: list[tuple[str, str]]
    dropped: list[str] = dataclasses.field(default_factory=list)  # loops the privacy filter drops
    filter_line: str = ""


def _load(path: str | os.PathLike, what: str) -> pd.DataFrame:
    from echokdm.data.manifest import load_manifest

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what} manifest")
    try:
        table = load_manifest(path)
    except ValueError as exc:
        raise ValueError(f"{path}: not a valid {what} manifest: {exc}") from None
    if table.empty:
        raise ValueError(f"{path}: the {what} manifest has no clip")
    return table


def _prepare(real_path, synthetic_path, settings: UtilitySettings) -> _Data:
    real, synthetic = _load(real_path, "real"), _load(synthetic_path, "synthetic")
    pool, test = split_real(real, settings.test_fraction)
    if test.empty or pool.empty:
        raise ValueError(f"{real_path}: needs patients in the test split and in train/val (got {len(pool)} "
                         f"training and {len(test)} test clip(s)); or give --test-fraction")
    synthetic = synthetic.copy()
    synthetic["source_patient_id"] = _source_patients(synthetic)
    test_patients = set(test["patient_id"].astype(str))
    seen = synthetic["source_patient_id"].isin(test_patients)
    skipped = [(f"synthetic {row['clip_id']}", f"made from test patient {row['source_patient_id']}: left out of "
                                               "training") for _, row in synthetic[seen].iterrows()]
    synthetic = synthetic[~seen].reset_index(drop=True)
    if synthetic.empty:
        raise ValueError(f"{synthetic_path}: no synthetic clip left (every loop was made from a test patient)")
    patients = sorted(set(pool["patient_id"].astype(str)))
    return _Data(pool, test, synthetic, patients, skipped)


def _apply_filter(data: _Data, out: Path, settings: UtilitySettings, progress: bool) -> None:
    """Run the privacy filter on the synthetic rows (training: the pool; held-out: the test patients)."""
    from echokdm.generation.privacy_filter import privacy_filter, reference_clips

    pool = data.pool.assign(split="train")
    training, held_out = reference_clips(pd.concat([pool, data.test]), pool, data.skipped)

    keys = {k.split("\x00")[-1]: k for k, _ in training}

    def loops():
        from echokdm.data.manifest import read_clip

        for _, row in data.synthetic.iterrows():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames = read_clip(row).frames
            yield str(row["clip_id"]), frames, keys.get(str(row["source_patient_id"]))

    result = privacy_filter(loops(), training, held_out)
    table = result.table.copy()
    for column in ("source_patient_id", "nearest_patient_id"):
        table[column] = table[column].str.split("\x00").str[-1]
    with atomic_output(out / "privacy_dropped.csv", overwrite=True) as tmp:
        table[table["dropped"]].to_csv(tmp, index=False)
    data.dropped = result.dropped
    data.filter_line = result.summary_line()


# ---------------------------------------------------------------------------------------------
# cells
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cell:
    task: str
    training_set: str
    n_real: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}__{self.training_set}__{self.n_real}__{self.seed}"


def plan_cells(settings: UtilitySettings, n_pool: int, filtered: bool = False) -> tuple[list[Cell], list[str]]:
    """The cells to train and the notes on sizes left out (``n`` above the pool's size)."""
    sizes, notes = [], []
    for n in settings.real_patients:
        value = n_pool if n == "all" else int(n)
        if value > n_pool:
            notes.append(f"{value} real patients asked for, the training pool has {n_pool}: left out")
        elif value not in sizes:
            sizes.append(value)
    sets = TRAINING_SETS if filtered else TRAINING_SETS[:3]
    cells = []
    for task in settings.tasks:
        for training_set in sets:
            for n in ([0] if training_set.startswith("synthetic") else sizes):
                cells.extend(Cell(task, training_set, n, int(seed)) for seed in settings.seeds)
    return cells, notes


def _training_rows(data: _Data, cell: Cell) -> pd.DataFrame:
    """The manifest rows a cell trains on (split set to train)."""
    parts = []
    if cell.training_set.startswith("real"):
        order = np.random.default_rng([cell.seed, 4]).permutation(data.pool_patients)
        chosen = set(order[:cell.n_real])
        parts.append(data.pool[data.pool["patient_id"].astype(str).isin(chosen)])
    if "synthetic" in cell.training_set:
        synthetic = data.synthetic
        if cell.training_set.endswith("filtered"):
            synthetic = synthetic[~synthetic["clip_id"].astype(str).isin(set(data.dropped))]
        parts.append(synthetic.drop(columns=["source_patient_id"]))
    return pd.concat(parts, ignore_index=True).assign(split="train")


class _Cache:
    """Test data read once: labelled frames, clips for the EF network, the test clips themselves."""

    def __init__(self, data: _Data, settings: UtilitySettings):
        self.data, self.settings = data, settings
        self._seg_test = self._ef = self._cines = None

    def seg_test(self):
        from echokdm.echo.segmentation_training import labelled_frames

        if self._seg_test is None:
            self._seg_test = labelled_frames(self.data.test.assign(split="test"), "test", self.settings.seg_size,
                                             progress=False)
        return self._seg_test

    def cines(self) -> dict[str, Any]:
        from echokdm.data.manifest import read_clip

        if self._cines is None:
            self._cines = {}
            for _, row in self.data.test.iterrows():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._cines[str(row["clip_id"])] = read_clip(row)
        return self._cines

    def ef_clips(self, rows: pd.DataFrame, name: str):
        from echokdm.echo.ef_regression import ef_clips

        if self._ef is None:
            size = self.settings.ef_size
            self._ef = {"pool": ef_clips(self.data.pool, size), "synthetic": ef_clips(self.data.synthetic, size),
                        "test": ef_clips(self.data.test, size)}
        return self._ef[name]


def _seg_config(settings: UtilitySettings, seed: int):
    from echokdm.echo.segmentation_training import load_seg_config

    return load_seg_config(None, {"model": {"channels": list(settings.seg_channels)},
                                  "data": {"size": settings.seg_size, "look_augment": bool(settings.seg_look_augment)},
                                  "train": {"steps": settings.seg_steps, "batch_size": settings.seg_batch_size,
                                            "val_every": settings.seg_steps, "seed": seed, "device": "cpu"}})


def _ef_from_masks(model, cache: _Cache) -> pd.DataFrame:
    """EF of every test clip from the model's masks of every frame (keypoints, Simpson, cardiac cycle), measured as
    ``echokdm ef --segmentation`` measures it: segmented inside the clip's fan, the apex on the sector's side."""
    from echokdm.metrics.lv_function import ef_table, keypoints_table

    cines = cache.cines()
    table = keypoints_table(cache.data.test, read_clip=lambda row: cines[str(row["clip_id"])], progress=False,
                            segmentation=model)
    clips = ef_table(table).clips
    return clips[["patient_id", "ef", "ef_reference"]]


def _test_dice(model, test) -> pd.DataFrame:
    """Mean Dice per test patient over its labelled frames."""
    import torch

    from echokdm.echo.segmentation_training import dice_scores

    pred = model.predict_masks(torch.from_numpy(test.frames).float() / 255.0)
    dice = dice_scores(pred, test.masks)
    table = pd.DataFrame({"patient_id": test.patient_ids, "dice": dice})
    return table.groupby("patient_id")["dice"].mean().reset_index()


def _run_seg(cell: Cell, rows: pd.DataFrame, cache: _Cache, folder: Path) -> tuple[dict, pd.DataFrame]:
    from echokdm.data.manifest import write_manifest
    from echokdm.echo.segmentation import LVSegmentationNet
    from echokdm.echo.segmentation_training import train_segmentation

    folder.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(rows, folder / "train.csv", overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no labelled frames in the val split": validated on train, by design
        summary = train_segmentation(_seg_config(cache.settings, cell.seed), manifest, folder / "run",
                                     overwrite=True, progress=False)
    model = LVSegmentationNet.from_pretrained(folder / "run" / "last")
    dice = _test_dice(model, cache.seg_test())
    ef = _ef_from_masks(model, cache)
    ef["abs_error"] = (ef["ef"] - ef["ef_reference"]).abs()
    per_ef = ef.groupby("patient_id").agg(ef_pred=("ef", "mean"), ef_reference=("ef_reference", "mean"),
                                           abs_error=("abs_error", "mean")).reset_index()
    patients = dice.merge(per_ef, on="patient_id", how="outer")
    metrics = {"dice": float(patients["dice"].mean()), "ef_mae": float(patients["abs_error"].mean())}
    return {**metrics, "n_train_clips": int(summary["train_frames"])}, patients


def _r2(pred: np.ndarray, ref: np.ndarray) -> float:
    ok = np.isfinite(pred) & np.isfinite(ref)
    pred, ref = pred[ok], ref[ok]
    if len(ref) < 2 or np.var(ref) == 0:
        return float("nan")
    return float(1.0 - np.sum((pred - ref) ** 2) / np.sum((ref - ref.mean()) ** 2))


def _run_ef(cell: Cell, rows: pd.DataFrame, cache: _Cache) -> tuple[dict, pd.DataFrame]:
    from echokdm.echo.ef_regression import predict_ef, train_ef_regression

    s = cache.settings
    pool, synthetic = cache.ef_clips(rows, "pool"), cache.ef_clips(rows, "synthetic")
    wanted = set(rows["clip_id"].astype(str))
    real = cell.training_set.startswith("real")
    train = pool.subset([i for i, c in enumerate(pool.clip_ids) if real and c in wanted])
    if "synthetic" in cell.training_set:
        train = train + synthetic.subset([i for i, c in enumerate(synthetic.clip_ids) if c in wanted])
    model = train_ef_regression(train, s.ef_train_settings(cell.seed))
    test = cache.ef_clips(rows, "test")
    table = pd.DataFrame({"patient_id": test.patient_ids, "ef_pred": predict_ef(model, test), "ef_reference": test.ef})
    table["abs_error"] = (table["ef_pred"] - table["ef_reference"]).abs()
    patients = table.groupby("patient_id").mean(numeric_only=True).reset_index()
    metrics = {"ef_mae": float(patients["abs_error"].mean()),
               "ef_r2": _r2(patients["ef_pred"].to_numpy(), patients["ef_reference"].to_numpy())}
    return {**metrics, "n_train_clips": len(train)}, patients


def _run_cell(cell: Cell, data: _Data, cache: _Cache, out: Path) -> dict:
    start = time.perf_counter()
    rows = _training_rows(data, cell)
    if cell.task == "seg":
        folder = out / "cells" / cell.key
        metrics, patients = _run_seg(cell, rows, cache, folder)
        shutil.rmtree(folder, ignore_errors=True)  # the cell's models are not kept
    else:
        metrics, patients = _run_ef(cell, rows, cache)
    return {"cell": dataclasses.asdict(cell), "metrics": metrics, "seconds": time.perf_counter() - start,
            "patients": json.loads(patients.to_json(orient="records"))}


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------


def _tables(results: list[dict], n_test: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``utility.csv`` and the per-patient table from the cells' records."""
    rows, patients = [], []
    for record in results:
        cell, metrics = record["cell"], record["metrics"]
        for metric in _METRICS[cell["task"]]:
            rows.append({"task": cell["task"], "training_set": cell["training_set"],
                         "n_real_patients": cell["n_real"], "seed": cell["seed"], "metric": metric,
                         "value": metrics[metric], "n_train_clips": metrics["n_train_clips"],
                         "n_test_patients": n_test, "seconds": round(record["seconds"], 2)})
        for p in record["patients"]:
            patients.append({"task": cell["task"], "training_set": cell["training_set"],
                             "n_real_patients": cell["n_real"], "seed": cell["seed"], **p})
    return pd.DataFrame(rows, columns=list(UTILITY_COLUMNS)), pd.DataFrame(patients)


def summarise(utility: pd.DataFrame, patients: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Mean over seeds of each (task, training set, n, metric) with its patient-bootstrap interval."""
    from echokdm.metrics.report import bootstrap_ci

    out = []
    keys = ["task", "training_set", "n_real_patients"]
    for (task, training_set, n, metric), group in utility.groupby([*keys, "metric"], sort=False):
        mine = patients[(patients["task"] == task) & (patients["training_set"] == training_set)
                        & (patients["n_real_patients"] == n)]
        per_patient = mine.groupby("patient_id").mean(numeric_only=True)
        if metric == "ef_r2":
            pred, ref = per_patient["ef_pred"].to_numpy(), per_patient["ef_reference"].to_numpy()
            def r2_of(idx, pred=pred, ref=ref):
                return _r2(pred[idx.astype(int)], ref[idx.astype(int)])

            _, low, high = bootstrap_ci(np.arange(len(ref), dtype=float), r2_of, n_boot=n_boot)
        else:
            column = "dice" if metric == "dice" else "abs_error"
            _, low, high = bootstrap_ci(per_patient[column].to_numpy(float), n_boot=n_boot)
        out.append({"task": task, "training_set": training_set, "n_real_patients": n, "metric": metric,
                    "mean": float(group["value"].mean()), "low": low, "high": high,
                    "n_seeds": int(group["seed"].nunique())})
    return pd.DataFrame(out, columns=["task", "training_set", "n_real_patients", "metric", "mean", "low", "high",
                                      "n_seeds"])


def _markdown(summary: pd.DataFrame, notes: list[str]) -> str:
    lines = ["# Synthetic data utility", "", "Mean over seeds [95 % patient-bootstrap interval] on the real test "
             "patients. n real = real training patients (0: synthetic cohort only).", "",
             "| task | metric | training set | n real | value | seeds |", "|---|---|---|---:|---|---:|"]
    for r in summary.itertuples(index=False):
        interval = f" [{r.low:.3f}, {r.high:.3f}]" if np.isfinite(r.low) else ""
        lines.append(f"| {r.task} | {METRIC_LABELS.get(r.metric, r.metric)} | {r.training_set} | {r.n_real_patients} "
                     f"| {r.mean:.3f}{interval} | {r.n_seeds} |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def plot_utility(summary: pd.DataFrame, path: Path) -> Path:
    """One panel per (task, metric): the metric against the number of real training patients, one line
    per training set (the synthetic-only sets as horizontal lines), with the bootstrap intervals."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = list(dict.fromkeys(zip(summary["task"], summary["metric"], strict=True)))
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.6))
    FigureCanvasAgg(fig)
    colours = dict(zip(TRAINING_SETS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=True))
    for k, (task, metric) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        part = summary[(summary["task"] == task) & (summary["metric"] == metric)]
        xs = sorted(set(part.loc[part["n_real_patients"] > 0, "n_real_patients"])) or [0]
        for training_set, g in part.groupby("training_set", sort=False):
            g = g.sort_values("n_real_patients")
            colour = colours.get(training_set, "k")
            if training_set.startswith("synthetic"):
                row = g.iloc[0]
                ax.axhline(row["mean"], color=colour, linestyle="--", label=training_set)
                if np.isfinite(row["low"]):
                    ax.axhspan(row["low"], row["high"], color=colour, alpha=0.12)
            else:
                ax.plot(g["n_real_patients"], g["mean"], "o-", color=colour, label=training_set)
                ok = np.isfinite(g["low"].to_numpy(float))
                ax.fill_between(g["n_real_patients"][ok], g["low"][ok], g["high"][ok], color=colour, alpha=0.15)
        ax.set_xticks(xs)
        ax.set_xlabel("real training patients")
        ax.set_title(f"{task}: {METRIC_LABELS.get(metric, metric)}", fontsize=9)
        ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


@dataclasses.dataclass
class UtilityResult:
    """What :func:`run_utility` wrote: ``utility`` (:data:`UTILITY_COLUMNS`), ``summary`` (means and
    intervals), ``trained`` (cells trained in this run), ``skipped`` (item, reason) and the paths."""

    utility: pd.DataFrame
    summary: pd.DataFrame
    trained: int
    skipped: pd.DataFrame
    notes: list[str]
    paths: dict[str, Path]


def _prepare_folder(out: Path, record: dict, overwrite: bool) -> None:
    """Create ``out`` or check that a run there used the same inputs and settings (else refuse)."""
    prepare_run_folder(out, "utility.json", record, overwrite=overwrite, kind="utility", what="a utility run",
                       differs="other inputs or settings", derived=("cells",))


def _stamp(path: Path) -> str:
    """A file's size and modification time: a changed input invalidates the finished cells."""
    stat = Path(path).stat()
    return f"{stat.st_size}:{int(stat.st_mtime)}"


def run_utility(real: str | os.PathLike, synthetic: str | os.PathLike, out: str | os.PathLike,
                settings: UtilitySettings | None = None, *, overwrite: bool = False,
                progress: bool = True) -> UtilityResult:
    """Train on real, synthetic and both; test on held-out real patients; write the report.

    Parameters
    ----------
    real, synthetic : path
        Manifests of the real clips and of the synthetic cohort (module docstring).
    out : path
        Output folder (created; resumed when it holds this run).
    settings : UtilitySettings, optional
        Tasks, sizes, seeds and budgets (default ``UtilitySettings()``).
    overwrite : bool
        Discard a run in ``out`` made with other inputs or settings.
    progress : bool
        A progress bar over the cells (with its ETA).

    Raises
    ------
    FileNotFoundError, ValueError
        A missing or invalid manifest (named), no test or training patient, bad settings.
    FileExistsError
        ``out`` holds something else and ``overwrite`` is false.
    """
    from tqdm.auto import tqdm

    settings = settings or UtilitySettings()
    out = Path(out)
    data = _prepare(real, synthetic, settings)
    record = {"real": str(Path(real).resolve()), "synthetic": str(Path(synthetic).resolve()),
              "real_file": _stamp(real), "synthetic_file": _stamp(synthetic), **settings.record()}
    _prepare_folder(out, record, overwrite)
    notes = [f"real: {len(data.pool_patients)} training-pool patient(s), {data.test['patient_id'].nunique()} test "
             f"patient(s); synthetic: {len(data.synthetic)} loop(s)"]
    if settings.privacy_filter:
        _apply_filter(data, out, settings, progress)
        notes.append(data.filter_line)
    cells, size_notes = plan_cells(settings, len(data.pool_patients), filtered=bool(data.dropped))
    notes += size_notes
    if settings.privacy_filter and not data.dropped:
        notes.append("the privacy filter dropped no loop: the filtered cohort is the cohort (not trained again)")
    cache, results, trained = _Cache(data, settings), [], 0
    skipped = list(data.skipped)
    bar = tqdm(cells, desc="utility cells", unit="cell", disable=not progress)
    for cell in bar:
        saved = out / "cells" / f"{cell.key}.json"
        if saved.exists():
            results.append(json.loads(saved.read_text()))
            continue
        bar.set_postfix_str(cell.key.replace("__", " "))
        try:
            record = _run_cell(cell, data, cache, out)
        except (ValueError, RuntimeError, OSError) as exc:
            skipped.append((f"cell {cell.key}", f"{type(exc).__name__}: {exc}"))
            continue
        with atomic_output(saved, overwrite=True) as tmp:
            tmp.write_text(json.dumps(record))
        results.append(record)
        trained += 1
    bar.close()
    return _write_report(out, results, data, notes, skipped, settings, trained)


def _write_report(out: Path, results: list[dict], data: _Data, notes: list[str], skipped: list, settings,
                  trained: int) -> UtilityResult:
    utility, patients = _tables(results, int(data.test["patient_id"].nunique()))
    summary = summarise(utility, patients, settings.n_boot) if len(utility) else pd.DataFrame()
    skipped_table = pd.DataFrame(skipped, columns=["item", "reason"])
    paths = {"utility": out / "utility.csv", "patients": out / "patients.csv", "summary": out / "summary.md",
             "skipped": out / "skipped.csv"}
    for name, table in (("utility", utility), ("patients", patients), ("skipped", skipped_table)):
        with atomic_output(paths[name], overwrite=True) as tmp:
            table.to_csv(tmp, index=False)
    if len(utility):
        with atomic_output(paths["summary"], overwrite=True) as tmp:
            tmp.write_text(_markdown(summary, notes))
        paths["plot"] = plot_utility(summary, out / "plots" / "utility.png")
    if (out / "privacy_dropped.csv").exists() and settings.privacy_filter:
        paths["privacy_dropped"] = out / "privacy_dropped.csv"
    return UtilityResult(utility, summary, trained, skipped_table, notes, paths)
