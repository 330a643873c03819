"""The ultrasound fan (sector) of a source clip, so that nothing outside it reaches a synthetic output.

Scanner cines carry burned-in text, a patient-name box, an ECG trace and labels around the
ultrasound image. A generated loop starts from a real frame, so without a mask those pixels would be
copied into every synthetic file. :func:`source_fan` finds the fan of a clip and
:func:`apply_fan` sets everything outside it to 0; generation masks the source frame before the
model sees it and every generated frame after (``echokdm generate`` and ``echokdm synthesize`` do so
by default).

How the fan is found, first that works:

1. ``"motion"``: the pixels that change over time (:func:`echokdm.io.dicom.motion_fan_mask`:
   opening, closing, largest region, convex hull), for clips of two frames or more; static text
   is outside it. Within the DICOM calibration region (*Sequence of Ultrasound Regions*) when the
   file has one (``"motion+region"``).
2. ``"still"``: for a single frame (or a clip where nothing moves), the largest bright region,
   convex hull (:func:`still_fan_mask`), within the calibration region when there is one.
3. ``"region"``: the calibration region's box alone.

A mask counts as found when it covers between :data:`MIN_FAN_FRACTION` and
:data:`MAX_FAN_FRACTION` of the frame: a mask that covers (nearly) everything separates nothing
from the fan, so nothing can be said about what lies outside it.

:func:`source_fan` also reads the DICOM source's *Burned In Annotation*; :meth:`Fan.check`
refuses a source that says ``YES`` when no fan was found.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

__all__ = ["MAX_FAN_FRACTION", "MIN_FAN_FRACTION", "Fan", "apply_fan", "apex_direction_with_fan", "fan_apex_direction",
           "fan_mask_or_none", "find_fan", "source_fan", "still_fan_mask"]

#: Smallest and largest part of the frame a found fan may cover.
MIN_FAN_FRACTION = 0.05
MAX_FAN_FRACTION = 0.97
#: Brightness (frames in [0, 1]) above which a pixel of a still frame counts as image.
STILL_THRESHOLD = 0.02
#: Local (5 × 5) standard deviation above which a pixel of a still frame counts as textured (speckle):
#: a scanner's flat banners and panels have none inside (their text only at its edges).
TEXTURE_SD = 0.02


@dataclasses.dataclass(frozen=True)
class Fan:
    """The fan of a source clip.

    Attributes
    ----------
    mask : numpy.ndarray or None
        ``bool`` ``(H, W)`` on the clip's frames (as read, after any crop), True inside the fan;
        ``None`` when not found.
    method : str or None
        ``"motion"``, ``"motion+region"``, ``"still"``, ``"still+region"``, ``"region"``, or
        ``None`` when not found.
    note : str
        How it was found, or why not (one line).
    burned_in_annotation : str or None
        The source's *Burned In Annotation* (``"YES"``/``"NO"``), ``None`` when it does not say.
    """

    mask: np.ndarray | None
    method: str | None
    note: str
    burned_in_annotation: str | None = None

    @property
    def found(self) -> bool:
        return self.mask is not None

    @property
    def fraction(self) -> float:
        """Part of the frame inside the fan (0 when not found)."""
        return 0.0 if self.mask is None else float(self.mask.mean())

    def check(self, where: str) -> None:
        """Raise :class:`ValueError` when the source says it has burned-in annotation and no fan was
        found (its text would reach the outputs)."""
        if not self.found and self.burned_in_annotation == "YES":
            raise ValueError(f"{where}: BurnedInAnnotation is YES and the ultrasound fan could not be found "
                             f"({self.note}); refusing to copy its burned-in text into synthetic outputs "
                             "(crop the clip to the ultrasound image first, e.g. --crop-to-fan)")


def still_fan_mask(frame: np.ndarray, threshold: float = STILL_THRESHOLD) -> np.ndarray:
    """The fan of one frame: the largest textured region brighter than ``threshold``, convex hull.

    Pixels above ``threshold`` are opened (removes thin lines and small text touching the fan)
    and closed (joins speckle), radius ``max(2, min(H, W) / 100)``; the largest connected region
    of which at least half the pixels are *textured* (5 × 5 standard deviation above
    :data:`TEXTURE_SD`: speckle) is kept and replaced by its convex hull, so that a flat grey banner
    or panel larger than the image (a scanner's title bar, textured only at its text's edges) does
    not pass for the fan. When no region is textured (a drawn, flat sector) the largest one is kept.
    ``bool`` ``(H, W)``, all false when nothing is bright.
    """
    frame = np.asarray(frame, dtype=np.float32)
    if frame.ndim != 2:
        raise ValueError(f"still_fan_mask needs one frame (H, W), got shape {frame.shape}")
    from scipy import ndimage

    from echokdm.io.dicom import largest_region_hull

    mean = ndimage.uniform_filter(frame, 5)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(frame * frame, 5) - mean * mean, 0.0))
    return largest_region_hull(frame > threshold, textured=sd > TEXTURE_SD)


def _plausible(mask: np.ndarray | None) -> bool:
    return mask is not None and MIN_FAN_FRACTION <= float(mask.mean()) <= MAX_FAN_FRACTION


def find_fan(frames: np.ndarray, region_box: tuple[int, int, int, int] | None = None
             ) -> tuple[np.ndarray | None, str | None, str]:
    """``(mask, method, note)`` of frames ``(T, H, W)`` in [0, 1] (module docstring).

    ``region_box`` is a half-open ``(x0, y0, x1, y1)`` box on these frames (the calibration region)
    that the fan lies in, or ``None``.
    """
    from echokdm.io.dicom import motion_fan_mask

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or 0 in frames.shape:
        raise ValueError(f"find_fan needs frames (T, H, W), got shape {frames.shape}")
    height, width = frames.shape[1:]
    inside = None
    if region_box is not None:
        x0, y0, x1, y1 = region_box
        inside = np.zeros((height, width), bool)
        inside[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)] = True
        if not inside.any():
            inside = None
    suffix = "" if inside is None else "+region"
    tried = []
    if frames.shape[0] >= 2:
        mask = motion_fan_mask(frames)
        mask = mask if inside is None else mask & inside
        if _plausible(mask):
            return mask, f"motion{suffix}", f"found by motion ({100 * mask.mean():.0f} % of the frame)"
        tried.append(f"moving pixels cover {100 * mask.mean():.0f} % of the frame")
    still = frames[0] if inside is None else frames[0] * inside
    mask = still_fan_mask(still)
    if _plausible(mask):
        return mask, f"still{suffix}", f"found as the largest bright region ({100 * mask.mean():.0f} % of the frame)"
    tried.append(f"the largest bright region covers {100 * mask.mean():.0f} % of the frame")
    if _plausible(inside):
        return inside, "region", "the calibration region's box"
    return None, None, "not found: " + "; ".join(tried) + (
        f" (a fan must cover {100 * MIN_FAN_FRACTION:.0f}-{100 * MAX_FAN_FRACTION:.0f} %)")


def _dicom_header(cine):
    """The source DICOM dataset without pixels, or None."""
    if cine.dataset != "dicom" or cine.source is None or not Path(cine.source).is_file():
        return None
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(cine.source, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - the reader already read it; a header we cannot re-read says nothing
        return None


def _region_box_on_frames(ds, cine) -> tuple[int, int, int, int] | None:
    """The calibration region's box in the coordinates of the cine's (possibly cropped) frames."""
    from echokdm.io.dicom import calibration_region_box

    try:
        box = calibration_region_box(ds)
    except Exception:  # noqa: BLE001 - a malformed region sequence gives no box
        return None
    if box is None:
        return None
    x0, y0, x1, y1 = box
    rows, cols = cine.metadata.get("rows"), cine.metadata.get("columns")
    if rows and cols and (x1 > int(cols) + 1 or y1 > int(rows) + 1):
        return None  # drawn for another image size (the reader does not trust it either)
    crop = cine.metadata.get("crop_box")
    if crop is not None:
        x0, y0, x1, y1 = x0 - crop[0], y0 - crop[1], x1 - crop[0], y1 - crop[1]
    return (x0, y0, x1, y1)


def source_fan(cine) -> Fan:
    """The fan of a :class:`~echokdm.io.cine.Cine` (module docstring), with the DICOM source's
    *Burned In Annotation*."""
    ds = _dicom_header(cine)
    burned = None
    box = None
    if ds is not None:
        value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        burned = value if value in ("YES", "NO") else None
        box = _region_box_on_frames(ds, cine)
    mask, method, note = find_fan(cine.frames, box)
    return Fan(mask=mask, method=method, note=note, burned_in_annotation=burned)


def fan_mask_or_none(cine) -> np.ndarray | None:
    """The clip's fan ``bool`` ``(H, W)`` (:func:`source_fan`), or None when none is found or the source's
    header cannot be read (then nothing is masked or cropped by it)."""
    try:
        fan = source_fan(cine)
    except (ValueError, OSError):
        return None
    return None if fan.mask is None else np.asarray(fan.mask, dtype=bool)


def apply_fan(frames: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Frames ``(..., H, W)`` with every pixel outside ``mask`` ``(H, W)`` set to 0 (unchanged when
    ``mask`` is None)."""
    frames = np.asarray(frames, dtype=np.float32)
    if mask is None:
        return frames
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != frames.shape[-2:]:
        raise ValueError(f"fan mask of shape {mask.shape} does not match frames of size {frames.shape[-2:]}")
    return np.where(mask, frames, np.float32(0.0)).astype(np.float32, copy=False)


