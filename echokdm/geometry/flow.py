"""Backward warping with dense flow: the one ``warp`` of echokdm.

Convention (shared/DESIGN.md). A flow is ``(2, H, W)`` (or batched ``(B, 2, H, W)``): channel 0
is ``dx`` (columns), channel 1 is ``dy`` (rows), in pixels, defined on the *target* grid and
pointing into the *source*::

    warp(source, flow)[y, x] = source(y + dy[y, x], x + dx[y, x])

sampled bilinearly with border padding (coordinates outside the image are clamped to the edge).
Integer coordinates are pixel centres, origin top-left. A target keypoint ``q = (x, y)``
therefore corresponds to the source point ``q + flow(q)``.

Every function takes numpy arrays or torch tensors and returns the same kind. The numpy path
uses :func:`scipy.ndimage.map_coordinates` (``order=1, mode="nearest"``, which is exactly border
padding for bilinear interpolation); the torch path uses
:func:`torch.nn.functional.grid_sample` with ``align_corners=True`` and ``padding_mode="border"``.
The two agree to float32 rounding. torch is imported only when a tensor is passed, so
``import echokdm.geometry`` stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from echokdm._lazy import is_tensor

__all__ = ["warp", "warp_frame", "flow_to_grid", "transport_keypoints", "compose_flows", "fit_flow_to_keypoints",
           "keypoint_region_flow",
           "jacobian_determinant",
           "check_flow"]

_MODES = ("bilinear", "nearest", "bicubic")


def check_flow(flow: Any, name: str = "flow") -> tuple[int, int]:
    """Validate a ``(2, H, W)`` or ``(B, 2, H, W)`` flow (numpy or torch); return ``(H, W)``.

    Raises ``ValueError`` naming ``name`` and the shape received otherwise.
    """
    shape = tuple(flow.shape)
    if len(shape) not in (3, 4) or shape[-3] != 2:
        raise ValueError(f"{name} must have shape (2, H, W) or (B, 2, H, W) with channels (dx, dy), got {shape}")
    return shape[-2], shape[-1]


def _batch_shapes(source: Any, flow: Any) -> tuple[tuple[int, int, int, int], int]:
    """Check that source and flow fit together.

    Returns the source viewed as ``(B, C, H, W)`` and the flow's batch size (0 for an
    unbatched ``(2, H, W)`` flow, which applies to every source image).
    """
    h, w = check_flow(flow)
    src = tuple(source.shape)
    if len(src) not in (2, 3, 4):
        raise ValueError(f"source must have shape (H, W), (C, H, W) or (B, C, H, W), got {src}")
    if src[-2:] != (h, w):
        raise ValueError(f"source spatial size {src[-2:]} differs from the flow's (H, W) = {(h, w)}")
    flow_batch = flow.shape[0] if flow.ndim == 4 else 0
    if flow_batch and len(src) != 4:
        raise ValueError(f"a batched flow {tuple(flow.shape)} needs a batched source (B, C, H, W), got {src}")
    if flow_batch and src[0] != flow_batch:
        raise ValueError(f"source batch {src[0]} differs from flow batch {flow_batch}")
    bchw = (1,) * (4 - len(src)) + src
    return bchw, flow_batch


def warp(source: Any, flow: Any, *, mode: str = "bilinear") -> Any:
    """Backward-warp ``source`` with ``flow`` (shared/DESIGN.md convention).

    ``out[..., y, x] = source[..., y + dy[y, x], x + dx[y, x]]``, interpolated, with coordinates
    outside the image clamped to the border.

    Parameters
    ----------
    source : numpy.ndarray or torch.Tensor
        ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` image(s) to sample from.
    flow : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` (applied to every image) or ``(B, 2, H, W)`` (one per batch item; needs a
        ``(B, C, H, W)`` source). Channel 0 = dx (columns), channel 1 = dy (rows), in pixels, on
        the target grid, pointing into the source. Same kind (numpy/torch) as ``source``.
    mode : {"bilinear", "nearest", "bicubic"}
        Interpolation. ``"nearest"`` suits label masks; ties at exactly half a pixel may round
        differently in numpy and torch. ``"bicubic"`` (torch's cubic convolution, ``a = -0.75``, also
        for numpy inputs, which go through torch) keeps fine texture such as speckle sharper than
        ``"bilinear"``, whose sub-pixel shifts low-pass it; it can overshoot the input's range.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape as ``source``; floating sources keep their dtype, others become float32.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.arange(12, dtype=np.float32).reshape(3, 4)
    >>> shift = np.zeros((2, 3, 4), np.float32); shift[0] = 1.0   # sample one column to the right
    >>> warp(img, shift)[0].tolist()
    [1.0, 2.0, 3.0, 3.0]
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if is_tensor(source) != is_tensor(flow):
        raise TypeError("source and flow must both be numpy arrays or both be torch tensors, "
                        f"got {type(source).__name__} and {type(flow).__name__}")
    if is_tensor(source):
        return _warp_torch(source, flow, mode)
    return _warp_numpy(np.asarray(source), np.asarray(flow), mode)


