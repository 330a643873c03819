"""Generated loops as an EchoNet-Dynamic cohort, so that EchoNet tools read them.

:func:`write_echonet_cohort` writes many loops (any objects with the attributes of
``GeneratedLoop``, :mod:`echokdm.io.loop_record`) in the EchoNet-Dynamic layout through
:func:`echokdm.io.echonet.write_echonet_dataset`, the writer beside the EchoNet reader, and adds
the side table :data:`COHORT_CSV_NAME`. This module stays in :mod:`echokdm.generation`, above
:mod:`echokdm.io`: it derives EF, EDV, ESV and the tracings from the keypoints with
:mod:`echokdm.geometry`. It refuses to replace an existing file unless ``overwrite=True`` and
writes each file under a temporary name renamed when complete.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.errors import EchoKDMWarning
from echokdm.generation.export import refuse_existing
from echokdm.geometry.keypoints import N_KEYPOINTS
from echokdm.geometry.tracings import keypoints_to_tracing
from echokdm.geometry.volumes import simpson_volume
from echokdm.io.atomic import atomic_output
from echokdm.io.echonet import COHORT_CSV_NAME, write_echonet_dataset
from echokdm.io.loop_record import LoopRecord, read_loop_record

__all__ = ["COHORT_CSV_NAME", "write_echonet_cohort", "write_echonet_items"]


def write_echonet_cohort(
    root: str | os.PathLike,
    loops: Mapping[str, Any] | Iterable[Any],
    *,
    split: str = "TEST",
    overwrite: bool = False,
) -> Path:
    """Write generated loops in the EchoNet-Dynamic layout, so EchoNet tools read them.

    Writes ``Videos/<name>.avi``, ``FileList.csv`` and ``VolumeTracings.csv`` through
    :func:`~echokdm.io.echonet.write_echonet_dataset`, and :data:`COHORT_CSV_NAME` with what
    EchoNet has no column for. Per loop:

    * ``EF`` = ``ef_achieved`` when known (not ``None`` or NaN), else ``ef_target`` (%);
    * the traced keypoints: those re-detected on the frames (``detected_keypoints``) when
      ``ef_achieved`` was measured from them, so that ``EF``, ``EDV``, ``ESV`` and the tracings
      all describe what the frames show (``EF`` = (EDV − ESV) / EDV); otherwise the loop's target
      keypoints;
    * ``EDV`` / ``ESV`` = largest / smallest Simpson volume of the traced keypoints
      (:func:`~echokdm.geometry.volumes.simpson_volume`): mL when ``spacing_mm`` is known, else
      pixel³ (then an :class:`~echokdm.errors.EchoKDMWarning` names the clips, and the side
      table's ``volume_units`` says ``px^3``);
    * tracings at the ES frame then the ED frame (EchoNet's loader takes the first listed frame
      as ES), each 21 rows ``(x1, y1, x2, y2)`` from
      :func:`~echokdm.geometry.tracings.keypoints_to_tracing`: the long axis, then the 20 chords
      from basal to apical. They are the discs of the traced keypoints,
      so :func:`~echokdm.geometry.keypoints.tracing_keypoints` gives them back.

    The side table has one row per clip: ``FileName``, ``patient_id`` (the source's pseudonym,
    for patient-level splits), ``source_frame``, ``motion``, ``ef_target``, ``ef_achieved``,
    ``ef_keypoints`` (the EF of the target keypoints), ``tracings_from`` (``frames`` or
    ``keypoints``), ``ed_frame``, ``es_frame``, ``edv``, ``esv``, ``volume_units``, ``fps``,
    ``spacing_dx_mm``, ``spacing_dy_mm``.

    Parameters
    ----------
    root : str or os.PathLike
        Dataset folder; created if missing.
    loops : mapping of str to loop, or iterable of loops
        A mapping gives the clip names (plain names, no ``.avi``); otherwise clips are named
        ``synthetic_00000``, ``synthetic_00001`` … in order.
    split : {"TRAIN", "VAL", "TEST"}
        ``Split`` of every clip (any case).
    overwrite : bool
        Replace existing files. Otherwise every target (CSVs and videos) is checked before
        anything is written and any existing one raises :class:`FileExistsError`.

    Returns
    -------
    pathlib.Path
        ``root``.

    Raises
    ------
    FileExistsError
        An output exists and ``overwrite`` is false.
    ValueError
        A loop with a bad attribute, no EF, or no frame with all 40 keypoints (the clip is
        named).
    """
    root = Path(root)
    named = list(loops.items()) if isinstance(loops, Mapping) else [
        (f"synthetic_{number:05d}", loop) for number, loop in enumerate(loops)]
    targets = [root / "FileList.csv", root / "VolumeTracings.csv", root / COHORT_CSV_NAME]
    refuse_existing([*targets, *(root / "Videos" / f"{name}.avi" for name, _ in named)], overwrite)
    return write_echonet_items(root, ((name, loop, split) for name, loop in named), overwrite=overwrite)


def write_echonet_items(root: str | os.PathLike, named_loops: Iterable[tuple[str, Any, str]], *,
                        overwrite: bool = False) -> Path:
    """Write ``(name, loop, split)`` triples in the EchoNet-Dynamic layout, one loop at a time.

    The streaming core of :func:`write_echonet_cohort` (which checks every target first): each
    video is written as its loop arrives (:func:`~echokdm.io.echonet.write_echonet_dataset`
    consumes a generator), so loops made one by one (``echokdm synthesize``) need not all be
    held in memory; ``FileList.csv``, ``VolumeTracings.csv`` and the side table follow.
    """
    root = Path(root)
    rows: list[dict[str, Any]] = []

    def items():
        for name, loop, split in named_loops:
            fields = read_loop_record(loop, what=f"loop {name!r}", n_keypoints=N_KEYPOINTS)
            item, row = _echonet_item(str(name), fields, split)
            rows.append(row)
            yield item

    write_echonet_dataset(root, items(), overwrite=overwrite)
    with atomic_output(root / COHORT_CSV_NAME, overwrite=overwrite) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    _warn_pixel_volumes([row["FileName"] for row in rows if row["volume_units"] != "mL"])
    return root


def _traced_keypoints(fields: LoopRecord) -> tuple[np.ndarray, str]:
    """The keypoints EchoNet's EDV, ESV and tracings come from: those re-detected on the frames when
    ``ef_achieved`` was measured from them (at least two frames with all 40), so EF, volumes and
    tracings all describe what the frames show; else the target keypoints."""
    if fields.detected_keypoints is not None and fields.ef_achieved is not None:
        if np.isfinite(simpson_volume(fields.detected_keypoints, fields.spacing_mm)).sum() >= 2:
            return fields.detected_keypoints, "frames"
    return fields.keypoints, "keypoints"


def _echonet_item(name: str, fields: LoopRecord, split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The :func:`write_echonet_dataset` item of one loop, and its side-table row."""
    target_volumes = simpson_volume(fields.keypoints, fields.spacing_mm)  # (T,) mL or pixel³
    if not np.isfinite(target_volumes).any():
        raise ValueError(f"loop {name!r}: no frame has all 40 keypoints; cannot derive EDV, ESV and tracings")
    ef = fields.ef_achieved if fields.ef_achieved is not None else fields.ef_target
    if ef is None:
        raise ValueError(f"loop {name!r}: neither ef_achieved nor ef_target is known; EchoNet needs an EF")
    traced, traced_from = _traced_keypoints(fields)
    volumes = simpson_volume(traced, fields.spacing_mm)
    ed, es = int(np.nanargmax(volumes)), int(np.nanargmin(volumes))
    tracings = {es: keypoints_to_tracing(traced[es]), ed: keypoints_to_tracing(traced[ed])}
    edv, esv = float(volumes[ed]), float(volumes[es])
    t_edv, t_esv = float(np.nanmax(target_volumes)), float(np.nanmin(target_volumes))
    item = {"file_name": name, "frames": fields.frames, "fps": fields.fps, "ef": ef, "edv": edv, "esv": esv,
            "split": split, "tracings": tracings}
    dx, dy = fields.spacing_mm if fields.spacing_mm is not None else (None, None)
    row = {"FileName": name, "patient_id": fields.patient_id, "source_frame": fields.source_frame,
           "motion": fields.motion, "ef_target": fields.ef_target, "ef_achieved": fields.ef_achieved,
           "ef_keypoints": 100.0 * (t_edv - t_esv) / t_edv if t_edv > 0 else float("nan"),
           "tracings_from": traced_from, "ed_frame": ed,
           "es_frame": es, "edv": edv, "esv": esv, "volume_units": "mL" if fields.spacing_mm else "px^3",
           "fps": fields.fps, "spacing_dx_mm": dx, "spacing_dy_mm": dy}
    return item, row



def _warn_pixel_volumes(names: list[str]) -> None:
    if names:
        warnings.warn(f"EDV/ESV of {len(names)} clip(s) (e.g. {names[0]!r}) are in pixel³, not mL: their loops "
                      f"have no pixel spacing; see volume_units in {COHORT_CSV_NAME}", EchoKDMWarning, stacklevel=3)
