r"""Does the privacy filter drop near-copies of training patients and keep genuine loops? (issue 21)

The phantom stand-in of ``benchmarks/utility.py`` (realistic phantom patients, the first half the
training pool, the second half held out; loops generated from the pool by the packaged
``kdm_phantom_112`` with the fast sampler, made by that script's own functions), with copies of
training clips planted among the loops. For every training patient ``B``:

* ``copy, unknown source``: ``B``'s real clip verbatim, no source;
* ``copy, other source``: the same, labelled with the training patient whose real clip is nearest
  ``B``'s (the hardest wrong label for the source-relative rule);
* ``altered, unknown`` / ``altered, other``: ``B``'s clip lightly altered (gain 0.85, offset
  +0.05, Gaussian noise SD 0.02, shifted 2 px right and 1 px down), labelled as above;
* ``shifted 4 px, unknown`` / ``shifted 4 px, other``: the same with a 4 px (right) and 2 px (down)
  shift (at 8 px no rule drops a copy: the ``normalised`` feature sees the speckle, which has moved);
* ``copy, own source`` (reported, not a goal): ``B``'s clip labelled ``B``. A KDM loop animates a
  frame of its source, so it sits as close to its source as a copy does (distances 0.01–0.2 in the
  ``normalised`` feature): the source is left out by every rule, and this copy is kept.

Each rule (feature × calibration × source margin, :func:`echokdm.generation.privacy_filter.privacy_filter`)
is scored by the genuine loops it keeps, the planted copies it drops, its threshold, and the
feature's identity AUC (:func:`~echokdm.generation.privacy_filter.identity_separation`); for each
genuine loop the smallest ratio of its distance to a training patient ``B`` over its source's real
clip's distance to ``B`` is printed too (the room the source margin has).

    python benchmarks/privacy_filter.py                       # phantom seeds 1000 and 2000: about 3 min per new seed
    python benchmarks/privacy_filter.py --seeds 1000 --cache /tmp/echokdm_privacy
    python benchmarks/privacy_filter.py --quick                # CI smoke run: 6 patients, 3 loops, under a minute

The cohorts (12 patients, 16 loops per seed) are cached under ``--cache`` (default
``/tmp/echokdm_privacy/seed<SEED>``) and reused; generating one costs about 2 CPU-minutes on one
thread. Seed 1000 is the cohort of the README's utility table (copy
``benchmarks/results/utility/{real,synthetic}`` into ``<cache>/seed1000`` to reuse it). Writes
``benchmarks/results/privacy_filter.json`` and ``privacy_filter.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

SHIFTED = 4  # px: a larger shift, where the speckle the feature sees has moved
PLANTS = ("copy, unknown", "copy, other", "altered, unknown", "altered, other", f"shifted {SHIFTED} px, unknown",
          f"shifted {SHIFTED} px, other", "copy, own")
RULES = [(feature, calibration, margin) for feature in ("normalised", "pixels")
         for calibration in ("held_out", "pooled") for margin in (None, 0.5)]
RULES += [("normalised", "pooled", 0.25), ("normalised", "pooled", 0.8)]  # how much the margin matters


def cohort(cache: Path, seed: int, n_patients: int, n_loops: int, quick: bool = False):
    """Real clips by patient, the training patients, and the genuine loops ``(name, frames, source)``
    (``quick``: the smoke cohort of ``benchmarks/utility.py --quick``, short clips and few DDIM steps)."""
    from utility import _real_cohort, _synthetic_cohort

    from echokdm.data.manifest import load_manifest, read_clip

    work = cache / f"{'quick_' if quick else ''}seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    real = _real_cohort(work, n_patients, quick, seed=seed)
    synthetic = _synthetic_cohort(work, real, n_loops, quick)
    table, syn = load_manifest(real), load_manifest(synthetic)
    clips = {str(r["patient_id"]): read_clip(r).frames for _, r in table.iterrows()}
    train = [str(p) for p, s in zip(table["patient_id"], table["split"], strict=True) if s == "train"]
    sources = pd.read_csv(work / "synthetic" / "echokdm_cohort.csv", dtype=str)
    source_of = dict(zip(sources["FileName"], sources["patient_id"], strict=True))
    loops = [(str(r["clip_id"]), read_clip(r).frames, source_of[str(r["clip_id"])]) for _, r in syn.iterrows()]
    return clips, train, loops


def alter(frames: np.ndarray, seed: int = 0, shift: int = 2) -> np.ndarray:
    """A lightly altered copy: gain, offset, noise and a small shift (``shift`` px right, half that
    down; edges repeated)."""
    rng = np.random.default_rng(seed)
    x = 0.85 * np.asarray(frames, dtype=np.float32) + 0.05 + rng.normal(0.0, 0.02, np.shape(frames))
    down = shift // 2
    x = np.pad(x, ((0, 0), (down, 0), (shift, 0)), mode="edge")[:, :x.shape[1], :x.shape[2]]
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def plants(clips: dict, train: list[str]) -> list[tuple[str, np.ndarray, str | None, str]]:
    """Planted copies ``(name, frames, claimed source, kind)`` of every training patient's clip."""
    from echokdm.generation.privacy_filter import clip_patient_distances, identity_features

    feats = {p: identity_features(clips[p][:: max(1, len(clips[p]) // 16)]) for p in train}
    planted = []
    for i, patient in enumerate(train):
        others = clip_patient_distances(feats[patient], {p: feats[p] for p in train if p != patient})
        look_alike = min(others, key=others.get)
        altered, shifted = alter(clips[patient], seed=i), alter(clips[patient], seed=i, shift=SHIFTED)
        for kind, frames, source in (("copy, unknown", clips[patient], None),
                                     ("copy, other", clips[patient], look_alike),
                                     ("altered, unknown", altered, None), ("altered, other", altered, look_alike),
                                     (f"shifted {SHIFTED} px, unknown", shifted, None),
                                     (f"shifted {SHIFTED} px, other", shifted, look_alike),
                                     ("copy, own", clips[patient], patient)):
            planted.append((f"planted {kind} {patient}", frames, source, kind))
    return planted


def source_ratios(clips: dict, train: list[str], loops: list, feature: str) -> list[float]:
    """For each loop ``(name, frames, source A, ...)``: min over training patients ``B != A`` of
    d(loop, B) / d(A's real clip, B): about 1 for a loop that owes its closeness to ``B`` to its
    source, about 0 for a copy of ``B``."""
    from echokdm.generation.privacy_filter import _pick, clip_patient_distances, identity_features

    feats = {p: identity_features(_pick(clips[p], 16), feature) for p in train}
    ratios = []
    for _, frames, source, *_ in loops:
        others = {p: f for p, f in feats.items() if p != source}
        d_loop = clip_patient_distances(identity_features(_pick(frames[1:], 16), feature), others)
        d_real = clip_patient_distances(feats[source], others)
        ratios.append(min(d_loop[p] / d_real[p] for p in others))
    return ratios


def measure(seed: int, clips: dict, train: list[str], loops: list) -> tuple[list[dict], dict]:
    from echokdm.generation.privacy_filter import identity_separation, privacy_filter

    planted = plants(clips, train)
    kind_of = {name: kind for name, _, _, kind in planted}
    held = [(p, clips[p]) for p in clips if p not in train]
    rows = []
    for feature, calibration, margin in RULES:
        result = privacy_filter([*loops, *((n, f, s) for n, f, s, _ in planted)], [(p, clips[p]) for p in train],
                                held, feature=feature, calibration=calibration, source_margin=margin)
        table = result.table.assign(kind=result.table["loop"].map(kind_of).fillna("genuine"))
        row = {"seed": seed, "feature": feature, "calibration": calibration,
               "source_margin": "off" if margin is None else margin, "threshold": round(result.threshold, 4),
               "genuine kept": f"{int((~table.loc[table['kind'] == 'genuine', 'dropped']).sum())} of {len(loops)}"}
        for kind in PLANTS:
            part = table[table["kind"] == kind]
            row[f"{kind} dropped"] = f"{int(part['dropped'].sum())} of {len(part)}"
        rows.append(row)
    extra = {}
    for feature in ("normalised", "pixels"):
        extra[f"identity_auc_{feature}"] = round(identity_separation(list(clips.items()), feature), 3)
        ratios = source_ratios(clips, train, loops, feature)
        extra[f"genuine_source_ratio_{feature}"] = f"min {min(ratios):.2f}, median {np.median(ratios):.2f}"
        ratios = source_ratios(clips, train, [x for x in planted if x[3] == "altered, other"], feature)
        extra[f"altered_other_source_ratio_{feature}"] = f"max {max(ratios):.2f}, median {np.median(ratios):.2f}"
    return rows, extra


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 2000], help="phantom seeds of the stand-in")
    p.add_argument("--patients", type=int, default=12, help="phantom patients: half pool, half held out")
    p.add_argument("--loops", type=int, default=16, help="genuine loops generated from the pool")
    p.add_argument("--cache", type=Path, default=Path("/tmp/echokdm_privacy"),
                   help="folder of the cached cohorts (seed<SEED>/ each)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run (CI): one seed, 6 patients, 3 loops with few DDIM steps; not figures to quote")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.patients, args.loops = args.seeds[:1], 6, 3
    import torch

    torch.set_num_threads(1)
    rows, figures = [], {}
    for seed in args.seeds:
        clips, train, loops = cohort(args.cache, seed, args.patients, args.loops, args.quick)
        found, extra = measure(seed, clips, train, loops)
        rows += found
        figures.update({f"seed{seed}_{k}": v for k, v in extra.items()})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    name = "privacy_filter_quick" if args.quick else "privacy_filter"
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    figures["rules"] = rows
    figures["settings"] = {"patients": args.patients, "loops": args.loops, "seeds": args.seeds, "percentile": 5}
    save(name, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
