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
