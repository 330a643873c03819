"""Write procedural face or pose datasets to disk in the sequence-manifest layout.

    echokdm procedural face --out faces --subjects 8 --frames 16 --size 224 --seed 0

Layout of ``out`` (read back by :func:`echokdm.data.sequences.load_sequence_manifest`)::

    manifest.csv                                 one row per sequence, subject-level splits
    dataset.json                                 kind, settings, seed
    sequences/<clip>/frames/0000.png …           RGB frames
    sequences/<clip>/keypoints/0000.pts …        face: iBUG .pts (1-based), one file per frame
    sequences/<clip>/keypoints/0000_keypoints.json …  pose: OpenPose JSON, one file per frame
    flows/<clip>.npz                             exact flows of random frame pairs, in the
                                                 ``echokdm flow`` cache layout (pairs, flows float16)
    truth/<clip>.npz                             exact keypoints (T, N, 2), none missing

Pose files mark a few extremity joints (eyes, ears, feet) as not found (confidence 0), with
probability ``missing`` each, as a detector would: readers and training must cope with them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from echokdm.data.manifest import assign_splits
from echokdm.io.atomic import atomic_output

__all__ = ["KINDS", "SKELETONS", "ProceduralResult", "write_procedural_dataset"]

KINDS = ("face", "pose")
SKELETONS = ("body25", "coco18")
_FLOW_CACHE_VERSION = 1  # the layout of echokdm flow's cache files (echokdm.training.flow.CACHE_FORMAT_VERSION)
_EXTREMITIES = (15, 16, 17, 18, 19, 20, 21, 22, 23, 24)  # BODY_25 eyes, ears, feet


@dataclasses.dataclass
class ProceduralResult:
    """``out`` folder and the ``manifest`` written (absolute paths)."""

    out: Path
    manifest: pd.DataFrame


def _build_scene(kind: str, seed: int, subject: int, sequence: int, n_frames: int, size: int):
    """Sequence ``sequence`` of subject ``subject``: the subject's appearance (drawn from
    ``(seed, subject)``) moving with a motion drawn from ``(seed, subject, sequence)``."""
    look = np.random.default_rng([seed, subject])
    move = np.random.default_rng([seed, subject, sequence, 1])
    if kind == "face":
        from echokdm.data.procedural.face import (
            CartoonFace,
            sample_face_motion,
            sample_face_subject,
        )

        return CartoonFace(sample_face_subject(look), sample_face_motion(move, n_frames), size)
    from echokdm.data.procedural.pose import (
        StickFigure,
        sample_figure_motion,
        sample_figure_subject,
    )

    return StickFigure(sample_figure_subject(look), sample_figure_motion(move, n_frames), size)


def _write_png(path: Path, rgb: np.ndarray, overwrite: bool) -> None:
    from PIL import Image

    with atomic_output(path, overwrite=overwrite) as tmp:
        Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), mode="RGB").save(tmp, format="PNG")


def _observed(kind: str, keypoints: np.ndarray, missing: float, rng: np.random.Generator,
              skeleton: str) -> np.ndarray:
    """The keypoints written to the files: pose extremities dropped with probability ``missing``,
    COCO-18 picked from BODY_25 when asked."""
    kp = keypoints.astype(np.float64).copy()
    if kind == "pose":
        from echokdm.data.procedural.pose import BODY25_TO_COCO18

        drop = rng.random((len(kp), len(_EXTREMITIES))) < missing
        sub = kp[:, list(_EXTREMITIES)]
        sub[drop] = np.nan
        kp[:, list(_EXTREMITIES)] = sub
        if skeleton == "coco18":
            kp = kp[:, list(BODY25_TO_COCO18)]
    return kp


def _write_keypoints(kind: str, folder: Path, keypoints: np.ndarray, overwrite: bool) -> None:
    from echokdm.io.keypoint_files import write_openpose_json, write_pts

    folder.mkdir(parents=True, exist_ok=True)
    for t, kp in enumerate(keypoints):
        if kind == "face":
            write_pts(folder / f"{t:04d}.pts", kp, overwrite=overwrite)
        else:
            write_openpose_json(folder / f"{t:04d}_keypoints.json", kp, overwrite=overwrite)


def _pairs(n_frames: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n_pairs`` distinct ordered (source, target) pairs of different frames."""
    every = np.array([(a, b) for a in range(n_frames) for b in range(n_frames) if a != b], dtype=np.int64)
    if len(every) <= n_pairs:
        return every
    return every[np.sort(rng.choice(len(every), n_pairs, replace=False))]


def _write_flows(path: Path, scene, pairs: np.ndarray, clip_id: str, overwrite: bool) -> None:
    flows = np.stack([scene.flow(int(a), int(b)) for a, b in pairs]).astype(np.float16)
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, format_version=np.int64(_FLOW_CACHE_VERSION), flows=flows, pairs=pairs.astype(np.int32),
                            size=np.int64(scene.size), source_hw=np.asarray([scene.size, scene.size], np.int64),
                            clip_id=np.str_(clip_id), checkpoint=np.str_("procedural (exact)"))


