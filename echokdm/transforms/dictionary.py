"""MONAI dictionary transforms (``Xxxd``) wrapping :mod:`echokdm.transforms.array`.

Each copies the dictionary (the input is never modified), works on ``self.key_iterator(d)``
and takes ``allow_missing_keys``. Transforms that turn one kind of data into another
(mask -> keypoints, keypoints -> image) write in place by default, as MONAI does; pass
``output_keys`` to keep the input (e.g. ``BloodPoolKeypointsd("mask", output_keys="keypoints")``).
Aliases ``XxxD = XxxDict = Xxxd``.

The joint augmentations draw their parameters once per call and apply them to every key of
one sample: :class:`RandSpatialEchod` moves images, masks, keypoints and flows together;
:class:`RandIntensityEchod` changes image keys only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import ensure_tuple

from echokdm.adapters.echo import ECHO_FLIP_PERMUTATION, render_keypoints
from echokdm.transforms.array import (
    BloodPoolKeypoints,
    EchoAffine,
    KeypointsToHeatmaps,
    KeypointsToMask,
    RandIntensityEcho,
    RenderKeypoints,
    TracingsToKeypoints,
    check_spatial_size,
)

__all__ = [
    "BloodPoolKeypointsd", "BloodPoolKeypointsD", "BloodPoolKeypointsDict",
    "TracingsToKeypointsd", "TracingsToKeypointsD", "TracingsToKeypointsDict",
    "KeypointsToMaskd", "KeypointsToMaskD", "KeypointsToMaskDict",
    "RenderKeypointsd", "RenderKeypointsD", "RenderKeypointsDict",
    "KeypointsToHeatmapsd", "KeypointsToHeatmapsD", "KeypointsToHeatmapsDict",
    "RandSpatialEchod", "RandSpatialEchoD", "RandSpatialEchoDict", "RandSpatiald",
    "RandIntensityEchod", "RandIntensityEchoD", "RandIntensityEchoDict",
]


def _output_keys(keys: tuple[Hashable, ...], output_keys: KeysCollection | None) -> tuple[Hashable, ...]:
    """``output_keys`` as a tuple matching ``keys`` (default: the keys themselves)."""
    if output_keys is None:
        return keys
    out = ensure_tuple(output_keys)
    if len(out) != len(keys):
        raise ValueError(f"output_keys {out} must have one entry per key {keys}")
    return out


class _ToSpatial(MapTransform):
    """Keypoints -> an (H, W) output whose size comes from ``spatial_size`` or ``ref_key``."""

    def __init__(self, keys: KeysCollection, transform: Any, ref_key: Hashable | None,
                 output_keys: KeysCollection | None, allow_missing_keys: bool) -> None:
        super().__init__(keys, allow_missing_keys)
        if ref_key is None and transform.spatial_size is None:
            raise ValueError("give spatial_size (H, W) or ref_key (a key whose array ends in H, W)")
        self.transform = transform
        self.ref_key = ref_key
        self.output_keys = _output_keys(self.keys, output_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        size = None
        if self.ref_key is not None:
            if self.ref_key not in d:
                raise KeyError(f"ref_key {self.ref_key!r} (giving the output size) is not in the data "
                               f"(keys: {list(d)})")
            size = tuple(d[self.ref_key].shape[-2:])
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.transform(d[key], spatial_size=size)
        return d


class _WithFlagsd(MapTransform):
    """Writes ``converter.with_flags(value)`` to ``<output key>`` and ``<output key><flags_suffix>``."""

    converter: Any
    output_keys: tuple
    flags_suffix: str

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key], d[f"{out_key}{self.flags_suffix}"] = self.converter.with_flags(d[key])
        return d


class BloodPoolKeypointsd(_WithFlagsd):
    """Dictionary :class:`~echokdm.transforms.array.BloodPoolKeypoints`.

    Masks ``(..., H, W)`` at ``keys`` -> ``float32`` ``(..., 40, 2)`` ``(x, y)`` keypoints at
    ``output_keys`` (default: in place), and the flags (str or list of str, see
    :meth:`BloodPoolKeypoints.with_flags`) at ``<output key><flags_suffix>``. With
    ``on_error="nan"`` a mask without keypoints gives a NaN row and ``"failed: <reason>"``.
    """

    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None,
                 apex_direction: str | tuple[float, float] | None = "auto", sigma: float = 0.7,
                 min_area: int = 40, on_error: str = "raise", flags_suffix: str = "_flags",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BloodPoolKeypoints(apex_direction, sigma, min_area, on_error)
        self.output_keys = _output_keys(self.keys, output_keys)
        self.flags_suffix = flags_suffix



class TracingsToKeypointsd(_WithFlagsd):
    """Dictionary :class:`~echokdm.transforms.array.TracingsToKeypoints`.

    Tracings (``(K, 4)``, ``(N, K, 4)`` or ``{frame: (K, 4)}``) at ``keys`` -> keypoints of the
    same structure at ``output_keys`` (default: in place), flags at ``<output key><flags_suffix>``.
    """

    def __init__(self, keys: KeysCollection, output_keys: KeysCollection | None = None,
                 on_error: str = "raise", flags_suffix: str = "_flags", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = TracingsToKeypoints(on_error)
        self.output_keys = _output_keys(self.keys, output_keys)
        self.flags_suffix = flags_suffix



class KeypointsToMaskd(_ToSpatial):
    """Dictionary :class:`~echokdm.transforms.array.KeypointsToMask`.

    Keypoints ``(..., 40, 2)`` at ``keys`` -> ``uint8`` masks ``(..., H, W)`` at ``output_keys``
    (default: in place). ``(H, W)`` is ``spatial_size`` or the last two axes of ``d[ref_key]``
    (which wins when both are given).
    """

    def __init__(self, keys: KeysCollection, ref_key: Hashable | None = None,
                 spatial_size: Sequence[int] | None = None, output_keys: KeysCollection | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, KeypointsToMask(spatial_size), ref_key, output_keys, allow_missing_keys)


class RenderKeypointsd(_ToSpatial):
    """Dictionary :class:`~echokdm.transforms.array.RenderKeypoints`.

    Keypoints ``(..., N, 2)`` at ``keys`` -> ``float32`` ``(..., 3, H, W)`` conditioning images
    at ``output_keys`` (default: in place); size from ``spatial_size`` or ``d[ref_key]``.
    ``renderer`` defaults to the echo adapter's.
    """

    def __init__(self, keys: KeysCollection, ref_key: Hashable | None = None,
                 spatial_size: Sequence[int] | None = None, thickness: float = 1.0,
                 renderer: Callable[..., np.ndarray] = render_keypoints,
                 output_keys: KeysCollection | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RenderKeypoints(spatial_size, thickness, renderer), ref_key, output_keys,
                         allow_missing_keys)


class KeypointsToHeatmapsd(_ToSpatial):
    """Dictionary :class:`~echokdm.transforms.array.KeypointsToHeatmaps`.

    Keypoints ``(..., N, 2)`` at ``keys`` -> ``float32`` ``(..., N, H, W)`` Gaussian heatmaps
    (``sigma`` pixels) at ``output_keys`` (default: in place); size from ``spatial_size`` or
    ``d[ref_key]``.
    """

    def __init__(self, keys: KeysCollection, ref_key: Hashable | None = None,
                 spatial_size: Sequence[int] | None = None, sigma: float = 2.0,
                 output_keys: KeysCollection | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, KeypointsToHeatmaps(spatial_size, sigma), ref_key, output_keys, allow_missing_keys)


class RandSpatialEchod(RandomizableTransform, MapTransform):
    """One random affine moving images, masks, keypoints and flows of a sample together.

    Per call it draws (once) a rotation ``angle ~ U(-rotate_range, rotate_range)`` radians, an
    isotropic ``scale ~ U(scale_range)``, a shift ``(dx, dy) ~ U(-translate_range, translate_range)``
    pixels and a horizontal flip with probability ``flip_prob``, about the image centre
    (:meth:`EchoAffine.from_parameters`), and applies it to

    * ``image_keys``: ``(..., H, W)`` images, bilinear, zeros outside;
    * ``mask_keys``: ``(..., H, W)`` label masks, nearest neighbour, zeros outside;
    * ``keypoint_keys``: ``(..., N, 2)`` ``(x, y)`` points mapped forward, re-labelled on a flip
      (echo: ``j <-> 39 - j``, since image-left and image-right swap);
    * ``flow_keys``: ``(..., 2, H, W)`` backward flows, ``f'(q') = A f(A⁻¹ (q' - t))``.

    All image, mask and flow keys must share ``(H, W)``; with keypoint keys only, give
    ``spatial_size``. Output sizes equal input sizes. numpy or torch in, same kind out.
    ``self.affine`` holds the last :class:`EchoAffine` applied (None when skipped).
    """

    def __init__(self, image_keys: KeysCollection = (), mask_keys: KeysCollection = (),
                 keypoint_keys: KeysCollection = (), flow_keys: KeysCollection = (), prob: float = 1.0,
                 rotate_range: float = np.pi / 12, scale_range: Sequence[float] = (0.9, 1.1),
                 translate_range: float = 5.0, flip_prob: float = 0.0, spatial_size: Sequence[int] | None = None,
                 flip_permutation: Sequence[int] = ECHO_FLIP_PERMUTATION, allow_missing_keys: bool = False) -> None:
        self.kinds = {}
        for kind, keys in (("image", image_keys), ("mask", mask_keys), ("keypoints", keypoint_keys),
                           ("flow", flow_keys)):
            for key in ensure_tuple(keys):
                if key in self.kinds:
                    raise ValueError(f"key {key!r} is given both as {self.kinds[key]} and as {kind}")
                self.kinds[key] = kind
        if not self.kinds:
            raise ValueError("give at least one of image_keys, mask_keys, keypoint_keys, flow_keys")
        MapTransform.__init__(self, tuple(self.kinds), allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {tuple(scale_range)}")
        self.rotate_range, self.scale_range = float(rotate_range), tuple(scale_range)
        self.translate_range, self.flip_prob = float(translate_range), float(flip_prob)
        self.spatial_size = None if spatial_size is None else check_spatial_size(spatial_size)
        self.flip_permutation = tuple(flip_permutation)
        self.affine: EchoAffine | None = None

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply, then angle, scale, shift and flip (always all, so streams align)."""
        super().randomize(None)
        self.angle = float(self.R.uniform(-self.rotate_range, self.rotate_range))
        self.scale = float(self.R.uniform(*self.scale_range))
        self.shift = self.R.uniform(-self.translate_range, self.translate_range, size=2)
        self.flip = bool(self.R.random_sample() < self.flip_prob)

    def _size(self, d: Mapping[Hashable, Any]) -> tuple[int, int]:
        sizes = {key: tuple(d[key].shape[-2:]) for key in self.key_iterator(d) if self.kinds[key] != "keypoints"}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"image, mask and flow keys must share (H, W), got {sizes}")
        if sizes:
            return next(iter(sizes.values()))
        if self.spatial_size is None:
            raise ValueError("only keypoint keys present: give spatial_size (H, W) to set the centre")
        return self.spatial_size

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        self.affine = None
        if not self._do_transform:
            return d
        self.affine = EchoAffine.from_parameters(self._size(d), angle=self.angle, scale=self.scale,
                                                 shift=self.shift, flip=self.flip,
                                                 flip_permutation=self.flip_permutation)
        apply = {"image": self.affine.image, "mask": self.affine.mask, "keypoints": self.affine.keypoints,
                 "flow": self.affine.flow}
        for key in self.key_iterator(d):
            d[key] = apply[self.kinds[key]](d[key])
        return d


class RandIntensityEchod(RandomizableTransform, MapTransform):
    """Random gain, gamma and speckle-like noise, the same parameters for every image key.

    ``keys`` are image keys only (e.g. the source and target frames of a pair): masks,
    keypoints and flows are never touched. Gain, gamma and speckle level are drawn once per
    call; each image gets its own noise field of that level (speckle is not a fixed pattern
    across frames). Images ``(..., H, W)`` floating in [0, 1]; see
    :func:`~echokdm.transforms.array.adjust_intensity`.
    """

    def __init__(self, keys: KeysCollection, prob: float = 1.0, gain_range: Sequence[float] = (0.8, 1.2),
                 gamma_range: Sequence[float] = (0.8, 1.25), speckle_range: Sequence[float] = (0.0, 0.1),
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.intensity = RandIntensityEcho(1.0, gain_range, gamma_range, speckle_range)

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> RandIntensityEchod:
        super().set_random_state(seed, state)
        self.intensity.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        self.intensity.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.intensity(d[key], randomize=False)
        return d


BloodPoolKeypointsD = BloodPoolKeypointsDict = BloodPoolKeypointsd
TracingsToKeypointsD = TracingsToKeypointsDict = TracingsToKeypointsd
KeypointsToMaskD = KeypointsToMaskDict = KeypointsToMaskd
RenderKeypointsD = RenderKeypointsDict = RenderKeypointsd
KeypointsToHeatmapsD = KeypointsToHeatmapsDict = KeypointsToHeatmapsd
RandSpatialEchoD = RandSpatialEchoDict = RandSpatialEchod
# nothing in it is echo-specific: the generic name, used by the domain-free training code
RandSpatiald = RandSpatialEchod
RandIntensityEchoD = RandIntensityEchoDict = RandIntensityEchod
