from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.metrics.privacy import MemorisationReport, memorisation_report, nearest_distance

WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "lpips"


def _patient_frames(indices, n_frames, size=48):
    clips = [simulate_clip(sample_patient(0, i), n_frames=n_frames, size=size, seed=i) for i in indices]
    return np.concatenate([c.frames for c in clips]).astype(np.float64)  # (len * n_frames, H, W)


@pytest.fixture(scope="module")
def frames():
    # distances cluster by patient, so held-out and fresh sets hold many patients with few frames each
    return {"training": _patient_frames(range(0, 6), 4), "held_out": _patient_frames(range(6, 18), 2),
            "fresh": _patient_frames(range(18, 30), 2)}


def _brute_force(queries, references, distance):
    d = np.array([[distance(q, r) for r in references] for q in queries])  # (N, M)
    return d.min(1), d.argmin(1)


def test_mse_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    refs, queries = rng.random((23, 9, 9)), rng.random((11, 9, 9))
    expected_d, expected_i = _brute_force(queries, refs, lambda q, r: ((q - r) ** 2).mean())
    distance, index = nearest_distance(queries, refs, "mse", batch=4)
    np.testing.assert_array_equal(index, expected_i)
    np.testing.assert_allclose(distance, expected_d, rtol=1e-12)


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(1)
    refs, queries = rng.random((7, 16, 16)), rng.random((3, 16, 16))
    refs[5] = queries[1] * 0.9 + 0.05  # a close but not identical reference
    expected_d, expected_i = _brute_force(queries, refs, lambda q, r: 1 - structural_similarity(q, r, data_range=1.0))
    distance, index = nearest_distance(queries, refs, "ssim", batch=3)
    np.testing.assert_array_equal(index, expected_i)
    np.testing.assert_allclose(distance, expected_d, atol=1e-10)
    assert index[1] == 5


def test_copies_are_flagged_fresh_frames_are_not(frames):
    training = frames["training"]
    copies = training[[3, 10, 17, 22]]
    report = memorisation_report(copies, training, frames["held_out"])
    assert isinstance(report, MemorisationReport)
    np.testing.assert_allclose(report.generated_distance, 0.0, atol=1e-15)
    np.testing.assert_array_equal(report.generated_index, [3, 10, 17, 22])
    summary = report.summary()
    assert summary["fraction_closer"] == 1.0 and summary["median_generated"] == 0.0
    assert summary["median_held_out"] > 0 and summary["mannwhitney_p"] < 0.01

    fresh = memorisation_report(frames["fresh"], training, frames["held_out"]).summary()
    assert fresh["fraction_closer"] <= 0.25
    assert fresh["mannwhitney_p"] > 0.05
    assert fresh["median_generated"] > 0.5 * fresh["median_held_out"]
    assert fresh["n_generated"] == 24 and fresh["n_held_out"] == 24


def test_copies_flagged_with_ssim(frames):
    training = frames["training"][::2]
    report = memorisation_report(training[[0, 5]], training, frames["held_out"][::3], metric="ssim")
    np.testing.assert_allclose(report.generated_distance, 0.0, atol=1e-12)
    assert report.fraction_closer == 1.0


@pytest.mark.skipif(not (WEIGHTS / "alexnet_features.pth").is_file(), reason=f"LPIPS weights not found in {WEIGHTS}")
def test_lpips_nearest_matches_direct_metric(frames):
    from echokdm.metrics.lpips import LPIPSMetric

    refs = frames["training"][::3]  # (8, 48, 48)
    queries = np.concatenate([refs[[2]], frames["fresh"][[0, 7]]])
    distance, index = nearest_distance(queries, refs, "lpips", backbone=WEIGHTS, batch=3)
    assert index[0] == 2 and distance[0] == pytest.approx(0.0, abs=1e-6)
    metric = LPIPSMetric("alex", backbone=WEIGHTS)
    direct = np.stack([metric(np.broadcast_to(q, refs.shape), refs) for q in queries])  # (3, 8)
    np.testing.assert_array_equal(index, direct.argmin(1))
    np.testing.assert_allclose(distance, direct.min(1), rtol=1e-5, atol=1e-7)


def test_bad_inputs():
    with pytest.raises(ValueError, match="metric"):
        nearest_distance(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), "l1")
    with pytest.raises(ValueError, match="frame size"):
        nearest_distance(np.zeros((1, 8, 8)), np.zeros((1, 8, 9)))
    with pytest.raises(ValueError, match="references"):
        nearest_distance(np.zeros((1, 8, 8)), np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="percentile"):
        memorisation_report(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), percentile=0)


# -- issue 21: the test over groups (loops, patients) of correlated frames -------------------------------
def _clustered(rng, n_groups, size, spread=0.02):
    """Distances of ``n_groups`` groups of ``size`` near-identical frames: a group centre drawn from one
    distribution, every frame of the group within ``spread`` of it (the frames of one loop or clip)."""
    centre = rng.lognormal(0.0, 0.5, n_groups)  # (G,)
    distance = np.repeat(centre, size) * (1 + spread * rng.standard_normal(n_groups * size))  # (G * size,)
    return distance, np.repeat(np.arange(n_groups), size)


def _report(gen, gen_groups, held, held_groups, **kwargs):
    zeros = np.zeros(len(gen), dtype=np.int64), np.zeros(len(held), dtype=np.int64)
    return MemorisationReport("mse", gen, zeros[0], held, zeros[1], generated_groups=gen_groups,
                              held_out_groups=held_groups, **kwargs)


