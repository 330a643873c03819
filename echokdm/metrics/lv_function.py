"""LV function from a manifest: per-frame keypoints and volumes, per-clip EF, agreement with references.

Three steps, each a plain function that notebooks and the ``echokdm keypoints`` / ``echokdm ef``
commands share:

1. :func:`keypoints_table` reads every clip of a manifest and derives, for every labelled frame,
   the 40 keypoints (shared/DESIGN.md order), the Simpson volume and flags. EchoNet-style
   tracings give keypoints directly (:func:`~echokdm.geometry.keypoints.tracing_keypoints`);
   masks go through :func:`~echokdm.geometry.temporal.sequence_keypoints`, whose landmark
   smoothing runs only over consecutive labelled frames. A clip with neither is skipped with its
   reason (frames without a label need the segmentation model, a later part).
2. :func:`ef_table` turns the frame table into one row per clip: EDV, ESV, EF and beats, from
   :func:`~echokdm.geometry.volumes.cardiac_cycle` when every frame is labelled, else from the
   labelled frames' largest (ED) and smallest (ES) volume, e.g. EchoNet's two traced frames.
3. :func:`ef_agreement` compares EF with the manifest's ``ef_reference`` (MAE, bias, limits of
   agreement, Pearson r, bootstrap 95 % intervals) per dataset and overall;
   :func:`plot_ef_agreement` draws the Bland–Altman and scatter plots.

Batch functions never stop at a bad clip: they finish the good ones and return every skipped
item with its reason. Volumes are in mL when the clip has a pixel spacing, else in pixel³, and
the ``volume_units`` column says which.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.geometry.keypoints import N_KEYPOINTS, KeypointError, tracing_keypoints
from echokdm.geometry.temporal import sequence_keypoints
from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

__all__ = [
    "KEYPOINT_COLUMNS",
    "KeypointsTable",
    "EFTable",
    "cine_keypoints",
    "keypoints_table",
    "segmentation_source",
    "ef_table",
    "ef_agreement",
    "plot_ef_agreement",
    "write_table",
]

#: Keypoint columns of the frame table: x0 … x39 then y0 … y39 (pixels, x = column, y = row).
KEYPOINT_COLUMNS = [f"x{i}" for i in range(N_KEYPOINTS)] + [f"y{i}" for i in range(N_KEYPOINTS)]
_ID_COLUMNS = ["clip_id", "patient_id", "dataset"]
_FRAME_COLUMNS = [*_ID_COLUMNS, "frame", "mask_source", *KEYPOINT_COLUMNS, "volume", "volume_units", "flags",
                  "apex_direction"]
_CLIP_COLUMNS = [*_ID_COLUMNS, "n_frames", "fps", "mask_source", "n_labelled", "all_labelled", "volume_units",
                 "ef_reference", "edv_reference", "esv_reference", "apex_direction", "apex_note", "leak_note",
                 "header_note"]
_EF_COLUMNS = [*_ID_COLUMNS, "method", "n_beats", "ed_frames", "es_frames", "edv", "esv", "ef", "volume_units",
               "ef_reference", "edv_reference", "esv_reference", "ef_error", "flags", "rejected_beats",
               "apex_direction"]


@dataclasses.dataclass
class KeypointsTable:
    """What :func:`keypoints_table` found.

    Attributes
    ----------
    frames : pandas.DataFrame
        One row per labelled frame: ``clip_id, patient_id, dataset, frame, mask_source``
        (``"mask"`` or ``"tracing"``), ``x0 … x39, y0 … y39`` (pixels; NaN where a keypoint was
        not found), ``volume`` (Simpson), ``volume_units`` (``"mL"`` or ``"px^3"``), ``flags``
        (``""`` or ``"; "``-joined observations; ``"failed: …"`` when the frame has no keypoints,
        ``"recovered: …"`` when they were repaired), ``apex_direction`` (the clip's, by name:
        detected per clip by default, ``"apex direction unsure"`` in ``flags`` when the masks
        could not tell).
    clips : pandas.DataFrame
        One row per clip that was read: IDs, ``n_frames``, ``fps``, ``mask_source``,
        ``n_labelled``, ``all_labelled``, the manifest's references, ``apex_direction`` and
        ``apex_note`` (``""`` or why the detected direction is unsure), ``leak_note`` (``""`` or the frames
        whose masks ran on through the open mitral valve), ``header_note`` (``""`` or why the file's DICOM header
        says it is not an echocardiogram: :func:`echokdm.io.dicom.non_cardiac_reason`).
    skipped : list of (str, str)
        ``(item, reason)``: clips that could not be used and frames without keypoints.
    """

    frames: pd.DataFrame
    clips: pd.DataFrame
    skipped: list[tuple[str, str]]


@dataclasses.dataclass
class EFTable:
    """Per-clip volumes and EF (:func:`ef_table`).

    Attributes
    ----------
    clips : pandas.DataFrame
        One row per clip: IDs, ``method`` (``"cardiac cycle"`` or ``"labelled frames max/min"``),
        ``n_beats``, ``ed_frames`` / ``es_frames`` (space-separated frame indices), ``edv``,
        ``esv`` (mean over beats, ``volume_units``), ``ef`` (percent, mean over beats), the
        manifest's references, ``ef_error = ef - ef_reference``, ``flags``, ``rejected_beats``
        (``"ED -> ES: reason"`` for every candidate beat that failed a physiological limit, not
        averaged into EF) and ``apex_direction``. NaN EF when it could not be measured (the
        reason is in ``flags`` and in ``skipped``).
    skipped : list of (str, str)
        ``(clip, reason)`` for every clip without an EF.
    """

    clips: pd.DataFrame
    skipped: list[tuple[str, str]]


# --------------------------------------------------------------------------------------------
# per-frame keypoints
# --------------------------------------------------------------------------------------------


def _uses_tracings(cine) -> bool:
    """Tracings are used when the clip's masks add no frame to them (EchoNet: masks = tracing outlines)."""
    if not cine.tracings:
        return False
    if cine.masks is None:
        return True
    if cine.labelled_frames is None:
        return False
    return set(np.asarray(cine.labelled_frames).tolist()) <= set(cine.tracings)