def warp_frame(frame: Any, flows: Any, mode: str = "bilinear") -> np.ndarray:
    """One frame warped by each of several flows, clipped to [0, 1]: the source of a loop moved by
    every frame's flow ("w/o F2I", the detail path's warp, the TPS baseline's frames).

    ``frame`` ``(H, W)`` (grayscale) or ``(H, W, C)`` (channels last), ``flows`` ``(T, 2, H, W)``
    → ``float32`` ``(T, H, W)`` or ``(T, H, W, C)``; ``mode`` as in :func:`warp`.

    >>> warp_frame(np.eye(3, dtype=np.float32), np.zeros((2, 2, 3, 3), np.float32)).shape
    (2, 3, 3)
    """
    frame = np.asarray(frame, dtype=np.float32)
    flows = np.ascontiguousarray(flows, dtype=np.float32)
    source = frame[None] if frame.ndim == 2 else np.moveaxis(frame, -1, 0)  # (C, H, W)
    batch = np.ascontiguousarray(np.broadcast_to(source, (len(flows), *source.shape)))
    out = np.clip(warp(batch, flows, mode=mode), 0.0, 1.0).astype(np.float32)  # (T, C, H, W)
    return out[:, 0] if frame.ndim == 2 else np.moveaxis(out, 1, -1)


def _warp_numpy(source: np.ndarray, flow: np.ndarray, mode: str) -> np.ndarray:
    from scipy import ndimage

    if mode == "bicubic":  # torch's cubic convolution, so that numpy and torch inputs give the same frames
        import torch

        dtype = source.dtype if np.issubdtype(source.dtype, np.floating) else np.dtype(np.float32)
        work = torch.float64 if dtype == np.float64 else torch.float32
        out = _warp_torch(torch.from_numpy(np.ascontiguousarray(source)).to(work),
                          torch.from_numpy(np.ascontiguousarray(flow)).to(work), mode)
        return out.numpy().astype(dtype, copy=False)

    (b, c, h, w), flow_batch = _batch_shapes(source, flow)
    dtype = source.dtype if np.issubdtype(source.dtype, np.floating) else np.dtype(np.float32)
    work = np.float64 if dtype == np.float64 else np.float32  # scipy interpolates float32/64 only
    planes = source.reshape(b, c, h, w).astype(work, copy=False)  # (B, C, H, W)
    flows = flow.reshape(-1, 2, h, w).astype(np.float64)  # (B or 1, 2, H, W)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)  # (H, W) each
    out = np.empty((b, c, h, w), dtype=work)
    order = 1 if mode == "bilinear" else 0
    for i in range(b):
        f = flows[i if flow_batch else 0]
        coords = np.stack([yy + f[1], xx + f[0]])  # (2, H, W) as (row, col)
        for j in range(c):
            # mode="nearest" extends the edge values, i.e. clamps the sample point to the image
            out[i, j] = ndimage.map_coordinates(planes[i, j], coords, order=order, mode="nearest")
    return out.astype(dtype, copy=False).reshape(source.shape)


