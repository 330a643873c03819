"""Privacy filter for synthetic cohorts: drop loops that sit closer to a training patient than unseen
real patients do (``echokdm synthesize --privacy-filter``, ``echokdm utility --privacy-filter``).

The memorisation check (:class:`~echokdm.metrics.privacy.MemorisationReport`, written by
:mod:`~echokdm.generation.cohort_report`) says whether a cohort *as a whole* sits too close to the
training frames; this filter acts on each loop, as EchoNet-Synthetic and EchoFlow do:

1. **Identity features.** Each frame becomes a vector in which frames of the same heart lie close
   together (:func:`identity_features`). ``"normalised"`` (default): the frame shrunk to 32 × 32
   (anti-aliased) and standardised (zero mean, unit SD), so that gain, contrast and brightness,
   which a generator and a scanner change freely, do not count; ``"pixels"``: the frame at its own
   size, whose squared distance is the MSE of the memorisation check. :func:`identity_separation`
   measures how well a feature tells the same patient from another (the AUC of same-patient vs
   different-patient distances between two halves of each clip): on 16 realistic phantom patients
   ``benchmarks/utility.py`` prints both (README, "Synthetic data utility").
2. **Clip-to-patient distance.** The median over the clip's frames of the squared distance to the
   nearest frame of that patient (:func:`clip_patient_distances`); a clip's *nearest training
   patient* is the patient at the smallest distance. A verbatim copy of a training clip is at 0.
3. **Threshold.** The ``percentile``-th percentile (default 5) of real distances between distinct
   patients (``calibration``): ``"pooled"`` (default) the distances of real *held-out* clips
   (patients outside training) to their nearest training patient *and* of each training clip to the
   nearest *other* training patient (leave-one-out), so that look-alike pairs of real patients enter
   the calibration; ``"held_out"`` the held-out distances alone. A genuinely new loop is dropped with
   probability about ``percentile`` %, a loop as close as a near-copy always.
4. **The source is left out.** A KDM loop animates a real frame of its source patient, so it is
   close to that patient by construction; as in the memorisation check, a loop is compared with the
   training patients *other than its source* (``source_patient_id``). A loop whose source is unknown
   is compared with every training patient. The first frame of a loop (the real source frame when
   the cohort was made with ``include_source``) is left out. A copy of a training clip labelled with
   *that* patient as its source is therefore kept: it is as close to its source as a genuine loop is.
5. **Source-relative rule** (``source_margin``, default 0.5). A loop also inherits its source's
   closeness to the other patients: a loop of ``A`` is as close to ``B`` as ``A``'s real clip is,
   and when ``A`` and ``B`` look alike that is below the threshold. So a loop of a known training
   source ``A`` that looks more like ``A`` than like ``B`` (as a loop animating ``A`` does) is
   dropped for ``B`` only when it is also closer to ``B`` than ``source_margin`` × ``A``'s own
   distance to ``B``; a loop nearer ``B`` than its claimed source is held to the threshold alone.
   So a copy of ``B`` labelled with any other source is still dropped. On the phantom stand-in
   (``benchmarks/privacy_filter.py``; README, "Synthetic data utility") genuine loops sit at
   0.90 × or more of their source's distance to the others (and far closer to their source than to
   anyone else), lightly altered copies (gain, noise, a 2-pixel shift) at 0.3 × or less.
   Limits: the ``normalised`` feature sees speckle, so a copy shifted by 8 pixels (at 112) escapes
   every rule; a copy labelled with its own patient is kept (point 4).

:func:`privacy_filter` does the arithmetic on frames in memory; :func:`filter_cohort` applies it to
a cohort folder written by :func:`~echokdm.generation.synthesize.synthesize_cohort`: it removes the
dropped loops from ``Videos/``, ``FileList.csv``, ``VolumeTracings.csv``, ``echokdm_cohort.csv`` and
``cohort.csv`` and lists them in ``privacy_dropped.csv`` (:data:`DROPPED_COLUMNS`), with the
threshold and counts in ``privacy_filter.csv``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echokdm.io.atomic import atomic_output

__all__ = [
    "DROPPED_COLUMNS",
    "CALIBRATIONS",
    "FEATURES",
    "PrivacyFilterResult",
    "apply_to_result",
    "clip_patient_distances",
    "filter_cohort",
    "identity_features",
    "identity_separation",
    "privacy_filter",
    "reference_clips",
]

#: Identity feature spaces of :func:`identity_features`.
FEATURES = ("normalised", "pixels")
#: How :func:`privacy_filter` calibrates its threshold on real clips.
CALIBRATIONS = ("pooled", "held_out")
#: Columns of ``privacy_dropped.csv`` (and of :attr:`PrivacyFilterResult.table`, one row per loop).
DROPPED_COLUMNS = ("loop", "source_patient_id", "nearest_patient_id", "distance", "threshold", "dropped")
_SMALL = 32  # side of the "normalised" feature frame
_FRAMES_PER_CLIP = 16


def identity_features(frames: np.ndarray, kind: str = "normalised") -> np.ndarray:
    """Per-frame identity features ``float32`` ``(T, D)`` of frames ``(T, H, W)`` in [0, 1].

    ``"normalised"``: each frame resized to 32 × 32 and standardised, divided by ``sqrt(D)`` (squared
    distances are mean squared differences of standardised pixels); ``"pixels"``: the frame as it is,
    divided by ``sqrt(H W)`` (squared distance = MSE).
    """
    from echokdm.geometry.resize import resize_images

    if kind not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}, got {kind!r}")
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim != 3 or not len(x):
        raise ValueError(f"frames must be (T, H, W) with T >= 1, got {x.shape}")
    if kind == "normalised":
        x = resize_images(x, (_SMALL, _SMALL), antialias=True).astype(np.float32)  # (T, 32, 32)
        x = x.reshape(len(x), -1)
        x = (x - x.mean(1, keepdims=True)) / np.maximum(x.std(1, keepdims=True), 1e-6)
    else:
        x = x.reshape(len(x), -1)
    return (x / np.sqrt(x.shape[1])).astype(np.float32)


def _pick(frames: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` frames evenly spread over the clip."""
    index = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    return frames[index]


