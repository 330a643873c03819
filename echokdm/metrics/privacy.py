"""Memorisation check for synthetic frames: how close is each generated frame to the training set?

A generator that copies its training data produces frames much closer to their nearest training
frame than real frames of unseen patients are. :func:`memorisation_report` compares the two
distributions of nearest-training distances (generated vs real held-out frames): a privacy
signal before sharing synthetic data, not a proof of privacy.

Frames of one loop (and of one real clip, or patient) are strongly correlated, so a test that
counts frames as independent observations is overconfident (a cohort of 8 loops from 4 unseen
patients gave 10 % of frames "closer" and a per-frame p = 0.001). Given which group (source
patient, loop, clip) each frame belongs to, :class:`MemorisationReport` tests at the level of the
groups instead (see :attr:`MemorisationReport.mannwhitney_p`).

Frames follow shared/DESIGN.md: grayscale, [0, 1], ``(N, H, W)``. Distances (smaller = closer):

* ``"mse"``: mean squared error over pixels;
* ``"ssim"``: ``1 - SSIM`` (:func:`echokdm.metrics.image.ssim`, window 7, border left out);
* ``"lpips"``: LPIPS (:class:`echokdm.metrics.lpips.LPIPSMetric`; ``net`` / ``backbone`` options).

MSE and LPIPS are squared Euclidean distances between per-frame embeddings (the pixels scaled by
``1/sqrt(H W)``; the LPIPS features scaled by the linear heads), so every query is compared with
every reference through matrix products; the distance to the chosen neighbour is then recomputed
exactly (a copy gives 0). SSIM compares every pair with box filters, ``O(N M H W)``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from echokdm.metrics.image import RANGE_TOLERANCE, to_numpy

__all__ = ["nearest_distance", "MemorisationReport", "memorisation_report", "METRICS"]

METRICS = ("mse", "ssim", "lpips")


def _stack(frames: Any, name: str) -> np.ndarray:
    """Frames ``(H, W)`` or ``(N, H, W)`` in [0, 1] as float64 ``(N, H, W)``, N >= 1."""
    x = to_numpy(frames)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty stack of frames (N, H, W), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if x.min() < -RANGE_TOLERANCE or x.max() > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must hold values in [0, 1], got [{x.min():.4g}, {x.max():.4g}]")
    return x


# -- squared Euclidean nearest neighbours over embeddings (MSE, LPIPS) ---------------------------------
def _nearest_embedded(embed: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, references: np.ndarray,
                      batch: int) -> np.ndarray:
    """Index of the nearest reference of each query in the squared distance ``|e(q) - e(r)|^2``.

    ``embed`` maps frames ``(n, H, W)`` to float64 ``(n, D)``. References are embedded once per
    chunk of ``batch``; queries once in all.
    """
    q_emb = [embed(queries[i:i + batch]) for i in range(0, len(queries), batch)]  # list of (b, D)
    q_norm = [(e ** 2).sum(1) for e in q_emb]  # list of (b,)
    best = np.full(len(queries), np.inf)
    index = np.zeros(len(queries), dtype=np.int64)
    for r0 in range(0, len(references), batch):
        r_emb = embed(references[r0:r0 + batch])  # (br, D)
        r_norm = (r_emb ** 2).sum(1)  # (br,)
        for i, (e, n) in enumerate(zip(q_emb, q_norm, strict=True)):
            d = n[:, None] + r_norm[None] - 2.0 * e @ r_emb.T  # (b, br)
            j = d.argmin(1)
            rows = slice(i * batch, i * batch + len(e))
            better = d[np.arange(len(e)), j] < best[rows]
            best[rows] = np.where(better, d[np.arange(len(e)), j], best[rows])
            index[rows] = np.where(better, r0 + j, index[rows])
    return index


def _pixels(frames: np.ndarray) -> np.ndarray:
    """Embedding whose squared distance is the MSE: ``(n, H*W)`` pixels divided by ``sqrt(H W)``."""
    return frames.reshape(len(frames), -1) / np.sqrt(frames[0].size)


def _lpips_embedding(metric: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Embedding whose squared distance is LPIPS: the scaled features of every layer, concatenated."""
    def embed(frames: np.ndarray) -> np.ndarray:
        feats = metric.features(frames)  # list of (n, C, h, w)
        parts = [f.reshape(len(frames), -1) / np.sqrt(f.shape[-2] * f.shape[-1]) for f in feats]
        return np.concatenate([p.double().cpu().numpy() for p in parts], axis=1)  # (n, D)
    return embed


