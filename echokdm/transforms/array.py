"""MONAI array transforms for LV keypoints: masks/tracings -> keypoints -> masks, images, heatmaps,
and the joint affine and intensity augmentations.

Conventions (shared/DESIGN.md). Keypoints are ``(..., 40, 2)`` ``(x, y)`` pixels (x = column,
y = row, integer = pixel centre, origin top-left), NaN rows where missing. Masks are ``uint8``
``(..., H, W)``, 1 = LV blood pool. Flows are ``(..., 2, H, W)`` (dx, dy) in pixels on the target
grid, pointing into the source. Every transform takes numpy arrays or torch tensors and returns
the kind it got (torch outputs on the input's device; a MONAI ``MetaTensor`` comes back as a
plain tensor, its metadata is not updated).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import RandomizableTransform, Transform

from echokdm.adapters.echo import ECHO_FLIP_PERMUTATION, render_keypoints
from echokdm.geometry.keypoints import N_KEYPOINTS, KeypointError, keypoints_to_mask, mask_keypoints, tracing_keypoints

__all__ = [
    "BloodPoolKeypoints",
    "TracingsToKeypoints",
    "KeypointsToMask",
    "RenderKeypoints",
    "KeypointsToHeatmaps",
    "EchoAffine",
    "RandIntensityEcho",
    "adjust_intensity",
    "check_spatial_size",
]

_ON_ERROR = ("raise", "nan")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array or (Meta)tensor (copied to the CPU when needed)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _like(out: np.ndarray, ref: Any) -> Any:
    """``out`` as the same kind as ``ref``: a torch tensor on ``ref``'s device, or numpy."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(out, device=ref.device)
    return out


def _check_on_error(on_error: str) -> str:
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")
    return on_error


def check_spatial_size(value: Any, name: str = "spatial_size") -> tuple[int, int]:
    """An ``(H, W)`` size as two positive ints; ``ValueError`` naming ``name`` otherwise (None included).

    Shared by the array and the dictionary transforms that take a ``spatial_size``.
    """
    if value is None:
        raise ValueError(f"{name} (H, W) is needed: pass it to the constructor or the call")
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be (H, W) with positive sizes, got {value!r}")
    return size  # type: ignore[return-value]


def _check_keypoints(kp: np.ndarray, n: int | None = N_KEYPOINTS) -> None:
    if kp.ndim < 2 or kp.shape[-1] != 2 or (n is not None and kp.shape[-2] != n):
        want = f"(..., {n}, 2)" if n is not None else "(..., N, 2)"
        raise ValueError(f"keypoints must have shape {want} (x, y), got {kp.shape}")


def _describe(geo_flags: Sequence[str]) -> str:
    return "; ".join(geo_flags)


# ---------------------------------------------------------------------------------------------
# masks and tracings -> keypoints
# ---------------------------------------------------------------------------------------------


