"""Per-patient and per-dataset reports of per-frame metrics, with bootstrap intervals.

The unit of analysis is the patient (shared/DESIGN.md): a patient with 300 frames counts as much
as a patient with 30. :func:`per_patient` averages each metric over a patient's frames;
:func:`summarise` then averages over patients per dataset and method, with percentile-bootstrap
95 % intervals that resample patients; :func:`table3_markdown` lays the summary out as the KDM
paper's Table 3 (rows = methods, columns = metrics, ``mean [low, high]``).

The per-frame table is long: one row per generated frame, columns ``patient_id``, ``dataset``,
``method``, ``clip_id``, ``frame`` and one column per metric (``mse``, ``lpips_alex`` …).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["bootstrap_ci", "per_patient", "summarise", "table3_markdown", "METRIC_LABELS"]

#: Column titles of :func:`table3_markdown` (the paper's names); other metrics keep their own name.
METRIC_LABELS = {"mse": "MSE_img", "lpips_alex": "LPIPS_alx", "lpips_vgg": "LPIPS_vgg", "ssim": "SSIM",
                 "psnr": "PSNR (dB)", "epe": "EPE (px)", "epe_lv": "EPE_LV (px)", "kp_md": "MD (px)",
                 "ef_error": "EF error (%)"}

_ID_COLUMNS = ("patient_id", "dataset", "method", "clip_id", "frame")


def _apply(statistic: Callable, samples: np.ndarray) -> np.ndarray:
    """``statistic`` of each row of ``samples`` (B, n): vectorised through ``axis=1`` when it accepts it."""
    try:
        out = np.asarray(statistic(samples, axis=1), dtype=np.float64)
        if out.shape == (samples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([statistic(row) for row in samples], dtype=np.float64)


def bootstrap_ci(values: Iterable[float], statistic: Callable = np.mean, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval of ``statistic(values)``.

    Draws ``n_boot`` resamples of the values with replacement, computes the statistic of each,
    and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (Efron's percentile
    interval). Resample what is independent: per-patient values, not frames.

    Parameters
    ----------
    values : array_like
        1-D values; NaN are left out.
    statistic : callable
        ``statistic(array) -> float``; used as ``statistic(samples, axis=1)`` when it accepts
        ``axis`` (``np.mean``, ``np.median``…), row by row otherwise.
    n_boot : int
        Number of resamples (>= 1).
    level : float
        Confidence level in (0, 1).
    seed : int
        Seed of the resampling: the same seed gives the same interval.

    Returns
    -------
    tuple of float
        ``(estimate, low, high)``: the statistic of the values and the interval. All NaN with no
        value; ``low = high = NaN`` with a single value (no interval from one sample).

    Examples
    --------
    >>> est, low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0, np.nan], n_boot=500)
    >>> est, low < est < high
    (2.5, True)
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), got {level}")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    estimate = float(statistic(x))
    if x.size == 1:
        return estimate, float("nan"), float("nan")
    from scipy.stats import bootstrap

    # scipy draws each batch as rng.integers(0, n, (batch, n)): the resamples of this function's own
    # loop before issue 19. The percentile interval is taken with numpy's linear quantile of scipy's
    # bootstrap distribution rather than read from result.confidence_interval: scipy.stats.quantile
    # interpolates the same two order statistics but can round the last bit differently, and the
    # same seed must keep giving the same published intervals.
    with warnings.catch_warnings():
        if n_boot == 1:  # scipy's standard error (ddof=1) of a single resample warns; it is not used here
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy\._core\._methods")
        result = bootstrap((x,), lambda samples, axis: _apply(statistic, samples), vectorized=True, paired=False,
                           n_resamples=n_boot, batch=max(1, 2 ** 22 // x.size),  # at most ~4 M values (32 MB) at once
                           confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = np.quantile(result.bootstrap_distribution, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high)


def _check_columns(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` listing the ``columns`` missing from ``table``."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(table.columns)}")


def per_patient(frame_table: pd.DataFrame, metrics: Sequence[str],
                by: Sequence[str] = ("dataset", "method")) -> pd.DataFrame:
    """Average each metric over each patient's frames (all of the patient's clips pooled).

    Parameters
    ----------
    frame_table : pandas.DataFrame
        Long per-frame table with ``patient_id``, the ``by`` columns and the ``metrics`` columns
        (``clip_id`` and ``frame`` are counted when present).
    metrics : sequence of str
        Metric columns to average; NaN frames are left out of a patient's mean.
    by : sequence of str
        Grouping columns above the patient (default dataset and method).

    Returns
    -------
    pandas.DataFrame
        One row per ``(*by, patient_id)``: those columns, ``n_frames``, ``n_clips`` (if
        ``clip_id`` is present) and the mean of each metric (NaN if the patient has none).
    """
    by, metrics = list(by), list(metrics)
    _check_columns(frame_table, ["patient_id", *by, *metrics], "frame_table")
    keys = [*by, "patient_id"]
    grouped = frame_table.groupby(keys, sort=True, dropna=False)
    table = grouped[metrics].mean()
    table.insert(0, "n_frames", grouped.size())
    if "clip_id" in frame_table.columns:
        table.insert(1, "n_clips", grouped["clip_id"].nunique())
    return table.reset_index()


def summarise(frame_table: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("dataset", "method"), *,
              n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per dataset and method: mean over patients of each metric, with bootstrap intervals over patients.

    Each metric is first averaged per patient (:func:`per_patient`), so every patient weighs
    the same whatever their number of frames; then averaged over the patients of each group, with
    a percentile-bootstrap interval (:func:`bootstrap_ci`) that resamples patients.

    Parameters
    ----------
    frame_table : pandas.DataFrame
        Long per-frame table (module docstring).
    metrics : sequence of str
        Metric columns to summarise.
    by : sequence of str
        Grouping columns (default ``("dataset", "method")``).
    n_boot, level, seed
        Bootstrap settings (:func:`bootstrap_ci`); every group and metric uses ``seed``.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``n_patients``, ``n_frames``, and per metric
        ``<metric>`` (mean over patients), ``<metric>_low``, ``<metric>_high`` (the interval)
        and ``<metric>_n`` (patients with a value for that metric).
    """
    patients = per_patient(frame_table, metrics, by)
    rows = []
    for key, group in patients.groupby(list(by), sort=True, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row.update(n_patients=len(group), n_frames=int(group["n_frames"].sum()))
        for metric in metrics:
            values = group[metric].to_numpy(np.float64)
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"] = bootstrap_ci(
                values, np.mean, n_boot=n_boot, level=level, seed=seed)
            row[f"{metric}_n"] = int(np.isfinite(values).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(summary_row: pd.Series, metric: str, digits: int) -> str:
    """``"mean [low, high]"`` with ``digits`` decimals; ``"–"`` for a missing value."""
    value = summary_row.get(metric, np.nan)
    if not np.isfinite(value):
        return "–"
    low, high = summary_row.get(f"{metric}_low", np.nan), summary_row.get(f"{metric}_high", np.nan)
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def table3_markdown(summary: pd.DataFrame, metrics: Sequence[str] = ("mse", "lpips_alex", "lpips_vgg"),
                    methods: Sequence[str] | None = None, *, dataset: str | None = None, digits: int = 4) -> str:
    """The KDM paper's Table 3 layout as a markdown table: rows = methods, columns = metrics.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`summarise` with ``by`` including ``"method"`` (and ``"dataset"``).
    metrics : sequence of str
        Metric columns, in column order; titles from :data:`METRIC_LABELS`.
    methods : sequence of str, optional
        Row order (e.g. ``("w/o F2I", "w/o K2F", "KDM")``); default the summary's order. A method
        named here but absent from the summary raises ``ValueError``.
    dataset : str, optional
        Keep only this dataset. Without it and with several datasets in ``summary``, a first
        ``Dataset`` column is added and rows are dataset × method.
    digits : int
        Decimals of every number.

    Returns
    -------
    str
        Markdown: a header row ``| Model | MSE_img | … |``, a separator, one row per method with
        cells ``mean [low, high]`` (the bootstrap interval), then a newline.
    """
    _check_columns(summary, ["method", *metrics], "summary")
    table = summary
    if dataset is not None:
        _check_columns(summary, ["dataset"], "summary")
        table = summary[summary["dataset"] == dataset]
        if table.empty:
            raise ValueError(f"dataset {dataset!r} is not in the summary; it has {sorted(summary['dataset'].unique())}")
    if methods is not None:
        missing = [m for m in methods if m not in set(table["method"])]
        if missing:
            raise ValueError(f"method(s) {missing} not in the summary; it has {list(table['method'].unique())}")
        order = {m: i for i, m in enumerate(methods)}
        table = table[table["method"].isin(order)]
        table = table.assign(_order=table["method"].map(order)).sort_values(["_order"], kind="stable")
    with_dataset = "dataset" in table.columns and table["dataset"].nunique() > 1
    if with_dataset:
        table = table.sort_values("dataset", kind="stable")
    header = (["Dataset"] if with_dataset else []) + ["Model"] + [METRIC_LABELS.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for _, row in table.iterrows():
        cells = ([str(row["dataset"])] if with_dataset else []) + [str(row["method"])]
        cells += [_cell(row, m, digits) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
