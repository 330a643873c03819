import numpy as np
import pandas as pd
import pytest

from echokdm.metrics.report import bootstrap_ci, per_patient, summarise, table3_markdown


def test_bootstrap_ci_basic_and_reproducible():
    values = np.random.default_rng(0).normal(10.0, 2.0, size=50)
    est, low, high = bootstrap_ci(np.append(values, np.nan), n_boot=1000, seed=3)
    assert est == pytest.approx(values.mean())
    assert low < est < high
    assert (low, high) == bootstrap_ci(values, n_boot=1000, seed=3)[1:]
    assert (high - low) == pytest.approx(2 * 1.96 * values.std(ddof=1) / np.sqrt(50), rel=0.2)
    med = bootstrap_ci(values, statistic=np.median, n_boot=500)
    assert med[0] == pytest.approx(np.median(values)) and med[1] < med[0] < med[2]
    custom = bootstrap_ci(values, statistic=lambda x: float(np.percentile(x, 50)), n_boot=500)
    assert custom == pytest.approx(med)  # same resamples, row-by-row fallback


def test_bootstrap_ci_degenerate():
    assert all(np.isnan(bootstrap_ci([np.nan, np.nan])))
    est, low, high = bootstrap_ci([4.0])
    assert est == 4.0 and np.isnan(low) and np.isnan(high)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)


def test_bootstrap_coverage_near_nominal():
    # 200 simulated studies of 30 patients from a right-skewed gamma distribution with known mean 1
    rng = np.random.default_rng(42)
    covered = 0
    for study in range(200):
        sample = rng.gamma(4.0, 0.25, size=30)
        _, low, high = bootstrap_ci(sample, n_boot=1000, seed=study)
        covered += low <= 1.0 <= high
    assert 0.88 <= covered / 200 <= 0.99


def _frame_table():
    rows = []
    # patient A: 90 frames of value 1; patient B: 10 frames of value 3 (one method, one dataset)
    rows += [dict(patient_id="A", dataset="camus", method="KDM", clip_id="a1", frame=i, mse=1.0) for i in range(90)]
    rows += [dict(patient_id="B", dataset="camus", method="KDM", clip_id="b1" if i < 5 else "b2", frame=i, mse=3.0)
             for i in range(10)]
    return pd.DataFrame(rows)


def test_patients_weigh_equally_whatever_their_frame_counts():
    table = _frame_table()
    patients = per_patient(table, ["mse"])
    assert patients.set_index("patient_id")["n_frames"].to_dict() == {"A": 90, "B": 10}
    assert patients.set_index("patient_id")["n_clips"].to_dict() == {"A": 1, "B": 2}
    summary = summarise(table, ["mse"], n_boot=200)
    row = summary.iloc[0]
    assert row["mse"] == pytest.approx(2.0)  # not the frame mean 1.2
    assert row["n_patients"] == 2 and row["n_frames"] == 100 and row["mse_n"] == 2
    assert 1.0 <= row["mse_low"] <= row["mse"] <= row["mse_high"] <= 3.0


def test_summarise_groups_and_ignores_nan_frames():
    table = _frame_table()
    other = table.assign(method="no-edit", mse=table["mse"] * 2)
    other.loc[other.index[:5], "mse"] = np.nan  # NaN frames are left out of patient A's mean
    summary = summarise(pd.concat([table, other]), ["mse"], n_boot=200)
    assert list(summary["method"]) == ["KDM", "no-edit"]
    assert summary.set_index("method").loc["no-edit", "mse"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="lpips_alex"):
        summarise(table, ["lpips_alex"])


def _summary():
    rng = np.random.default_rng(0)
    rows = []
    for method, level in (("w/o F2I", 0.012), ("w/o K2F", 0.027), ("KDM", 0.0124)):
        for patient in range(8):
            for frame in range(3):
                rows.append(dict(patient_id=f"P{patient}", dataset="echonet", method=method, clip_id="c", frame=frame,
                                 mse=level + 0.001 * rng.standard_normal(), lpips_alex=0.2 + 0.01 * rng.random(),
                                 lpips_vgg=0.3 + 0.01 * rng.random()))
    return summarise(pd.DataFrame(rows), ["mse", "lpips_alex", "lpips_vgg"], n_boot=200)


def test_table3_markdown_layout():
    summary = _summary()
    text = table3_markdown(summary, methods=("w/o F2I", "w/o K2F", "KDM"))
    lines = text.strip().splitlines()
    assert lines[0] == "| Model | MSE_img | LPIPS_alx | LPIPS_vgg |"
    assert lines[1] == "|---|---|---|---|"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["w/o F2I", "w/o K2F", "KDM"]
    kdm = summary.set_index("method").loc["KDM"]
    cell = lines[4].split("|")[2].strip()
    assert cell == f"{kdm['mse']:.4f} [{kdm['mse_low']:.4f}, {kdm['mse_high']:.4f}]"
    assert len(lines) == 5 and all(line.count("|") == 5 for line in lines)
    only_two = table3_markdown(summary, metrics=("mse",), methods=("KDM", "w/o K2F"), digits=3).strip().splitlines()
    assert [line.split("|")[1].strip() for line in only_two[2:]] == ["KDM", "w/o K2F"]
    with pytest.raises(ValueError, match="TPS"):
        table3_markdown(summary, methods=("TPS",))


def test_table3_with_several_datasets():
    summary = pd.concat([_summary(), _summary().assign(dataset="camus")], ignore_index=True)
    lines = table3_markdown(summary).strip().splitlines()
    assert lines[0].startswith("| Dataset | Model |") and len(lines) == 2 + 6
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["camus"] * 3 + ["echonet"] * 3
    assert len(table3_markdown(summary, dataset="camus").strip().splitlines()) == 5


def _bootstrap_ci_before_scipy(values, statistic=np.mean, n_boot=2000, level=0.95, seed=0):
    """bootstrap_ci's own resampling loop before issue 19 (reference for the scipy version)."""
    from echokdm.metrics.report import _apply

    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    estimate = float(statistic(x))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    chunk = max(1, 2 ** 22 // x.size)
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        stats[start:start + n] = _apply(statistic, x[rng.integers(0, x.size, size=(n, x.size))])
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high)


@pytest.mark.parametrize(("size", "n_boot", "level", "seed"), [
    (2, 1, 0.95, 0), (7, 500, 0.9, 1), (50, 2000, 0.95, 3), (30, 1000, 0.5, 7),
    (9000, 1001, 0.95, 2),  # 466 resamples a batch: three batches, the last one short
])
def test_bootstrap_ci_is_scipys_percentile_bootstrap_with_the_same_draws(size, n_boot, level, seed):
    values = np.random.default_rng(size).gamma(2.0, 1.5, size=size)
    for statistic in (np.mean, np.median, lambda v: float(np.percentile(v, 25))):
        assert bootstrap_ci(values, statistic, n_boot=n_boot, level=level, seed=seed) == \
            _bootstrap_ci_before_scipy(values, statistic, n_boot=n_boot, level=level, seed=seed)