class BloodPoolKeypoints(Transform):
    """LV blood-pool mask(s) -> the 40 keypoints (:func:`echokdm.geometry.keypoints.mask_keypoints`).

    Parameters
    ----------
    apex_direction : {"auto", "up", "down", "left", "right"} or (dx, dy) or None
        Rough direction of the apex in the image; ``"auto"`` (default) detects it from each
        mask's shape (:func:`echokdm.geometry.keypoints.detect_apex_direction`).
    sigma : float
        Boundary smoothing in pixels.
    min_area : int
        Smallest blood pool (pixels) accepted.
    on_error : {"raise", "nan"}
        ``"raise"``: a mask without keypoints raises :class:`KeypointError` naming its index.
        ``"nan"``: its keypoints are a NaN row set and the reason is in the flags
        (:meth:`with_flags`); use it for batches.

    Input: ``(H, W)``, ``(T, H, W)``, channel-first ``(1, H, W)`` or any ``(..., H, W)`` binary
    mask (numpy or torch). Output: ``float32`` ``(..., 40, 2)`` ``(x, y)`` pixels, same kind.
    """

    def __init__(self, apex_direction: str | tuple[float, float] | None = "auto", sigma: float = 0.7,
                 min_area: int = 40, on_error: str = "raise") -> None:
        self.apex_direction = apex_direction
        self.sigma = sigma
        self.min_area = min_area
        self.on_error = _check_on_error(on_error)

    def __call__(self, mask: Any) -> Any:
        return self.with_flags(mask)[0]

    def with_flags(self, mask: Any) -> tuple[Any, str | list[str]]:
        """Keypoints and flags.

        Returns
        -------
        keypoints : numpy.ndarray or torch.Tensor
            ``float32`` ``(..., 40, 2)``.
        flags : str or list of str
            For a ``(H, W)`` mask one string, otherwise one per mask in C order of the leading
            axes: ``""`` when clean, the observations of :class:`LVGeometry.flags` joined by
            ``"; "``, or ``"failed: <reason>"`` for a NaN row (``on_error="nan"``).
        """
        arr = _to_numpy(mask)
        if arr.ndim < 2:
            raise ValueError(f"mask must have shape (..., H, W), got {arr.shape}")
        flat = arr.reshape(-1, *arr.shape[-2:])  # (B, H, W)
        keypoints = np.full((len(flat), N_KEYPOINTS, 2), np.nan, dtype=np.float32)
        flags = []
        for i, one in enumerate(flat):
            try:
                geo = mask_keypoints(one, apex_direction=self.apex_direction, sigma=self.sigma,
                                     min_area=self.min_area)
            except KeypointError as err:
                if self.on_error == "raise":
                    index = tuple(int(k) for k in np.unravel_index(i, arr.shape[:-2]))
                    where = "mask" if not index else f"mask {index[0] if len(index) == 1 else index}"
                    raise KeypointError(f"{where}: {err}") from err
                flags.append(f"failed: {err}")
                continue
            keypoints[i] = geo.keypoints
            flags.append(_describe(geo.flags))
        out = keypoints.reshape(*arr.shape[:-2], N_KEYPOINTS, 2)
        return _like(out, mask), (flags[0] if arr.ndim == 2 else flags)


class TracingsToKeypoints(Transform):
    """EchoNet-style tracings -> the 40 keypoints (:func:`echokdm.geometry.keypoints.tracing_keypoints`).

    Parameters
    ----------
    on_error : {"raise", "nan"}
        As :class:`BloodPoolKeypoints`.

    Input: segments ``(K, 4)`` ``(x1, y1, x2, y2)`` pixels (row 0 the long axis, then the
    chords), a stack ``(N, K, 4)``, or a dict ``{frame: (K, 4)}`` as ``Cine.tracings``.
    Output: ``float32`` ``(40, 2)`` / ``(N, 40, 2)`` ``(x, y)``, or ``{frame: (40, 2)}``; the
    same kind (numpy/torch) as the segments.
    """

    def __init__(self, on_error: str = "raise") -> None:
        self.on_error = _check_on_error(on_error)

    def __call__(self, tracings: Any) -> Any:
        return self.with_flags(tracings)[0]

    def _one(self, segments: Any, where: str) -> tuple[Any, str]:
        arr = _to_numpy(segments)
        try:
            geo = tracing_keypoints(arr)
        except KeypointError as err:
            if self.on_error == "raise":
                raise KeypointError(f"{where}: {err}") from err
            return _like(np.full((N_KEYPOINTS, 2), np.nan, np.float32), segments), f"failed: {err}"
        return _like(geo.keypoints, segments), _describe(geo.flags)

    def with_flags(self, tracings: Any) -> tuple[Any, Any]:
        """Keypoints and flags (one string per tracing: a str, a list, or a dict by frame)."""
        if isinstance(tracings, Mapping):
            done = {frame: self._one(seg, f"tracing of frame {frame}") for frame, seg in tracings.items()}
            return {f: kp for f, (kp, _) in done.items()}, {f: fl for f, (_, fl) in done.items()}
        arr = _to_numpy(tracings)
        if arr.ndim == 2:
            return self._one(tracings, "tracing")
        if arr.ndim != 3 or arr.shape[-1] != 4:
            raise ValueError(f"tracings must be (K, 4), (N, K, 4) or {{frame: (K, 4)}}, got shape {arr.shape}")
        done = [self._one(seg, f"tracing {i}") for i, seg in enumerate(arr)]
        out = np.stack([_to_numpy(kp) for kp, _ in done])  # (N, 40, 2)
        return _like(out, tracings), [fl for _, fl in done]


