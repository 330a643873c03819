"""Classifier two-sample tests: can a small network tell one set of frames from another?

A classifier trained to separate set ``a`` (e.g. real frames) from set ``b`` (generated frames)
and scored on held-out samples is a two-sample test (Lopez-Paz & Oquab, "Revisiting classifier
two-sample tests", ICLR 2017): held-out accuracy 0.5 means the sets cannot be told apart, 1.0
that every held-out sample is. It needs no external weights, unlike FID/FVD.

* :func:`heldout_accuracy`: one train/test split given by the caller (patches or frames): a tiny
  CNN, or logistic regression on :func:`patch_features`; balanced accuracy. The phantom realism
  benchmark (``benchmarks/realism.py``, through :mod:`echokdm.metrics.realism`) uses it.
* :func:`classifier_two_sample_test`: the same classifier in a grouped k-fold cross-validation
  (folds by patient or clip, so that no patient is in the training and the held-out part of a
  fold; each fold has its own seed), every sample held out exactly once; balanced accuracy over
  all held-out predictions with a percentile-bootstrap 95 % interval that resamples groups.

Frames / patches are ``float32`` ``(N, H, W)`` in [0, 1] (any ``H``, ``W``: the CNN ends in global
average pooling).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["TwoSampleResult", "classifier_two_sample_test", "heldout_accuracy", "patch_features"]


def patch_features(patches: np.ndarray) -> np.ndarray:
    """Hand features of ``(N, P, P)`` patches → ``float64`` ``(N, 9)``: mean, standard deviation,
    10th / 50th / 90th percentiles, fraction below 0.05, mean absolute Laplacian over the standard
    deviation, and the lag-1 correlation along rows and along columns."""
    x = np.asarray(patches, dtype=np.float64)
    mean, std = x.mean(axis=(1, 2)), x.std(axis=(1, 2)) + 1e-6
    p10, p50, p90 = np.percentile(x, [10, 50, 90], axis=(1, 2))
    black = (x < 0.05).mean(axis=(1, 2))
    lap = np.abs(4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    c = x - mean[:, None, None]
    var = (c**2).mean(axis=(1, 2)) + 1e-12
    lag_rows = (c[:, 1:] * c[:, :-1]).mean(axis=(1, 2)) / var
    lag_cols = (c[:, :, 1:] * c[:, :, :-1]).mean(axis=(1, 2)) / var
    return np.stack([mean, std, p10, p50, p90, black, lap.mean(axis=(1, 2)) / std, lag_rows, lag_cols], axis=1)


def _balanced_accuracy(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Mean of the two classes' accuracies (``a`` is the positive class, score > 0)."""
    return float(0.5 * (np.mean(scores_a > 0) + np.mean(scores_b <= 0)))


def _logistic(train_x: np.ndarray, train_y: np.ndarray, steps: int = 500, l2: float = 1e-3) -> np.ndarray:
    """Weights ``(F + 1,)`` of an L2-regularised logistic regression (full-batch gradient descent
    on standardised features; the last weight is the bias)."""
    x = np.concatenate([train_x, np.ones((len(train_x), 1))], axis=1)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - train_y) / len(x) + l2 * np.r_[w[:-1], 0.0]
        w -= 0.5 * grad
    return w


def _tiny_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1))