def _check_arguments(kind: str, skeleton: str, n_subjects: int, sequences_per_subject: int, n_frames: int,
                     size: int, missing: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if skeleton not in SKELETONS:
        raise ValueError(f"skeleton must be one of {', '.join(SKELETONS)}, got {skeleton!r}")
    for name, value, low in (("n_subjects", n_subjects, 1), ("sequences_per_subject", sequences_per_subject, 1),
                             ("n_frames", n_frames, 2), ("size", size, 16)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value}")
    if not 0 <= missing < 1:
        raise ValueError(f"missing must be in [0, 1), got {missing}")


def write_procedural_dataset(
    out: str | os.PathLike,
    kind: str,
    *,
    n_subjects: int = 8,
    sequences_per_subject: int = 2,
    n_frames: int = 16,
    size: int = 224,
    fps: float = 25.0,
    pairs_per_sequence: int = 24,
    missing: float = 0.03,
    skeleton: str = "body25",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    overwrite: bool = False,
    progress: bool = True,
) -> ProceduralResult:
    """Simulate and write a procedural face or pose dataset (layout in the module docstring).

    Parameters
    ----------
    out : path
        Output folder (created).
    kind : {"face", "pose"}
        Cartoon faces (:mod:`~echokdm.data.procedural.face`) or figures (:mod:`~echokdm.data.procedural.pose`).
    n_subjects, sequences_per_subject : int
        Subjects (appearance) and sequences (motion) per subject; splits are by subject.
    n_frames, size, fps : int, int, float
        Frames per sequence, frame size in pixels (square), frame rate.
    pairs_per_sequence : int
        Frame pairs whose exact flows are stored per sequence.
    missing : float
        Pose only: probability that an extremity joint is written as not found.
    skeleton : {"body25", "coco18"}
        Pose only: the joint set of the files.
    seed : int
        Draws everything; the same seed gives the same dataset.
    fractions : three floats
        Subject-level train/val/test fractions (:func:`~echokdm.data.manifest.assign_splits`).
    overwrite : bool
        Replace files of an earlier dataset; otherwise any clash is an error before writing.

    Returns
    -------
    ProceduralResult
    """
    from tqdm.auto import tqdm

    from echokdm.data.sequences import write_sequence_manifest

    _check_arguments(kind, skeleton, n_subjects, sequences_per_subject, n_frames, size, missing)
    out = Path(out)
    if (out / "manifest.csv").exists() and not overwrite:
        raise FileExistsError(f"{out / 'manifest.csv'}: already exists; pass overwrite=True (--overwrite) or choose "
                              "another folder")
    subjects = [f"{kind}_s{i:03d}" for i in range(n_subjects)]
    splits = assign_splits(subjects, fractions, seed)
    rows = []
    jobs = [(s, i, q) for i, s in enumerate(subjects) for q in range(sequences_per_subject)]
    for subject, i, q in tqdm(jobs, desc=f"procedural {kind}", unit="sequence", disable=not progress):
        clip_id = f"{subject}_q{q}"
        rng = np.random.default_rng([seed, i, q, 2])  # missing joints and flow pairs
        scene = _build_scene(kind, seed, i, q, n_frames, size)
        folder = out / "sequences" / clip_id
        for t in range(n_frames):
            _write_png(folder / "frames" / f"{t:04d}.png", scene.render(t), overwrite)
        exact = scene.all_keypoints()
        _write_keypoints(kind, folder / "keypoints", _observed(kind, exact, missing, rng, skeleton), overwrite)
        flows_path = out / "flows" / f"{clip_id}.npz"
        _write_flows(flows_path, scene, _pairs(n_frames, pairs_per_sequence, rng), clip_id, overwrite)
        with atomic_output(out / "truth" / f"{clip_id}.npz", overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, keypoints=exact)
        rows.append({"patient_id": subject, "clip_id": clip_id, "dataset": f"procedural_{kind}",
                     "path": str(folder / "frames"), "format": "images", "keypoints_path": str(folder / "keypoints"),
                     "flows_path": str(flows_path), "fps": fps, "n_frames": n_frames, "height": size, "width": size,
                     "split": splits[subject]})
    manifest = pd.DataFrame(rows)
    write_sequence_manifest(manifest, out / "manifest.csv", overwrite=overwrite)
    settings = {"kind": kind, "skeleton": skeleton if kind == "pose" else None, "n_subjects": n_subjects,
                "sequences_per_subject": sequences_per_subject, "n_frames": n_frames, "size": size, "fps": fps,
                "pairs_per_sequence": pairs_per_sequence, "missing": missing if kind == "pose" else 0.0, "seed": seed,
                "adapter": kind if kind == "face" or skeleton == "body25" else "pose_coco18"}
    with atomic_output(out / "dataset.json", overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(settings, indent=2))
    return ProceduralResult(out=out, manifest=manifest)