# ---------------------------------------------------------------------------------------------
# keypoints -> mask, conditioning image, heatmaps
# ---------------------------------------------------------------------------------------------


class KeypointsToMask(Transform):
    """Keypoints -> filled polygon mask (closed along the annulus; NaN rows skipped).

    Parameters
    ----------
    spatial_size : (H, W), optional
        Output size; can also be given at call time.

    Input ``(..., 40, 2)`` ``(x, y)``; output ``uint8`` ``(..., H, W)`` (pixel centres inside the
    polygon are 1), same kind.
    """

    def __init__(self, spatial_size: Sequence[int] | None = None) -> None:
        self.spatial_size = None if spatial_size is None else check_spatial_size(spatial_size)

    def __call__(self, keypoints: Any, spatial_size: Sequence[int] | None = None) -> Any:
        size = check_spatial_size(spatial_size if spatial_size is not None else self.spatial_size)
        kp = _to_numpy(keypoints)
        _check_keypoints(kp)
        flat = kp.reshape(-1, N_KEYPOINTS, 2)  # (B, 40, 2)
        masks = np.stack([keypoints_to_mask(one, size) for one in flat])  # (B, H, W)
        return _like(masks.reshape(*kp.shape[:-2], *size), keypoints)


class RenderKeypoints(Transform):
    """Keypoints -> conditioning image x̂_K (KDM paper): coloured anti-aliased lines on black.

    Parameters
    ----------
    spatial_size : (H, W), optional
        Output size; can also be given at call time.
    thickness : float
        Line width in pixels.
    renderer : callable
        ``renderer(keypoints (N, 2) numpy, (H, W), thickness=...) -> (C, H, W)`` float image;
        default the echo adapter's :func:`echokdm.adapters.echo.render_keypoints` (C = 3). Other
        adapters (face, pose) plug in their own.

    Input ``(..., N, 2)`` ``(x, y)``; output ``float32`` ``(..., C, H, W)`` in [0, 1], same kind.
    """

    def __init__(self, spatial_size: Sequence[int] | None = None, thickness: float = 1.0,
                 renderer: Callable[..., np.ndarray] = render_keypoints) -> None:
        self.spatial_size = None if spatial_size is None else check_spatial_size(spatial_size)
        self.thickness = thickness
        self.renderer = renderer

    def __call__(self, keypoints: Any, spatial_size: Sequence[int] | None = None) -> Any:
        size = check_spatial_size(spatial_size if spatial_size is not None else self.spatial_size)
        kp = _to_numpy(keypoints)
        _check_keypoints(kp, n=None)
        flat = kp.reshape(-1, *kp.shape[-2:])  # (B, N, 2)
        images = np.stack([np.asarray(self.renderer(one, size, thickness=self.thickness), np.float32)
                           for one in flat])  # (B, C, H, W)
        return _like(images.reshape(*kp.shape[:-2], *images.shape[1:]), keypoints)


