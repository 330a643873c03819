"""Generated cine loops: one source frame + a keypoint motion → a KDM loop, with its EF.

:func:`generate_loop` runs a :class:`~echokdm.pipelines.KDMPipeline` on one source frame and a
target keypoint trajectory (:mod:`echokdm.generation.motion`) and returns a
:class:`GeneratedLoop`: frames, flows, keypoints, the target EF of the motion and, with a
segmentation model, the EF re-measured on the generated frames.

The pipeline works at its own size (``pipeline.vae.config.sample_size``, e.g. 112×112): the
source frame is resized to it (bilinear, anti-aliased when shrinking) and the keypoints mapped
with the pixel-centre convention ``x' = (x + 0.5) · S / W − 0.5`` (the same for y with ``H``);
the generated frames and flows are resized back to the input size (flows also rescaled per
component: ``dx · W / S``, ``dy · H / S``), so everything returned is in the input frame's pixel
grid. A non-square input is stretched to the square working size and back.

:func:`source_from_file` reads the source frame of any supported file (DICOM, AVI/MP4,
NIfTI, CAMUS, EchoNet, or a PNG/JPEG image) and its keypoints; :func:`clip_keypoints` gives the
keypoints of every frame of a clip, for :func:`~echokdm.generation.motion.own_motion` and
:func:`~echokdm.generation.motion.transfer_motion`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from echokdm.generation.settings import DEFAULT_FPS, SamplingSettings, sampling_from_keywords
from echokdm.geometry.flow import warp_frame
from echokdm.geometry.keypoints import N_KEYPOINTS
from echokdm.geometry.resize import resize_flow, resize_images
from echokdm.geometry.volumes import simpson_volume

__all__ = [
    "IMAGE_SUFFIXES",
    "apex_side",
    "GeneratedLoop",
    "check_generation_settings",
    "contour_agreement",
    "ef_reading",
    "LoopSource",
    "clip_keypoints",
    "generate_loop",
    "load_segmentation",
    "loop_ef",
    "loop_frames",
    "measure_ef",
    "pipeline_size",
    "read_source",
    "segment_clip",
    "segment_frames",
    "ed_frame",
    "source_from_file",
]

#: Suffixes read as a single still image with Pillow by :func:`source_from_file`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_SOURCE_TOLERANCE_PX = 1e-3  # a first target this close to the source keypoints is the source pose


@dataclasses.dataclass
class GeneratedLoop:
    """A generated cine loop and what a writer needs to save it.

    Attributes
    ----------
    frames : numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1], at the source frame's size.
    fps : float
        Frames per second of the loop.
    keypoints : numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels: the target keypoints of each frame (the
        source keypoints on the source frame).
    flows : numpy.ndarray
        ``float32`` ``(T, 2, H, W)`` (dx, dy) pixels on each frame's grid pointing into the source
        frame (shared/DESIGN.md); zero on the source frame.
    ef_target : float or None
        EF in percent of the target motion: ``100 (max V − min V) / max V`` of the Simpson volumes
        of the target keypoints and the source keypoints; ``None`` when fewer than two of them
        have all 40 keypoints.
    spacing_mm : tuple of float or None
        ``(dx, dy)`` mm per pixel of the source, if known.
    ef_achieved : float or None
        The same EF from keypoints re-detected on the generated frames (and the source) by a
        segmentation model; ``None`` without a model, when fewer than two frames gave
        keypoints, or when the reading is not of the generated LV (the segmentation's LV does not
        overlap the keypoints' contour on more than 10 % of the frames, :func:`ef_reading`;
        ``metadata["ef_reading"]`` keeps the figures and what it read); ``metadata["ef_achieved_note"]``
        says which.
    source_frame : int or None
        Index of the source frame in its clip.
    motion : str
        Name of the motion source (``"own"``, ``"transfer"``, ``"synthetic"``, ``"drag"``,
        ``"keypoints"`` …).
    patient_id : str or None
        Pseudonymous patient identifier of the source clip.
    gammas : numpy.ndarray or None
        ``(T,)`` γ per frame in ``"gamma"`` mode (0 on the source frame), else ``None``.
    detected_keypoints : numpy.ndarray or None
        ``float32`` ``(T, 40, 2)`` re-detected keypoints behind ``ef_achieved``, else ``None``.
    metadata : dict
        Technical facts: ``mode``, ``k``, ``num_inference_steps``, ``seed``, ``input_size``,
        ``pipeline_size``, ``source_included`` (frame 0 is the real source frame),
        ``fan_masked`` (every frame is 0 outside the source's ultrasound fan),
        ``ef_achieved_note`` and what the caller added. No personal data.
    """

    frames: np.ndarray
    fps: float
    keypoints: np.ndarray
    flows: np.ndarray
    ef_target: float | None
    spacing_mm: tuple[float, float] | None = None
    ef_achieved: float | None = None
    source_frame: int | None = None
    motion: str = "custom"
    patient_id: str | None = None
    gammas: np.ndarray | None = None
    detected_keypoints: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, dtype=np.float32)
        if self.frames.ndim != 3 or len(self.frames) == 0:
            raise ValueError(f"frames must have shape (T, H, W) with T >= 1, got {self.frames.shape}")
        t, h, w = self.frames.shape
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        if self.keypoints.shape != (t, N_KEYPOINTS, 2):
            raise ValueError(f"keypoints must have shape ({t}, {N_KEYPOINTS}, 2), got {self.keypoints.shape}")
        self.flows = np.asarray(self.flows, dtype=np.float32)
        if self.flows.shape != (t, 2, h, w):
            raise ValueError(f"flows must have shape ({t}, 2, {h}, {w}), got {self.flows.shape}")
        if not (math.isfinite(float(self.fps)) and float(self.fps) > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        self.fps = float(self.fps)
        if self.spacing_mm is not None:
            self.spacing_mm = (float(self.spacing_mm[0]), float(self.spacing_mm[1]))

    @property
    def n_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.frames.shape[0])


# ---------------------------------------------------------------------------------------------
# EF and segmentation
# ---------------------------------------------------------------------------------------------


def loop_ef(keypoints: np.ndarray, spacing_mm: tuple[float, float] | None = None) -> float:
    """``100 (max V − min V) / max V`` over the Simpson volumes of ``(T, 40, 2)`` keypoints.

    Frames with a missing keypoint are left out; NaN when fewer than two volumes remain.
    """
    volumes = np.asarray(simpson_volume(keypoints, spacing_mm), dtype=np.float64)
    v = volumes[np.isfinite(volumes)]
    if len(v) < 2 or v.max() <= 0:
        return float("nan")
    return float(100.0 * (v.max() - v.min()) / v.max())


def load_segmentation(segmentation):
    """An :class:`~echokdm.echo.segmentation.LVSegmentationNet` from an instance or its folder."""
    from echokdm.echo.segmentation import LVSegmentationNet

    if isinstance(segmentation, LVSegmentationNet):
        return segmentation.eval()
    path = Path(segmentation)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no segmentation model folder (a run's best/ from echokdm train seg)")
    return LVSegmentationNet.from_pretrained(path).eval()


def segment_frames(model, frames: np.ndarray, fan: np.ndarray | None = None, batch_size: int | None = None
                   ) -> np.ndarray:
    """``uint8`` masks ``(T, H, W)`` of frames ``(T, H, W)`` in [0, 1]; with the ultrasound ``fan``
    ``(H, W)``, segmented inside it (its bounding box, black outside it: ``predict_masks(region=)``; a model
    whose ``predict_masks`` takes no ``region`` segments the whole frame, kept to the fan). ``batch_size``:
    frames per forward pass (the model's default when None)."""
    import torch

    region = None if fan is None else np.asarray(fan, dtype=bool)
    if region is not None and not region.any():
        region = None
    accepts = inspect.signature(model.predict_masks).parameters
    options = {"batch_size": int(batch_size)} if batch_size is not None and "batch_size" in accepts else {}
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        if region is not None and "region" in accepts:
            return model.predict_masks(x, region=region, **options).cpu().numpy()
        masks = model.predict_masks(x, **options).cpu().numpy()  # without region=: the whole frame, kept to the fan
    return masks if region is None else masks * region[None].astype(masks.dtype)


def segment_clip(model, frames: np.ndarray, fan: np.ndarray | None = None, *, apex_direction="auto",
                 repair: bool = True, batch_size: int | None = None):
    """The LV masks of a clip as echokdm measures them: :func:`segment_frames` inside the ``fan``, then
    (``repair``) :func:`~echokdm.geometry.mask_repair.repair_masks` with the apex side from the sector
    (:func:`echokdm.io.fan.apex_direction_with_fan`; ``apex_direction`` when given or without a fan).
    ``echokdm segment`` writes them and the app shows them. Keypoints, volumes and EF are measured on the
    network's own masks (``echokdm keypoints``/``ef``, ``generate``): :func:`sequence_keypoints` makes
    these repairs itself, and measuring the repaired masks again would be a second, different pass.
    Returns ``(masks, network, repaired)``: the repaired masks, the network's own and the
    :class:`~echokdm.geometry.mask_repair.RepairedMasks` (None without ``repair`` or an LV)."""
    import warnings

    from echokdm.geometry.mask_repair import repair_masks
    from echokdm.io.fan import apex_direction_with_fan

    network = segment_frames(model, frames, fan, batch_size)
    if not repair or not network.any():
        return network, network, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        repaired = repair_masks(network, apex_direction=apex_direction_with_fan(fan, apex_direction))
    return repaired.masks, network, repaired


def _detect_keypoints(model, frames: np.ndarray, apex_direction="auto", fan: np.ndarray | None = None) -> np.ndarray:
    """Keypoints ``(T, 40, 2)`` re-detected on frames (NaN where detection fails), as ``echokdm
    evaluate`` does: per-frame landmarks, no temporal smoothing."""
    from echokdm.geometry.temporal import sequence_keypoints

    masks = segment_frames(model, frames, fan)
    return sequence_keypoints(masks, smooth_sigma_frames=0.0, apex_direction=apex_direction).keypoints


def apex_side(keypoints: np.ndarray) -> str:
    """The named apex side (``"up"`` …) nearest the direction from the basal centre to the apex of ``(40, 2)``
    keypoints, or ``"auto"`` when they are incomplete: a generated loop keeps its source's apex side, so its
    re-measurement need not guess it from masks that may have lost the LV (as ``clip_keypoints`` takes it
    from the sector)."""
    from echokdm.geometry.keypoints import nearest_direction_name
    from echokdm.geometry.volumes import long_axis_from_keypoints

    base, apex, length = long_axis_from_keypoints(np.asarray(keypoints, np.float64))
    if not (np.isfinite(length) and length > 0):
        return "auto"
    return nearest_direction_name(apex - base)


#: The LV re-detected on a generated frame *agrees* with the contour the frame was made to follow when it
#: covers at least this share of that contour's area and at least this share of it lies where the LV was
#: (the loop's first frame) or was asked to be (:func:`contour_agreement`); a loop's EF reading is
#: *reliable* when at least :data:`READING_SHARE` of its frames agree. A generator that moves the wall
#: short still agrees (its larger cavity covers the asked one); a reading of another chamber does not.
#: Measured (``echokdm demo``): every frame of the phantom patients' loops agrees at 0.91 or more and of
#: the real cine's own beat at 0.78 or more; on real frames made to contract far, the phantom-trained
#: segmentation jumps to the right ventricle or leaks into the atrium (covered 0.06-0.5), and the EF it
#: reads (e.g. 91 % for a 45 % beat) is not the generated LV's.
READING_AGREEMENT = 0.6
READING_SHARE = 0.9
#: How ``metadata["ef_achieved_note"]`` begins when the re-measured EF was not a reading of the generated LV.
UNREAD_NOTE = "not a reading of the generated LV"


def contour_agreement(detected: np.ndarray, targets: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(T, 2)``: per frame, the share of the asked LV (the polygon through ``targets[t]``) that the re-detected
    LV (through ``detected[t]``) covers, and the share of the re-detected LV lying within the asked LV or the
    first frame's (dilated by 2 px at 112 px); both ``(T, 40, 2)``, polygons closed along the annulus. NaN
    where either lacks a keypoint (all NaN when the first frame's ``targets`` do)."""
    from scipy import ndimage

    from echokdm.geometry.keypoints import keypoints_to_mask

    detected, targets = np.asarray(detected, np.float64), np.asarray(targets, np.float64)
    if detected.shape != targets.shape or detected.shape[1:] != (N_KEYPOINTS, 2) or not len(detected):
        raise ValueError(f"detected and targets must both have shape (T, {N_KEYPOINTS}, 2) with T >= 1, "
                         f"got {detected.shape} and {targets.shape}")
    out = np.full((len(detected), 2), np.nan)
    first = keypoints_to_mask(targets[0], shape).astype(bool) if np.isfinite(targets[0]).all() else None
    grow = max(1, round(2 * min(shape) / 112))
    for t, (a, b) in enumerate(zip(detected, targets, strict=True)):
        if np.isfinite(a).all() and np.isfinite(b).all() and first is not None:
            read, asked = keypoints_to_mask(a, shape).astype(bool), keypoints_to_mask(b, shape).astype(bool)
            where = ndimage.binary_dilation(asked | first, iterations=grow)
            out[t] = ((read & asked).sum() / max(int(asked.sum()), 1), (read & where).sum() / max(int(read.sum()), 1))
    return out


def _frame_ranges(frames: np.ndarray) -> str:
    """``"3-7, 9"`` of sorted frame indices."""
    parts, start = [], None
    for i, t in enumerate(frames):
        start = t if start is None else start
        if i + 1 == len(frames) or frames[i + 1] != t + 1:
            parts.append(f"{start}" if start == t else f"{start}-{t}")
            start = None
    return ", ".join(parts)


def ef_reading(detected: np.ndarray, targets: np.ndarray, shape: tuple[int, int], first_frame: int = 0) -> dict:
    """Whether the EF re-measured on generated frames reads the LV they show: ``{"frames", "frames_agreeing",
    "min_covered", "min_inside", "reliable", "lost_frames"}`` (:func:`contour_agreement` against
    :data:`READING_AGREEMENT` and :data:`READING_SHARE`; a frame whose re-detection has no keypoints does
    not agree). Frames whose asked keypoints are incomplete are not judged; ``reliable`` is None when no
    frame can be. ``lost_frames`` (e.g. ``"4-8"``) numbers the frames from ``-first_frame`` (1 when the
    first measured frame is a source the loop does not hold)."""
    targets = np.asarray(targets, np.float64)
    shares = contour_agreement(detected, targets, shape)
    judged = np.isfinite(targets).all(axis=(1, 2)) & np.isfinite(targets[0]).all()
    agree = (np.nan_to_num(shares, nan=0.0) >= READING_AGREEMENT).all(axis=1)
    lost = np.flatnonzero(judged & ~agree) - int(first_frame)
    lost = lost[lost >= 0]

    def lowest(column: int) -> float | None:
        values = shares[:, column]
        return None if not np.isfinite(values).any() else round(float(np.nanmin(values)), 3)

    reliable = bool(agree[judged].mean() >= READING_SHARE) if judged.any() else None
    return {"frames": int(judged.sum()), "frames_agreeing": int((agree & judged).sum()), "min_covered": lowest(0),
            "min_inside": lowest(1), "reliable": reliable, "lost_frames": _frame_ranges(lost)}


def measure_ef(frames: np.ndarray, segmentation, spacing_mm: tuple[float, float] | None = None,
               return_keypoints: bool = False, apex_direction="auto", fan_mask: np.ndarray | None = None):
    """The EF (%) a segmentation model reads from frames ``(T, H, W)`` in [0, 1]: keypoints re-detected
    on every frame (per-frame landmarks, no temporal smoothing, as ``echokdm evaluate``), Simpson
    volumes, ``100 (max V − min V) / max V`` (:func:`loop_ef`). NaN when fewer than two frames give
    all 40 keypoints. With ``return_keypoints``, ``(ef, keypoints (T, 40, 2))``. This is how
    ``ef_achieved`` of a generated loop is measured, with ``apex_direction`` its source keypoints' apex
    side (``"auto"``: detected from the masks, :func:`~echokdm.geometry.temporal.sequence_keypoints`) and
    ``fan_mask`` ``(H, W)`` the loop's ultrasound fan (segmented inside it, :func:`segment_frames`)."""
    keypoints = _detect_keypoints(load_segmentation(segmentation), np.asarray(frames, dtype=np.float32),
                                  apex_direction, fan_mask)
    ef = loop_ef(keypoints, spacing_mm)
    return (ef, keypoints) if return_keypoints else ef


# ---------------------------------------------------------------------------------------------
# resizing to and from the pipeline's size
# ---------------------------------------------------------------------------------------------


def pipeline_size(pipeline) -> tuple[int, int]:
    """``(rows, cols)`` of the frames a KDM pipeline works at: its autoencoder's ``config.sample_size``
    (an int for square frames, or ``(rows, cols)``). Sources are resized to it and the generated
    frames back (module docstring)."""
    size = pipeline.vae.config.sample_size
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def _map_keypoints(keypoints: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """``(..., 2)`` (x, y) pixels of a ``from_hw`` grid → the ``to_hw`` grid (pixel centres)."""
    scale = np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])  # (sx, sy)
    return ((np.asarray(keypoints, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def _resize_frames(frames: np.ndarray, size: tuple[int, int], colour: bool) -> np.ndarray:
    """Anti-aliased resize of grayscale ``(..., H, W)`` or, with ``colour``, channels-last ``(..., H, W, C)``."""
    if not colour:
        return resize_images(frames, size, antialias=True)
    return np.moveaxis(resize_images(np.moveaxis(frames, -1, -3), size, antialias=True), -3, -1)


def _run_pipeline(pipeline, frame: np.ndarray, src_kp: np.ndarray, targets: np.ndarray, *,
                  sampling: SamplingSettings, progress: bool):
    """Frames ``(T, H, W)``, flows ``(T, 2, H, W)`` and γ at the input size ``(H, W)`` of ``frame``."""
    import torch

    colour = frame.ndim == 3  # (H, W, C): channels last at the I/O boundary
    hw = frame.shape[:2]
    size = pipeline_size(pipeline)
    small = _resize_frames(frame, size, colour)  # (S, S) or (S, S, C)
    out = pipeline(np.clip(small, 0.0, 1.0), _map_keypoints(src_kp, hw, size), _map_keypoints(targets, hw, size),
                   **sampling.pipeline_kwargs(), generator=torch.Generator().manual_seed(sampling.seed),
                   progress=progress)
    flows = resize_flow(out.flows, hw, antialias=True)  # (T, 2, H, W) in input pixels
    if sampling.detail and tuple(hw) != tuple(size):
        # the detail path at the input size: the full-resolution warp plus F2I's edit at the pipeline's size
        # (generated − the small source warped by the same flows), so a scanner frame keeps its own speckle
        edit = out.frames - warp_frame(np.clip(small, 0.0, 1.0), out.flows, sampling.interpolation)
        frames = np.clip(warp_frame(frame, flows, sampling.interpolation) + _resize_frames(edit, hw, colour), 0.0, 1.0)
    else:
        frames = np.clip(_resize_frames(out.frames, hw, colour), 0.0, 1.0)  # (T, H, W) or (T, H, W, C)
    return frames, flows, out.gammas


# ---------------------------------------------------------------------------------------------
# generate_loop
# ---------------------------------------------------------------------------------------------


def check_generation_settings(k, num_inference_steps, batch_size) -> tuple[int, int, int]:
    """``(k, num_inference_steps, batch_size)`` checked as :class:`SamplingSettings` checks them
    (steps >= 1, 0 <= k <= steps, batch >= 1); a ValueError naming the setting otherwise."""
    checked = SamplingSettings(k=k, num_inference_steps=num_inference_steps, batch_size=batch_size)
    return checked.k, checked.num_inference_steps, checked.batch_size


def _checked_fan(fan_mask, shape: tuple[int, int]) -> np.ndarray | None:
    if fan_mask is None:
        return None
    mask = np.asarray(fan_mask)
    if mask.shape != shape:
        raise ValueError(f"fan_mask must have the source frame's shape {shape}, got {mask.shape}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("fan_mask is empty (no pixel inside the fan)")
    return mask


def _checked_inputs(source_frame, source_keypoints, target_keypoints, fps):
    frame = np.asarray(source_frame, dtype=np.float32)
    if frame.ndim != 2 or min(frame.shape) < 2:
        raise ValueError(f"source_frame must be one grayscale frame (H, W), got shape {frame.shape}")
    if not np.isfinite(frame).all():
        raise ValueError("source_frame contains NaN or infinite values")
    src_kp = np.asarray(source_keypoints, dtype=np.float32)
    if src_kp.shape != (N_KEYPOINTS, 2):
        raise ValueError(f"source_keypoints must have shape ({N_KEYPOINTS}, 2), got {src_kp.shape}")
    targets = np.asarray(target_keypoints, dtype=np.float32)
    targets = targets[None] if targets.shape == (N_KEYPOINTS, 2) else targets
    if targets.ndim != 3 or targets.shape[1:] != (N_KEYPOINTS, 2) or len(targets) == 0:
        raise ValueError(f"target_keypoints must have shape (T, {N_KEYPOINTS}, 2) with T >= 1, got {targets.shape}")
    if not (fps is not None and math.isfinite(float(fps)) and float(fps) > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return frame, src_kp, targets


def _or_none(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _achieved_ef(source: np.ndarray, frames: np.ndarray, segmentation, spacing_mm, include_source: bool,
                 targets: np.ndarray, fan: np.ndarray | None = None
                 ) -> tuple[np.ndarray | None, float | None, str, dict | None]:
    """``(detected keypoints (T, 40, 2) or None, EF achieved or None, note, reading)`` of a generated loop
    (``frames`` ``(T, H, W)``; the EF is measured with the ``source`` ``(H, W)`` when the loop lacks it;
    ``targets`` ``(T', 40, 2)``: the keypoints of the measured frames, the source's first). A reading
    that is not of the generated LV (:func:`ef_reading`) gives no EF: the note says which frames lost it."""
    if segmentation is None:
        return None, None, "no segmentation model", None
    measured = frames if include_source else np.concatenate([source[None], frames])  # EF needs the source
    ef, detected = measure_ef(measured, segmentation, spacing_mm, return_keypoints=True,
                              apex_direction=apex_side(targets[0]), fan_mask=fan)
    reading = {**ef_reading(detected, targets, measured.shape[1:], first_frame=0 if include_source else 1),
               "ef_read": _or_none(ef)}
    ef_achieved = _or_none(ef)
    note = "measured" if ef_achieved is not None else "fewer than 2 frames with keypoints detected"
    if ef_achieved is not None and reading["reliable"] is False:
        ef_achieved = None
        note = (f"{UNREAD_NOTE}: the segmentation lost it on frame(s) {reading['lost_frames']} "
                f"of the loop (it covers less than {READING_AGREEMENT:g} of the keypoints' contour or lies outside "
                f"it; it read {ef:.1f} %); check the loop by eye")
    return (detected if include_source else detected[1:]), ef_achieved, note, reading


def _is_source_pose(targets: np.ndarray, src_kp: np.ndarray) -> bool:
    diff = np.abs(targets[0] - src_kp)
    same_nan = np.isnan(targets[0]) == np.isnan(src_kp)
    return bool(same_nan.all() and np.nan_to_num(diff).max() <= _SOURCE_TOLERANCE_PX)


def loop_frames(pipeline, frame: np.ndarray, src_kp: np.ndarray, targets: np.ndarray, *,
                sampling: SamplingSettings, include_source: bool = True, progress: bool = True):
    """The frames of a loop from one source frame, for any keypoint adapter: the core of
    :func:`generate_loop` and of :func:`~echokdm.generation.keypoint_edit.generate_keypoint_edit`.

    ``frame`` ``float32`` ``(H, W)`` (``(H, W, C)`` for a colour pipeline) in [0, 1]; ``src_kp`` ``(N, 2)`` and
    ``targets`` ``(T, N, 2)``
    ``(x, y)`` pixels of its grid. The pipeline runs at :func:`pipeline_size` with ``sampling`` and
    everything comes back at ``(H, W)``; with ``include_source`` the real source comes first (see
    :func:`generate_loop`).

    Returns
    -------
    tuple
        ``frames (T', H, W)``, ``flows (T', 2, H, W)``, ``keypoints (T', N, 2)``, ``gammas``
        (``(T',)``; ``None`` in per-frame mode) and the targets actually generated ``(T'', N, 2)``.
    """
    first_is_source = include_source and _is_source_pose(targets, src_kp)
    to_generate = targets[1:] if first_is_source else targets
    h, w = frame.shape[:2]
    frames = np.zeros((0, *frame.shape), np.float32)  # (0, H, W) or (0, H, W, C)
    flows = np.zeros((0, 2, h, w), np.float32)
    gammas = np.zeros(0) if sampling.mode == "gamma" else None
    if len(to_generate):
        frames, flows, gammas = _run_pipeline(pipeline, frame, src_kp, to_generate, sampling=sampling,
                                              progress=progress)
    keypoints = to_generate
    if include_source:
        frames = np.concatenate([frame[None], frames])
        flows = np.concatenate([np.zeros((1, 2, h, w), np.float32), flows])
        keypoints = np.concatenate([src_kp[None], to_generate])
        gammas = None if gammas is None else np.concatenate([[0.0], gammas])
    return frames, flows, keypoints, gammas, to_generate


def generate_loop(
    pipeline,
    source_frame: np.ndarray,
    source_keypoints: np.ndarray,
    target_keypoints: np.ndarray,
    *,
    fps: float,
    sampling: SamplingSettings | None = None,
    spacing_mm: tuple[float, float] | None = None,
    segmentation=None,
    include_source: bool = True,
    fan_mask: np.ndarray | None = None,
    progress: bool = True,
    motion: str = "custom",
    source_index: int | None = None,
    patient_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    **deprecated: Any,
) -> GeneratedLoop:
    """Generate a cine loop from one frame and a target keypoint trajectory with KDM.

    Parameters
    ----------
    pipeline : KDMPipeline or path
        The pipeline, or its ``save_pretrained`` folder.
    source_frame : numpy.ndarray
        ``(H, W)`` grayscale frame in [0, 1], any size (resized to the pipeline's size and back,
        see the module docstring).
    source_keypoints : numpy.ndarray
        ``(40, 2)`` ``(x, y)`` pixels of the source frame.
    target_keypoints : numpy.ndarray
        ``(T, 40, 2)`` (or ``(40, 2)``) ``(x, y)`` pixels in the source frame's grid, e.g. from
        :mod:`echokdm.generation.motion`.
    fps : float
        Frame rate of the loop.
    sampling : SamplingSettings, optional
        Flow mode, ``k``, DDIM steps, seed, batch size and ``fit_keypoints``
        (:class:`~echokdm.generation.settings.SamplingSettings`; default ``SamplingSettings()``).
        ``fit_keypoints`` (on by default) carries each target keypoint onto its source keypoint, so
        the loop follows the asked motion also where it is larger than K2F saw in training, which
        K2F renders short (a 70 % EF beat came out near 53 % without it).
    spacing_mm : (dx, dy), optional
        Pixel size, for volumes in mL (the EF is a ratio and needs it only for anisotropic pixels).
    segmentation : LVSegmentationNet or path, optional
        Model (or its folder) that re-detects the keypoints on the generated frames for
        ``ef_achieved``; without it ``ef_achieved`` is ``None``.
    include_source : bool
        True: the loop starts with the real source frame (zero flow, the source keypoints). When
        the first target is the source pose (within 1e-3 px), as for every multi-frame motion of
        :mod:`echokdm.generation.motion`, that frame is the source itself instead of a
        generated copy (``T`` frames); otherwise the source is put before the generated frames
        (``T + 1`` frames). False: one generated frame per target (``T`` frames).
    fan_mask : numpy.ndarray, optional
        ``bool`` ``(H, W)``: the ultrasound fan of the source (:func:`echokdm.io.fan.source_fan`).
        Pixels outside it are set to 0 in the source frame before the model sees it and in every
        frame returned, so that burned-in text around the fan never reaches the loop
        (``metadata["fan_masked"]`` says whether this was done). ``None``: no mask.
    progress : bool
        Show progress bars.
    motion, source_index, patient_id, metadata
        Stored in the :class:`GeneratedLoop` (``metadata`` must hold no personal data).
    **deprecated
        The old separate settings ``mode``, ``k``, ``num_inference_steps``, ``seed``,
        ``batch_size``, ``fit_keypoints``: mapped onto ``sampling`` with a FutureWarning (for one
        release).

    Returns
    -------
    GeneratedLoop
    """
    sampling = sampling_from_keywords(sampling, deprecated, "generate_loop")
    if isinstance(pipeline, (str, os.PathLike)):
        from echokdm.pipelines.kdm import KDMPipeline

        pipeline = KDMPipeline.from_pretrained(pipeline)
    frame, src_kp, targets = _checked_inputs(source_frame, source_keypoints, target_keypoints, fps)
    fan = _checked_fan(fan_mask, frame.shape)
    if fan is not None:
        from echokdm.io.fan import apply_fan

        frame = apply_fan(frame, fan)
    frames, flows, keypoints, gammas, to_generate = loop_frames(
        pipeline, frame, src_kp, targets, sampling=sampling, include_source=include_source, progress=progress)
    if fan is not None:
        frames = apply_fan(frames, fan)  # nothing the model put outside the fan either
    asked = np.concatenate([src_kp[None], to_generate])  # the keypoints of the source and every generated frame
    ef_target = _or_none(loop_ef(asked, spacing_mm))
    detected, ef_achieved, note, reading = _achieved_ef(frame, frames, segmentation, spacing_mm, include_source, asked,
                                                       fan)
    recorded = {name: value for name, value in dataclasses.asdict(sampling).items() if name != "batch_size"}
    info = {**recorded, "fan_masked": fan is not None, "input_size": list(frame.shape),
            "pipeline_size": list(pipeline_size(pipeline)), "source_included": bool(include_source),
            "ef_achieved_note": note, **({"ef_reading": reading} if reading is not None else {}), **(metadata or {})}
    return GeneratedLoop(frames=frames, fps=float(fps), keypoints=keypoints, flows=flows, ef_target=ef_target,
                         spacing_mm=spacing_mm, ef_achieved=ef_achieved, source_frame=source_index, motion=motion,
                         patient_id=patient_id, gammas=gammas, detected_keypoints=detected, metadata=info)


# ---------------------------------------------------------------------------------------------
# sources from files
# ---------------------------------------------------------------------------------------------


class LoopSource(NamedTuple):
    """What :func:`source_from_file` found (unpacks as a tuple in this order).

    ``frame`` ``float32`` ``(H, W)`` in [0, 1]; ``keypoints`` ``float32`` ``(40, 2)`` ``(x, y)``
    pixels; ``fps`` or None; ``spacing_mm`` ``(dx, dy)`` or None; ``patient_id`` (pseudonymous)
    or None; ``cine`` the whole clip that was read; ``keypoints_source`` one of ``"given"``,
    ``"mask"``, ``"tracing"``, ``"segmentation"``.
    """

    frame: np.ndarray
    keypoints: np.ndarray
    fps: float | None
    spacing_mm: tuple[float, float] | None
    patient_id: str | None
    cine: Any
    keypoints_source: str


def _read_image(path: Path):
    """A still image as a one-frame :class:`~echokdm.io.cine.Cine` (gray; colour → BT.601 luma)."""
    from PIL import Image, UnidentifiedImageError

    from echokdm.errors import ReadError
    from echokdm.io._convert import to_gray_frames
    from echokdm.io.cine import Cine

    try:
        with Image.open(path) as img:
            if img.mode in ("L", "I;16", "I;16B", "I;16L"):
                frames = to_gray_frames(np.asarray(img))
            else:
                frames = to_gray_frames(np.asarray(img.convert("RGB"))[None])
    except (UnidentifiedImageError, OSError) as exc:
        raise ReadError(path, f"not a readable image ({exc})") from exc
    return Cine(frames=frames, clip_id=path.stem, source=path, dataset="image",
                metadata={"image_format": path.suffix.lower().lstrip(".")})


def read_source(path: str | os.PathLike, format: str | None = None, **read_kwargs: Any):
    """Read any supported file (or a still image) as a :class:`~echokdm.io.cine.Cine`.

    Like :func:`~echokdm.io.read_cine`, plus: a PNG/JPEG/BMP/TIFF image becomes a one-frame
    cine (gray, BT.601 luma for colour), and a plain NIfTI image picks up the ``<stem>_gt`` /
    ``_mask`` / ``_seg`` / ``_label`` mask next to it unless ``mask_path`` is given.
    """
    from echokdm.io.dispatch import guess_format, read_cine

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if format is None and path.suffix.lower() in IMAGE_SUFFIXES:
        return _read_image(path)
    fmt = format or guess_format(path)
    kwargs = dict(read_kwargs)
    if fmt == "nifti" and "mask_path" not in kwargs:
        from echokdm.data.manifest import mask_sibling

        sibling = mask_sibling(path)
        if sibling is not None:
            kwargs["mask_path"] = sibling
    return read_cine(path, fmt, **kwargs)


def _read_mask_file(path: Path, frame_index: int, shape: tuple[int, int], lv_label: int = 1) -> np.ndarray:
    """A binary mask ``(H, W)`` from ``.npy`` / image / NIfTI (``(T, H, W)`` files: frame ``frame_index``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        from echokdm.io.nifti import read_label_frames

        labels = read_label_frames(path)  # (T, H, W)
    elif name.endswith(".npy"):
        labels = np.load(path, allow_pickle=False)
    elif name.endswith(IMAGE_SUFFIXES):
        from PIL import Image

        with Image.open(path) as img:
            labels = np.asarray(img.convert("L"))
    else:
        raise ValueError(f"{path}: unknown mask file type; use .npy, .png or .nii/.nii.gz")
    if labels.ndim not in (2, 3) or labels.shape[-2:] != tuple(shape):
        raise ValueError(f"{path}: mask of shape {labels.shape} does not match the source frame (H, W) = {shape}")
    labels = labels[None] if labels.ndim == 2 else labels
    if len(labels) == 1:
        mask = labels[0]
    elif 0 <= frame_index < len(labels):
        mask = labels[frame_index]
    else:
        raise ValueError(f"{path}: frame {frame_index} is outside the mask file's {len(labels)} frame(s)")
    values = np.unique(mask)
    return (mask != 0 if len(values) <= 2 else mask == lv_label).astype(np.uint8)


def _given_keypoints(value, frame_index: int) -> np.ndarray:
    """Keypoints ``(40, 2)`` from an array or a keypoint file (one set, or the set of ``frame_index``)."""
    from echokdm.generation.motion import load_keypoints_file
    from echokdm.io.keypoint_files import read_keypoints_csv

    if not isinstance(value, (str, os.PathLike)):
        kp = np.asarray(value, dtype=np.float32)
        if kp.shape != (N_KEYPOINTS, 2):
            raise ValueError(f"keypoints must have shape ({N_KEYPOINTS}, 2), got {kp.shape}")
        return kp
    path = Path(value)
    every = load_keypoints_file(path)
    has_frames = path.suffix.lower() == ".csv" and read_keypoints_csv(path, return_frames=True)[1] is not None
    if len(every) == 1 and not has_frames:
        return every[0]
    return load_keypoints_file(path, frame=frame_index)


def _own_label_keypoints(cine, frame_index: int, apex_direction) -> tuple[np.ndarray, str] | None:
    """Keypoints from the clip's own tracing or mask at ``frame_index``, None when it has neither."""
    from echokdm.geometry.keypoints import mask_keypoints, tracing_keypoints

    if cine.tracings and frame_index in cine.tracings:
        return tracing_keypoints(cine.tracings[frame_index]).keypoints, "tracing"
    labelled = cine.labelled_frames is None or frame_index in set(np.asarray(cine.labelled_frames).tolist())
    if cine.masks is not None and labelled and cine.masks[frame_index].any():
        return mask_keypoints(cine.masks[frame_index], apex_direction=apex_direction).keypoints, "mask"
    return None


def ed_frame(cine, segmentation=None, *, apex_direction="auto") -> tuple[int, str]:
    """``(index, how)``: the clip's end-diastolic frame, the source a beat starts from (``generate --frame ed``).

    From the volume curve of the clip's keypoints (:func:`clip_keypoints`: its own masks on every frame,
    else ``segmentation``'s, inside the fan): the first ED frame of the beats
    :func:`~echokdm.geometry.volumes.cardiac_cycle` finds whose volume is within 5 % of the largest,
    else the largest volume (:func:`~echokdm.geometry.volumes.first_full_ed_frame`). For a clip traced
    or masked on a few frames (EchoNet-Dynamic's ED and ES), the labelled frame with the largest volume;
    else frame 0, and ``how`` says why. A synthetic or another patient's beat starts at end-diastole
    with the source's keypoints: from a systolic frame it would contract an LV that has already
    contracted.
    """
    from echokdm.geometry.volumes import cardiac_cycle, first_full_ed_frame

    if cine.n_frames <= 1:
        return 0, "a single frame"
    if fully_labelled(cine) or segmentation is not None:
        volumes = simpson_volume(clip_keypoints(cine, segmentation, apex_direction=apex_direction), cine.spacing_mm)
        if np.isfinite(volumes).any():
            ed = first_full_ed_frame(volumes, cardiac_cycle(volumes, cine.fps or DEFAULT_FPS).ed_frames)
            return ed, "end-diastole, from the volume curve of the clip's keypoints"
    labelled = [] if cine.labelled_frames is None else [int(t) for t in cine.labelled_frames]
    volumes = {}
    for t in sorted(set(labelled) | set(cine.tracings or {})):
        found = _own_label_keypoints(cine, t, "auto" if apex_direction is None else apex_direction)
        if found is not None:
            volumes[t] = float(simpson_volume(found[0]))
    volumes = {t: v for t, v in volumes.items() if np.isfinite(v)}
    if volumes:
        return max(volumes, key=volumes.get), "the labelled frame with the largest LV volume"
    return 0, "frame 0: no labels and no segmentation model to find end-diastole"


def source_from_file(
    path: str | os.PathLike,
    frame_index: int = 0,
    keypoints=None,
    mask=None,
    segmentation=None,
    *,
    format: str | None = None,
    apex_direction: str | tuple[float, float] | None = "up",
    cine=None,
    **read_kwargs: Any,
) -> LoopSource:
    """The source frame of a file and its 40 keypoints.

    Parameters
    ----------
    path : str or os.PathLike
        DICOM, AVI/MP4/GIF, NIfTI (its ``<stem>_gt`` mask next to it is used), CAMUS, EchoNet
        ``Videos/*.avi`` (read with :func:`~echokdm.io.read_cine`), or a still image
        (PNG/JPEG/BMP/TIFF, read with Pillow as gray).
    frame_index : int
        The source frame (0 for a still image).
    keypoints : array or path, optional
        ``(40, 2)`` keypoints, or a keypoint file (:func:`~echokdm.generation.motion.load_keypoints_file`:
        its only set, or the row of ``frame_index``).
    mask : array or path, optional
        LV blood-pool mask ``(H, W)`` (or a ``(T, H, W)`` file: frame ``frame_index``) as
        ``.npy``, PNG or NIfTI; keypoints by :func:`~echokdm.geometry.mask_keypoints`.
    segmentation : LVSegmentationNet or path, optional
        Model that segments the frame when neither ``keypoints``, ``mask`` nor the clip's own
        tracing or mask of the frame gives the keypoints: inside the clip's ultrasound fan when one is
        found (:func:`echokdm.io.fan.source_fan`), and for ``apex_direction="auto"`` with the apex on the
        sector's apex side.
    format : str, optional
        Reader format (:data:`echokdm.io.dispatch.FORMATS`); guessed by default.
    apex_direction
        As in :func:`~echokdm.geometry.mask_keypoints`.
    cine : Cine, optional
        The clip of ``path`` when already read (with the same reader options): not read again.
    **read_kwargs
        Passed to the reader (e.g. ``crop_to_fan=True`` for DICOM).

    Returns
    -------
    LoopSource
        ``(frame, keypoints, fps, spacing_mm, patient_id, cine, keypoints_source)``.

    Raises
    ------
    FileNotFoundError
        ``path`` (or a keypoint/mask file) does not exist.
    ValueError
        ``frame_index`` outside the clip, unreadable keypoints or mask, or no way to get the
        keypoints; the message names the file.
    """
    from echokdm.geometry.keypoints import KeypointError, mask_keypoints
    from echokdm.io.fan import apex_direction_with_fan, fan_mask_or_none

    path = Path(path)
    cine = read_source(path, format, **read_kwargs) if cine is None else cine
    if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)) or not (
            0 <= frame_index < cine.n_frames):
        raise ValueError(f"{path}: frame {frame_index!r} is outside the clip's frames 0..{cine.n_frames - 1}")
    frame_index = int(frame_index)
    frame = cine.frames[frame_index]
    try:
        if keypoints is not None:
            kp, how = _given_keypoints(keypoints, frame_index), "given"
        elif mask is not None:
            m = _read_mask_file(Path(mask), frame_index, frame.shape) if isinstance(mask, (str, os.PathLike)) \
                else np.asarray(mask)
            kp, how = mask_keypoints(m, apex_direction=apex_direction).keypoints, "mask"
        else:
            own = _own_label_keypoints(cine, frame_index, apex_direction)
            if own is None and segmentation is None:
                raise ValueError(f"{path}: frame {frame_index} has no mask or tracing of its own; give keypoints, "
                                 "a mask or a segmentation model (echokdm generate: --keypoints FILE, --mask FILE or "
                                 "--segmentation MODEL, e.g. the packaged seg_phantom_112)")
            if own is None:
                fan = fan_mask_or_none(cine)
                m = segment_frames(load_segmentation(segmentation), frame[None], fan)[0]
                side = apex_direction_with_fan(fan, apex_direction)
                own = mask_keypoints(m, apex_direction=side).keypoints, "segmentation"
            kp, how = own
    except KeypointError as exc:
        raise ValueError(f"{path}: frame {frame_index}: no keypoints from the mask ({exc})") from exc
    return LoopSource(frame, np.asarray(kp, np.float32), cine.fps, cine.spacing_mm, cine.patient_id or None,
                      cine, how)


def fully_labelled(cine) -> bool:
    """Whether the clip carries an LV mask on every frame (then its keypoints need no model)."""
    masks, labelled = getattr(cine, "masks", None), getattr(cine, "labelled_frames", None)
    return masks is not None and (labelled is None or len(labelled) == cine.n_frames)


def clip_keypoints(cine, segmentation=None, *, smooth_sigma_frames: float = 1.0,
                   apex_direction: str | tuple[float, float] | None = "auto",
                   fan_mask: np.ndarray | None = None) -> np.ndarray:
    """Keypoints of every frame of a clip, ``float32`` ``(T, 40, 2)`` (NaN where detection fails).

    From the clip's own masks when every frame is labelled, else from the segmentation model's
    masks of every frame, segmented inside the clip's ultrasound fan when one is found
    (:func:`echokdm.io.fan.source_fan`: a dark background or a caption is never the LV, and a small fan
    is seen at the scale the network knows), with
    the landmark smoothing and repairs of :func:`~echokdm.geometry.temporal.sequence_keypoints`;
    the apex side is detected per clip by default: from the sector's apex when the fan is found
    (:func:`echokdm.io.fan.fan_apex_direction`), else from the masks. ``fan_mask`` ``(H, W)`` passes
    a fan already found (not searched for again).

    Raises
    ------
    ValueError
        When the clip is not labelled on every frame and no model is given (names the clip).
    """
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.io.fan import apex_direction_with_fan, fan_mask_or_none

    if fully_labelled(cine):
        masks = cine.masks
    elif segmentation is not None:
        fan = np.asarray(fan_mask, dtype=bool) if fan_mask is not None else fan_mask_or_none(cine)
        masks = segment_frames(load_segmentation(segmentation), cine.frames, fan)
        apex_direction = apex_direction_with_fan(fan, apex_direction)
    else:
        where = cine.source or cine.clip_id
        raise ValueError(f"{where}: the motion needs keypoints on every frame, but the clip has masks on "
                         f"{0 if cine.masks is None else len(cine.labelled_frames)} of {cine.n_frames} frames; "
                         "give a segmentation model or a keypoint file")
    return sequence_keypoints(masks, smooth_sigma_frames=smooth_sigma_frames, apex_direction=apex_direction).keypoints