def _warp_torch(source: Any, flow: Any, mode: str) -> Any:
    import torch
    import torch.nn.functional as F

    (b, c, h, w), flow_batch = _batch_shapes(source, flow)
    dtype = source.dtype if source.is_floating_point() else torch.float32
    src = source.reshape(b, c, h, w).to(dtype)  # (B, C, H, W)
    grid = flow_to_grid(flow.to(device=source.device))  # (B or 1, H, W, 2)
    if not flow_batch:
        grid = grid.reshape(1, h, w, 2).expand(b, h, w, 2)
    out = F.grid_sample(src, grid.to(dtype), mode=mode, padding_mode="border", align_corners=True)
    return out.reshape(source.shape)


def flow_to_grid(flow: Any) -> Any:
    """Sampling grid of a flow, normalised for ``grid_sample(..., align_corners=True)``.

    With ``align_corners=True`` the normalised coordinates -1 and +1 are the *centres* of the
    first and last pixels, so pixel coordinate ``x`` (integer = pixel centre) maps to
    ``x_norm = 2 x / (W - 1) - 1`` (and likewise ``y_norm = 2 y / (H - 1) - 1``). A size-1 axis maps
    to 0.

    Parameters
    ----------
    flow : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` or ``(B, 2, H, W)`` flow, channels (dx, dy) in pixels.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``(H, W, 2)`` or ``(B, H, W, 2)`` grid whose last axis is ``(x_norm, y_norm)`` of the
        sample point ``(x + dx, y + dy)``; float32 unless the flow is float64.
    """
    h, w = check_flow(flow)
    sx = 2.0 / (w - 1) if w > 1 else 0.0  # pixels -> normalised units, align_corners=True
    sy = 2.0 / (h - 1) if h > 1 else 0.0
    if is_tensor(flow):
        import torch

        dtype = flow.dtype if flow.is_floating_point() else torch.float32
        yy, xx = torch.meshgrid(torch.arange(h, dtype=dtype, device=flow.device),
                                torch.arange(w, dtype=dtype, device=flow.device), indexing="ij")
        fx, fy = flow.to(dtype).unbind(-3)  # each (..., H, W)
        return torch.stack([(xx + fx) * sx - 1.0, (yy + fy) * sy - 1.0], dim=-1)
    flow = np.asarray(flow)
    dtype = np.float64 if flow.dtype == np.float64 else np.float32
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    fx, fy = flow[..., 0, :, :], flow[..., 1, :, :]
    return np.stack([(xx + fx) * sx - 1.0, (yy + fy) * sy - 1.0], axis=-1).astype(dtype)


def _sample_points(flow: Any, points: Any) -> Any:
    """Bilinear, border-clamped samples of ``flow`` (B, 2, H, W) at ``points`` (B, N, 2) (x, y)."""
    if is_tensor(flow):
        import torch.nn.functional as F

        h, w = flow.shape[-2:]
        sx = 2.0 / (w - 1) if w > 1 else 0.0
        sy = 2.0 / (h - 1) if h > 1 else 0.0
        grid = (points.to(flow.dtype) * points.new_tensor([sx, sy]).to(flow.dtype) - 1.0)[:, None]  # (B, 1, N, 2)
        out = F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out[:, :, 0].transpose(1, 2)  # (B, N, 2)
    from scipy import ndimage

    out = np.empty(points.shape, dtype=np.float64)
    for i in range(flow.shape[0]):
        coords = np.stack([points[i, :, 1], points[i, :, 0]])  # (2, N) as (row, col)
        for ch in range(2):
            out[i, :, ch] = ndimage.map_coordinates(flow[i, ch].astype(np.float64), coords, order=1, mode="nearest")
    return out