# -- SSIM: pairwise with box filters ---------------------------------------------------------------
_SSIM_WIN, _C1, _C2 = 7, 0.01 ** 2, 0.03 ** 2  # scikit-image defaults, data range 1


def _box(x: np.ndarray) -> np.ndarray:
    """Mean over the 7 x 7 window around each pixel of ``x`` (..., H, W), reflect padding as scikit-image."""
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(uniform_filter1d(x, _SSIM_WIN, axis=-1), _SSIM_WIN, axis=-2)


def _ssim_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local means and (sample) variances ``(n, H, W)`` of frames ``(n, H, W)``."""
    cov_norm = _SSIM_WIN ** 2 / (_SSIM_WIN ** 2 - 1)
    mean = _box(frames)
    return mean, cov_norm * (_box(frames * frames) - mean * mean)


def _ssim_one_to_many(q: np.ndarray, q_stats: tuple, refs: np.ndarray, r_stats: tuple) -> np.ndarray:
    """Mean SSIM (border left out, as scikit-image) of ``q`` (H, W) against each of ``refs`` (n, H, W)."""
    cov_norm = _SSIM_WIN ** 2 / (_SSIM_WIN ** 2 - 1)
    (uq, vq), (ur, vr) = q_stats, r_stats
    cov = cov_norm * (_box(refs * q) - ur * uq)  # (n, H, W)
    s = (2 * uq * ur + _C1) * (2 * cov + _C2) / ((uq ** 2 + ur ** 2 + _C1) * (vq + vr + _C2))
    pad = (_SSIM_WIN - 1) // 2
    return s[:, pad:s.shape[1] - pad, pad:s.shape[2] - pad].mean(axis=(1, 2))


def _nearest_ssim(queries: np.ndarray, references: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``1 - SSIM`` to the most similar reference, and its index, for each query."""
    if min(queries.shape[1:]) < _SSIM_WIN:
        raise ValueError(f"SSIM needs frames of at least {_SSIM_WIN} x {_SSIM_WIN} pixels, got {queries.shape[1:]}")
    q_stats = _ssim_stats(queries)
    best = np.full(len(queries), -np.inf)
    index = np.zeros(len(queries), dtype=np.int64)
    for r0 in range(0, len(references), batch):
        refs = references[r0:r0 + batch]
        r_stats = _ssim_stats(refs)
        for i, q in enumerate(queries):
            s = _ssim_one_to_many(q, (q_stats[0][i], q_stats[1][i]), refs, r_stats)  # (br,)
            j = int(s.argmax())
            if s[j] > best[i]:
                best[i], index[i] = s[j], r0 + j
    return 1.0 - best, index