def _squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), len(b))``."""
    d = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def clip_patient_distances(query: np.ndarray, patients: dict[str, np.ndarray]) -> dict[str, float]:
    """Distance of a clip to each patient: the median over the clip's frames (features ``(T, D)``) of
    the squared distance to that patient's nearest frame (features ``(M, D)``)."""
    return {key: float(np.median(_squared(query, feats).min(1))) for key, feats in patients.items()}


def _nearest(query: np.ndarray, patients: dict[str, np.ndarray], exclude: str | None) -> tuple[str, float]:
    """The nearest patient other than ``exclude`` and its distance (``("", nan)`` when there is none)."""
    distances = clip_patient_distances(query, {k: v for k, v in patients.items() if k != exclude})
    if not distances:
        return "", float("nan")
    key = min(distances, key=distances.get)
    return key, distances[key]


def _closest_call(distances: dict[str, float], thresholds: dict[str, float]) -> tuple[str, float, float]:
    """``(patient, distance, threshold)``: the patient whose distance is smallest relative to its
    threshold when that is below it (the loop is dropped for that patient), else the nearest patient
    (``("", nan, nan)`` when there is none)."""
    if not distances:
        return "", float("nan"), float("nan")
    key = min(distances, key=lambda k: (distances[k] / thresholds[k] if thresholds[k] > 0 else np.inf, distances[k]))
    if not distances[key] < thresholds[key]:
        key = min(distances, key=distances.get)
    return key, distances[key], thresholds[key]