def transport_keypoints(keypoints_target: Any, flow: Any) -> Any:
    """Source positions of target keypoints: ``q + flow(q)``, the flow sampled at sub-pixel ``q``.

    Parameters
    ----------
    keypoints_target : numpy.ndarray or torch.Tensor
        ``(N, 2)`` (with a ``(2, H, W)`` flow) or ``(B, N, 2)`` (with ``(B, 2, H, W)``) keypoints
        ``(x, y)`` in pixels of the target frame. Rows of NaN stay NaN.
    flow : numpy.ndarray or torch.Tensor
        Flow in the shared/DESIGN.md convention (target grid, pointing into the source).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same shape as ``keypoints_target``: the corresponding ``(x, y)`` in the source frame,
        the flow sampled bilinearly with border clamping (as :func:`warp`). Floating keypoints
        keep their dtype; others become float32.
    """
    if not is_tensor(flow):
        flow, keypoints_target = np.asarray(flow), np.asarray(keypoints_target)
    check_flow(flow)
    kp_shape = tuple(keypoints_target.shape)
    expected = 3 if flow.ndim == 4 else 2
    if len(kp_shape) != expected or kp_shape[-1] != 2 or (expected == 3 and kp_shape[0] != flow.shape[0]):
        want = "(B, N, 2) with B = the flow's batch" if expected == 3 else "(N, 2)"
        raise ValueError(f"keypoints must have shape {want} (x, y) for a flow of shape {tuple(flow.shape)}, "
                         f"got {kp_shape}")
    flows = flow.reshape(-1, *flow.shape[-3:])  # (B, 2, H, W)
    if is_tensor(keypoints_target):
        import torch

        dtype = keypoints_target.dtype if keypoints_target.is_floating_point() else torch.float32
        pts = keypoints_target.reshape(flows.shape[0], -1, 2).to(dtype)  # (B, N, 2)
        missing = torch.isnan(pts).any(-1, keepdim=True)
        moved = pts + _sample_points(flows.to(dtype), torch.nan_to_num(pts))
        return torch.where(missing, torch.full_like(moved, float("nan")), moved).reshape(kp_shape)
    kp = np.asarray(keypoints_target)
    dtype = kp.dtype if np.issubdtype(kp.dtype, np.floating) else np.dtype(np.float32)
    pts = kp.reshape(flows.shape[0], -1, 2).astype(np.float64)  # (B, N, 2)
    missing = np.isnan(pts).any(-1, keepdims=True)
    moved = pts + _sample_points(np.asarray(flows), np.nan_to_num(pts))
    return np.where(missing, np.nan, moved).astype(dtype).reshape(kp_shape)


def compose_flows(flow_ab: Any, flow_bc: Any) -> Any:
    """The flow from frame a to frame c through b.

    With ``frame_b = warp(frame_a, flow_ab)`` and ``frame_c = warp(frame_b, flow_bc)``, the result
    ``flow_ac`` gives ``frame_c ≈ warp(frame_a, flow_ac)``:
    ``flow_ac(q) = flow_bc(q) + flow_ab(q + flow_bc(q))`` (``flow_ab`` sampled bilinearly, border
    clamped). Shapes ``(2, H, W)`` or ``(B, 2, H, W)``, both the same.
    """
    if not is_tensor(flow_ab):
        flow_ab, flow_bc = np.asarray(flow_ab), np.asarray(flow_bc)
    check_flow(flow_ab, "flow_ab")
    check_flow(flow_bc, "flow_bc")
    if tuple(flow_ab.shape) != tuple(flow_bc.shape):
        raise ValueError(f"flow_ab {tuple(flow_ab.shape)} and flow_bc {tuple(flow_bc.shape)} must have the same shape")
    return flow_bc + warp(flow_ab, flow_bc)


