"""Fréchet Inception Distance (FID, Heusel et al., NeurIPS 2017) on frames, and the Fréchet distance itself.

``FID = |mu_r - mu_g|² + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})`` between Gaussians fitted to the
2048-dimensional pool3 features of Inception-v3 of real and generated frames.

Features: the standard FID network is the TensorFlow Inception of 2015-12-05 as ported by
pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``; its average pools leave the padding out
and the last block max-pools, :func:`fid_inception_v3`); torchvision's ImageNet ``inception_v3``
(``inception_v3_google-0cc3c7bd.pth``, IMAGENET1K_V1) is a documented fallback whose numbers are
close to but not those of published FIDs (the column says which network was used). Grayscale
frames are repeated to three channels, resized to 299 × 299 (bilinear) and mapped to [-1, 1].

Weights follow the LPIPS rule (:mod:`echokdm.metrics.lpips`): a local path (``weights=`` / ``--fid-weights
DIR`` / ``$ECHOKDM_FID_WEIGHTS``; a wrong path is an error), else torch hub's cache
(``$TORCH_HOME/hub/checkpoints``), else a download into that cache, else the metric is left out
with a one-line note (:func:`load_fid_extractor`). Files are read with ``torch.load(weights_only=True)``.

FID is biased upwards for small samples (the bias falls like 1/N; Chong & Forsyth, CVPR 2020):
compare methods only at equal sample counts; :func:`frechet_inception_distance` warns below
:data:`FID_MIN_SAMPLES` frames.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echokdm.errors import EchoKDMWarning

__all__ = [
    "FID_FILES", "FID_MIN_SAMPLES", "FID_WEIGHTS_ENV", "fid_inception_v3", "FewSamplesWarning", "feature_statistics",
    "fid_from_features", "frechet_distance", "frechet_inception_distance", "load_fid_extractor",
    "InceptionPool3", "batched_features", "read_state_dict", "resolve_feature_weights", "warn_few_samples",
]

FID_WEIGHTS_ENV = "ECHOKDM_FID_WEIGHTS"
#: Weight files in the order they are looked for: ``(file name, network, download URL)``.
FID_FILES = (
    ("pt_inception-2015-12-05-6726825d.pth", "pt_inception",
     "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"),
    ("inception_v3_google-0cc3c7bd.pth", "torchvision_inception_v3",
     "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"),
)
#: Below this many samples per set FID is strongly biased (a warning; 2048 = the feature dimension).
FID_MIN_SAMPLES = 2048


class FewSamplesWarning(EchoKDMWarning):
    """FID or FVD from fewer samples than the feature dimension: biased upwards, compare only at equal counts."""


# ---------------------------------------------------------------------------------------------
# the Fréchet distance
# ---------------------------------------------------------------------------------------------


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (``float64``, unbiased) of features ``(N, D)``, N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues set to 0)."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet (2-Wasserstein²) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``|mu1 - mu2|² + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2})``, with the trace term
    computed as ``Tr((s1^{1/2} sigma2 s1^{1/2})^{1/2})`` (``s1^{1/2}`` the symmetric root), which has
    the same eigenvalues and stays real and stable for singular covariances (few samples), where
    ``scipy.linalg.sqrtm(sigma1 @ sigma2)`` may return complex noise.

    Examples
    --------
    >>> frechet_distance([0.0], [[1.0]], [3.0], [[4.0]])  # (3 - 0)² + (1 - 2)²
    10.0
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = len(mu1)
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}")
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1  # (D, D), symmetric PSD
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (middle + middle.T)), 0.0, None)).sum())
    value = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * trace_root)
    return max(value, 0.0)


def fid_from_features(real: Any, generated: Any) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(generated))


def warn_few_samples(name: str, n: int, minimum: int, stacklevel: int = 3) -> str | None:
    """Issue (and return) a :class:`FewSamplesWarning` line when ``n < minimum``; None otherwise."""
    if n >= minimum:
        return None
    note = (f"{name} from {n} samples per set (fewer than {minimum}): biased upwards; compare methods only at "
            "equal sample counts")
    warnings.warn(note, FewSamplesWarning, stacklevel=stacklevel)
    return note


def frechet_inception_distance(real: Any, generated: Any, extractor: Callable[[np.ndarray], np.ndarray], *,
                               batch_size: int = 32, warn: bool = True) -> float:
    """FID between two sets of frames.

    Parameters
    ----------
    real, generated : numpy.ndarray
        ``float32`` ``(N, H, W)`` frames in [0, 1] (at least 2 each).
    extractor : callable
        Frames ``(n, H, W)`` → features ``(n, D)`` (e.g. from :func:`load_fid_extractor`; tests pass
        a small random network).
    batch_size : int
        Frames per call of ``extractor``.
    warn : bool
        Issue a :class:`FewSamplesWarning` below :data:`FID_MIN_SAMPLES` frames per set.
    """
    real, generated = np.asarray(real, np.float32), np.asarray(generated, np.float32)
    if warn:
        warn_few_samples("FID", min(len(real), len(generated)), FID_MIN_SAMPLES)
    return fid_from_features(batched_features(real, extractor, batch_size),
                             batched_features(generated, extractor, batch_size))


def batched_features(samples: np.ndarray, extractor: Callable[[np.ndarray], np.ndarray], batch_size: int) -> np.ndarray:
    """``extractor`` over ``samples`` in batches of ``batch_size``, stacked ``float64`` ``(N, D)``."""
    return np.concatenate([np.asarray(extractor(samples[i:i + batch_size]), np.float64)
                           for i in range(0, len(samples), batch_size)])


# ---------------------------------------------------------------------------------------------
# weights: local path, torch hub cache, download, or None
# ---------------------------------------------------------------------------------------------


def _hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_feature_weights(weights: str | os.PathLike | None, env: str,
                            files: Sequence[tuple[str, str, str]], *, download: bool = True,
                            what: str = "FID") -> tuple[Path | None, str | None, str | None]:
    """Find a feature network's weights: ``(path, network, note)``.

    ``weights`` (else ``$env``) is a file (its network is the one whose file name it has, else the
    first) or a folder holding one of ``files`` (``(name, network, url)``, tried in order); a path
    that does not exist, or a folder without any of the files, raises ``FileNotFoundError``. Without
    a local path: torch hub's cache, then (``download``) each URL into that cache. When nothing
    works, ``path`` and ``network`` are None and ``note`` says why in one line and how to give the
    weights offline.
    """
    given = weights if weights is not None else (os.environ.get(env) or None)
    if given is not None:
        path = Path(given).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: {what} weights not found (no such file or folder)")
        if path.is_file():
            return path, next((net for name, net, _ in files if name == path.name), files[0][1]), None
        for name, net, _ in files:
            if (path / name).is_file():
                return path / name, net, None
        raise FileNotFoundError(f"{path}: holds none of {', '.join(name for name, _, _ in files)} ({what} weights)")
    cache = _hub_checkpoints()
    for name, net, _ in files:
        if (cache / name).is_file():
            return cache / name, net, None
    failure = "download disabled"
    if download:
        import torch

        for name, net, url in files:
            try:
                cache.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(cache / name), progress=False)
                return cache / name, net, None
            except Exception as exc:  # noqa: BLE001 - urllib / OSError: offline; the note says so
                failure = " ".join(f"{type(exc).__name__}: {exc}".split())[:100]
    return None, None, (f"{what} left out: no weights ({failure}); offline, set {env}=DIR or pass "
                        f"--{what.lower()}-weights DIR, DIR holding {files[0][0]}")


def read_state_dict(path: Path, what: str) -> dict:
    """The state dict in ``path`` (``torch.load(weights_only=True)``); ``ValueError`` naming the file if unreadable."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: name it
        raise ValueError(f"{path}: cannot read {what} weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


# ---------------------------------------------------------------------------------------------
# Inception-v3 pool3 features
# ---------------------------------------------------------------------------------------------


def _fid_blocks():
    """pytorch-fid's patched Inception blocks (TensorFlow's average pools leave the padding out)."""
    import torch
    import torch.nn.functional as F
    from torchvision.models import inception as tv

    def avg(x):
        return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    class FIDInceptionA(tv.InceptionA):
        def forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(avg(x))], 1)

    class FIDInceptionC(tv.InceptionC):
        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                          self.branch7x7dbl_5):
                bd = layer(bd)
            return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(avg(x))], 1)

    class FIDInceptionE(tv.InceptionE):
        max_pool = False  # Mixed_7c max-pools its pool branch (a bug of the TF graph, kept by FID)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
            pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else avg(x)
            return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pool)], 1)

    class FIDInceptionE2(FIDInceptionE):
        max_pool = True

    return FIDInceptionA, FIDInceptionC, FIDInceptionE, FIDInceptionE2