def _consecutive_runs(frames: np.ndarray) -> list[np.ndarray]:
    """Split sorted frame indices into runs of consecutive frames."""
    frames = np.asarray(frames, dtype=np.int64)
    if frames.size == 0:
        return []
    breaks = np.nonzero(np.diff(frames) != 1)[0] + 1
    return np.split(frames, breaks)


def _tracing_rows(tracings: dict) -> tuple[list[int], np.ndarray, list[str], str]:
    frames = sorted(int(f) for f in tracings)
    keypoints = np.full((len(frames), N_KEYPOINTS, 2), np.nan, dtype=np.float32)
    flags = []
    for i, f in enumerate(frames):
        try:
            geo = tracing_keypoints(tracings[f])
        except KeypointError as exc:
            flags.append(f"failed: {exc}")
            continue
        keypoints[i] = geo.keypoints
        flags.append("; ".join(geo.flags))
    return frames, keypoints, flags, _direction_of(keypoints)


def _direction_of(keypoints: np.ndarray) -> str:
    """The apex direction, by name, of traced keypoints ``(n, 40, 2)`` (``""`` without any)."""
    from echokdm.geometry.keypoints import nearest_direction_name
    from echokdm.geometry.volumes import long_axis_from_keypoints

    base, apex, _ = long_axis_from_keypoints(keypoints)
    axis = np.nanmean(apex - base, axis=0) if len(keypoints) else np.full(2, np.nan)
    return nearest_direction_name(axis) if np.isfinite(axis).all() and np.linalg.norm(axis) > 0 else ""


def _mask_rows(cine, smooth_sigma_frames: float, apex_direction) -> tuple[list[int], np.ndarray, list[str], str]:
    from echokdm.geometry.keypoints import resolve_apex_direction

    labelled = np.arange(cine.masks.shape[0]) if cine.labelled_frames is None else np.sort(cine.labelled_frames)
    # one apex direction for the whole clip, from all its labelled masks
    direction, found = resolve_apex_direction(apex_direction, cine.masks[labelled])
    frames, keypoints, flags = [], [], []
    for run in _consecutive_runs(labelled):
        seq = sequence_keypoints(cine.masks[run], smooth_sigma_frames=smooth_sigma_frames,
                                 apex_direction=direction, on_error="nan")
        frames.extend(run.tolist())
        keypoints.append(seq.keypoints)
        note = found.note if found is not None else ""
        flags.extend("; ".join(x for x in (f, note) if x) for f in seq.flags)
    kp = np.concatenate(keypoints) if keypoints else np.zeros((0, N_KEYPOINTS, 2), np.float32)
    return frames, kp, flags, found.name if found is not None else ""


