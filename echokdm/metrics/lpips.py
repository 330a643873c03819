"""LPIPS (Zhang et al., CVPR 2018) through the ``lpips`` package, with an offline backbone option.

The ``lpips`` package ships only the small linear heads of LPIPS v0.1; its AlexNet / VGG16
backbones are torchvision's ImageNet weights, downloaded on first use. Where that download is
impossible (CI, hospital networks), pass ``backbone``: a file, or a folder holding
``alexnet_features.pth`` / ``vgg16_features.pth`` (torchvision ``alexnet().features`` /
``vgg16().features`` state dicts, see ``shared/weights/lpips/README.md``), or set the
environment variable ``ECHOKDM_LPIPS_WEIGHTS`` to such a path.

One behaviour everywhere (``echokdm evaluate``, ``echokdm train kdm``, the demo, the notebooks):
a configured local backbone is used (its errors are raised: a wrong path is the user's to fix);
else torchvision's weights (its cache under ``$TORCH_HOME`` counts as local, else a download);
else :func:`lpips_metrics` leaves LPIPS out with a one-line note naming ``--lpips-backbone DIR``
and ``ECHOKDM_LPIPS_WEIGHTS=DIR``, and training with an LPIPS loss stops before any work
(:class:`LPIPSUnavailableError`).

Frames follow shared/DESIGN.md (grayscale, [0, 1], ``(H, W)`` or ``(N, H, W)``); they are
repeated to 3 channels and mapped to [-1, 1] as ``lpips`` expects. RGB frames ``(H, W, 3)`` or
``(N, H, W, 3)`` (faces, poses) are given with ``channel_axis=-1`` and go in as they are: on the
authors' example images (``tests/metrics/data``) the values are those of the ``lpips`` package. Models are
built on first use (not at import) and cached per ``(net, backbone, device)`` in the process.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from echokdm.errors import EchoKDMError, EchoKDMWarning

__all__ = ["LPIPSMetric", "lpips_distance", "lpips_metrics", "resolve_backbone", "load_backbone", "BACKBONE_FILES",
           "LPIPS_WEIGHTS_ENV", "OFFLINE_HINT", "LPIPSUnavailableError", "LPIPSSkippedWarning"]

LPIPS_WEIGHTS_ENV = "ECHOKDM_LPIPS_WEIGHTS"
#: File name of each backbone in a weights folder, and the torchvision model it belongs to.
BACKBONE_FILES = {"alex": ("alexnet_features.pth", "alexnet"), "vgg": ("vgg16_features.pth", "vgg16")}
#: How to give LPIPS a local backbone, as said in every LPIPS error and note.
OFFLINE_HINT = (f"set {LPIPS_WEIGHTS_ENV}=DIR or pass --lpips-backbone DIR (lpips_backbone=DIR in Python), DIR "
                "holding alexnet_features.pth / vgg16_features.pth (torchvision alexnet().features / "
                "vgg16().features state dicts)")


class LPIPSUnavailableError(EchoKDMError, RuntimeError):
    """No local LPIPS backbone is configured and torchvision's weights are neither cached nor downloadable.

    ``net`` is the LPIPS variant; ``reason`` says what failed, in one line without the remedy;
    ``message`` is the whole one-line message (default: ``reason`` and :data:`OFFLINE_HINT`).
    """

    def __init__(self, net: str, reason: str, message: str | None = None):
        self.net = net
        self.reason = reason
        super().__init__(message or f"LPIPS-{net}: {reason}; offline, {OFFLINE_HINT}")


class LPIPSSkippedWarning(EchoKDMWarning):
    """LPIPS was left out of an evaluation because no backbone could be had (the message says how to give one)."""

_MODELS: dict[tuple[str, str | None, str], Any] = {}  # (net, backbone file, device) -> lpips.LPIPS


def resolve_backbone(net: str, backbone: str | os.PathLike | None) -> Path | None:
    """The backbone weights file for ``net``: from ``backbone``, else ``$ECHOKDM_LPIPS_WEIGHTS``, else None.

    Raises ``FileNotFoundError`` naming the path when it does not exist, or naming the expected
    file when a folder lacks it.
    """
    if backbone is None:
        backbone = os.environ.get(LPIPS_WEIGHTS_ENV) or None
        if backbone is None:
            return None
    path = Path(backbone).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: LPIPS backbone weights not found (no such file or folder)")
    if path.is_dir():
        name, arch = BACKBONE_FILES[net]
        path = path / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing {name}, the torchvision {arch}().features state dict that "
                                    f"LPIPS-{net} needs (see shared/weights/lpips/README.md)")
    return path


def _slice_of_index(net_module: Any) -> dict[str, str]:
    """Map each torchvision ``features`` index (``"0"``, ``"3"``…) to the lpips slice holding it.

    ``lpips.pretrained_networks`` copies ``features[i]`` into ``slice<k>`` under the name
    ``str(i)``, so the mapping is read from the module itself, not hard-coded.
    """
    return {index: slice_name for slice_name, block in net_module.named_children()
            for index, _ in block.named_children()}


def _read_backbone(path: Path, net: str) -> dict:
    """The state dict in ``path`` (``torch.load(weights_only=True)``); ``ValueError`` naming the file if unreadable."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a damaged or foreign file
        raise ValueError(f"{path}: cannot read LPIPS backbone weights ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a torchvision {BACKBONE_FILES[net][1]}().features state dict, "
                         f"got {type(state).__name__}")
    return state


