"""A synthetic phantom cohort written in the formats researchers use, with its ground truth.

:func:`write_cohort` draws ``n_patients`` patients from one seed, simulates one clip each and
writes them as an EchoNet-Dynamic folder, CAMUS-like NIfTI, DICOM ultrasound multi-frame files or
plain NIfTI, plus, for every clip, one ``.npz`` with all the ground truth (masks, keypoints,
volumes, EF, flows: :meth:`PhantomClip.save_npz`), a manifest built by reading the written files
back with the package's readers, and ``ground_truth.csv`` (one row per clip: true EF, EDV, ESV,
heart rate, ED/ES frames, npz path).

Layout of ``out`` (``<clip>`` is ``phantom0000`` …)::

    manifest.csv          read back through echokdm's readers, patient-level splits
    ground_truth.csv      the truth, one row per clip
    ground_truth/<clip>.npz
    echonet:  FileList.csv, VolumeTracings.csv, Videos/<clip>.avi
    camus:    patient0000/patient0000_4CH_half_sequence[_gt].nii.gz, _ED, _ES, Info_4CH.cfg
    dicom:    dicom/<clip>.dcm
    nifti:    nifti/<clip>.nii.gz, nifti/<clip>_gt.nii.gz
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from echokdm.data.manifest import assign_splits, scan_folder, write_manifest
from echokdm.data.phantom.clip import PhantomClip, simulate_clip
from echokdm.data.phantom.patient import sample_patient
from echokdm.io.anonymise import pseudonymise
from echokdm.io.atomic import atomic_output

__all__ = ["PHANTOM_FORMATS", "CohortResult", "write_cohort", "clip_name"]

PHANTOM_FORMATS = ("echonet", "camus", "dicom", "nifti")
_SPLIT_NAMES = {"train": "TRAIN", "val": "VAL", "test": "TEST"}


@dataclasses.dataclass
class CohortResult:
    """What :func:`write_cohort` wrote: the manifest and truth tables and their paths."""

    out: Path
    manifest: pd.DataFrame
    ground_truth: pd.DataFrame
    skipped: list[tuple[str, str]]


def clip_name(index: int) -> str:
    """File and clip name of the phantom patient ``index`` (``phantom0007``)."""
    return f"phantom{index:04d}"


def _planned_paths(out: Path, fmt: str, names: Sequence[str]) -> list[Path]:
    """The files a cohort will write, checked for clashes before anything is written."""
    paths = [out / "manifest.csv", out / "ground_truth.csv"] + [out / "ground_truth" / f"{n}.npz" for n in names]
    if fmt == "echonet":
        paths += [out / "FileList.csv", out / "VolumeTracings.csv"] + [out / "Videos" / f"{n}.avi" for n in names]
    elif fmt == "camus":
        paths += [out / n.replace("phantom", "patient") for n in names]
    elif fmt == "dicom":
        paths += [out / "dicom" / f"{n}.dcm" for n in names]
    else:
        paths += [out / "nifti" / f"{n}.nii.gz" for n in names] + [out / "nifti" / f"{n}_gt.nii.gz" for n in names]
    return paths


def _write_clip(out: Path, fmt: str, name: str, clip: PhantomClip, split: str, overwrite: bool) -> Path:
    """Write one clip in ``fmt`` (all formats but echonet, which is written as one folder)."""
    from echokdm.io.dicom import write_dicom
    from echokdm.io.nifti import write_camus_patient, write_label_nifti, write_nifti

    if fmt == "camus":
        patient = name.replace("phantom", "patient")
        written = write_camus_patient(
            out, patient, "4CH", clip.frames, clip.masks, spacing_mm=clip.spacing_mm, fps=clip.fps,
            ed_frame=int(clip.ed_frames[0]), es_frame=int(clip.es_frames[0]),
            ef=clip.ef, edv=clip.edv, esv=clip.esv, overwrite=overwrite,
        )
        return Path(next(p for p in written.values() if str(p).endswith("_half_sequence.nii.gz")))
    if fmt == "dicom":
        return write_dicom(
            out / "dicom" / f"{name}.dcm", clip.frames, fps=clip.fps, spacing_mm=clip.spacing_mm,
            patient_id=name, overwrite=overwrite,
            extra={"ImageType": ["DERIVED", "SECONDARY"], "SeriesDescription": "echokdm synthetic phantom",
                   "BurnedInAnnotation": "NO"},
        )
    if fmt == "nifti":
        path = write_nifti(out / "nifti" / f"{name}.nii.gz", clip.frames, spacing_mm=clip.spacing_mm, fps=clip.fps,
                           overwrite=overwrite)
        write_label_nifti(out / "nifti" / f"{name}_gt.nii.gz", clip.masks, spacing_mm=clip.spacing_mm,
                          overwrite=overwrite)
        return path
    raise ValueError(f"unknown phantom format {fmt!r}; expected one of {', '.join(PHANTOM_FORMATS)}")


def _echonet_item(name: str, clip: PhantomClip, split: str) -> dict:
    es, ed = int(clip.es_frames[0]), int(clip.ed_frames[0])
    return {
        "file_name": name, "frames": clip.frames, "fps": clip.fps, "ef": clip.ef, "edv": clip.edv,
        "esv": clip.esv, "split": _SPLIT_NAMES[split],
        # EchoNet-Dynamic's loader takes the first traced frame as ES and the last as ED
        "tracings": {es: clip.tracings(es), ed: clip.tracings(ed)},
    }


def write_cohort(
    out: str | os.PathLike,
    n_patients: int = 20,
    format: str = "echonet",
    *,
    seed: int = 0,
    size: int = 112,
    fps: float = 50.0,
    n_beats: float = 2.0,
    decorrelation: float | None = None,
    noise: float | None = None,
    style: str = "classic",
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    overwrite: bool = False,
    progress: bool = True,
) -> CohortResult:
    """Simulate and write a phantom cohort (see the module docstring for the layout).

    Parameters
    ----------
    out : path
        Output folder (created).
    n_patients : int
        Number of synthetic patients, one clip each.
    format : {"echonet", "camus", "dicom", "nifti"}
        File format of the clips.
    seed : int
        Draws the patients (patient ``i`` is ``sample_patient(seed, i)``) and the splits; the same
        seed gives the same cohort.
    size, fps, n_beats, decorrelation, noise
        Passed to :func:`~echokdm.data.phantom.simulate_clip`. ``decorrelation`` and ``noise``
        default to 0.03 and 0.002 for the classic style and to each patient's look for the
        realistic one.
    style : {"classic", "realistic"}
        Phantom style (:mod:`echokdm.data.phantom.look`); recorded in ``ground_truth.csv`` (``style``
        and ``mirrored`` columns), the manifest's dataset (``phantom-realistic-<format>``; classic
        cohorts keep ``phantom-<format>``) and every ``.npz`` (settings and the patient's look).
    fractions : three floats
        Patient-level train/val/test fractions.
    overwrite : bool
        Replace files of an earlier cohort; without it any clash is an error before anything is
        written.

    Returns
    -------
    CohortResult
    """
    from tqdm.auto import tqdm

    from echokdm.data.phantom.look import STYLES

    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if style == "classic":
        decorrelation = 0.03 if decorrelation is None else decorrelation
        noise = 0.002 if noise is None else noise
    if format not in PHANTOM_FORMATS:
        raise ValueError(f"format must be one of {', '.join(PHANTOM_FORMATS)}, got {format!r}")
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    out = Path(out)
    names = [clip_name(i) for i in range(n_patients)]
    if not overwrite:
        _refuse_clashes(_planned_paths(out, format, names))
    splits = assign_splits(names, fractions, seed)
    (out / "ground_truth").mkdir(parents=True, exist_ok=True)

    rows, echonet_items, written = [], [], {}
    for i, name in enumerate(tqdm(names, desc=f"simulating {format} phantom", unit="patient", disable=not progress)):
        patient = sample_patient(seed, i, style=style)
        clip = simulate_clip(patient, n_beats=n_beats, fps=fps, size=size, decorrelation=decorrelation, noise=noise,
                             seed=seed, style=style)
        npz = clip.save_npz(out / "ground_truth" / f"{name}.npz", overwrite=overwrite)
        if format == "echonet":
            echonet_items.append(_echonet_item(name, clip, splits[name]))
        else:
            written[str(_write_clip(out, format, name, clip, splits[name], overwrite).resolve())] = name
        rows.append(_truth_row(name, splits[name], patient, clip, str(npz.relative_to(out)), style))
    if format == "echonet":
        written.update(_write_echonet(out, echonet_items, overwrite))

    # read everything back through the readers: the manifest is what they see
    dataset = f"phantom-{format}" if style == "classic" else f"phantom-{style}-{format}"
    scan = scan_folder(out / format if format in ("dicom", "nifti") else out, format, dataset=dataset,
                       progress=False)
    manifest = scan.manifest
    clip_of = manifest["path"].map(lambda p: written.get(str(Path(p).resolve())))
    _label_manifest(manifest, clip_of, splits, seed, {r["clip_name"]: r for r in rows})
    write_manifest(manifest, out / "manifest.csv", overwrite=overwrite)
    truth = pd.DataFrame(rows)
    id_of = dict(zip(clip_of, manifest["clip_id"], strict=True))
    truth.insert(1, "clip_id", truth["clip_name"].map(id_of))
    with atomic_output(out / "ground_truth.csv", overwrite=True) as tmp:
        truth.to_csv(tmp, index=False)
    return CohortResult(out=out, manifest=manifest, ground_truth=truth, skipped=scan.skipped)


def _refuse_clashes(planned: list[Path]) -> None:
    """``FileExistsError`` naming the planned files that already exist (up to three), if any."""
    clashes = [str(p) for p in planned if p.exists()]
    if clashes:
        shown = ", ".join(clashes[:3]) + (f" and {len(clashes) - 3} more" if len(clashes) > 3 else "")
        raise FileExistsError(f"{shown}: already exist(s); pass overwrite=True (--overwrite) or choose another folder")


def _write_echonet(out: Path, items: list[dict], overwrite: bool) -> dict[str, str]:
    """Write the EchoNet-Dynamic release folder; resolved video path -> clip name."""
    from echokdm.io.echonet import write_echonet_dataset

    write_echonet_dataset(out, items, overwrite=overwrite)
    return {str((out / "Videos" / f"{item['file_name']}.avi").resolve()): item["file_name"] for item in items}


def _truth_row(name: str, split: str, patient, clip: PhantomClip, npz: str, style: str) -> dict:
    """One row of ``ground_truth.csv``: the clip's true EF, volumes, timing and settings."""
    return {
        "clip_name": name, "split": split, "ef_percent": clip.ef, "edv_ml": clip.edv, "esv_ml": clip.esv,
        "heart_rate_bpm": patient.heart_rate_bpm, "tilt_deg": patient.tilt_deg, "n_frames": clip.n_frames,
        "fps": clip.fps, "spacing_mm": clip.spacing_mm[0], "ed_frames": " ".join(map(str, clip.ed_frames)),
        "es_frames": " ".join(map(str, clip.es_frames)), "npz": npz,
        **({} if style == "classic" else {"style": style, "mirrored": bool(patient.look.mirror)}),
    }


def _label_manifest(manifest: pd.DataFrame, clip_of: pd.Series, splits: dict[str, str], seed: int,
                    truth_of: dict[str, dict]) -> None:
    """Give the scanned manifest (in place) the cohort's own splits, seed-dependent patient pseudonyms,
    the true EF / volumes where the files state none, and the A4C view.

    ``clip_of`` maps each manifest row to its clip name (None for a file the cohort did not write).
    """
    manifest["split"] = clip_of.map(splits).fillna(manifest["split"])
    # patient pseudonyms that depend on the seed: patient i of two cohorts is two different people
    manifest["patient_id"] = clip_of.map(lambda n: pseudonymise(f"phantom-seed{seed}-{n}") if n else None).fillna(
        manifest["patient_id"])
    for column, key in (("ef_reference", "ef_percent"), ("edv_reference", "edv_ml"), ("esv_reference", "esv_ml")):
        known = clip_of.map(lambda n, key=key: truth_of[n][key] if n in truth_of else np.nan)
        manifest[column] = pd.to_numeric(manifest[column], errors="coerce").fillna(known)
    manifest["view"] = manifest["view"].replace("", "A4C").fillna("A4C")