def fan_apex_direction(mask: np.ndarray | None, *, min_ratio: float = 2.0) -> str | None:
    """Which image side the sector's apex (the transducer) is on: ``"up"``, ``"down"``, ``"left"``
    or ``"right"``, or None when the mask is missing or not clearly a sector.

    In an apical view the LV apex points at the transducer, so this is the side the LV apex points
    to, found without looking at the heart. The sector is narrow at the transducer and wide at
    depth: the side whose end of the fan (the outer tenth of its extent along that axis) is at
    least ``min_ratio`` times narrower than the opposite end is the apex side.
    """
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.sum() < 16:
        return None
    best, side = 0.0, None
    for axis, (first, last) in ((0, ("up", "down")), (1, ("left", "right"))):
        widths = mask.sum(axis=1 - axis).astype(np.float64)  # per row (axis 0) or per column (axis 1)
        inside = np.flatnonzero(widths > 0)
        lo, hi = int(inside[0]), int(inside[-1])
        tenth = max(1, (hi - lo + 1) // 10)
        start = widths[lo:lo + tenth].mean()
        end = widths[hi - tenth + 1:hi + 1].mean()
        for narrow, wide, name in ((start, end, first), (end, start, last)):
            ratio = wide / max(narrow, 1.0)
            if ratio >= min_ratio and ratio > best:
                best, side = ratio, name
    return side


def apex_direction_with_fan(fan: np.ndarray | None, apex_direction):
    """``apex_direction`` as given, or for ``"auto"`` the side of the sector's apex when the fan says it
    (:func:`fan_apex_direction`), else ``"auto"``: for masks a network predicted, the LV apex points at
    the transducer in an apical view, which the sector shows more surely than the masks' shape (a leak
    through the mitral valve narrows the base; on pydicom's real cine the masks alone read the apex
    "down" or "left")."""
    if fan is None or not (isinstance(apex_direction, str) and apex_direction == "auto"):
        return apex_direction
    return fan_apex_direction(fan) or "auto"
