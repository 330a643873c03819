"""Quick-look previews of a cine: first / middle / last frame PNGs and a playable video."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echokdm.io.atomic import atomic_output
from echokdm.io.cine import Cine

__all__ = ["write_png", "write_preview", "preview_frame_indices"]


def preview_frame_indices(n_frames: int) -> dict[str, int]:
    """Indices of the first, middle and last frame of a cine of ``n_frames`` frames."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    return {"first": 0, "middle": (n_frames - 1) // 2, "last": n_frames - 1}


def write_png(path: str | os.PathLike, frame: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write one frame in [0, 1], grayscale ``(H, W)`` or RGB ``(H, W, 3)``, as an 8-bit PNG, atomically.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    from PIL import Image

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    frame = np.asarray(frame, dtype=np.float32)
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[-1] == 3)):
        raise ValueError(f"{path}: expected one (H, W) or (H, W, 3) frame, got shape {frame.shape}")
    pixels = np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Image.fromarray(pixels, mode="L" if frame.ndim == 2 else "RGB").save(tmp, format="PNG")
    return path


def write_preview(
    cine: Cine, out_dir: str | os.PathLike, *, stem: str | None = None, overwrite: bool = False
) -> dict[str, Path]:
    """Write ``<stem>_first.png``, ``_middle.png``, ``_last.png`` and ``<stem>.mp4`` into ``out_dir``.

    The MP4 plays at the cine's frame rate (30 fps when unknown). Returns the written paths by
    name (``"first"``, ``"middle"``, ``"last"``, ``"mp4"``). Nothing is overwritten unless
    ``overwrite`` is true; the check happens before anything is written.
    """
    from echokdm.io.video import write_video

    out_dir = Path(out_dir)
    stem = stem or (cine.clip_id or "clip").replace("/", "_")
    targets = {name: out_dir / f"{stem}_{name}.png" for name in preview_frame_indices(cine.n_frames)}
    targets["mp4"] = out_dir / f"{stem}.mp4"
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)}: already exist(s); pass overwrite=True (--overwrite) to replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, index in preview_frame_indices(cine.n_frames).items():
        write_png(targets[name], cine.frames[index], overwrite=overwrite)
    write_video(targets["mp4"], cine.frames, fps=cine.fps or 30.0, overwrite=overwrite)
    return targets