_POOL3_BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                 "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                 "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool")


def fid_inception_v3(network: str = "pt_inception"):
    """An Inception-v3 (random weights) laid out as the weight file of ``network`` expects.

    ``"pt_inception"``: torchvision's ``Inception3`` with 1008 classes and pytorch-fid's patched
    blocks (keys of ``pt_inception-2015-12-05-6726825d.pth``); ``"torchvision_inception_v3"``:
    torchvision's own (1000 classes, auxiliary head; keys of ``inception_v3_google-0cc3c7bd.pth``).
    """
    from torchvision.models.inception import Inception3

    if network == "torchvision_inception_v3":
        return Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)
    if network != "pt_inception":
        raise ValueError(f"network must be 'pt_inception' or 'torchvision_inception_v3', got {network!r}")
    a, c, e, e2 = _fid_blocks()
    model = Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
    model.Mixed_5b, model.Mixed_5c, model.Mixed_5d = a(192, pool_features=32), a(256, pool_features=64), \
        a(288, pool_features=64)
    model.Mixed_6b, model.Mixed_6c = c(768, channels_7x7=128), c(768, channels_7x7=160)
    model.Mixed_6d, model.Mixed_6e = c(768, channels_7x7=160), c(768, channels_7x7=192)
    model.Mixed_7b, model.Mixed_7c = e(1280), e2(2048)
    return model