def test_grouped_p_is_not_fooled_by_correlated_frames():
    """8 loops of 20 near-identical frames from the same distribution as the held-out set (8 clips of 10
    frames): the per-frame p is small on many seeds, the grouped p about as often as chance says."""
    per_frame, grouped = [], []
    for seed in range(50):
        rng = np.random.default_rng(seed)
        gen, gen_groups = _clustered(rng, 8, 20)
        held, held_groups = _clustered(rng, 8, 10)
        report = _report(gen, gen_groups, held, held_groups, n_boot=1)
        per_frame.append(report.mannwhitney_p_per_frame)
        grouped.append(report.mannwhitney_p)
    per_frame, grouped = np.array(per_frame), np.array(grouped)
    assert np.mean(grouped < 0.05) <= 0.15
    assert np.mean(per_frame < 0.05) >= 0.25  # the false alarms of the per-frame test (0.38 on these seeds)
    assert np.mean(grouped < 0.5) == pytest.approx(0.5, abs=0.2)  # roughly uniform, not only rarely small


def test_grouped_p_is_the_exact_mann_whitney_on_group_medians():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    gen, gen_groups = _clustered(rng, 5, 7)
    held, held_groups = _clustered(rng, 6, 4)
    report = _report(gen, gen_groups.astype(str), held, held_groups, n_boot=10)
    medians_gen, medians_held = report.group_medians()
    np.testing.assert_allclose(medians_gen, [np.median(gen[gen_groups == g]) for g in range(5)])
    expected = mannwhitneyu(medians_gen, medians_held, alternative="less", method="exact").pvalue
    assert report.mannwhitney_p == pytest.approx(expected, rel=1e-12)
    assert report.mannwhitney_p_min == pytest.approx(1 / 462)  # 1 / C(11, 5)
    summary = report.summary()
    assert summary["test_unit"] == "group" and summary["n_generated_groups"] == 5 and summary["n_held_out_groups"] == 6
    assert summary["mannwhitney_p_per_frame"] == pytest.approx(mannwhitneyu(gen, held, alternative="less").pvalue)


def test_grouped_p_with_many_groups_uses_random_splits():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(4)
    gen, gen_groups = _clustered(rng, 30, 3)
    held, held_groups = _clustered(rng, 30, 3)
    gen = gen * 0.8  # somewhat closer
    report = _report(gen, gen_groups, held, held_groups, n_boot=10)
    medians_gen, medians_held = report.group_medians()
    expected = mannwhitneyu(medians_gen, medians_held, alternative="less").pvalue  # asymptotic: many groups
    assert report.mannwhitney_p == pytest.approx(expected, abs=0.02)
    assert report.mannwhitney_p_min == pytest.approx(1e-4)
    assert report.mannwhitney_p == _report(gen, gen_groups, held, held_groups, n_boot=10).mannwhitney_p  # seeded


def test_copies_of_training_frames_are_flagged_per_group(frames):
    """Genuine memorisation: 6 'loops' of 3 near-copies of a training frame each, against 12 held-out patients."""
    training, held_out = frames["training"], frames["held_out"]
    rng = np.random.default_rng(0)
    copies = np.clip(np.repeat(training[[1, 5, 9, 13, 17, 21]], 3, axis=0)
                     + 0.002 * rng.standard_normal((18, *training.shape[1:])), 0.0, 1.0)  # (18, H, W)
    loops, patients = np.repeat(np.arange(6), 3), np.repeat(np.arange(12), 2)
    report = memorisation_report(copies, training, held_out, generated_groups=loops, held_out_groups=patients)
    summary = report.summary()
    assert summary["test_unit"] == "group" and summary["fraction_closer"] == 1.0
    assert summary["mannwhitney_p"] < 0.05 and summary["mannwhitney_p"] == pytest.approx(1 / 18564)  # all closer
    assert summary["fraction_closer_low"] == summary["fraction_closer_high"] == 1.0
    # fresh patients, grouped by patient: not flagged, and the interval holds the fraction
    fresh = memorisation_report(frames["fresh"], training, held_out, generated_groups=patients,
                                held_out_groups=patients).summary()
    assert fresh["mannwhitney_p"] > 0.05
    assert fresh["fraction_closer_low"] <= fresh["fraction_closer"] <= fresh["fraction_closer_high"]


def test_without_groups_the_test_is_per_frame(frames):
    report = memorisation_report(frames["fresh"], frames["training"], frames["held_out"])
    summary = report.summary()
    assert summary["test_unit"] == "frame"
    assert summary["mannwhitney_p"] == summary["mannwhitney_p_per_frame"]
    assert summary["n_generated_groups"] == 24 and summary["n_held_out_groups"] == 24
    assert 0.0 <= summary["fraction_closer_low"] <= summary["fraction_closer_high"] <= 1.0


def test_fraction_interval_is_wide_with_few_groups():
    """The same frames: few correlated groups give a wider interval than the frames counted one by one."""
    rng = np.random.default_rng(5)
    gen, gen_groups = _clustered(rng, 6, 20)
    held, held_groups = _clustered(rng, 6, 20)
    grouped = _report(gen, gen_groups, held, held_groups).fraction_closer_interval
    zeros = np.zeros(len(gen), dtype=np.int64)
    per_frame = MemorisationReport("mse", gen, zeros, held, zeros).fraction_closer_interval
    assert grouped[1] - grouped[0] > 2 * (per_frame[1] - per_frame[0])


def test_bad_groups():
    d = np.ones(4)
    with pytest.raises(ValueError, match="both generated_groups and held_out_groups"):
        _report(d, [0, 0, 1, 1], d, None)
    with pytest.raises(ValueError, match=r"generated_groups must hold one label per frame, shape \(4,\)"):
        _report(d, [0, 1], d, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="both"):
        memorisation_report(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), held_out_groups=[0])