class KeypointsToHeatmaps(Transform):
    """Keypoints -> one Gaussian heatmap per keypoint.

    ``heatmap_k(x, y) = exp(-((x - x_k)² + (y - y_k)²) / (2 sigma²))`` (peak 1 at the keypoint,
    not normalised); a NaN keypoint gives an all-zero map.

    Parameters
    ----------
    spatial_size : (H, W), optional
        Output size; can also be given at call time.
    sigma : float
        Standard deviation in pixels.

    Input ``(..., N, 2)`` ``(x, y)``; output ``float32`` ``(..., N, H, W)``, same kind.
    """

    def __init__(self, spatial_size: Sequence[int] | None = None, sigma: float = 2.0) -> None:
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
        self.spatial_size = None if spatial_size is None else check_spatial_size(spatial_size)
        self.sigma = float(sigma)

    def __call__(self, keypoints: Any, spatial_size: Sequence[int] | None = None) -> Any:
        h, w = check_spatial_size(spatial_size if spatial_size is not None else self.spatial_size)
        kp = _to_numpy(keypoints).astype(np.float64)
        _check_keypoints(kp, n=None)
        missing = np.isnan(kp).any(-1)  # (..., N)
        kp = np.where(missing[..., None], 0.0, kp)
        gx = np.exp(-((np.arange(w) - kp[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (..., N, W)
        gy = np.exp(-((np.arange(h) - kp[..., 1:2]) ** 2) / (2 * self.sigma**2))  # (..., N, H)
        maps = gy[..., :, None] * gx[..., None, :] * ~missing[..., None, None]  # (..., N, H, W)
        return _like(maps.astype(np.float32), keypoints)


# ---------------------------------------------------------------------------------------------
# joint affine
# ---------------------------------------------------------------------------------------------


class EchoAffine(Transform):
    """One affine map ``p' = A p + t`` applied consistently to images, masks, keypoints and flows.

    Points are ``(x, y)`` pixels (integer = pixel centre). Images and masks are resampled on
    their own grid (output size = input size): ``out(q') = in(A⁻¹ (q' - t))`` with
    ``grid_sample(..., align_corners=True)``, the convention of :mod:`echokdm.geometry.flow`.
    A backward flow ``f`` becomes ``f'(q') = A f(A⁻¹ (q' - t))``, so that
    ``warp(source', f') = warp(source, f)'``. When ``det A < 0`` (a flip) keypoints are
    re-labelled by ``flip_permutation`` (echo: image-left ``j`` <-> image-right ``39 - j``).

    Parameters
    ----------
    matrix : (2, 2) array
        Linear part ``A`` acting on ``(x, y)`` column vectors.
    translation : (2,) array
        ``t`` in pixels ``(x, y)``.
    flip_permutation : sequence of int
        Keypoint re-labelling applied when ``det A < 0``.
    """

    def __init__(self, matrix: Any, translation: Any = (0.0, 0.0),
                 flip_permutation: Sequence[int] = ECHO_FLIP_PERMUTATION) -> None:
        self.matrix = np.asarray(matrix, dtype=np.float64).reshape(2, 2)
        self.translation = np.asarray(translation, dtype=np.float64).reshape(2)
        if abs(np.linalg.det(self.matrix)) < 1e-9:
            raise ValueError(f"matrix must be invertible, got {self.matrix.tolist()}")
        self.flip_permutation = tuple(int(i) for i in flip_permutation)

    @classmethod
    def from_parameters(cls, spatial_size: Sequence[int], *, angle: float = 0.0, scale: float = 1.0,
                        shift: Sequence[float] = (0.0, 0.0), flip: bool = False,
                        flip_permutation: Sequence[int] = ECHO_FLIP_PERMUTATION) -> EchoAffine:
        """Flip (mirror x), rotate by ``angle`` radians, scale, about the image centre, then shift.

        ``p' = c + scale · R(angle) · F (p - c) + shift`` with ``c = ((W-1)/2, (H-1)/2)``;
        ``R = [[cos, -sin], [sin, cos]]`` on ``(x, y)`` with y down, so a positive angle turns
        the image clockwise on screen. ``shift`` is ``(dx, dy)`` pixels.
        """
        h, w = check_spatial_size(spatial_size)
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        c, s = np.cos(angle), np.sin(angle)
        matrix = scale * np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
        translation = centre + np.asarray(shift, dtype=np.float64) - matrix @ centre
        return cls(matrix, translation, flip_permutation)

    @property
    def flips(self) -> bool:
        """True when the map is a reflection (keypoints change sides)."""
        return bool(np.linalg.det(self.matrix) < 0)

    def __call__(self, image: Any) -> Any:
        return self.image(image)

    # -- points --------------------------------------------------------------------------------
    def keypoints(self, keypoints: Any) -> Any:
        """``(..., N, 2)`` ``(x, y)`` -> mapped points (re-labelled on a flip); NaN rows stay NaN."""
        kp = _to_numpy(keypoints)
        _check_keypoints(kp, n=None)
        out = kp.astype(np.float64) @ self.matrix.T + self.translation
        if self.flips:
            if len(self.flip_permutation) != kp.shape[-2]:
                raise ValueError(f"flip_permutation has {len(self.flip_permutation)} entries for "
                                 f"{kp.shape[-2]} keypoints")
            out = out[..., list(self.flip_permutation), :]
        dtype = kp.dtype if np.issubdtype(kp.dtype, np.floating) else np.float32
        return _like(out.astype(dtype), keypoints)

    # -- grids ---------------------------------------------------------------------------------
    def _resample(self, planes: torch.Tensor, mode: str, padding: str) -> torch.Tensor:
        """Sample ``(1, C, H, W)`` planes at ``A⁻¹ (q' - t)`` for every output pixel ``q'``."""
        h, w = planes.shape[-2:]
        inv = torch.as_tensor(np.linalg.inv(self.matrix), dtype=planes.dtype, device=planes.device)
        t = torch.as_tensor(self.translation, dtype=planes.dtype, device=planes.device)
        yy, xx = torch.meshgrid(torch.arange(h, dtype=planes.dtype, device=planes.device),
                                torch.arange(w, dtype=planes.dtype, device=planes.device), indexing="ij")
        src = (torch.stack([xx, yy], dim=-1) - t) @ inv.T  # (H, W, 2) source (x, y) pixels
        scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=planes.dtype, device=planes.device)
        grid = (src * scale - 1.0)[None]  # (1, H, W, 2), align_corners=True normalisation
        return F.grid_sample(planes, grid, mode=mode, padding_mode=padding, align_corners=True)

    def _apply_planes(self, x: Any, mode: str, padding: str, round_back: bool) -> Any:
        tensor = torch.as_tensor(x) if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        tensor = tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor  # MetaTensor -> Tensor
        if tensor.ndim < 2:
            raise ValueError(f"expected an array (..., H, W), got shape {tuple(tensor.shape)}")
        work = tensor.dtype if tensor.is_floating_point() else torch.float32
        planes = tensor.reshape(1, -1, *tensor.shape[-2:]).to(work)  # (1, C, H, W)
        out = self._resample(planes, mode, padding).reshape(tensor.shape)
        if round_back and not tensor.is_floating_point():
            out = out.round().to(tensor.dtype)
        return out if isinstance(x, torch.Tensor) else out.numpy()

    def image(self, image: Any) -> Any:
        """``(..., H, W)`` image(s), bilinear, zeros outside; floating dtypes kept (others -> float32)."""
        return self._apply_planes(image, "bilinear", "zeros", round_back=False)

    def mask(self, mask: Any) -> Any:
        """``(..., H, W)`` label mask(s), nearest neighbour, zeros outside; dtype kept."""
        return self._apply_planes(mask, "nearest", "zeros", round_back=True)

    def flow(self, flow: Any) -> Any:
        """``(..., 2, H, W)`` backward flow(s) (dx, dy): ``f'(q') = A f(A⁻¹ (q' - t))``, border padding."""
        shape = tuple(flow.shape)
        if len(shape) < 3 or shape[-3] != 2:
            raise ValueError(f"flow must have shape (..., 2, H, W) with channels (dx, dy), got {shape}")
        moved = self._apply_planes(flow, "bilinear", "border", round_back=False)  # (..., 2, H, W)
        if isinstance(moved, torch.Tensor):
            a = torch.as_tensor(self.matrix, dtype=moved.dtype, device=moved.device)
            return torch.einsum("ij,...jhw->...ihw", a, moved)
        return np.einsum("ij,...jhw->...ihw", self.matrix.astype(moved.dtype), moved)


# ---------------------------------------------------------------------------------------------
# intensity
# ---------------------------------------------------------------------------------------------


def adjust_intensity(image: Any, *, gain: float = 1.0, gamma: float = 1.0, speckle: float = 0.0,
                     noise: Any = None) -> Any:
    """Gamma, gain and multiplicative (speckle-like) noise on an image in [0, 1].

    ``out = clip(gain · image^gamma · exp(speckle · n - speckle² / 2), 0, 1)`` with ``n`` a
    standard normal field (mean-one log-normal noise: the mean brightness is kept, black stays
    black).

    Parameters
    ----------
    image : numpy.ndarray or torch.Tensor
        ``(..., H, W)`` floating image(s) in [0, 1].
    gain, gamma, speckle : float
        Brightness factor, gamma exponent, log-standard deviation of the noise.
    noise : array, optional
        Standard normal field of ``image``'s shape (numpy); needed when ``speckle > 0``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape, kind and floating dtype.
    """
    x = _to_numpy(image)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"image must be floating in [0, 1], got dtype {x.dtype}")
    out = gain * np.clip(x, 0.0, None) ** gamma
    if speckle > 0:
        if noise is None or np.shape(noise) != x.shape:
            raise ValueError(f"noise must be a standard normal field of shape {x.shape} when speckle > 0")
        out = out * np.exp(speckle * np.asarray(noise) - speckle**2 / 2)
    return _like(np.clip(out, 0.0, 1.0).astype(x.dtype), image)


class RandIntensityEcho(RandomizableTransform):
    """Random gain, gamma and speckle-like multiplicative noise (:func:`adjust_intensity`).

    Parameters
    ----------
    prob : float
        Probability of changing the image at all.
    gain_range, gamma_range : (low, high)
        Uniform ranges of the gain and the gamma exponent.
    speckle_range : (low, high)
        Uniform range of the noise's log-standard deviation (0 = none).

    Images only: ``(..., H, W)`` floating in [0, 1], numpy or torch.
    """

    def __init__(self, prob: float = 1.0, gain_range: Sequence[float] = (0.8, 1.2),
                 gamma_range: Sequence[float] = (0.8, 1.25), speckle_range: Sequence[float] = (0.0, 0.1)) -> None:
        RandomizableTransform.__init__(self, prob)
        for name, (lo, hi) in (("gain_range", gain_range), ("gamma_range", gamma_range),
                               ("speckle_range", speckle_range)):
            if not 0 <= lo <= hi or (name != "speckle_range" and lo == 0):
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high (speckle may be 0), "
                                 f"got {(lo, hi)}")
        self.gain_range, self.gamma_range = tuple(gain_range), tuple(gamma_range)
        self.speckle_range = tuple(speckle_range)
        self.gain, self.gamma, self.speckle = 1.0, 1.0, 0.0

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply, and the gain, gamma and speckle level, once for one sample."""
        super().randomize(None)
        self.gain = float(self.R.uniform(*self.gain_range))
        self.gamma = float(self.R.uniform(*self.gamma_range))
        self.speckle = float(self.R.uniform(*self.speckle_range))

    def __call__(self, image: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return image
        noise = self.R.standard_normal(tuple(image.shape)) if self.speckle > 0 else None  # fresh field per image
        return adjust_intensity(image, gain=self.gain, gamma=self.gamma, speckle=self.speckle, noise=noise)