def load_backbone(model: Any, net: str, path: Path, state: dict | None = None) -> None:
    """Copy a torchvision ``features`` state dict from ``path`` into ``model.net``'s slices (strict).

    ``state`` is the file's content when already read. Raises ``ValueError`` naming the file
    when its keys or shapes do not fit.
    """
    state = _read_backbone(path, net) if state is None else state
    slices = _slice_of_index(model.net)
    mapped, unknown = {}, []
    for key, tensor in state.items():
        index, _, param = key.partition(".")
        if index in slices:
            mapped[f"{slices[index]}.{index}.{param}"] = tensor  # "3.weight" -> "slice2.3.weight"
        else:
            unknown.append(key)
    try:
        if unknown:
            raise RuntimeError(f"unexpected key(s) {unknown}")
        model.net.load_state_dict(mapped, strict=True)  # every parameter present, with its shape
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a torchvision {BACKBONE_FILES[net][1]}().features state dict: {exc}") from exc


def _build_model(net: str, path: Path | None) -> Any:
    """An ``lpips.LPIPS`` in eval mode with its backbone from ``path`` or torchvision's download."""
    import lpips

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        if path is not None:
            state = _read_backbone(path, net)  # a bad file fails before the network is built
            model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
            load_backbone(model, net, path, state)
            return model.eval()
        try:
            return lpips.LPIPS(net=net, pnet_rand=False, verbose=False).eval()
        except Exception as exc:  # urllib / OSError / RuntimeError from the torchvision download
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
            detail = detail if len(detail) <= 120 else detail[:117] + "..."
            raise LPIPSUnavailableError(
                net, f"torchvision's ImageNet backbone weights are not in its cache ($TORCH_HOME) and could not be "
                     f"downloaded ({detail})") from exc