def cine_keypoints(
    cine, *, smooth_sigma_frames: float = 1.0, apex_direction: str | tuple[float, float] | None = "auto"
) -> pd.DataFrame:
    """The frame-table rows of one clip (see :class:`KeypointsTable`).

    Parameters
    ----------
    cine : echokdm.io.cine.Cine
        A clip with ``tracings`` or ``masks``.
    smooth_sigma_frames : float
        Landmark smoothing over consecutive labelled frames, in frames (0 = none).
    apex_direction
        As in :func:`~echokdm.geometry.keypoints.mask_keypoints`; ``"auto"`` (default) detects it
        once per clip from all its masks (column ``apex_direction``).

    Raises
    ------
    ValueError
        When the clip has neither tracings nor masks.
    """
    if _uses_tracings(cine):
        source = "tracing"
        frames, keypoints, flags, direction = _tracing_rows(cine.tracings)
    elif cine.masks is not None:
        source = "mask"
        frames, keypoints, flags, direction = _mask_rows(cine, smooth_sigma_frames, apex_direction)
    else:
        raise ValueError(f"clip {cine.clip_id!r} has no masks or tracings "
                         "(keypoints of unlabelled frames need the segmentation model)")
    spacing = tuple(cine.spacing_mm) if cine.spacing_mm else None
    volumes = simpson_volume(keypoints, spacing) if len(frames) else np.zeros(0)  # (n,)
    table = pd.DataFrame(np.concatenate([keypoints[..., 0], keypoints[..., 1]], axis=1), columns=KEYPOINT_COLUMNS)
    table.insert(0, "mask_source", source)
    table.insert(0, "frame", np.asarray(frames, dtype=np.int64))
    for col, value in zip(_ID_COLUMNS[::-1], (cine.clip_id, cine.patient_id, cine.dataset or "")[::-1], strict=True):
        table.insert(0, col, value)
    table["volume"] = volumes.astype(np.float64)
    table["volume_units"] = "mL" if spacing else "px^3"
    table["flags"] = flags
    table["apex_direction"] = direction
    return table[_FRAME_COLUMNS]


def _clip_info(cine, row, frames: pd.DataFrame) -> dict:
    n_labelled = len(frames)
    source = frames["mask_source"].iloc[0] if n_labelled else ""
    direction = str(frames["apex_direction"].iloc[0]) if n_labelled else ""
    unsure = frames["flags"].str.extract(r"(apex direction unsure \([^)]*\); assumed \w+)")[0].dropna() \
        if n_labelled else pd.Series([], dtype=str)
    return {
        "clip_id": str(row["clip_id"]), "patient_id": str(row["patient_id"]), "dataset": str(row["dataset"]),
        "n_frames": cine.n_frames, "fps": cine.fps, "mask_source": source, "n_labelled": n_labelled,
        "all_labelled": bool(source in ("mask", "segmentation") and n_labelled == cine.n_frames),
        "volume_units": "mL" if cine.spacing_mm else "px^3",
        **{k: row.get(k, np.nan) for k in ("ef_reference", "edv_reference", "esv_reference")},
        "apex_direction": direction, "apex_note": str(unsure.iloc[0]) if len(unsure) else "",
        "leak_note": _leak_note(frames), "header_note": _header_note(cine),
    }


def _header_note(cine) -> str:
    """A clip-level line when the file's header says it is not an echocardiogram (``""`` otherwise)."""
    from echokdm.io.dicom import cine_non_cardiac_reason

    reason = cine_non_cardiac_reason(cine)
    return f"not an echocardiogram by its header ({reason}): the LV measured is not there" if reason else ""


def _leak_note(frames: pd.DataFrame) -> str:
    """A clip-level line when masks ran on through the open mitral valve (``""`` otherwise)."""
    leaking = frames.loc[frames["flags"].str.contains("open mitral valve", regex=False), "frame"].astype(int).tolist() \
        if len(frames) else []
    if not leaking:
        return ""
    shown = ", ".join(str(t) for t in leaking[:10]) + (", …" if len(leaking) > 10 else "")
    return (f"{len(leaking)} frame(s) ran on through the open mitral valve into the atrium (frames {shown}): "
            "their base is interpolated from the frames on either side")


