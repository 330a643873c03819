r"""Does the synthetic cohort train models? ``echokdm utility`` on realistic phantom patients (issue 21).

Held-out realistic phantom patients (seed 1000, never seen by the packaged checkpoints) stand in for
real ones: the first half of them is the real training pool, the second half the test patients. A
synthetic cohort is generated from the pool's clips with the packaged ``kdm_phantom_112`` and the
fast sampler (25 DDIM steps, F2I from k = 3 on 8 keyframes), EF re-measured by ``seg_phantom_112``.
Then

* the identity features of the privacy filter: the AUC of same-patient against different-patient
  distances between the two halves of each real clip, for ``normalised`` and ``pixels``, and, with
  each feature, the fraction of the genuinely generated loops the filter drops and whether it drops
  a planted copy of a training clip;
* :func:`echokdm.evaluation.utility.run_utility` with the privacy filter: segmentation (Dice, EF MAE
  from its masks) and EF regression (MAE, R²) trained on real, synthetic and both, at several numbers
  of real patients and seeds, on the test patients.

    python benchmarks/utility.py                  # 16 patients (8 + 8), 32 loops, 2 4 8 x 3 seeds: hours on 2 cores
    python benchmarks/utility.py --quick          # 6 patients, 3 loops, tiny models, 1 thread: under a minute (CI)
    python benchmarks/utility.py --patients 8 --loops 8 --seeds 0 --real-patients 2 4   # a small run

The README's figures (6 + 6 patients, 16 loops; one core each, about 35 min and 60 min):

    python benchmarks/utility.py --patients 12 --loops 16 --seeds 0 1 --real-patients 2 4 all --tasks seg --threads 1
    python benchmarks/utility.py --patients 12 --loops 16 --seeds 0 --real-patients 2 4 all --tasks ef --threads 1

``--seg-look-augment`` trains every segmentation model with the sim-to-real look augmentation of
``seg_phantom_112`` (run folders ``*_look``).

``--fit-region`` generates the synthetic loops with ``SamplingSettings(fit_region=True)``
(``synthetic_fitregion/``, run folders ``*_fitregion``).

A cohort of another size goes in its own folder (``--work``); the README's EF regression on 64
loops (a run folder refuses other seeds later: give all of them at once, or start another folder
with the cohort copied into it):

    python benchmarks/utility.py --patients 12 --loops 64 --seeds 0 1 --real-patients 4 all --tasks ef \
        --threads 1 --work benchmarks/results/utility_64loops

``--labels keypoints`` labels the synthetic loops by the target keypoints they were made to follow
instead of re-detecting them with ``seg_phantom_112`` (``synthetic_keypoints/``, run folders ``*_kplabels``):

    python benchmarks/utility.py --patients 12 --loops 16 --seeds 0 1 --real-patients all --tasks seg \
        --threads 1 --labels keypoints

Writes ``benchmarks/results/utility[_quick].json`` and the run folder ``benchmarks/results/utility[_quick]/run``
(``utility.csv``, ``summary.md``, ``plots/utility.png``); the run resumes when started again with the
same arguments. ``--tasks seg`` or ``--tasks ef`` alone writes ``utility[_quick]_<task>.json`` and
``run_<task>/`` (the cohorts are shared), so the two tasks can be run, and resumed, with other seeds
or sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save


def _write_if_changed(table: pd.DataFrame, path: Path) -> Path:
    """Write a manifest only when its content changes: ``run_utility`` stamps its inputs (size and
    modification time), so rewriting an identical manifest would stop a rerun from resuming."""
    from echokdm.data.manifest import write_manifest

    new = write_manifest(table, path.with_name(f"{path.stem}.new.csv"), overwrite=True)
    if path.exists() and path.read_bytes() == new.read_bytes():
        new.unlink()
    else:
        new.replace(path)
    return path


def _real_cohort(work: Path, n_patients: int, quick: bool, seed: int = 1000) -> Path:
    """Realistic phantom patients (phantom ``seed``; the checkpoints were trained on other seeds); the
    first half the training pool (train), the rest the test split."""
    from echokdm.data.manifest import load_manifest
    from echokdm.data.phantom.export import write_cohort

    manifest = work / "real" / "manifest.csv"
    if not manifest.exists():
        short = {"fps": 25.0, "n_beats": 1.2} if quick else {}  # fewer frames to segment in the smoke run
        write_cohort(work / "real", n_patients, "echonet", seed=seed, style="realistic", progress=False, **short)
    table = load_manifest(manifest)
    if len(table) != n_patients:
        raise SystemExit(f"{work}: holds a cohort of {len(table)} patients, not {n_patients}; delete the folder "
                         f"or pass --patients {len(table)}")
    table["split"] = ["train" if i < n_patients // 2 else "test" for i in range(len(table))]
    return _write_if_changed(table, work / "real.csv")


def _synthetic_cohort(work: Path, real: Path, n_loops: int, quick: bool, labels: str = "seg",
                      fit_region: bool = False) -> Path:
    """The synthetic cohort; ``labels="seg"``: EF and tracings re-measured on the generated frames by
    ``seg_phantom_112`` (what the frames show, as ``synthesize --segmentation`` writes them);
    ``"keypoints"``: no segmentation model, so EF and tracings are those of the target keypoints (the
    motion the loop was made to follow), in ``synthetic_keypoints/``. ``fit_region``: the loops
    generated with ``SamplingSettings(fit_region=True)`` (folder suffix ``_fitregion``)."""
    from echokdm.data.manifest import scan_folder
    from echokdm.generation.settings import SamplingSettings
    from echokdm.generation.synthesize import synthesize_cohort
    from echokdm.pretrained import pretrained_path

    out = work / (("synthetic" if labels == "seg" else "synthetic_keypoints") + ("_fitregion" if fit_region else ""))
    if not (out / "cohort.csv").exists():
        shutil.rmtree(out, ignore_errors=True)
        sampling = SamplingSettings(num_inference_steps=10 if quick else 25, k=2 if quick else 3, keyframes=4 if quick
                                    else 8, seed=0, fit_region=fit_region)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synthesize_cohort(real, pretrained_path("kdm_phantom_112"), out, n_loops=n_loops, split="train",
                              sampling=sampling,
                              segmentation=pretrained_path("seg_phantom_112") if labels == "seg" else None,
                              ef_attempts=1 if quick else 3, memorisation_frames=200, progress=False)
    made = json.loads((out / "settings.json").read_text()).get("n_loops")
    if made != n_loops:
        raise SystemExit(f"{out}: holds a cohort of {made} loops, not {n_loops}; delete it, pass --loops {made} "
                         "or give another --work folder")
    scan = scan_folder(out, "echonet", progress=False)
    return _write_if_changed(scan.manifest, work / f"{out.name}.csv")


def _identity(real: Path, synthetic: Path) -> dict:
    """Separation of each identity feature, and what the filter drops with it (a planted copy included)."""
    from echokdm.data.manifest import load_manifest, read_clip
    from echokdm.generation.privacy_filter import identity_separation, privacy_filter

    table, syn = load_manifest(real), load_manifest(synthetic)
    clips = {str(r["patient_id"]): read_clip(r).frames for _, r in table.iterrows()}
    train = [p for p, s in zip(table["patient_id"], table["split"], strict=True) if s == "train"]
    held = [p for p in clips if p not in train]
    sources = pd.read_csv(Path(syn["path"].iloc[0]).parent.parent / "echokdm_cohort.csv", dtype=str)
    source_of = dict(zip(sources["FileName"], sources["patient_id"], strict=True))
    loops = [(str(r["clip_id"]), read_clip(r).frames, source_of.get(str(r["clip_id"]))) for _, r in syn.iterrows()]
    planted = ("planted-copy", clips[train[0]], None)
    figures = {}
    for feature in ("normalised", "pixels"):
        figures[f"identity_auc_{feature}"] = round(identity_separation(list(clips.items()), feature), 3)
        result = privacy_filter([*loops, planted], [(p, clips[p]) for p in train], [(p, clips[p]) for p in held],
                                feature=feature)
        genuine = result.table[result.table["loop"] != "planted-copy"]
        figures[f"filter_{feature}_genuine_dropped"] = f"{int(genuine['dropped'].sum())} of {len(genuine)}"
        figures[f"filter_{feature}_planted_copy_dropped"] = bool("planted-copy" in result.dropped)
    return figures


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="6 patients, 3 loops, tiny models (CI smoke run)")
    p.add_argument("--patients", type=int, default=16, help="phantom patients: half pool, half test")
    p.add_argument("--loops", type=int, default=32, help="synthetic loops")
    p.add_argument("--real-patients", nargs="+", default=["2", "4", "8"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", default="seg,ef")
    p.add_argument("--labels", choices=("seg", "keypoints"), default="seg",
                   help="labels of the synthetic loops: re-measured by seg_phantom_112 on the generated frames "
                        "(default) or the target keypoints the loops were made to follow (run folders get _kplabels)")
    p.add_argument("--seg-look-augment", action="store_true",
                   help="segmentation models trained with seg_phantom_112's look augmentation (run folders *_look)")
    p.add_argument("--fit-region", action="store_true",
                   help="the synthetic loops generated with --fit-region (cohort and run folders *_fitregion); "
                        "without it, K2F's flow everywhere, as the README's figures were measured")
    p.add_argument("--work", type=Path, default=None,
                   help="folder of the cohorts and runs (default benchmarks/results/utility, or utility_quick); "
                        "a cohort of another --loops needs its own folder")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 2; 1 with --quick, whose tiny models gain nothing from a second "
                        "thread and lose much on a busy machine)")
    args = p.parse_args(argv)
    import torch

    from echokdm.evaluation.utility import UtilitySettings, run_utility

    torch.set_num_threads(args.threads or (1 if args.quick else 2))
    name = "utility_quick" if args.quick else "utility"
    if args.quick:
        args.patients, args.loops, args.real_patients, args.seeds = 6, 3, ["2"], [0]
    if args.work is not None:
        name = args.work.name  # the saved figures take the folder's name
    work = args.work or RESULTS / name
    work.mkdir(parents=True, exist_ok=True)
    real = _real_cohort(work, args.patients, args.quick)
    synthetic = _synthetic_cohort(work, real, args.loops, args.quick, args.labels, args.fit_region)
    figures = _identity(real, synthetic)
    sizes = tuple(n if n == "all" else int(n) for n in args.real_patients)
    given = dict(tasks=tuple(args.tasks.split(",")), real_patients=sizes, seeds=tuple(args.seeds), privacy_filter=True,
                 seg_look_augment=args.seg_look_augment)
    settings = UtilitySettings.quick(**given) if args.quick else UtilitySettings(**given)
    tasks = "_".join(given["tasks"])
    run = work / ("run" if tasks == "seg_ef" else f"run_{tasks}")  # one task alone: its own run, resumable too
    suffix = (("" if args.labels == "seg" else "_kplabels") + ("_look" if args.seg_look_augment else "")
              + ("_fitregion" if args.fit_region else ""))
    run = run.with_name(run.name + suffix)
    result = run_utility(real, synthetic, run, settings, progress=not args.quick)
    for row in result.summary.itertuples(index=False):
        interval = f" [{row.low:.3f}, {row.high:.3f}]" if np.isfinite(row.low) else ""
        figures[f"{row.task}_{row.metric}_{row.training_set}_n{row.n_real_patients}"] = f"{row.mean:.3f}{interval}"
    figures["notes"] = result.notes
    figures["cpu_seconds_per_cell"] = {task: round(float(g["seconds"].mean()), 1)
                                       for task, g in result.utility.groupby("task")}
    figures["run_folder"] = str(run)
    save((name if tasks == "seg_ef" else f"{name}_{tasks}") + suffix, figures)
    return 0 if len(result.utility) else 1


if __name__ == "__main__":
    raise SystemExit(main())