@dataclasses.dataclass
class PrivacyFilterResult:
    """What :func:`privacy_filter` decided.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per loop (:data:`DROPPED_COLUMNS`): its source, nearest training patient (the
        source left out; with ``source_margin``, the patient nearest relative to its threshold),
        distance, the threshold it was held to and whether it is dropped.
    threshold : float
        The ``percentile``-th percentile of the calibration distances.
    held_out_distance : numpy.ndarray
        ``float64`` ``(N_held,)``: each held-out clip's distance to its nearest training patient.
    feature, percentile
        The settings used.
    calibration : str
        ``"held_out"`` or ``"pooled"`` (:func:`privacy_filter`).
    calibration_distance : numpy.ndarray
        The distances the threshold is the percentile of: ``held_out_distance``, and with
        ``"pooled"`` each training clip's distance to the nearest *other* training patient.
    source_margin : float or None
        The source-relative rule's factor (:func:`privacy_filter`), None when it is off.
    """

    table: pd.DataFrame
    threshold: float
    held_out_distance: np.ndarray
    feature: str
    percentile: float
    calibration: str = "held_out"
    calibration_distance: np.ndarray | None = None
    source_margin: float | None = None

    def __post_init__(self):
        if self.calibration_distance is None:
            self.calibration_distance = self.held_out_distance

    @property
    def dropped(self) -> list[str]:
        """Names of the dropped loops."""
        return self.table.loc[self.table["dropped"], "loop"].astype(str).tolist()

    def summary(self) -> dict[str, Any]:
        """One row: feature, percentile, calibration, threshold, source margin, loops checked and
        dropped, held-out and calibration clips."""
        return {"feature": self.feature, "percentile": self.percentile, "calibration": self.calibration,
                "threshold": self.threshold,
                "source_margin": float("nan") if self.source_margin is None else self.source_margin,
                "n_loops": len(self.table), "n_dropped": int(self.table["dropped"].sum()),
                "n_held_out": int(self.held_out_distance.size),
                "n_calibration": int(self.calibration_distance.size),
                "median_held_out": float(np.median(self.held_out_distance)),
                "median_loops": float(np.nanmedian(self.table["distance"])) if len(self.table) else float("nan")}

    def summary_line(self) -> str:
        s = self.summary()
        real = (f"{s['n_held_out']} real held-out clip(s)" if self.calibration == "held_out" else
                f"{s['n_calibration']} real clip(s) to the other patients (held-out and training leave-one-out)")
        relative = "" if self.source_margin is None else \
            f"; loops of a known source held to at most {self.source_margin:g} x their source's own distance"
        return (f"privacy filter ({s['feature']} features): {s['n_dropped']} of {s['n_loops']} loop(s) dropped, "
                f"closer to a training patient than {100 - s['percentile']:g} % of {real} are "
                f"(threshold {s['threshold']:.4g}{relative})")


def _source(source) -> str | None:
    """A source patient id, None when unknown (None, NaN or empty)."""
    if source is None or (isinstance(source, float) and np.isnan(source)) or str(source) == "":
        return None
    return str(source)


