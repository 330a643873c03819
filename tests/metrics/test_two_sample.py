"""The grouped classifier two-sample test: separates different sets, sits at chance on one set,
never trains and scores the same group, and its interval brackets the estimate."""

import numpy as np
import pytest
from scipy import ndimage

from echokdm.metrics import realism, two_sample


def _speckle(rng, n, sigma, size=24):
    x = ndimage.gaussian_filter(rng.random((n, size, size)), (0, sigma, sigma))
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-9)
    return np.clip(0.5 + 0.15 * x, 0, 1).astype(np.float32)


def test_realism_reuses_the_one_classifier():
    assert realism.heldout_accuracy is two_sample.heldout_accuracy
    assert realism.patch_features is two_sample.patch_features


@pytest.mark.parametrize("model", ["cnn", "logistic"])
def test_separates_blurred_frames_and_reports_an_interval(model):
    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(6)], 10)
    real, blurred = _speckle(rng, 60, 0.6), _speckle(rng, 60, 1.8)
    result = two_sample.classifier_two_sample_test(real, blurred, groups, groups, folds=3, model=model, steps=120)
    assert result.accuracy > 0.9 and result.low <= result.accuracy <= result.high
    assert result.n_a == result.n_b == 60 and result.n_groups == 6 and len(result.fold_accuracies) == 3
    assert set(result.summary()) == {"classifier_acc", "classifier_acc_low", "classifier_acc_high",
                                     "classifier_folds", "classifier_n_groups"}


def test_is_at_chance_on_one_distribution():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(8), 10)
    a, b = _speckle(rng, 80, 1.0), _speckle(rng, 80, 1.0)
    result = two_sample.classifier_two_sample_test(a, b, groups, groups, folds=4, model="logistic")
    assert abs(result.accuracy - 0.5) < 0.12 and result.low < 0.5 < result.high


def test_folds_hold_out_whole_groups(monkeypatch):
    seen = []

    def fake_scores(train_a, train_b, test_a, test_b, model, seed, steps, batch):
        seen.append((train_a[:, 0, 0].copy(), test_a[:, 0, 0].copy(), train_b[:, 0, 0].copy(), test_b[:, 0, 0].copy()))
        return np.ones(len(test_a)), -np.ones(len(test_b))

    monkeypatch.setattr(two_sample, "_scores", fake_scores)
    groups = np.repeat(np.arange(5), 4)
    a = groups.astype(np.float32).reshape(20, 1, 1) * np.ones((20, 2, 2), np.float32)  # value = group
    result = two_sample.classifier_two_sample_test(a, a.copy(), groups, groups, folds=5)
    assert result.accuracy == 1.0 and len(seen) == 5
    for train_a, test_a, train_b, test_b in seen:
        assert not set(train_a) & set(test_a) and not set(train_b) & set(test_b)
    assert sorted(np.concatenate([s[1] for s in seen])) == sorted(groups.astype(np.float32))  # each held out once


def test_rejects_bad_input():
    x = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="at least 2 groups"):
        two_sample.classifier_two_sample_test(x, x, ["a"] * 4, ["a"] * 4)
    with pytest.raises(ValueError, match="one group label per sample"):
        two_sample.classifier_two_sample_test(x, x, ["a"] * 3, ["a"] * 4)
    with pytest.raises(ValueError, match="frames of one size"):
        two_sample.classifier_two_sample_test(x, np.zeros((4, 6, 6)), ["a"] * 4, ["a"] * 4)
