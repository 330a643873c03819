"""Memorisation check for synthetic frames: how close is each generated frame to the training set?

A generator that copies its training data produces frames much closer to their nearest training
frame than real frames of unseen patients are. :func:`memorisation_report` compares the two
distributions of nearest-training distances (generated vs real held-out frames): a privacy
signal before sharing synthetic data, not a proof of privacy.

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
    """

    metric: str
    generated_distance: np.ndarray
    generated_index: np.ndarray
    held_out_distance: np.ndarray
    held_out_index: np.ndarray
    percentile: float = 5.0

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

    @property
    def mannwhitney_p(self) -> float:
        """One-sided Mann–Whitney U p-value that generated distances tend to be *smaller* than held-out ones."""
        from scipy.stats import mannwhitneyu

        return float(mannwhitneyu(self.generated_distance, self.held_out_distance, alternative="less").pvalue)

    def summary(self) -> dict[str, Any]:
        """One row for a report: metric, counts, medians, threshold, fraction closer, p-value."""
        return {"metric": self.metric, "n_generated": int(self.generated_distance.size),
                "n_held_out": int(self.held_out_distance.size),
                "median_generated": float(np.median(self.generated_distance)),
                "median_held_out": float(np.median(self.held_out_distance)),
                "percentile": self.percentile, "threshold": self.threshold,
                "fraction_closer": self.fraction_closer, "expected_fraction": self.percentile / 100.0,
                "mannwhitney_p": self.mannwhitney_p}


def memorisation_report(generated: Any, training: Any, held_out_real: Any, metric: str = "mse", *,
                        percentile: float = 5.0, batch: int = 256, net: str = "alex", backbone: Any = None,
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
    batch, net, backbone, device
        As in :func:`nearest_distance`.

    Returns
    -------
    MemorisationReport
        Distances, nearest indices, and ``summary()``: medians, threshold, ``fraction_closer``
        (about ``percentile / 100`` if nothing is memorised) and the one-sided Mann–Whitney U
        p-value (small when generated frames sit closer to training than real unseen frames).
    """
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be within (0, 100), got {percentile}")
    options = dict(metric=metric, batch=batch, net=net, backbone=backbone, device=device)
    gen_d, gen_i = nearest_distance(generated, training, **options)
    held_d, held_i = nearest_distance(held_out_real, training, **options)
    return MemorisationReport(metric, gen_d, gen_i, held_d, held_i, float(percentile))