def nearest_distance(queries: Any, references: Any, metric: str = "mse", *, batch: int = 256,
                     net: str = "alex", backbone: Any = None, device: Any = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Distance of each query frame to its nearest reference frame, and that reference's index.

    Parameters
    ----------
    queries : numpy.ndarray or torch.Tensor
        ``(N, H, W)`` (or one ``(H, W)``) grayscale frames in [0, 1], e.g. generated frames.
    references : numpy.ndarray or torch.Tensor
        ``(M, H, W)`` grayscale frames in [0, 1] of the same size, e.g. the training frames.
    metric : {"mse", "ssim", "lpips"}
        The distance (module docstring); for SSIM the distance is ``1 - SSIM``.
    batch : int
        Frames per chunk (memory: about ``batch^2`` distances, or ``batch`` SSIM maps, at once).
    net, backbone, device
        LPIPS options (:class:`echokdm.metrics.lpips.LPIPSMetric`), used with ``metric="lpips"``.

    Returns
    -------
    distance : numpy.ndarray
        float64 ``(N,)``: the distance to the nearest reference (0 for an exact copy).
    index : numpy.ndarray
        int64 ``(N,)``: the index in ``references`` of that nearest frame.

    Examples
    --------
    >>> import numpy as np
    >>> refs = np.random.default_rng(0).random((5, 8, 8))
    >>> distance, index = nearest_distance(refs[[3, 1]], refs)
    >>> index.tolist(), distance.tolist()
    ([3, 1], [0.0, 0.0])
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not (isinstance(batch, (int, np.integer)) and batch >= 1):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    q, r = _stack(queries, "queries"), _stack(references, "references")
    if q.shape[1:] != r.shape[1:]:
        raise ValueError(f"queries {q.shape[1:]} and references {r.shape[1:]} must have the same frame size")
    if metric == "ssim":
        return _nearest_ssim(q, r, batch)
    if metric == "mse":
        index = _nearest_embedded(_pixels, q, r, batch)
        return ((q - r[index]) ** 2).mean(axis=(1, 2)), index
    from echokdm.metrics.lpips import LPIPSMetric

    lpips_metric = LPIPSMetric(net, backbone, device)
    index = _nearest_embedded(_lpips_embedding(lpips_metric), q, r, batch)
    return np.atleast_1d(lpips_metric(q, r[index], batch_size=batch)), index


# -- group-level statistics ------------------------------------------------------------------------
_EXACT_SPLITS = 100_000  # most splits of the groups enumerated by the exact test; beyond, random splits
_RANDOM_SPLITS = 9_999


def _labels(groups: Any, n: int, name: str) -> np.ndarray | None:
    """``groups`` as an ``(n,)`` array of labels (one per frame), or None."""
    if groups is None:
        return None
    labels = np.asarray(groups)
    if labels.shape != (n,):
        raise ValueError(f"{name} must hold one label per frame, shape ({n},), got {labels.shape}")
    return labels


def _group_codes(labels: np.ndarray | None, n: int) -> np.ndarray:
    """The group ``0 .. G-1`` of each of ``n`` frames (each frame its own group without labels)."""
    if labels is None:
        return np.arange(n)
    return np.unique(labels.astype(str), return_inverse=True)[1].ravel()


def _group_medians(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Median of ``values`` ``(N,)`` over each group of ``codes`` ``(N,)``: ``(G,)``."""
    order = np.argsort(codes, kind="stable")
    parts = np.split(values[order], np.cumsum(np.bincount(codes))[:-1])  # G arrays
    return np.array([np.median(part) for part in parts])


def _rank_sum_p(generated: np.ndarray, held_out: np.ndarray, seed: int) -> float:
    """One-sided p that ``generated`` values tend to be smaller than ``held_out`` ones (a permutation test).

    The statistic is the rank sum of the generated values among all (mid-ranks for ties; the
    Mann–Whitney U up to a constant), its null distribution that of every split of the pooled
    values into sets of the two sizes: all splits when there are at most ``_EXACT_SPLITS`` (the
    exact test), else ``_RANDOM_SPLITS`` random ones (``p = (1 + hits) / (1 + draws)``).
    """
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([generated, held_out]))  # (total,)
    n, total = len(generated), len(ranks)
    observed = ranks[:n].sum() + 1e-9 * total  # rank sums are multiples of 1/2: a tolerance for the float sums
    n_splits = math.comb(total, n)
    if n_splits <= _EXACT_SPLITS:
        flat = itertools.chain.from_iterable(itertools.combinations(range(total), n))
        index = np.fromiter(flat, dtype=np.intp, count=n_splits * n).reshape(n_splits, n)
        return float(np.mean(ranks[index].sum(1) <= observed))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, _RANDOM_SPLITS, 1000):
        draws = min(1000, _RANDOM_SPLITS - start)
        index = rng.random((draws, total)).argsort(1)[:, :n]  # (draws, n): a random split each
        hits += int((ranks[index].sum(1) <= observed).sum())
    return (1 + hits) / (1 + _RANDOM_SPLITS)


def _bootstrap_fraction(generated: np.ndarray, gen_codes: np.ndarray, held_out: np.ndarray, held_codes: np.ndarray,
                        percentile: float, n_boot: int, seed: int) -> tuple[float, float]:
    """95 % interval of the fraction of generated values below the held-out ``percentile``, resampling
    whole groups of both sets with replacement (the threshold is re-estimated in every resample)."""
    rng = np.random.default_rng(seed)
    n_gen, n_held = int(gen_codes.max()) + 1, int(held_codes.max()) + 1
    gen_sizes = np.bincount(gen_codes, minlength=n_gen)  # (G,)
    fractions = np.empty(n_boot)
    for b in range(n_boot):
        held_weight = np.bincount(rng.integers(0, n_held, n_held), minlength=n_held)  # (H,) times drawn
        threshold = np.percentile(np.repeat(held_out, held_weight[held_codes]), percentile)
        gen_weight = np.bincount(rng.integers(0, n_gen, n_gen), minlength=n_gen)  # (G,)
        below = np.bincount(gen_codes, weights=generated < threshold, minlength=n_gen)  # (G,)
        fractions[b] = (gen_weight * below).sum() / (gen_weight * gen_sizes).sum()
    low, high = np.percentile(fractions, [2.5, 97.5])
    return float(low), float(high)


@dataclasses.dataclass(frozen=True)
class MemorisationReport:
    """Nearest-training distances of generated and of real held-out frames, and their comparison.

    Attributes
    ----------
    metric : str
        The distance used ("mse", "ssim" or "lpips").
    generated_distance, held_out_distance : numpy.ndarray
        float64 ``(N_gen,)`` / ``(N_held,)``: each frame's distance to its nearest training frame.
    generated_index, held_out_index : numpy.ndarray
        int64: the index of that nearest training frame.
    percentile : float
        The held-out percentile used as the "suspiciously close" threshold (default 5).
    generated_groups, held_out_groups : numpy.ndarray or None
        ``(N_gen,)`` / ``(N_held,)`` labels (any hashable values, compared as strings) of the group
        of each frame: the independent units, e.g. the source patient of a generated frame and the
        patient of a real one. Both or neither; without them every frame is its own group and
        the test is per frame (:attr:`test_unit`).
    n_boot : int
        Bootstrap resamples of :attr:`fraction_closer_interval` (1000).
    seed : int
        Seed of the bootstrap (and of the random splits of :attr:`mannwhitney_p` when there are
        too many to enumerate): the same report gives the same numbers.
    """

    metric: str
    generated_distance: np.ndarray
    generated_index: np.ndarray
    held_out_distance: np.ndarray
    held_out_index: np.ndarray
    percentile: float = 5.0
    generated_groups: np.ndarray | None = None
    held_out_groups: np.ndarray | None = None
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        generated = _labels(self.generated_groups, np.asarray(self.generated_distance).size, "generated_groups")
        held_out = _labels(self.held_out_groups, np.asarray(self.held_out_distance).size, "held_out_groups")
        if (generated is None) != (held_out is None):
            raise ValueError("give both generated_groups and held_out_groups (the test compares groups with "
                             "groups), or neither (a test per frame)")
        if not (isinstance(self.n_boot, (int, np.integer)) and self.n_boot >= 1):
            raise ValueError(f"n_boot must be a positive int, got {self.n_boot!r}")
        object.__setattr__(self, "generated_groups", generated)
        object.__setattr__(self, "held_out_groups", held_out)

    @property
    def test_unit(self) -> str:
        """``"group"`` when the groups are known (the p-value and interval are per group), else ``"frame"``."""
        return "frame" if self.generated_groups is None else "group"

    @functools.cached_property
    def _codes(self) -> tuple[np.ndarray, np.ndarray]:
        return (_group_codes(self.generated_groups, np.asarray(self.generated_distance).size),
                _group_codes(self.held_out_groups, np.asarray(self.held_out_distance).size))

    @property
    def n_generated_groups(self) -> int:
        """Groups of generated frames (the number of frames without groups)."""
        return int(self._codes[0].max()) + 1

    @property
    def n_held_out_groups(self) -> int:
        """Groups of held-out frames (the number of frames without groups)."""
        return int(self._codes[1].max()) + 1

    def group_medians(self) -> tuple[np.ndarray, np.ndarray]:
        """Median distance of each generated group ``(G,)`` and of each held-out group ``(H,)``
        (groups in the sorted order of their labels as strings; the distances themselves without groups)."""
        gen_codes, held_codes = self._codes
        return (_group_medians(np.asarray(self.generated_distance, np.float64), gen_codes),
                _group_medians(np.asarray(self.held_out_distance, np.float64), held_codes))

    @property
    def threshold(self) -> float:
        """The ``percentile``-th percentile of the held-out distances."""
        return float(np.percentile(self.held_out_distance, self.percentile))

    @property
    def fraction_closer(self) -> float:
        """Fraction of generated frames strictly closer to training than ``threshold``.

        About ``percentile / 100`` when generated frames are as far from training as unseen real
        frames; near 1 for a generator that copies its training frames.
        """
        return float(np.mean(self.generated_distance < self.threshold))

    @functools.cached_property
    def fraction_closer_interval(self) -> tuple[float, float]:
        """95 % bootstrap interval of :attr:`fraction_closer`: whole groups of generated and of
        held-out frames resampled with replacement, the threshold re-estimated each time (every
        frame a group without groups, an interval as overconfident as the per-frame test)."""
        gen_codes, held_codes = self._codes
        return _bootstrap_fraction(np.asarray(self.generated_distance, np.float64), gen_codes,
                                   np.asarray(self.held_out_distance, np.float64), held_codes, self.percentile,
                                   int(self.n_boot), self.seed)

    @property
    def mannwhitney_p_per_frame(self) -> float:
        """One-sided Mann–Whitney U p-value over *frames* that generated distances tend to be smaller
        than held-out ones. It counts every frame as independent: frames of one loop or clip are
        not, so this p is far too small for correlated frames (kept for comparison)."""
        from scipy.stats import mannwhitneyu

        return float(mannwhitneyu(self.generated_distance, self.held_out_distance, alternative="less").pvalue)

    @functools.cached_property
    def mannwhitney_p(self) -> float:
        """One-sided p-value that generated frames sit closer to training than held-out real frames.

        Without groups, :attr:`mannwhitney_p_per_frame` (the behaviour of earlier releases).

        With groups, a test on the groups, the independent units: each group is summarised by the
        median distance of its frames, and the p-value is that of the Mann–Whitney U (rank sum) of
        the generated groups' medians against the held-out groups' medians, its null distribution
        obtained by permuting whole groups between the two sets. It is exact (every split of the
        groups enumerated, ties by mid-ranks) up to 100 000 splits, else estimated from 9 999 random
        splits. Why this test: it needs no normality and no large-sample approximation, so it is
        valid with the few groups a cohort has (8 loops, 4 patients), and frames of one group,
        however correlated, count once. The price is honest: it cannot go below
        :attr:`mannwhitney_p_min` ``= 1 / C(G + H, G)`` (1/6 with 2 and 2 groups, 1/495 with 8 and
        4), so a check with too few groups cannot report a small p. The null is that generated and
        held-out group medians are exchangeable; groups of very different sizes have medians of
        different spread, which makes the test approximate, not exact, in that case.
        """
        if self.generated_groups is None:
            return self.mannwhitney_p_per_frame
        generated, held_out = self.group_medians()
        return _rank_sum_p(generated, held_out, self.seed)

    @property
    def mannwhitney_p_min(self) -> float:
        """The smallest p-value :attr:`mannwhitney_p` can take with these numbers of groups
        (``1 / C(G + H, G)``, or ``1 / 10 000`` when the grouped test draws random splits)."""
        n_splits = math.comb(self.n_generated_groups + self.n_held_out_groups, self.n_generated_groups)
        if self.generated_groups is not None and n_splits > _EXACT_SPLITS:
            return 1.0 / (1 + _RANDOM_SPLITS)
        return 1.0 / n_splits

    def summary(self) -> dict[str, Any]:
        """One row for a report: metric, counts, medians, threshold, fraction closer, p-value.

        ``mannwhitney_p`` is the grouped p-value when groups are known, ``mannwhitney_p_per_frame``
        the per-frame one (the same without groups); ``test_unit`` says which is the headline
        (``"group"`` or ``"frame"``); ``fraction_closer_low`` / ``_high`` the 95 % bootstrap
        interval over the same units; ``mannwhitney_p_min`` the smallest p the test can give.
        """
        low, high = self.fraction_closer_interval
        return {"metric": self.metric, "n_generated": int(self.generated_distance.size),
                "n_held_out": int(self.held_out_distance.size),
                "median_generated": float(np.median(self.generated_distance)),
                "median_held_out": float(np.median(self.held_out_distance)),
                "percentile": self.percentile, "threshold": self.threshold,
                "fraction_closer": self.fraction_closer, "expected_fraction": self.percentile / 100.0,
                "mannwhitney_p": self.mannwhitney_p, "test_unit": self.test_unit,
                "n_generated_groups": self.n_generated_groups, "n_held_out_groups": self.n_held_out_groups,
                "mannwhitney_p_per_frame": self.mannwhitney_p_per_frame, "mannwhitney_p_min": self.mannwhitney_p_min,
                "fraction_closer_low": low, "fraction_closer_high": high}


def memorisation_report(generated: Any, training: Any, held_out_real: Any, metric: str = "mse", *,
                        percentile: float = 5.0, generated_groups: Any = None, held_out_groups: Any = None,
                        batch: int = 256, net: str = "alex", backbone: Any = None,
                        device: Any = "cpu") -> MemorisationReport:
    """Compare nearest-training distances of generated frames with those of real held-out frames.

    Parameters
    ----------
    generated : array_like
        ``(N_gen, H, W)`` generated frames in [0, 1].
    training : array_like
        ``(M, H, W)`` the generator's training frames in [0, 1].
    held_out_real : array_like
        ``(N_held, H, W)`` real frames of patients *not* in the training set, in [0, 1].
    metric : {"mse", "ssim", "lpips"}
        Distance, as in :func:`nearest_distance`.
    percentile : float
        Held-out percentile in (0, 100) below which a generated frame counts as "closer" (5).
    generated_groups, held_out_groups : array_like, optional
        ``(N_gen,)`` / ``(N_held,)`` labels of the independent unit each frame belongs to: the
        source patient (or loop) of a generated frame, the patient (or clip) of a real one. Both
        or neither. With them the p-value is computed on groups (:attr:`MemorisationReport.mannwhitney_p`)
        and ``fraction_closer`` gets a group-bootstrap interval; without them the test is per frame,
        overconfident when frames of one loop or clip are correlated (``summary()["test_unit"]``).
    batch, net, backbone, device
        As in :func:`nearest_distance`.

    Returns
    -------
    MemorisationReport
        Distances, nearest indices, and ``summary()``: medians, threshold, ``fraction_closer``
        (about ``percentile / 100`` if nothing is memorised) with its interval, and the one-sided
        Mann–Whitney U p-value (small when generated frames sit closer to training than real unseen
        frames): per group with groups, per frame without (``mannwhitney_p_per_frame`` always).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> training, held_out = rng.random((20, 8, 8)), rng.random((6, 8, 8))
    >>> copies = training[[0, 0, 1, 1, 2, 2, 3, 3]]  # 4 "loops" of 2 frames, each a training frame
    >>> report = memorisation_report(copies, training, held_out, generated_groups=[0, 0, 1, 1, 2, 2, 3, 3],
    ...                              held_out_groups=[0, 0, 1, 1, 2, 2])
    >>> report.fraction_closer, round(report.mannwhitney_p, 4), report.summary()["test_unit"]
    (1.0, 0.0286, 'group')
    """
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be within (0, 100), got {percentile}")
    if (generated_groups is None) != (held_out_groups is None):
        raise ValueError("give both generated_groups and held_out_groups (the test compares groups with "
                         "groups), or neither (a test per frame)")
    options = dict(metric=metric, batch=batch, net=net, backbone=backbone, device=device)
    gen_d, gen_i = nearest_distance(generated, training, **options)
    held_d, held_i = nearest_distance(held_out_real, training, **options)
    return MemorisationReport(metric, gen_d, gen_i, held_d, held_i, float(percentile),
                              generated_groups=generated_groups, held_out_groups=held_out_groups)