def privacy_filter(loops: Iterable[tuple[str, np.ndarray, str | None]],
                   training: Iterable[tuple[str, np.ndarray]], held_out: Iterable[tuple[str, np.ndarray]], *,
                   feature: str = "normalised", percentile: float = 5.0,
                   frames_per_clip: int = _FRAMES_PER_CLIP, calibration: str = "pooled",
                   source_margin: float | None = 0.5) -> PrivacyFilterResult:
    """Decide which loops to drop (module docstring).

    Parameters
    ----------
    loops : iterable of (name, frames, source_patient_id)
        Generated loops, frames ``(T, H, W)`` in [0, 1]; ``source_patient_id`` (or None) is the
        training patient the loop animates, left out of its comparison. Frame 0 is left out when
        there are others.
    training : iterable of (patient_id, frames)
        Real clips of the training patients (several clips of a patient are pooled).
    held_out : iterable of (patient_id, frames)
        Real clips of patients outside training: they calibrate the threshold.
    feature : {"normalised", "pixels"}
        Identity feature (:func:`identity_features`).
    percentile : float
        Percentile in (0, 100) of the calibration distances that is the threshold.
    frames_per_clip : int
        At most this many frames of each clip are compared, evenly spread.
    calibration : {"pooled", "held_out"}
        The real distances the threshold is a percentile of: ``"held_out"``, each held-out clip's
        distance to its nearest training patient; ``"pooled"`` (default), those and each training
        clip's distance to the nearest *other* training patient (leave-one-out: real, distinct
        patients too, so that look-alike training patients enter the calibration).
    source_margin : float or None
        Source-relative rule (default 0.5): a loop of a known training source ``A`` that is closer
        to ``A`` than to a training patient ``B`` is dropped for ``B`` only when it is closer to
        ``B`` than the threshold *and* than ``source_margin`` × the distance of ``A``'s own real
        clip to ``B``: a loop that animates a patient who looks like ``B`` is as close to ``B`` as
        its source is, a copy of ``B`` (whatever source it is labelled with) is much closer, or
        nearer ``B`` than ``A``. Loops of an unknown source, and loops nearer ``B`` than their
        source, are held to the threshold alone. None: the threshold alone for every loop.

    Raises
    ------
    ValueError
        No training or no held-out clip, a held-out patient that is also a training patient, or
        a bad setting.
    """
    if not 0.0 < float(percentile) < 100.0:
        raise ValueError(f"percentile must be within (0, 100), got {percentile!r}")
    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
    if source_margin is not None and not float(source_margin) > 0.0:
        raise ValueError(f"source_margin must be positive or None, got {source_margin!r}")

    def features(frames):
        return identity_features(_pick(np.asarray(frames), frames_per_clip), feature)

    patients: dict[str, list[np.ndarray]] = {}
    for pid, frames in training:
        patients.setdefault(str(pid), []).append(features(frames))
    pooled = {k: np.concatenate(v) for k, v in patients.items()}
    held = [(str(pid), features(frames)) for pid, frames in held_out]
    if not pooled or not held:
        raise ValueError(f"the privacy filter needs training and held-out real clips, got {len(pooled)} training "
                         f"patient(s) and {len(held)} held-out clip(s)")
    both = sorted({pid for pid, _ in held} & set(pooled))
    if both:
        raise ValueError(f"held-out patients must be outside training; in both: {', '.join(both[:5])}")
    held_distance = np.array([_nearest(f, pooled, None)[1] for _, f in held])
    calibration_distance = held_distance
    if calibration == "pooled" and len(pooled) > 1:
        leave_one_out = [_nearest(clip, pooled, pid)[1] for pid, clips in patients.items() for clip in clips]
        calibration_distance = np.concatenate([held_distance, leave_one_out])
    threshold = float(np.percentile(calibration_distance, percentile))
    between: dict[str, dict[str, float]] = {}  # a source's real clips to the other training patients

    def thresholds(query: np.ndarray, source: str | None, distances: dict[str, float]) -> dict[str, float]:
        if source_margin is None or source not in pooled:
            return {k: threshold for k in distances}
        if source not in between:
            between[source] = clip_patient_distances(pooled[source], {k: v for k, v in pooled.items() if k != source})
        own = clip_patient_distances(query, {source: pooled[source]})[source]
        # the source explains the closeness to k only for a loop that looks more like its source than like k
        return {k: min(threshold, float(source_margin) * between[source][k]) if own < d else threshold
                for k, d in distances.items()}

    rows = []
    for name, frames, source in loops:
        frames = np.asarray(frames)
        made = features(frames[1:] if len(frames) > 1 else frames)
        source = _source(source)
        distances = clip_patient_distances(made, {k: v for k, v in pooled.items() if k != source})
        key, distance, limit = _closest_call(distances, thresholds(made, source, distances))
        rows.append({"loop": str(name), "source_patient_id": source or "", "nearest_patient_id": key,
                     "distance": distance, "threshold": limit,
                     "dropped": bool(np.isfinite(distance) and distance < limit)})
    table = pd.DataFrame(rows, columns=list(DROPPED_COLUMNS)).astype({"dropped": bool})
    return PrivacyFilterResult(table, threshold, held_distance, feature, float(percentile), calibration,
                               np.asarray(calibration_distance, dtype=float),
                               None if source_margin is None else float(source_margin))