def _segmentation_index(folder: str | os.PathLike | None) -> dict[tuple[str, str], Path]:
    """(dataset, clip_id) -> predicted-mask file, from an ``echokdm segment`` output folder."""
    if folder is None:
        return {}
    report = Path(folder) / "segmentation.csv"
    if not report.exists():
        raise FileNotFoundError(f"{report}: no such file (run echokdm segment first)")
    table = pd.read_csv(report, dtype=str, keep_default_na=False)
    return {(r["dataset"], r["clip_id"]): Path(folder) / r["masks"] for r in table.to_dict("records")}


def segmentation_source(value: str | os.PathLike | None) -> tuple[dict[tuple[str, str], Path], Any]:
    """``(predicted-mask files by (dataset, clip_id), model or None)`` for a ``segmentation`` argument: an
    ``echokdm segment`` output folder, else a segmentation model folder or packaged name (segmented here), or a
    loaded model (anything with ``predict_masks``)."""
    if value is None:
        return {}, None
    if hasattr(value, "predict_masks"):
        return {}, value
    if (Path(value) / "segmentation.csv").exists():
        return _segmentation_index(value), None
    from echokdm.pretrained import resolve_checkpoint

    try:
        folder = resolve_checkpoint(value, "segmentation")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{value}: neither an 'echokdm segment' output folder (no segmentation.csv) nor a "
                                f"segmentation model ({exc})") from exc
    return {}, _segmentation_model(str(folder))


@functools.lru_cache(maxsize=2)
def _segmentation_model(folder: str):
    """The model of ``folder``, loaded once per process (``keypoints_table`` runs once per clip in parallel runs)."""
    from echokdm.echo.segmentation import LVSegmentationNet

    return LVSegmentationNet.from_pretrained(folder).eval()


def _predicted_masks(cine, seg_path: Path | None, model) -> np.ndarray | None:
    """The masks ``uint8`` ``(T, H, W)`` a segmentation gives the clip: read from ``seg_path``, else predicted
    by ``model`` inside the clip's fan; None without either."""
    if seg_path is not None:
        stored = np.load(seg_path)
        # the network's own masks when echokdm segment kept them beside the repaired ones: the keypoints make
        # the same repairs themselves (measuring the repaired masks again would be a second, different pass)
        masks = stored["network"] if "network" in stored.files else stored["masks"]
        if masks.shape != cine.frames.shape:
            raise ValueError(f"{seg_path}: predicted masks {masks.shape} do not match the clip {cine.frames.shape}")
        return masks
    if model is None:
        return None
    from echokdm.generation.loop import segment_frames
    from echokdm.io.fan import fan_mask_or_none

    return segment_frames(model, cine.frames, fan_mask_or_none(cine))  # the network's, as segment keeps them


