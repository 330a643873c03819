"""The adapter API: what the generic KDM core needs to know about one keypoint domain.

An :class:`Adapter` bundles, for one domain (echo, face, pose):

* ``schema`` — the :class:`~echokdm.adapters._render.KeypointSchema` (count, names, lines,
  colours, flip permutation);
* :meth:`Adapter.render` — the conditioning image x̂_K of the KDM paper;
* :meth:`Adapter.read_keypoints` / :meth:`Adapter.write_keypoints` — keypoint file parsers;
* :meth:`Adapter.load_manifest` and :meth:`Adapter.clip_loader` — the training data: a
  manifest, and per manifest row a :class:`~echokdm.data.pairs.TrainingClip` (frames,
  keypoints, frame pairs and their flows at the working size);
* :meth:`Adapter.detect_keypoints` — keypoint re-detection on generated frames, for the
  keypoint-distance metric (MD);
* ``default_config`` — the default ``echokdm train kdm`` config (``configs/<...>.yaml``).

The core (datasets, models, pipelines, training, evaluation) holds an adapter *name*, taken from
the config (``data.adapter``) or from a pipeline folder (``adapter`` in ``model_index.json``), and resolves it
with :func:`get_adapter`; it contains no branch on the domain. numpy only at import.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from echokdm.adapters._render import KeypointSchema, render_schema

__all__ = ["DEFAULT_ADAPTER", "Adapter", "SequenceAdapter", "available_adapters", "get_adapter", "register_adapter"]

#: The adapter of configs and pipeline folders that name none (echokdm's first domain).
DEFAULT_ADAPTER = "echo"

#: The repository's ``configs/`` folder (present in a source checkout, not in a wheel).
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


class Adapter:
    """One keypoint domain, as seen by the generic KDM core. Subclasses fill in the data hooks.

    Attributes
    ----------
    name : str
        Registry name (``"echo"``, ``"face"``, ``"pose"`` …), stored in pipeline folders.
    schema : KeypointSchema
    default_config : str
        Default training config, relative to the repository's ``configs/`` folder.
    keypoint_sources, flow_sources : tuple of str
        Allowed values of the training config's ``data.keypoints`` and ``data.flows``; the
        first of each is the default.
    thickness : float or callable
        Line width in pixels of :meth:`render`, or ``thickness((H, W)) -> float``.
    frame_channels : tuple of int
        Frame channel counts the adapter's data come in (``data.channels``): ``(1,)`` for
        grayscale echo, ``(1, 3)`` for faces and poses (luma or RGB).
    """

    name: str = ""
    schema: KeypointSchema
    default_config: str = ""
    keypoint_sources: tuple[str, ...] = ()
    flow_sources: tuple[str, ...] = ()
    frame_channels: tuple[int, ...] = (1,)
    thickness: float | Callable[[tuple[int, int]], float] = 1.0

    # -- keypoints --------------------------------------------------------------------------------
    @property
    def n_keypoints(self) -> int:
        """Number of keypoints ``N``."""
        return self.schema.n_keypoints

    def render(self, keypoints: np.ndarray, shape: tuple[int, int], *, thickness: float | None = None) -> np.ndarray:
        """The conditioning image x̂_K: ``float32`` ``(..., 3, H, W)`` RGB in [0, 1] of ``(..., N, 2)``
        keypoints ``(x, y)`` pixels (NaN keypoints break their lines, never drawn at the origin)."""
        if thickness is None:
            thickness = self.thickness(tuple(shape)) if callable(self.thickness) else self.thickness
        return render_schema(self.schema, keypoints, shape, thickness=thickness)

    def read_keypoints(self, path: str | os.PathLike) -> np.ndarray:
        """``float64`` ``(T, N, 2)`` keypoints of a file (see :mod:`echokdm.io.keypoint_files`)."""
        from echokdm.io.keypoint_files import read_keypoint_file

        return read_keypoint_file(path, n_keypoints=self.n_keypoints)

    def write_keypoints(self, path: str | os.PathLike, keypoints: np.ndarray, *, overwrite: bool = False) -> Path:
        """Write ``(N, 2)`` or ``(T, N, 2)`` keypoints as a wide CSV (the generic format)."""
        from echokdm.io.keypoint_files import write_keypoints_csv

        return write_keypoints_csv(path, keypoints, overwrite=overwrite)

    @property
    def keypoint_suffix(self) -> str:
        """File suffix of :meth:`write_keypoints` for one frame."""
        return ".csv"

    def check_keypoints(self, keypoints: Any, name: str = "keypoints") -> np.ndarray:
        """``float32`` ``(N, 2)`` or ``(T, N, 2)``, or a ValueError naming ``name`` and the adapter."""
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.ndim not in (2, 3) or kp.shape[-2:] != (self.n_keypoints, 2):
            raise ValueError(f"{name} must have shape ({self.n_keypoints}, 2) or (T, {self.n_keypoints}, 2) "
                             f"(x, y pixels) for adapter {self.name!r}, got {kp.shape}")
        return kp

    # -- training data ----------------------------------------------------------------------------
    def check_data_config(self, data: Any) -> None:
        """Fill ``data.keypoints`` / ``data.flows`` left at None with the defaults and check both.

        ``data`` is the training config's ``data`` section (duck-typed). Raises ValueError
        naming the key, the value and the allowed values.
        """
        for key, allowed in (("keypoints", self.keypoint_sources), ("flows", self.flow_sources)):
            value = getattr(data, key)
            if value is None:
                setattr(data, key, allowed[0])
            elif value not in allowed:
                raise ValueError(f"data.{key}: {value!r} is not available for adapter {self.name!r}; "
                                 f"choose one of {', '.join(allowed)}")
        if data.flows == "cache" and not data.flow_cache:
            raise ValueError("data.flows: cache needs data.flow_cache (the output folder of echokdm flow)")
        channels = getattr(data, "channels", 1)
        if channels not in self.frame_channels:
            raise ValueError(f"data.channels: {channels!r} is not available for adapter {self.name!r}; "
                             f"choose one of {', '.join(map(str, self.frame_channels))}")

    def load_manifest(self, path: str | os.PathLike):
        """The training manifest as a DataFrame (columns ``clip_id``, ``patient_id``, ``split`` …)."""
        raise NotImplementedError

    def clip_loader(self, manifest_path: str | os.PathLike, data: Any) -> Callable:
        """``loader(row, rng) -> TrainingClip`` for the rows of ``manifest_path`` (one-time setup here)."""
        raise NotImplementedError

    # -- appearance augmentation ----------------------------------------------------------------
    def augment_appearance(self, images: Any, generator: Any) -> Any:
        """Random changes of how frames ``(B, C, H, W)`` in [0, 1] look (not of what they show), for
        training on synthetic data that will meet real data (``data.appearance_augment``). Every
        draw comes from the CPU ``torch.Generator``: two calls from the same generator state give
        the same change (training pairs share theirs). The default changes nothing."""
        return images

    # -- detection --------------------------------------------------------------------------------
    def detect_keypoints(self, frames: np.ndarray, model: Any = None) -> np.ndarray:
        """Keypoints ``(T, N, 2)`` re-detected on frames ``(T, H, W)`` or RGB
        ``(T, H, W, 3)`` in [0, 1] (NaN where not found)."""
        raise NotImplementedError(f"adapter {self.name!r} has no keypoint detector")

    @property
    def default_config_path(self) -> Path:
        """``configs/<default_config>`` of a source checkout (may not exist in an installed wheel)."""
        return CONFIGS_DIR / self.default_config

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.n_keypoints} keypoints>"


class SequenceAdapter(Adapter):
    """An adapter for image sequences or videos with a keypoint file per frame (face, pose).

    Training data: a sequence manifest (:mod:`echokdm.data.sequences`); keypoints from the
    files (``data.keypoints: files``); flows shipped with the dataset (``dataset``: the
    ``flows_path`` column, e.g. the exact flows of :mod:`echokdm.data.procedural`), cached by
    ``echokdm flow`` (``cache``) or a thin-plate spline through the keypoints (``tps``).

    Parameters
    ----------
    name, schema, default_config, thickness
        See :class:`Adapter`.
    readers : mapping
        ``{suffix: reader(path) -> (T, N, 2) or (N, 2)}`` overriding the generic readers.
    writer : (suffix, writer(path, (N, 2), overwrite=...)), optional
        The native one-frame keypoint file format (default: wide CSV).
    detector : callable, optional
        ``detector(frames (T, H, W), model) -> (T, N, 2)``.
    """

    keypoint_sources = ("files",)
    flow_sources = ("dataset", "cache", "tps")
    frame_channels = (1, 3)

    def __init__(self, name: str, schema: KeypointSchema, default_config: str, *,
                 readers: Mapping[str, Callable] | None = None,
                 writer: tuple[str, Callable] | None = None,
                 detector: Callable | None = None,
                 thickness: float | Callable[[tuple[int, int]], float] = 1.0):
        self.name, self.schema, self.default_config = name, schema, default_config
        self.readers = dict(readers or {})
        self.writer = writer
        self.detector = detector
        self.thickness = thickness

    def read_keypoints(self, path: str | os.PathLike) -> np.ndarray:
        path = Path(path)
        reader = self.readers.get(path.suffix.lower())
        if reader is None:
            return super().read_keypoints(path)
        kp = np.asarray(reader(path), dtype=np.float64)
        return self.check_keypoints(kp[None] if kp.ndim == 2 else kp, str(path)).astype(np.float64)

    def write_keypoints(self, path: str | os.PathLike, keypoints: np.ndarray, *, overwrite: bool = False) -> Path:
        if self.writer is None or np.asarray(keypoints).ndim != 2:
            return super().write_keypoints(path, keypoints, overwrite=overwrite)
        return self.writer[1](path, self.check_keypoints(keypoints), overwrite=overwrite)

    @property
    def keypoint_suffix(self) -> str:
        return ".csv" if self.writer is None else self.writer[0]

    def load_manifest(self, path: str | os.PathLike):
        from echokdm.data.sequences import load_sequence_manifest

        return load_sequence_manifest(path)

    def clip_loader(self, manifest_path: str | os.PathLike, data: Any) -> Callable:
        from echokdm.data.sequences import sequence_clip_loader

        return sequence_clip_loader(data, self.read_keypoints)

    def detect_keypoints(self, frames: np.ndarray, model: Any = None) -> np.ndarray:
        if self.detector is None:
            return super().detect_keypoints(frames, model)
        return self.detector(frames, model)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

#: Built-in adapters: name -> "module:attribute", imported on first use.
_BUILTIN = {
    "echo": "echokdm.adapters.echo:ECHO_ADAPTER",
    "face": "echokdm.adapters.face:FACE_ADAPTER",
    "pose": "echokdm.adapters.pose:POSE_ADAPTER",
    "pose_coco18": "echokdm.adapters.pose:POSE_COCO18_ADAPTER",
}
_REGISTERED: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter, *, overwrite: bool = False) -> Adapter:
    """Make ``adapter`` available to :func:`get_adapter` (and so to configs and pipelines) by its name."""
    if not isinstance(adapter, Adapter) or not adapter.name:
        raise ValueError(f"expected a named Adapter, got {adapter!r}")
    if (adapter.name in _REGISTERED or adapter.name in _BUILTIN) and not overwrite:
        raise ValueError(f"an adapter named {adapter.name!r} exists; pass overwrite=True to replace it")
    _REGISTERED[adapter.name] = adapter
    return adapter


def available_adapters() -> tuple[str, ...]:
    """Names :func:`get_adapter` accepts."""
    return tuple(sorted(set(_BUILTIN) | set(_REGISTERED)))


def get_adapter(name: str | Adapter) -> Adapter:
    """The adapter registered as ``name`` (an :class:`Adapter` is returned as it is).

    Raises
    ------
    ValueError
        Unknown name; the message lists the available ones.

    Examples
    --------
    >>> get_adapter("face").n_keypoints, get_adapter("pose").n_keypoints
    (68, 25)
    """
    if isinstance(name, Adapter):
        return name
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise ValueError(f"unknown keypoint adapter {name!r}; available: {', '.join(available_adapters())}")
    module, attribute = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), attribute)