def identity_separation(clips: Sequence[tuple[str, np.ndarray]], feature: str = "normalised",
                        frames_per_clip: int = _FRAMES_PER_CLIP) -> float:
    """How well ``feature`` recognises a heart: the AUC of same-patient against different-patient
    clip-to-patient distances, between the first and the second half of each clip (1 = every
    same-patient pair is closer than every different-patient pair, 0.5 = chance).

    ``clips``: ``(patient_id, frames (T, H, W))`` with ``T >= 2``, at least two patients.
    """
    from scipy.stats import mannwhitneyu

    halves = []
    for pid, frames in clips:
        frames = np.asarray(frames)
        half = len(frames) // 2
        halves.append((str(pid), identity_features(_pick(frames[:half], frames_per_clip), feature),
                       identity_features(_pick(frames[half:], frames_per_clip), feature)))
    same, other = [], []
    for pid_i, first, _ in halves:
        for pid_j, _, second in halves:
            distance = clip_patient_distances(first, {"x": second})["x"]
            (same if pid_i == pid_j else other).append(distance)
    if not same or not other:
        raise ValueError("identity_separation needs clips of at least two patients")
    u = mannwhitneyu(other, same, alternative="two-sided").statistic  # P(other > same)
    return float(u / (len(same) * len(other)))


# ---------------------------------------------------------------------------------------------
# a cohort folder
# ---------------------------------------------------------------------------------------------


def _read_rows(rows: pd.DataFrame, what: str, skipped: list[tuple[str, str]]) -> list[tuple[str, np.ndarray]]:
    from echokdm.data.manifest import read_clip

    clips = []
    for _, row in rows.iterrows():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clips.append((f"{row['dataset']}\x00{row['patient_id']}", read_clip(row).frames))
        except (ValueError, OSError) as exc:
            skipped.append((f"{what} clip {row['clip_id']}", f"{type(exc).__name__}: {exc}"))
    return clips


def reference_clips(table: pd.DataFrame, training_table: pd.DataFrame, skipped: list[tuple[str, str]]
                    ) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """Training clips (train split of ``training_table``) and held-out clips (the patients of ``table``
    outside it), keyed ``dataset\\0patient_id``, as the memorisation check chooses them."""
    train = training_table[training_table["split"] == "train"]
    keys = set(zip(train["dataset"].astype(str), train["patient_id"].astype(str), strict=True))
    outside = [(str(d), str(p)) not in keys for d, p in zip(table["dataset"], table["patient_id"], strict=True)]
    return _read_rows(train, "training", skipped), _read_rows(table[outside], "held-out", skipped)


def _rewrite(path: Path, keep) -> None:
    """Keep the rows of the CSV ``path`` for which ``keep(table)`` is true (atomically)."""
    if not path.exists():
        return
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    with atomic_output(path, overwrite=True) as tmp:
        table[keep(table)].to_csv(tmp, index=False)


def _remove_loops(out: Path, names: list[str]) -> None:
    """Remove loops from a cohort folder: videos and the rows of every table."""
    drop = set(names)
    stems = lambda column: column.str.replace(r"\.avi$", "", regex=True)  # noqa: E731
    for table, column in (("FileList.csv", "FileName"), ("VolumeTracings.csv", "FileName"),
                          ("echokdm_cohort.csv", "FileName"), ("cohort.csv", "loop")):
        _rewrite(out / table, lambda t, c=column: ~stems(t[c]).isin(drop))
    for name in names:
        (out / "Videos" / f"{name}.avi").unlink(missing_ok=True)