def keypoints_table(
    manifest: pd.DataFrame | str | os.PathLike,
    *,
    smooth_sigma_frames: float = 1.0,
    apex_direction: str | tuple[float, float] | None = "auto",
    progress: bool = True,
    read_clip: Callable | None = None,
    segmentation: str | os.PathLike | Any | None = None,
) -> KeypointsTable:
    """Keypoints, volume and flags of every labelled frame of every clip of a manifest.

    Parameters
    ----------
    manifest : DataFrame or path
        A loaded manifest (:func:`~echokdm.data.manifest.load_manifest`) or its CSV file.
    smooth_sigma_frames, apex_direction
        As in :func:`cine_keypoints`.
    progress : bool
        Show a progress bar.
    read_clip : callable, optional
        ``row -> Cine`` (default :func:`~echokdm.data.manifest.read_clip`).
    segmentation : path, optional
        Output folder of ``echokdm segment`` (``segmentation.csv`` + ``masks/*.npz``): clips found
        there use the predicted mask of every frame (``mask_source`` = ``"segmentation"``), so
        EchoNet clips get keypoints and volumes over the whole cycle; other clips keep their labels.
        Or a segmentation model folder or packaged name (``seg_phantom_112``), or a loaded model: every
        clip is segmented here, inside its ultrasound fan (``predict_masks(region=)``), as ``echokdm
        segment`` would.
        For predicted masks, ``apex_direction="auto"`` takes the side of the clip's sector apex when its
        fan is found (:func:`echokdm.io.fan.apex_direction_with_fan`), else detects it from the masks.

    Returns
    -------
    KeypointsTable
        The frame table, the clip table and every skipped clip or frame with its reason. A clip
        that cannot be read, or has no masks or tracings, is skipped; the others are finished.
    """
    from tqdm.auto import tqdm

    from echokdm.data import manifest as manifest_module
    from echokdm.io.fan import apex_direction_with_fan, fan_mask_or_none

    frame = manifest if isinstance(manifest, pd.DataFrame) else manifest_module.load_manifest(manifest)
    read = read_clip or manifest_module.read_clip
    predicted, model = segmentation_source(segmentation)
    tables, infos, skipped = [], [], []
    for _, row in tqdm(frame.iterrows(), total=len(frame), desc="keypoints", unit="clip", disable=not progress):
        item = f"{row['dataset']}/{row['clip_id']}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reader notes do not stop a batch; problems raise
                cine = read(row)
            masks = _predicted_masks(cine, predicted.get((str(row["dataset"]), str(row["clip_id"]))), model)
            side = apex_direction
            if masks is not None:
                cine = dataclasses.replace(cine, masks=masks, labelled_frames=None, tracings=None)
                # a network's masks: the apex side from the sector when "auto" (as generate's clip_keypoints)
                side = apex_direction_with_fan(fan_mask_or_none(cine), apex_direction)
            rows = cine_keypoints(cine, smooth_sigma_frames=smooth_sigma_frames, apex_direction=side)
            if masks is not None:
                rows["mask_source"] = "segmentation"
        except Exception as exc:  # noqa: BLE001 - a batch lists every failure and goes on
            skipped.append((f"{item} ({row['path']})", f"{type(exc).__name__}: {exc}"))
            continue
        # the manifest's IDs win over the reader's (they are what the rest of the pipeline joins on)
        rows[_ID_COLUMNS] = [str(row["clip_id"]), str(row["patient_id"]), str(row["dataset"])]
        failed = rows[rows["flags"].str.contains("failed:", regex=False)]
        skipped.extend((f"{item} frame {f}", reason)
                       for f, reason in zip(failed["frame"], failed["flags"], strict=True))
        tables.append(rows)
        infos.append(_clip_info(cine, row, rows))
    frames = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=_FRAME_COLUMNS)
    return KeypointsTable(frames=frames, clips=pd.DataFrame(infos, columns=_CLIP_COLUMNS), skipped=skipped)


# --------------------------------------------------------------------------------------------
# per-clip EF
# --------------------------------------------------------------------------------------------


def _clip_ef(volumes: np.ndarray, frames: np.ndarray, all_labelled: bool, fps: float | None) -> dict:
    """EDV, ESV, EF, beats of one clip from its labelled frames' volumes ``(n,)`` at ``frames``."""
    good = np.isfinite(volumes)
    if all_labelled and good.sum() >= 3:
        cycle = cardiac_cycle(volumes, fps if fps and np.isfinite(fps) else None)
        return {
            "method": "cardiac cycle", "n_beats": cycle.n_beats,
            "ed_frames": " ".join(str(int(frames[i])) for i in cycle.ed_frames),
            "es_frames": " ".join(str(int(frames[i])) for i in cycle.es_frames),
            "edv": float(np.mean(cycle.edv)) if cycle.n_beats else np.nan,
            "esv": float(np.mean(cycle.esv)) if cycle.n_beats else np.nan,
            "ef": cycle.ef_mean, "flags": "; ".join(cycle.flags),
            "rejected_beats": "; ".join(f"{int(frames[i])} -> {int(frames[k])}: {why}" for i, k, why in cycle.rejected),
        }
    if good.sum() < 2:
        return {"method": "", "n_beats": 0, "ed_frames": "", "es_frames": "", "edv": np.nan, "esv": np.nan,
                "ef": np.nan, "flags": f"fewer than 2 labelled frames with a volume ({int(good.sum())})",
                "rejected_beats": ""}
    ed = int(np.nanargmax(volumes))
    es = int(np.nanargmin(volumes))
    edv, esv = float(volumes[ed]), float(volumes[es])
    note = "" if good.sum() == 2 else f"ED/ES = largest/smallest of {int(good.sum())} labelled frames"
    return {"method": "labelled frames max/min", "n_beats": 1, "ed_frames": str(int(frames[ed])),
            "es_frames": str(int(frames[es])), "edv": edv, "esv": esv, "ef": 100.0 * (edv - esv) / edv,
            "flags": note, "rejected_beats": ""}


