"""One picture per clip of what its EF was measured from: the ED and ES frames with their keypoints,
and the volume curve with the beats, the rejected and the flagged frames.

``echokdm ef`` writes these (``ef_clips/<dataset>_<clip>.png``) for the clips a researcher should look
at first: the furthest from their ``ef_reference`` when the manifest has one, else the clips with
flags, then the rest in manifest order (:func:`pick_clips`). A number in a CSV cannot show that the
segmentation took the atrium for the LV, or that ED sits on a noisy frame; the picture can.

Privacy: frames are shown inside the clip's ultrasound fan only (:func:`echokdm.io.fan.source_fan`);
a source that declares burned-in annotation and whose fan cannot be found is drawn without frames.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from echokdm.geometry.keypoints import N_KEYPOINTS

__all__ = ["clip_ef_figure", "pick_clips", "shown_frames", "write_clip_ef_plots"]

_ED_COLOUR, _ES_COLOUR, _FLAG_COLOUR = "tab:red", "tab:blue", "tab:orange"


def _frames_of(text) -> list[int]:
    return [int(v) for v in str(text).split()] if isinstance(text, str) and text.strip() else []


def pick_clips(clips: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, str]:
    """The ``limit`` clips of an :attr:`~echokdm.metrics.lv_function.EFTable.clips` table to draw, and why.

    With references: the largest ``|ef_error|`` first, then clips without an EF or a reference.
    Without: clips with flags or no EF first, then the others, in manifest order.
    """
    if limit <= 0 or clips.empty:
        return clips.iloc[:0], "none"
    error = pd.to_numeric(clips["ef_error"], errors="coerce").abs()
    if error.notna().any():
        order = clips.assign(_key=error.fillna(np.inf)).sort_values("_key", ascending=False, kind="stable")
        why = "the furthest from ef_reference (or not measured) first"
    else:
        flagged = clips["flags"].fillna("").astype(str).str.len().gt(0) | clips["ef"].isna()
        order = clips.assign(_key=~flagged).sort_values("_key", kind="stable")
        why = "clips with flags or no EF first, then in manifest order"
    picked = order.drop(columns="_key").head(limit)
    return picked, why if len(picked) < len(clips) else "all clips"


def shown_frames(cine) -> tuple[np.ndarray | None, str]:
    """The clip's frames as the plots may show them: inside the ultrasound fan, or ``None`` (with the
    reason) when the source declares burned-in annotation and no fan was found."""
    from echokdm.io.fan import apply_fan, source_fan

    try:
        fan = source_fan(cine)
    except (ValueError, OSError) as exc:
        return None, f"frames not shown: the fan could not be looked for ({exc})"
    if not fan.found and fan.burned_in_annotation == "YES":
        return None, "frames not shown: burned-in annotation and no ultrasound fan found"
    return apply_fan(cine.frames, fan.mask), ""


def _outline(ax, keypoints: np.ndarray, colour: str) -> None:
    """The 40 keypoints as the LV outline (0 … 39 along the wall, the base closing it)."""
    kp = np.asarray(keypoints, np.float64)
    if not np.isfinite(kp).any():
        return
    closed = np.concatenate([kp, kp[:1]])
    ax.plot(closed[:, 0], closed[:, 1], "-", color=colour, lw=1.0)
    ax.plot(kp[:, 0], kp[:, 1], ".", color=colour, ms=2)


def _frame_panel(ax, frames, keypoints: np.ndarray, frame: int | None, label: str, colour: str, volume: float,
                 units: str, note: str) -> None:
    ax.set_axis_off()
    if frame is None:
        ax.set_title(f"{label}: none", fontsize=9)
        return
    ax.set_title(f"{label}, frame {frame}: {volume:.1f} {units}" if math.isfinite(volume) else
                 f"{label}, frame {frame}", fontsize=9, color=colour)
    if frames is None:
        ax.text(0.5, 0.5, textwrap.fill(note, 30), ha="center", va="center", fontsize=8, transform=ax.transAxes)
        return
    ax.imshow(frames[frame], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    _outline(ax, keypoints[frame], colour)
    drawn = np.isfinite(keypoints[frame]).all(axis=-1)
    if drawn.any():  # zoom on the LV with a margin of half its size
        lo, hi = keypoints[frame][drawn].min(axis=0), keypoints[frame][drawn].max(axis=0)
        margin = 0.6 * max(hi - lo) + 4
        h, w = frames.shape[1:]
        ax.set_xlim(max(lo[0] - margin, -0.5), min(hi[0] + margin, w - 0.5))
        ax.set_ylim(min(hi[1] + margin, h - 0.5), max(lo[1] - margin, -0.5))


def _curve_panel(ax, group: pd.DataFrame, clip: dict, fps: float | None) -> None:
    """Volume against time, ED ▲ / ES ▼, accepted beats shaded, flagged frames ×, failed frames on the axis."""
    frames = group["frame"].to_numpy(int)
    volumes = group["volume"].to_numpy(float)
    scale = 1.0 / fps if fps and math.isfinite(fps) and fps > 0 else 1.0
    t = frames * scale
    if str(clip.get("method")) == "cardiac cycle":
        ax.plot(t, volumes, "-o", color="0.35", ms=2.5, lw=1.0, label="volume (keypoints)")
    else:  # a few labelled frames (EchoNet's ED/ES tracings): no curve between them
        ax.plot(t, volumes, "o", color="0.35", ms=4, label="volume of a labelled frame")
    flags = group["flags"].fillna("").astype(str)
    failed = flags.str.contains("failed:", regex=False).to_numpy()
    leak = flags.str.contains("open mitral valve", regex=False).to_numpy()
    for i in np.flatnonzero(leak):  # one band per leaking frame, half a frame either side
        ax.axvspan((frames[i] - 0.5) * scale, (frames[i] + 0.5) * scale, color=_FLAG_COLOUR, alpha=0.18, lw=0,
                   label="mask ran into the atrium" if i == np.flatnonzero(leak)[0] else None)
    borrowed = flags.str.contains("interpolated", regex=False).to_numpy() & ~failed & np.isfinite(volumes)
    if borrowed.any():
        ax.plot(t[borrowed], volumes[borrowed], "x", color=_FLAG_COLOUR, ms=6,
                label="landmarks from neighbouring frames")
    if failed.any() and np.isfinite(volumes).any():
        ax.plot(t[failed], np.full(failed.sum(), np.nanmin(volumes)), "|", color="k", ms=10, label="no keypoints")
    ed, es = _frames_of(clip.get("ed_frames")), _frames_of(clip.get("es_frames"))
    at = dict(zip(frames.tolist(), volumes.tolist(), strict=True))
    for picks, marker, colour, name in ((ed, "^", _ED_COLOUR, "ED"), (es, "v", _ES_COLOUR, "ES")):
        picks = [f for f in picks if f in at]
        ax.plot([f * scale for f in picks], [at[f] for f in picks], marker, color=colour, ms=8, ls="none",
                label=name)
    if str(clip.get("method")) == "cardiac cycle":
        for a, b in zip(ed, es, strict=False):
            ax.axvspan(min(a, b) * scale, max(a, b) * scale, color=_ES_COLOUR, alpha=0.08, lw=0,
                       label="ED–ES measured" if a == ed[0] else None)
    ax.set_xlabel("time (s)" if scale != 1.0 else "frame")
    ax.set_ylabel(f"LV volume ({clip.get('volume_units') or 'mL'})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _title(clip: dict) -> str:
    ef, ref = clip.get("ef"), clip.get("ef_reference")
    text = f"EF {ef:.1f} %" if ef is not None and math.isfinite(ef) else "EF not measured"
    if ref is not None and math.isfinite(ref):
        text += f" (reference {ref:.1f} %"
        text += f", error {ef - ref:+.1f})" if ef is not None and math.isfinite(ef) else ")"
    beats = clip.get("n_beats")
    if str(clip.get("method")) == "cardiac cycle" and beats:
        text += f", {int(beats)} beat(s)"
    return text


def clip_ef_figure(group: pd.DataFrame, clip: dict, frames: np.ndarray | None = None, *, fps: float | None = None,
                   frames_note: str = ""):
    """The figure of one clip (module docstring).

    Parameters
    ----------
    group : pandas.DataFrame
        The clip's rows of :attr:`~echokdm.metrics.lv_function.KeypointsTable.frames`.
    clip : dict
        Its row of :attr:`~echokdm.metrics.lv_function.EFTable.clips`.
    frames : numpy.ndarray, optional
        ``(T, H, W)`` frames in [0, 1] (:func:`shown_frames`); without them only the curve is drawn
        with ``frames_note`` in place of the pictures.
    fps : float, optional
        Frame rate (the curve's time axis in seconds; frames without it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from echokdm.metrics.lv_function import KEYPOINT_COLUMNS

    group = group.sort_values("frame")
    n = int(max(group["frame"].max() + 1 if len(group) else 0, 0 if frames is None else len(frames)))
    keypoints = np.full((n, N_KEYPOINTS, 2), np.nan)
    if len(group):
        xy = group[KEYPOINT_COLUMNS].to_numpy(float)
        keypoints[group["frame"].to_numpy(int)] = np.stack([xy[:, :N_KEYPOINTS], xy[:, N_KEYPOINTS:]], axis=-1)
    volume_of = dict(zip(group["frame"].astype(int), group["volume"].astype(float), strict=True))
    fig = Figure(figsize=(12, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 0.15, 2.2], left=0.03, right=0.98, top=0.82, bottom=0.22)
    units = str(clip.get("volume_units") or "mL")
    note = frames_note or "frames not read"
    stand_ins = _stand_in_frames(volume_of)
    for col, (label, key, colour) in enumerate((("ED", "ed_frames", _ED_COLOUR), ("ES", "es_frames", _ES_COLOUR))):
        picks = [f for f in _frames_of(clip.get(key)) if f < n]
        frame = picks[0] if picks else stand_ins[col]
        if not picks and frame is not None:  # no beat measured: what the keypoints were found on, said so
            label = "no ED" if col == 0 else "no ES"  # the largest and the smallest volume measured
        _frame_panel(fig.add_subplot(grid[0, col]), frames, keypoints, frame, label, colour,
                     volume_of.get(frame, math.nan), units, note)
    _curve_panel(fig.add_subplot(grid[0, 3]), group, clip, fps)
    fig.suptitle(f"{clip.get('dataset')} / {clip.get('clip_id')} (patient {clip.get('patient_id')}): {_title(clip)}",
                 fontsize=11)
    lines = [str(clip.get(k)) for k in ("flags", "rejected_beats") if isinstance(clip.get(k), str) and clip.get(k)]
    if lines:
        text = textwrap.shorten("; ".join(lines), 600, placeholder=" …")
        fig.text(0.03, 0.02, textwrap.fill("flags: " + text, 170), fontsize=7, va="bottom", color="0.25")
    return fig


def _stand_in_frames(volume_of: dict[int, float]) -> tuple[int | None, int | None]:
    """The measured frames with the largest and the smallest volume (the smallest only when it is another frame),
    shown when the clip has no ED/ES (a single frame, or no beat found)."""
    measured = {f: v for f, v in volume_of.items() if math.isfinite(v)}
    if not measured:
        return None, None
    largest, smallest = max(measured, key=measured.get), min(measured, key=measured.get)
    return largest, (smallest if smallest != largest else None)


def _file_name(clip: dict) -> str:
    from echokdm.data.manifest import clip_file_stem

    return clip_file_stem(f"{clip.get('dataset')}_{clip.get('clip_id')}") + ".png"


def write_clip_ef_plots(frames_table: pd.DataFrame, clips: pd.DataFrame, out_dir: str | os.PathLike, *,
                        limit: int = 12, read_clip: Callable | None = None, overwrite: bool = False
                        ) -> tuple[list[Path], str]:
    """Write :func:`clip_ef_figure` of the clips :func:`pick_clips` chooses into ``out_dir``.

    Parameters
    ----------
    frames_table, clips : pandas.DataFrame
        :attr:`KeypointsTable.frames` and :attr:`EFTable.clips`.
    limit : int
        At most this many clips (0: none).
    read_clip : callable, optional
        ``read_clip(clip_row) -> Cine`` for the frames and the frame rate; a clip that cannot be read
        is drawn as a curve only, with the reason.
    overwrite : bool
        Replace existing pictures; otherwise an existing one raises ``FileExistsError`` before any is written.

    Returns
    -------
    (list of Path, str)
        The pictures written and which clips were chosen.
    """
    from echokdm.io.atomic import atomic_output

    picked, why = pick_clips(clips, limit)
    out_dir = Path(out_dir)
    targets = [(clip, out_dir / _file_name(clip)) for clip in picked.to_dict("records")]
    clashes = [str(p) for _, p in targets if p.exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{', '.join(clashes[:3])}: already exist(s); pass --overwrite to replace")
    by_clip = {key: g for key, g in frames_table.groupby(["dataset", "clip_id"], sort=False)}
    written = []
    for clip, path in targets:
        group = by_clip.get((clip["dataset"], clip["clip_id"]), frames_table.iloc[:0])
        frames, note, fps = None, "frames not read", None
        if read_clip is not None:
            try:
                cine = read_clip(clip)
                frames, note = shown_frames(cine)
                fps = cine.fps
            except Exception as exc:  # noqa: BLE001 - a picture without frames, the reason on it
                note = f"frames not shown: {' '.join(str(exc).split())[:120]}"
        fig = clip_ef_figure(group, clip, frames, fps=fps, frames_note=note)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        written.append(path)
    return written, why