def filter_cohort(out: str | os.PathLike, manifest: str | os.PathLike,
                  training_manifest: str | os.PathLike | None = None, *, feature: str = "normalised",
                  percentile: float = 5.0, frames_per_clip: int = _FRAMES_PER_CLIP, calibration: str = "pooled",
                  source_margin: float | None = 0.5, overwrite: bool = False) -> PrivacyFilterResult:
    """Apply the privacy filter to a cohort folder of :func:`~echokdm.generation.synthesize.synthesize_cohort`.

    Training clips: the train split of ``training_manifest`` (default ``manifest``); held-out: the
    patients of ``manifest`` outside it. Loops: ``cohort.csv`` (source patient ``source_dataset``,
    ``source_patient_id``) and ``Videos/<loop>.avi``. The dropped loops are removed from the folder
    (module docstring) and listed in ``privacy_dropped.csv``; ``privacy_filter.csv`` holds
    :meth:`PrivacyFilterResult.summary`.

    Raises
    ------
    FileNotFoundError
        ``cohort.csv`` or a manifest is missing.
    FileExistsError
        ``privacy_dropped.csv`` exists and ``overwrite`` is false.
    ValueError
        No training or held-out clip (see :func:`privacy_filter`).
    """
    from echokdm.data.manifest import load_manifest
    from echokdm.io.video import read_video

    out = Path(out)
    cohort_csv = out / "cohort.csv"
    if not cohort_csv.is_file():
        raise FileNotFoundError(f"{cohort_csv}: no such file (a cohort folder written by echokdm synthesize)")
    for name in ("privacy_dropped.csv", "privacy_filter.csv"):
        if (out / name).exists() and not overwrite:
            raise FileExistsError(f"{out / name}: already exists; pass --overwrite or choose another folder")
    table = load_manifest(manifest)
    training_table = table if training_manifest is None else load_manifest(training_manifest)
    skipped: list[tuple[str, str]] = []
    training, held_out = reference_clips(table, training_table, skipped)
    if not held_out:
        raise ValueError(f"{manifest}: no real clip of a patient outside the training split to calibrate the "
                         "privacy filter" + (f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    cohort = pd.read_csv(cohort_csv, dtype=str, keep_default_na=False)

    def loops():
        for row in cohort.to_dict("records"):
            frames = read_video(out / "Videos" / f"{row['loop']}.avi").frames
            source = f"{row.get('source_dataset', '')}\x00{row['source_patient_id']}" \
                if row.get("source_patient_id") else None
            yield row["loop"], frames, source

    result = privacy_filter(loops(), training, held_out, feature=feature, percentile=percentile,
                            frames_per_clip=frames_per_clip, calibration=calibration, source_margin=source_margin)
    shown = result.table.copy()
    for column in ("source_patient_id", "nearest_patient_id"):
        shown[column] = shown[column].str.split("\x00").str[-1]
    result.table = shown
    _remove_loops(out, result.dropped)
    with atomic_output(out / "privacy_dropped.csv", overwrite=True) as tmp:
        shown[shown["dropped"]].to_csv(tmp, index=False)
    with atomic_output(out / "privacy_filter.csv", overwrite=True) as tmp:
        pd.DataFrame([result.summary()]).to_csv(tmp, index=False)
    return result


def apply_to_result(result, manifest, training_manifest=None, **options: Any) -> PrivacyFilterResult:
    """:func:`filter_cohort` on the folder of a :class:`~echokdm.generation.cohort_report.SynthesisResult`,
    which is updated: the dropped loops leave ``result.cohort``; ``result.paths`` gains
    ``privacy_dropped`` and ``privacy_filter``; ``result.privacy`` is the filter's result."""
    filtered = filter_cohort(result.out, manifest, training_manifest, **options)
    result.cohort = result.cohort[~result.cohort["loop"].astype(str).isin(set(filtered.dropped))].reset_index(drop=True)
    result.paths["privacy_dropped"] = result.out / "privacy_dropped.csv"
    result.paths["privacy_filter"] = result.out / "privacy_filter.csv"
    result.privacy = filtered
    return filtered