def _flow_batch(flow, source_keypoints, target_keypoints) -> tuple[np.ndarray, bool, np.ndarray, np.ndarray]:
    """A float32 copy of ``flow`` as a batch ``(B, 2, H, W)`` (the input is never modified), whether it
    was one flow, and the keypoints ``(B, N, 2)`` float64 broadcast to it; checked."""
    flow = np.array(flow, dtype=np.float32)
    check_flow(flow)
    single = flow.ndim == 3
    flows = flow[None] if single else flow
    b = flows.shape[0]
    src = np.broadcast_to(np.asarray(source_keypoints, np.float64), (b, *np.shape(source_keypoints)[-2:]))
    tgt = np.broadcast_to(np.asarray(target_keypoints, np.float64), (b, *np.shape(target_keypoints)[-2:]))
    if src.shape != tgt.shape or src.shape[-1] != 2:
        raise ValueError(f"source keypoints {np.shape(source_keypoints)} and target keypoints "
                         f"{np.shape(target_keypoints)} must be matching (N, 2) or (B, N, 2) (x, y) arrays")
    return flows, single, src, tgt


def fit_flow_to_keypoints(flow: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray, *,
                          sigma: float | None = None, tolerance: float = 0.05, max_iterations: int = 10,
                          ridge: float = 1e-2, min_jacobian: float | None = 0.2) -> np.ndarray:
    """The flow corrected near the keypoints so that it carries each target keypoint onto its source.

    A flow ``F`` (this module's convention) agrees with a keypoint motion when ``q_i + F(q_i) = s_i``
    for every target keypoint ``q_i`` and source keypoint ``s_i``. This adds to ``F`` a smooth local
    correction ``c(x) = Σ a_i φ_i(x)``, ``φ_i(x) = w_i(x) / max(Σ_k w_k(x), 1)`` with Gaussian
    weights ``w_i(x) = exp(-|x - q_i|² / 2σ²)``, whose coefficients ``a`` solve ``c(q_j) = r_j`` for
    the residuals ``r_j = s_j - (q_j + F(q_j))`` (with a small ``ridge``), repeated until every
    residual is below ``tolerance`` pixels (or ``max_iterations``). Along a contour of keypoints a
    few pixels apart the correction is the local residual, smooth between keypoints; it fades to
    zero within about ``2σ`` of them, so the rest of the flow is kept. Keypoints with a NaN coordinate in
    either set, or outside the target frame, are left out.

    Parameters
    ----------
    flow : ndarray ``(2, H, W)`` or ``(B, 2, H, W)``
    source_keypoints : ndarray ``(N, 2)`` or ``(B, N, 2)``, ``(x, y)`` px in the source frame
    target_keypoints : ndarray ``(N, 2)`` or ``(B, N, 2)``, ``(x, y)`` px in the target frame
    sigma : float, optional
        Width (px) of the correction around each keypoint. Default: 1.5 × the median distance from
        a target keypoint to its nearest neighbour (about 4 px for the echo keypoints at 112 × 112),
        so that the correction is smooth along the contour at any image size.
    tolerance, max_iterations
        Stop when the largest residual is below ``tolerance`` px, or after ``max_iterations``.
    ridge : float
        Regularisation of the coefficients' linear system (keypoints closer than ``σ`` share).
    min_jacobian : float or None
        Keep the corrected flow free of folds: where the correction would bring the Jacobian
        determinant of ``x ↦ x + F(x)`` (:func:`jacobian_determinant`) below this value at a pixel
        where the input flow is above it, it is refitted with ``σ`` widened (× 1.5, twice at most),
        and if it still folds it is scaled down until it does not, so the keypoints
        are then carried only part of the way. Large, jittery keypoint motions (keypoints from a
        segmentation network on a real clip) otherwise tear the tissue between the contour and
        the rest of the frame into loops. ``None``: the exact fit, folds allowed.

    Returns
    -------
    ndarray, the flow's shape, float32.
    """
    flows, single, src, tgt = _flow_batch(flow, source_keypoints, target_keypoints)
    b, _, h, w = flows.shape
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be > 0 px, got {sigma}")
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    for i in range(b):
        with np.errstate(invalid="ignore"):
            inside = (tgt[i][:, 0] >= 0) & (tgt[i][:, 0] <= w - 1) & (tgt[i][:, 1] >= 0) & (tgt[i][:, 1] <= h - 1)
        ok = np.isfinite(src[i]).all(1) & np.isfinite(tgt[i]).all(1) & inside
        if not ok.any():
            continue
        s, q = src[i][ok], tgt[i][ok]
        width = sigma if sigma is not None else _keypoint_spacing(q) * 1.5
        original = flows[i].copy()
        fitted = _fit_one(original, s, q, width, xs, ys, tolerance, max_iterations, ridge)
        if min_jacobian is not None:
            sound = jacobian_determinant(original) >= min_jacobian  # where the flow itself does not fold

            def folds(candidate: np.ndarray, sound: np.ndarray = sound) -> bool:  # new folds, where F had none
                return bool((jacobian_determinant(candidate)[sound] < min_jacobian).any())

            scale = 1.0
            while folds(fitted) and scale * 1.5 <= _MAX_WIDENING:  # a smoother correction
                scale *= 1.5
                fitted = _fit_one(original, s, q, width * scale, xs, ys, tolerance, max_iterations, ridge)
            if folds(fitted):  # still folds: carry the keypoints part of the way
                correction, lo, hi = fitted - original, 0.0, 1.0
                for _ in range(12):
                    mid = (lo + hi) / 2
                    if folds(original + np.float32(mid) * correction):
                        hi = mid
                    else:
                        lo = mid
                fitted = original + np.float32(lo) * correction
        flows[i] = fitted
    return flows[0] if single else flows