def ef_table(keypoints: KeypointsTable) -> EFTable:
    """One row per clip: EDV, ESV, EF and beats from the frame table's volumes.

    When every frame of a clip carries a mask, ED and ES are found per beat by
    :func:`~echokdm.geometry.volumes.cardiac_cycle` and EDV, ESV, EF are means over beats.
    Otherwise (EchoNet's two traced frames, CAMUS ED/ES) ED is the labelled frame with the
    largest volume and ES the one with the smallest.

    Parameters
    ----------
    keypoints : KeypointsTable
        The result of :func:`keypoints_table`.

    Returns
    -------
    EFTable
    """
    rows, skipped = [], []
    by_clip = {key: g for key, g in keypoints.frames.groupby(["dataset", "clip_id"], sort=False)}
    for info in keypoints.clips.to_dict("records"):
        group = by_clip.get((info["dataset"], info["clip_id"]))
        if group is None:
            group = keypoints.frames.iloc[:0]
        group = group.sort_values("frame")
        result = _clip_ef(group["volume"].to_numpy(float), group["frame"].to_numpy(int), bool(info["all_labelled"]),
                          info["fps"])
        if not np.isfinite(result["ef"]):
            skipped.append((f"{info['dataset']}/{info['clip_id']}", f"no EF: {result['flags'] or 'no beat found'}"))
        notes = (info.get("header_note"), result["flags"], info.get("apex_note"), info.get("leak_note"))
        result["flags"] = "; ".join(x for x in notes if isinstance(x, str) and x)
        result["apex_direction"] = info.get("apex_direction", "")
        rows.append({**{k: info[k] for k in _ID_COLUMNS}, **result, "volume_units": info["volume_units"],
                     **{k: info.get(k, np.nan) for k in ("ef_reference", "edv_reference", "esv_reference")}})
    clips = pd.DataFrame(rows, columns=_EF_COLUMNS)
    for col in ("edv", "esv", "ef", "ef_reference", "edv_reference", "esv_reference"):
        clips[col] = pd.to_numeric(clips[col], errors="coerce").astype(float)
    clips["ef_error"] = clips["ef"] - clips["ef_reference"]
    return EFTable(clips=clips, skipped=skipped)


# --------------------------------------------------------------------------------------------
# agreement with the reference
# --------------------------------------------------------------------------------------------