class LPIPSMetric:
    """LPIPS v0.1 distance between grayscale or RGB frames, one value per frame pair (0 = identical).

    Parameters
    ----------
    net : {"alex", "vgg"}
        Backbone: "alex" (the paper's LPIPS_alx) or "vgg" (LPIPS_vgg).
    backbone : str or os.PathLike, optional
        Local backbone weights: a ``.pth`` file or a folder holding ``alexnet_features.pth`` /
        ``vgg16_features.pth``. Default: ``$ECHOKDM_LPIPS_WEIGHTS`` if set, else torchvision's
        download (:class:`LPIPSUnavailableError`, a ``RuntimeError`` naming the offline options, if
        that fails).
    device : str or torch.device
        Where the network runs.

    Examples
    --------
    >>> metric = LPIPSMetric("alex", backbone="../shared/weights/lpips")  # doctest: +SKIP
    >>> metric(generated_frames, reference_frames)  # (N,) float64              # doctest: +SKIP
    """

    def __init__(self, net: str = "alex", backbone: str | os.PathLike | None = None, device: Any = "cpu") -> None:
        if net not in BACKBONE_FILES:
            raise ValueError(f"net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
        self.net = net
        self.backbone = resolve_backbone(net, backbone)
        self.device = str(device)
        self._model = None

    @property
    def model(self) -> Any:
        """The ``lpips.LPIPS`` module on ``device`` (built on first use, shared in the process)."""
        if self._model is None:
            key = (self.net, None if self.backbone is None else str(self.backbone.resolve()), self.device)
            if key not in _MODELS:
                _MODELS[key] = _build_model(self.net, self.backbone).to(self.device)
            self._model = _MODELS[key]
        return self._model

    def _to_input(self, frames: Any) -> Any:
        """Frames in [0, 1], grayscale ``(N, H, W)`` (repeated to RGB) or RGB ``(N, H, W, 3)``, -> float32
        tensor ``(N, 3, H, W)`` in [-1, 1] on ``device``."""
        import torch

        if isinstance(frames, np.ndarray):
            frames = np.array(frames, dtype=np.float32)  # a writable copy (inputs may be read-only views)
        x = torch.as_tensor(frames).detach().to(self.device, torch.float32) * 2.0 - 1.0  # (N, H, W[, 3])
        if x.ndim == 4:
            if x.shape[-1] != 3:
                raise ValueError(f"LPIPS takes grayscale (N, H, W) or RGB (N, H, W, 3) frames, got {tuple(x.shape)}")
            return x.permute(0, 3, 1, 2)  # (N, 3, H, W)
        return x[:, None].expand(-1, 3, -1, -1)  # (N, 3, H, W)

    def __call__(self, generated: Any, reference: Any, *, batch_size: int = 32,
                 channel_axis: int | None = None) -> np.ndarray | np.float64:
        """LPIPS between ``generated`` and ``reference`` frames, one value per frame.

        Parameters
        ----------
        generated, reference : numpy.ndarray or torch.Tensor
            ``(H, W)`` or ``(N, H, W)`` grayscale frames in [0, 1], same shape (H, W >= 32); with
            ``channel_axis=-1`` RGB frames ``(H, W, 3)`` or ``(N, H, W, 3)``, which go into the
            network as they are (grayscale frames are repeated to three channels).
        channel_axis : {None, -1}
            None: grayscale; -1: channels last (RGB).
        batch_size : int
            Frame pairs per forward pass.

        Returns
        -------
        numpy.float64 or numpy.ndarray
            One LPIPS value per frame (>= 0; 0 for identical frames): scalar, or ``(N,)`` float64.
        """
        import torch

        from echokdm.metrics.image import frame_stacks

        a, b, batched = frame_stacks(generated, reference, ("generated", "reference"),
                                     channel_axis=channel_axis)  # (N, H, W) or (N, H, W, 3) each
        if min(a.shape[1:3]) < 32:
            raise ValueError(f"LPIPS needs frames of at least 32 x 32 pixels, got {a.shape[1:3]}")
        if channel_axis is not None and a.shape[-1] != 3:
            raise ValueError(f"LPIPS takes RGB frames (..., H, W, 3) with channel_axis=-1, got {a.shape[1:]}")
        values = np.empty(a.shape[0])
        with torch.inference_mode():
            for start in range(0, a.shape[0], batch_size):
                stop = start + batch_size
                out = self.model(self._to_input(a[start:stop]), self._to_input(b[start:stop]))  # (n, 1, 1, 1)
                values[start:stop] = out.reshape(-1).double().cpu().numpy()
        return values if batched else np.float64(values[0])

    def features(self, frames: Any) -> list[Any]:
        """Unit-normalised backbone features of ``frames``, scaled by the LPIPS linear weights.

        Parameters
        ----------
        frames : numpy.ndarray or torch.Tensor
            ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB frames in [0, 1].

        Returns
        -------
        list of torch.Tensor
            One float32 ``(N, C_l, H_l, W_l)`` tensor per layer ``l``: ``sqrt(w_l) * f_l / |f_l|``,
            so that ``LPIPS(a, b) = sum_l mean_{h,w} sum_c (F_l(a) - F_l(b))^2``. Used by
            :func:`echokdm.metrics.privacy.nearest_distance` to compare many frames at once.
        """
        import lpips
        import torch

        model = self.model
        with torch.inference_mode():
            outs = model.net(model.scaling_layer(self._to_input(frames)))
            feats = []
            for layer, out in zip(model.lins, outs, strict=True):
                weight = layer.model[-1].weight.reshape(1, -1, 1, 1)  # (1, C, 1, 1), >= 0 in LPIPS v0.1
                feats.append(lpips.normalize_tensor(out) * weight.clamp(min=0).sqrt())
        return feats


def lpips_distance(generated: Any, reference: Any, net: str = "alex", backbone: str | os.PathLike | None = None,
                   device: Any = "cpu", *, channel_axis: int | None = None) -> np.ndarray | np.float64:
    """LPIPS per frame in one call: ``LPIPSMetric(net, backbone, device)(generated, reference)``
    (``channel_axis=-1`` for RGB frames ``(..., H, W, 3)``)."""
    return LPIPSMetric(net, backbone, device)(generated, reference, channel_axis=channel_axis)


def lpips_metrics(nets: Sequence[str], backbone: str | os.PathLike | None = None,
                  device: Any = "cpu") -> tuple[dict[str, LPIPSMetric], str | None]:
    """LPIPS scorers with their backbones loaded, or a one-line note saying which were left out and why.

    A configured backbone (``backbone``, else ``$ECHOKDM_LPIPS_WEIGHTS``) is used and its errors are
    raised (``FileNotFoundError`` / ``ValueError`` naming the path). Without one, torchvision's
    weights are used from its cache or downloaded; the variants whose weights cannot be had are
    left out and named in the note.

    Parameters
    ----------
    nets : sequence of {"alex", "vgg"}
        LPIPS variants wanted (empty: none, no note).
    backbone : str or os.PathLike, optional
        Local backbone file or folder (see :class:`LPIPSMetric`).
    device : str or torch.device

    Returns
    -------
    metrics : dict
        ``net -> LPIPSMetric`` for every variant that can score.
    note : str or None
        ``"LPIPS-alex, LPIPS-vgg skipped: ...; to score LPIPS offline, set ECHOKDM_LPIPS_WEIGHTS=DIR or
        pass --lpips-backbone DIR ..."`` (one line), or None when nothing was left out.

    Examples
    --------
    >>> metrics, note = lpips_metrics(("alex", "vgg"))  # doctest: +SKIP
    >>> if note:
    ...     print("note:", note)                         # doctest: +SKIP
    """
    metrics, missing = {}, []
    for net in nets:
        metric = LPIPSMetric(net, backbone, device)
        try:
            _ = metric.model  # loads the backbone now (cache or download)
        except LPIPSUnavailableError as exc:
            missing.append(exc)
            continue
        metrics[net] = metric
    if not missing:
        return metrics, None
    names = ", ".join(f"LPIPS-{exc.net}" for exc in missing)
    return metrics, f"{names} skipped: {missing[0].reason}; to score LPIPS offline, {OFFLINE_HINT}"