def keypoint_region_flow(flow: np.ndarray, source_keypoints: np.ndarray, target_keypoints: np.ndarray, *,
                         inner: float | None = None, ramp: float | None = None) -> np.ndarray:
    """The flow with the thin-plate spline through the keypoints near them: the tissue around the
    contour moves with the keypoints, the rest of the frame as ``flow`` says.

    :func:`fit_flow_to_keypoints` carries the keypoints themselves; its correction fades within a
    few pixels, so a wall that K2F moves short keeps its old place a few pixels off the contour,
    and a segmentation model reads the cavity larger than the keypoints put it (held-out realistic
    phantom, own beat from the exact keypoints: the re-measured EF 18 points below the truth, 12
    with this region). Here the flow within ``inner`` px of a target keypoint is the thin-plate
    spline (:func:`echokdm.baselines.tps.tps_flow`, border pinned), blended linearly into ``flow``
    over the next ``ramp`` px. Fit it with :func:`fit_flow_to_keypoints` afterwards as usual.

    Parameters
    ----------
    flow : ndarray ``(2, H, W)`` or ``(B, 2, H, W)``
    source_keypoints : ndarray ``(N, 2)`` or ``(B, N, 2)``, ``(x, y)`` px in the source frame
    target_keypoints : ndarray ``(N, 2)`` or ``(B, N, 2)``, ``(x, y)`` px in the target frame
    inner, ramp : float, optional
        Widths in px; default 6 and 10 at 112 px, scaled with the frame's shorter side (about the
        myocardium's thickness, and as much again to fade). Chosen before measuring, not tuned.

    Returns
    -------
    ndarray, the flow's shape, float32. Pairs with fewer than 3 usable keypoints are returned as
    they were.
    """
    from scipy import ndimage

    from echokdm.baselines.tps import tps_flow

    flows, single, src, tgt = _flow_batch(flow, source_keypoints, target_keypoints)
    b, _, h, w = flows.shape
    size = min(h, w) / 112.0
    inner = 6.0 * size if inner is None else float(inner)
    ramp = 10.0 * size if ramp is None else float(ramp)
    if not (inner >= 0 and ramp > 0):
        raise ValueError(f"inner must be >= 0 px and ramp > 0 px, got {inner} and {ramp}")
    for i in range(b):
        ok = np.isfinite(src[i]).all(1) & np.isfinite(tgt[i]).all(1)
        if ok.sum() < 3:
            continue
        near = np.zeros((h, w), bool)
        rows = np.clip(np.round(tgt[i][ok][:, 1]).astype(int), 0, h - 1)
        cols = np.clip(np.round(tgt[i][ok][:, 0]).astype(int), 0, w - 1)
        near[rows, cols] = True
        weight = np.clip(1.0 - (ndimage.distance_transform_edt(~near) - inner) / ramp, 0.0, 1.0).astype(np.float32)
        flows[i] = weight * tps_flow(src[i], tgt[i], (h, w)) + (1.0 - weight) * flows[i]
    return flows[0] if single else flows