def _agreement(est: np.ndarray, ref: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    """MAE, bias, SD of differences, limits of agreement, Pearson r, bootstrap 95 % CIs."""
    diff = est - ref
    n = len(diff)
    out = {"n": n, "mae": float(np.mean(np.abs(diff))), "bias": float(np.mean(diff)),
           "sd_diff": float(np.std(diff, ddof=1)) if n > 1 else np.nan}
    out["loa_low"] = out["bias"] - 1.96 * out["sd_diff"]
    out["loa_high"] = out["bias"] + 1.96 * out["sd_diff"]
    varies = n >= 3 and np.std(est) > 0 and np.std(ref) > 0
    out["pearson_r"] = float(np.corrcoef(est, ref)[0, 1]) if varies else np.nan
    if n >= 2 and n_boot > 0:
        idx = rng.integers(0, n, size=(n_boot, n))  # (B, n) resampled clips
        for name, stat in (("mae", np.abs(diff[idx]).mean(axis=1)), ("bias", diff[idx].mean(axis=1))):
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = (float(v) for v in np.percentile(stat, [2.5, 97.5]))
    else:
        out.update({k: np.nan for k in ("mae_ci_low", "mae_ci_high", "bias_ci_low", "bias_ci_high")})
    return out


def ef_agreement(clips: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Agreement of estimated EF with ``ef_reference``, per dataset and over all clips.

    Parameters
    ----------
    clips : pandas.DataFrame
        :attr:`EFTable.clips` (columns ``dataset``, ``ef``, ``ef_reference``).
    n_boot : int
        Bootstrap resamples (over clips) for the 95 % intervals of MAE and bias; 0 for none.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per dataset then ``"all"``: ``n`` (clips with both values), ``mae``, ``bias``
        (estimate − reference), ``sd_diff``, ``loa_low`` / ``loa_high`` (bias ± 1.96 SD, the
        Bland–Altman limits of agreement), ``pearson_r``, and ``mae_ci_low`` … ``bias_ci_high``;
        all in EF percentage points. Empty when no clip has both values.
    """
    both = clips[np.isfinite(clips["ef"]) & np.isfinite(clips["ef_reference"])]
    rng = np.random.default_rng(seed)
    groups = [(str(d), g) for d, g in both.groupby("dataset", sort=True)] + [("all", both)]
    rows = [{"dataset": name, **_agreement(g["ef"].to_numpy(float), g["ef_reference"].to_numpy(float), n_boot, rng)}
            for name, g in groups if len(g)]
    return pd.DataFrame(rows)


def _write_atomic(path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool) -> Path:
    """``write(tmp)`` through :func:`~echokdm.io.atomic.atomic_output`, refusing an existing ``path``
    unless ``overwrite`` (with the ``--overwrite`` hint)."""
    from echokdm.io.atomic import atomic_output

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    with atomic_output(path, overwrite=True) as tmp:
        write(tmp)
    return path


def plot_ef_agreement(clips: pd.DataFrame, out_dir: str | os.PathLike, *, overwrite: bool = False,
                      stem: str = "ef") -> dict[str, Path]:
    """Bland–Altman plot and scatter of estimated vs reference EF, as PNG files.

    Parameters
    ----------
    clips : pandas.DataFrame
        :attr:`EFTable.clips`; clips without both ``ef`` and ``ef_reference`` are left out.
    out_dir : path
        Folder of ``<stem>_bland_altman.png`` and ``<stem>_scatter.png`` (created).
    overwrite : bool
        Replace existing files; otherwise an existing file raises ``FileExistsError``.

    Returns
    -------
    dict
        ``{"bland_altman": path, "scatter": path}``.

    Raises
    ------
    ValueError
        When no clip has both an estimated and a reference EF.
    """
    both = clips[np.isfinite(clips["ef"]) & np.isfinite(clips["ef_reference"])]
    if both.empty:
        raise ValueError("no clip has both an estimated EF and an ef_reference: nothing to plot")
    out_dir = Path(out_dir)
    paths = {"bland_altman": out_dir / f"{stem}_bland_altman.png", "scatter": out_dir / f"{stem}_scatter.png"}
    clashes = [str(p) for p in paths.values() if p.exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{', '.join(clashes)}: already exist(s); pass overwrite=True (--overwrite) to replace")
    est, ref = both["ef"].to_numpy(float), both["ef_reference"].to_numpy(float)
    _write_atomic(paths["bland_altman"], lambda p: _bland_altman_figure(est, ref).savefig(p, format="png", dpi=120),
                  overwrite)
    _write_atomic(paths["scatter"], lambda p: _scatter_figure(est, ref).savefig(p, format="png", dpi=120), overwrite)
    return paths


def _bland_altman_figure(est: np.ndarray, ref: np.ndarray):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    mean, diff = (est + ref) / 2, est - ref
    bias = float(np.mean(diff))
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
    ax.scatter(mean, diff, s=12, alpha=0.7)
    ax.axhline(bias, color="k", label=f"bias {bias:+.2f}")
    for level in (bias - 1.96 * sd, bias + 1.96 * sd):
        ax.axhline(level, color="k", linestyle="--")
    ax.set_xlabel("mean of estimated and reference EF (%)")
    ax.set_ylabel("estimated − reference EF (%)")
    ax.set_title(f"Bland–Altman, n = {len(diff)}, limits ±1.96 SD = ±{1.96 * sd:.2f}")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def _scatter_figure(est: np.ndarray, ref: np.ndarray):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lo, hi = float(min(est.min(), ref.min())) - 5, float(max(est.max(), ref.max())) + 5
    ax.plot([lo, hi], [lo, hi], color="k", linewidth=1, label="identity")
    ax.scatter(ref, est, s=12, alpha=0.7)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("reference EF (%)")
    ax.set_ylabel("estimated EF (%)")
    ax.set_title(f"EF, n = {len(est)}, MAE {np.mean(np.abs(est - ref)):.2f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def write_table(table: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a table as ``.parquet`` (needs pyarrow) or ``.csv``, atomically.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false, and ``ValueError``
    for another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"{path}: unknown table format {path.suffix!r}; use .parquet or .csv")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401 - imported only to say early that it is missing
        except ImportError as exc:
            raise ValueError(f"{path}: writing .parquet needs pyarrow (pip install pyarrow); or write .csv") from exc
        return _write_atomic(path, lambda p: table.to_parquet(p, index=False), overwrite)
    return _write_atomic(path, lambda p: table.to_csv(p, index=False), overwrite)
