"""Plots of an evaluation run folder: metric distributions, EF agreement, worst patients' frames.

* ``plots/metrics_per_patient.png`` — per-patient values of each image metric, one box per method;
* ``plots/ef_<method>_scatter.png`` and ``plots/ef_<method>_bland_altman.png`` — EF achieved by
  the generated beat against the target EF (needs a segmentation model in the evaluation);
* ``plots/worst_patients_<method>.png`` — for the patients with the highest LPIPS (or MSE), a strip
  of real target frames, generated frames and their absolute difference;
* ``plots/realism.png`` — classifier accuracy and pop per beat kind and method (realism tables).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["metric_boxplots", "realism_bars", "worst_patient_strips", "write_plots"]


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from echokdm.io.atomic import atomic_output

    FigureCanvasAgg(fig)
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def metric_boxplots(patients: pd.DataFrame, path: str | os.PathLike,
                    metrics: tuple[str, ...] = ("mse", "ssim", "lpips_alex", "lpips_vgg", "epe", "kp_md"),
                    ) -> Path | None:
    """Box plots of per-patient metric values by method (one panel per metric with data)."""
    from matplotlib.figure import Figure

    from echokdm.evaluation.runner import METHOD_LABELS, METHODS

    shown = [m for m in metrics if m in patients.columns and patients[m].notna().any()]
    if not shown:
        return None
    methods = [m for m in (*METHODS, "generated") if m in set(patients["method"])]
    fig = Figure(figsize=(3.2 * len(shown), 3.4))
    for i, metric in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1)
        data = [patients.loc[patients["method"] == m, metric].dropna().to_numpy() for m in methods]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), [METHOD_LABELS.get(m, m) for m in methods], rotation=45,
                      ha="right", fontsize=8)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("per-patient means (box: quartiles, triangle: mean)", fontsize=9)
    return _save(fig, Path(path))


def worst_patient_strips(out: Path, frames: pd.DataFrame, method: str = "kdm", n_patients: int = 3,
                         n_frames: int = 6) -> Path | None:
    """Real / generated / |difference| strips of the ``n_patients`` worst patients for ``method``."""
    from matplotlib.figure import Figure

    from echokdm.data.manifest import clip_file_stem

    rows = frames[frames["method"] == method]
    if rows.empty:
        return None
    score = "lpips_alex" if "lpips_alex" in rows and rows["lpips_alex"].notna().any() else "mse"
    worst = rows.groupby("patient_id")[score].mean().sort_values(ascending=False).index[:n_patients]
    panels = []
    for pid in worst:
        clip = rows[rows["patient_id"] == pid].groupby("clip_id")[score].mean().idxmax()
        path = out / "generated" / f"{clip_file_stem(str(clip))}.npz"
        if not path.exists():
            continue
        with np.load(path) as saved:
            real, gen = saved["real"] / 255.0, saved[f"{method}_frames"] / 255.0
        pick = np.unique(np.linspace(0, len(real) - 1, min(n_frames, len(real))).astype(int))
        panels.append((pid, rows.loc[rows["patient_id"] == pid, score].mean(), real[pick], gen[pick]))
    if not panels:
        return None
    cols = max(len(p[2]) for p in panels)
    fig = Figure(figsize=(1.6 * cols, 1.6 * 3 * len(panels)))
    for p, (pid, value, real, gen) in enumerate(panels):
        for r, (label, images, cmap) in enumerate((("real", real, "gray"), (method, gen, "gray"),
                                                   ("|diff|", np.abs(gen - real), "magma"))):
            for c, image in enumerate(images):
                ax = fig.add_subplot(3 * len(panels), cols, (3 * p + r) * cols + c + 1)
                ax.imshow(image, cmap=cmap, vmin=0, vmax=1 if r < 2 else 0.5)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"{label}" if r else f"{pid}\n{score} {value:.3f}\n{label}", fontsize=7)
    fig.suptitle(f"worst patients by {score}: {method}", fontsize=9)
    return _save(fig, out / "plots" / f"worst_patients_{method}.png")


def write_plots(out: str | os.PathLike, frames: pd.DataFrame, clips: pd.DataFrame,
                patients: pd.DataFrame) -> list[Path]:
    """All plots of an evaluation into ``<out>/plots`` (replacing those of an earlier pass)."""
    from echokdm.metrics.lv_function import plot_ef_agreement

    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    written = [metric_boxplots(patients, out / "plots" / "metrics_per_patient.png")]
    for method in sorted(set(clips["method"])):
        sub = clips[clips["method"] == method].rename(columns={"ef_achieved": "ef", "ef_target": "ef_reference"})
        if (np.isfinite(sub["ef"]) & np.isfinite(sub["ef_reference"])).sum() >= 2:
            written += list(plot_ef_agreement(sub, out / "plots", overwrite=True, stem=f"ef_{method}").values())
    for method in ("kdm", "generated"):
        written.append(worst_patient_strips(out, frames, method))
    return [p for p in written if p is not None]


def realism_bars(summary: pd.DataFrame, path: str | os.PathLike) -> Path | None:
    """``plots/realism.png``: per beat kind, the classifier accuracy (with its interval; 0.5 = chance) and
    the MSE pop of each method, the real own beat's pop as a dashed line (the realism ``summary``)."""
    from matplotlib.figure import Figure

    from echokdm.evaluation.runner import METHOD_LABELS

    beats = [b for b in ("own", "new_ef", "transfer") if b in set(summary["beat"])]
    if not beats:
        return None
    real = summary[(summary["method"] == "real") & (summary["beat"] == "own")]
    real_pop = float(real["pop_mse"].iloc[0]) if len(real) and "pop_mse" in real else float("nan")
    fig = Figure(figsize=(3.4 * len(beats), 5.6))
    for i, beat in enumerate(beats):
        rows = summary[(summary["beat"] == beat) & (summary["method"] != "real")]
        labels = [METHOD_LABELS.get(m, m) for m in rows["method"]]
        x = np.arange(len(rows))
        acc = fig.add_subplot(2, len(beats), i + 1)
        if "classifier_acc" in rows:
            err = np.abs(np.stack([rows["classifier_acc"] - rows["classifier_acc_low"],
                                   rows["classifier_acc_high"] - rows["classifier_acc"]]).astype(float))
            acc.bar(x, rows["classifier_acc"], yerr=np.nan_to_num(err), color="tab:blue", capsize=3)
        acc.axhline(0.5, color="black", lw=0.8, ls=":")
        acc.set_ylim(0, 1.05)
        acc.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        acc.set_title(f"{beat}: real-vs-generated accuracy", fontsize=9)
        pop = fig.add_subplot(2, len(beats), len(beats) + i + 1)
        if "pop_mse" in rows:
            pop.bar(x, rows["pop_mse"].fillna(0), color="tab:orange")
            pop.set_yscale("symlog", linthresh=0.1)
        if np.isfinite(real_pop):
            pop.axhline(real_pop, color="black", lw=0.8, ls="--", label="real own beat")
            pop.legend(fontsize=7)
        pop.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        pop.set_title(f"{beat}: pop (MSE)", fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path))