def _cnn_scores(train_a, train_b, test_a, test_b, seed: int, steps: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = _tiny_cnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(np.concatenate([train_a, train_b]).astype(np.float32))[:, None]  # (N, 1, P, P)
    shift, scale = float(x.mean()), float(x.std()) + 1e-6  # one standardisation for every patch: brightness stays a cue
    x = (x - shift) / scale
    y = torch.cat([torch.ones(len(train_a)), torch.zeros(len(train_b))])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(steps):
        index = torch.randint(len(x), (batch,), generator=generator)
        xb = x[index]
        if torch.rand((), generator=generator) < 0.5:  # left-right flip: the side of the heart is no cue
            xb = xb.flip(-1)
        loss = loss_fn(model(xb)[:, 0], y[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        score = [model((torch.from_numpy(np.asarray(s, np.float32))[:, None] - shift) / scale)[:, 0].numpy()
                 for s in (test_a, test_b)]
    return score[0], score[1]


def _scores(train_a, train_b, test_a, test_b, model: str, seed: int, steps: int,
            batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out scores of ``test_a`` and ``test_b`` (positive: looks like ``a``)."""
    if model == "logistic":
        fa, fb = patch_features(train_a), patch_features(train_b)
        fx = np.concatenate([fa, fb])
        mu, sd = fx.mean(axis=0), fx.std(axis=0) + 1e-9
        w = _logistic((fx - mu) / sd, np.r_[np.ones(len(fa)), np.zeros(len(fb))])
        a, b = (np.c_[(patch_features(t) - mu) / sd, np.ones(len(t))] @ w for t in (test_a, test_b))
        return a, b
    if model == "cnn":
        return _cnn_scores(train_a, train_b, test_a, test_b, seed, steps, batch)
    raise ValueError(f"model must be 'cnn' or 'logistic', got {model!r}")


def heldout_accuracy(train_a: np.ndarray, train_b: np.ndarray, test_a: np.ndarray, test_b: np.ndarray, *,
                     model: str = "cnn", seed: int = 0, steps: int = 300, batch: int = 32) -> float:
    """Held-out balanced accuracy of a classifier trained to tell set ``a`` from set ``b``.

    Parameters
    ----------
    train_a, train_b, test_a, test_b : numpy.ndarray
        Patches ``float32`` ``(N, P, P)`` in [0, 1] (e.g. from
        :func:`echokdm.metrics.realism.sample_patches`); the test patches must come from other
        frames / patients than the training ones.
    model : {"cnn", "logistic"}
        ``"cnn"``: a three-layer strided CNN (8-16-32 channels, batch norm, global average
        pooling) on patches standardised by the training set's mean and SD (Adam, ``steps``
        minibatches of ``batch``, random left-right flips); ``"logistic"``: logistic
        regression on the standardised :func:`patch_features`.
    seed : int
        Initialisation and minibatch order.

    Returns
    -------
    float
        Mean of the accuracies on ``test_a`` and ``test_b``: 0.5 is chance (the sets look alike),
        1.0 means every held-out patch is told apart.
    """
    return _balanced_accuracy(*_scores(train_a, train_b, test_a, test_b, model, seed, steps, batch))


@dataclasses.dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of :func:`classifier_two_sample_test`.

    Attributes
    ----------
    accuracy : float
        Balanced accuracy over every held-out prediction (each sample held out once): 0.5 = the
        sets cannot be told apart.
    low, high : float
        Percentile-bootstrap 95 % interval, resampling groups (NaN with fewer than two groups).
    fold_accuracies : numpy.ndarray
        ``float64`` ``(F,)``: balanced accuracy of each fold (NaN for a fold whose held-out part
        holds one class only).
    n_a, n_b, n_groups : int
        Samples of each set and groups (patients / clips).
    """

    accuracy: float
    low: float
    high: float
    fold_accuracies: np.ndarray
    n_a: int
    n_b: int
    n_groups: int

    def summary(self, prefix: str = "classifier") -> dict[str, float]:
        """``{prefix + "_acc", "_acc_low", "_acc_high", "_folds", "_n_groups"}`` for a table row."""
        return {f"{prefix}_acc": self.accuracy, f"{prefix}_acc_low": self.low, f"{prefix}_acc_high": self.high,
                f"{prefix}_folds": len(self.fold_accuracies), f"{prefix}_n_groups": self.n_groups}


def _group_folds(groups: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """The distinct groups shuffled with ``seed`` and dealt into ``min(folds, n_groups)`` folds."""
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    unique = unique[rng.permutation(len(unique))]
    return [part for part in np.array_split(unique, min(folds, len(unique))) if len(part)]


def _bootstrap_balanced(correct_a: np.ndarray, groups_a: np.ndarray, correct_b: np.ndarray, groups_b: np.ndarray,
                        n_boot: int, seed: int) -> tuple[float, float]:
    """95 % percentile interval of the balanced accuracy, resampling groups with replacement."""
    unique = np.unique(np.concatenate([groups_a, groups_b]))
    if len(unique) < 2 or n_boot < 1:
        return float("nan"), float("nan")
    index = {g: i for i, g in enumerate(unique)}
    ga = np.array([index[g] for g in groups_a], dtype=np.int64)
    gb = np.array([index[g] for g in groups_b], dtype=np.int64)
    # per group: number of held-out samples and of correct predictions, per class
    na, ca = np.bincount(ga, minlength=len(unique)), np.bincount(ga, correct_a, minlength=len(unique))
    nb, cb = np.bincount(gb, minlength=len(unique)), np.bincount(gb, correct_b, minlength=len(unique))
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(unique), size=(n_boot, len(unique)))  # (B, G) groups of each resample
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = 0.5 * (ca[draws].sum(1) / na[draws].sum(1) + cb[draws].sum(1) / nb[draws].sum(1))
    acc = acc[np.isfinite(acc)]
    if not len(acc):
        return float("nan"), float("nan")
    low, high = np.percentile(acc, [2.5, 97.5])
    return float(low), float(high)


def classifier_two_sample_test(a: np.ndarray, b: np.ndarray, groups_a: Sequence, groups_b: Sequence, *,
                               folds: int = 5, model: str = "cnn", steps: int = 200, batch: int = 32,
                               n_boot: int = 1000, seed: int = 0) -> TwoSampleResult:
    """Grouped k-fold classifier two-sample test of frame sets ``a`` (e.g. real) and ``b`` (generated).

    The groups (patients, or clips) of both sets are shuffled with ``seed`` and dealt into
    ``folds`` folds; fold ``f`` trains :func:`heldout_accuracy`'s classifier (seed ``seed + f``) on the
    samples of the other folds' groups and scores its own groups' samples, so a patient's frames
    are never both trained on and scored, and every sample is scored once. Group labels are
    shared between the sets: a patient's real frames and the frames generated from that patient
    fall in the same fold.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``float32`` ``(N_a, H, W)`` and ``(N_b, H, W)`` in [0, 1].
    groups_a, groups_b : sequence
        ``(N_a,)`` and ``(N_b,)`` group labels (e.g. patient ids).
    folds : int
        Folds (at most the number of groups; at least 2 groups are needed).
    model, steps, batch
        As :func:`heldout_accuracy`.
    n_boot : int
        Bootstrap resamples of the groups for the interval.
    seed : int

    Returns
    -------
    TwoSampleResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.random((40, 16, 16)), 0.5 * rng.random((40, 16, 16))  # b is darker
    >>> groups = np.repeat(np.arange(8), 5)
    >>> r = classifier_two_sample_test(a, b, groups, groups, folds=4, model="logistic")
    >>> r.accuracy > 0.9
    True
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    groups_a, groups_b = np.asarray(groups_a).astype(str), np.asarray(groups_b).astype(str)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"a and b must be (N, H, W) frames of one size, got {a.shape} and {b.shape}")
    if len(groups_a) != len(a) or len(groups_b) != len(b):
        raise ValueError(f"one group label per sample: {len(groups_a)} for {len(a)} in a, "
                         f"{len(groups_b)} for {len(b)} in b")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    parts = _group_folds(np.concatenate([groups_a, groups_b]), folds, seed)
    if len(parts) < 2:
        raise ValueError("a classifier two-sample test needs at least 2 groups (patients or clips)")
    score_a, score_b = np.full(len(a), np.nan), np.full(len(b), np.nan)
    fold_acc = []
    for f, held in enumerate(parts):
        test_a, test_b = np.isin(groups_a, held), np.isin(groups_b, held)
        if not (~test_a).any() or not (~test_b).any():
            raise ValueError(f"fold {f}: no training sample of one set outside groups {list(held)}")
        sa, sb = _scores(a[~test_a], b[~test_b], a[test_a], b[test_b], model, seed + f, steps, batch)
        score_a[test_a], score_b[test_b] = sa, sb
        fold_acc.append(_balanced_accuracy(sa, sb) if len(sa) and len(sb) else float("nan"))
    correct_a, correct_b = (score_a > 0).astype(np.float64), (score_b <= 0).astype(np.float64)
    accuracy = float(0.5 * (correct_a.mean() + correct_b.mean()))
    low, high = _bootstrap_balanced(correct_a, groups_a, correct_b, groups_b, n_boot, seed)
    return TwoSampleResult(accuracy, low, high, np.asarray(fold_acc, np.float64), len(a), len(b),
                           len(np.unique(np.concatenate([groups_a, groups_b]))))