#: How far :func:`fit_flow_to_keypoints` widens its correction against folds (× the default width;
#: 1.5² = 2.25: about 9 px at 112 × 112, beyond which it would move most of the frame).
_MAX_WIDENING = 2.25


def _fit_one(flow: np.ndarray, s: np.ndarray, q: np.ndarray, width: float, xs: np.ndarray, ys: np.ndarray,
             tolerance: float, max_iterations: int, ridge: float) -> np.ndarray:
    """One flow ``(2, H, W)`` corrected with Gaussian bumps of ``width`` px (see :func:`fit_flow_to_keypoints`)."""
    flow = flow.copy()
    weights = np.exp(-((xs[None] - q[:, 0, None, None]) ** 2 + (ys[None] - q[:, 1, None, None]) ** 2)
                     / (2 * width**2))  # (n, H, W)
    basis = weights / np.maximum(weights.sum(0), 1.0)  # φ_i(x): the correction is Σ a_i φ_i(x)
    at_q = np.exp(-((q[:, None] - q[None]) ** 2).sum(-1) / (2 * width**2))  # w_i(q_j), (n, n)
    at_q /= np.maximum(at_q.sum(1, keepdims=True), 1.0)  # φ_i(q_j)
    system = at_q + ridge * np.eye(len(q))
    for _ in range(max_iterations):
        residual = s - transport_keypoints(q, flow)  # (n, 2)
        if np.abs(residual).max() < tolerance:
            break
        # coefficients whose correction equals the residual at every keypoint (the flow is then
        # sampled bilinearly, hence a few repeats)
        coefficients = np.linalg.solve(system, residual)
        flow += np.einsum("nhw,nc->chw", basis, coefficients).astype(np.float32)
    return flow


def jacobian_determinant(flow: np.ndarray) -> np.ndarray:
    """The Jacobian determinant of ``x ↦ x + F(x)`` for a flow ``(2, H, W)`` (or ``(B, 2, H, W)``)
    in pixels, by central differences: ``(H, W)`` (or ``(B, H, W)``). Below 0 the map folds (two
    frame pixels sample the same source place in reverse order, a tear in a warped frame); 1 keeps
    areas.
    """
    flow = np.asarray(flow, dtype=np.float64)
    check_flow(flow)
    u, v = flow[..., 0, :, :], flow[..., 1, :, :]
    du_dy, du_dx = np.gradient(u, axis=(-2, -1))
    dv_dy, dv_dx = np.gradient(v, axis=(-2, -1))
    return ((1 + du_dx) * (1 + dv_dy) - du_dy * dv_dx).astype(np.float32)


def _keypoint_spacing(points: np.ndarray) -> float:
    """Median distance (px) from each point ``(n, 2)`` to its nearest neighbour; 1 px for fewer than 2,
    at least 0.5 px."""
    if len(points) < 2:
        return 1.0
    d = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return max(float(np.median(d.min(1))), 0.5)