class InceptionPool3:
    """Callable frames ``(N, H, W)`` in [0, 1] → pool3 features ``float32`` ``(N, 2048)`` of an Inception3."""

    def __init__(self, model: Any, device: Any = "cpu", network: str = "pt_inception"):
        import torch

        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.network = network

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames, np.float32))[:, None].to(self.device)  # (N, 1, H, W)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        x = 2.0 * x - 1.0  # (N, 3, 299, 299) in [-1, 1], as the TF Inception expects
        with torch.no_grad():
            for name in _POOL3_BLOCKS:
                x = getattr(self.model, name)(x)
        return x.flatten(1).cpu().numpy()  # (N, 2048)


def load_fid_extractor(weights: str | os.PathLike | None = None, device: Any = "cpu", *,
                       download: bool = True) -> tuple[InceptionPool3 | None, str | None]:
    """``(extractor, note)``: the pool3 feature extractor with weights found by
    :func:`resolve_feature_weights` (``note`` None), or ``(None, note)`` when none could be had."""
    path, network, note = resolve_feature_weights(weights, FID_WEIGHTS_ENV, FID_FILES, download=download, what="FID")
    if path is None:
        return None, note
    model = fid_inception_v3(network)
    state = read_state_dict(path, "FID Inception")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: not {network} weights: {str(exc)[:300]}") from exc
    return InceptionPool3(model, device, network), None
