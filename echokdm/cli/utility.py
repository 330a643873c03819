"""The ``echokdm utility`` command: does a synthetic cohort train models that work on real patients?

Argument parsing and printing only; the work is :func:`echokdm.evaluation.utility.run_utility`.
"""

from __future__ import annotations

import argparse

from echokdm.cli._common import add_run_options

__all__ = ["cmd_utility", "register"]


def _patients(text: str):
    """argparse type of ``--real-patients``: an integer >= 1 or ``all``."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 or 'all', got {value}")
    return value


def _settings(args: argparse.Namespace):
    from echokdm.evaluation.utility import UtilitySettings

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    given = {"tasks": tasks, "real_patients": tuple(args.real_patients), "seeds": tuple(args.seeds),
             "test_fraction": args.test_fraction, "privacy_filter": args.privacy_filter,
             "seg_look_augment": args.seg_look_augment}
    for name in ("seg_steps", "ef_steps"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    return UtilitySettings.quick(**given) if args.quick else UtilitySettings(**given)


def cmd_utility(args: argparse.Namespace) -> int:
    """Train and test every cell; print the summary and the files. Exit 1 when no cell finished."""
    from echokdm.evaluation.utility import run_utility

    result = run_utility(args.real, args.synthetic, args.out, _settings(args), overwrite=args.overwrite,
                         progress=not args.no_progress)
    cells = ["task", "training_set", "n_real_patients", "seed"]
    n_cells = len(result.utility.groupby(cells)) if len(result.utility) else 0
    print(f"{n_cells} cell(s) finished ({result.trained} trained now, {n_cells - result.trained} from earlier runs)")
    for note in result.notes:
        print(f"  {note}")
    for item, reason in result.skipped.itertuples(index=False):
        print(f"  skipped {item}: {reason}")
    if n_cells:
        for row in result.summary.itertuples(index=False):
            interval = f" [{row.low:.3f}, {row.high:.3f}]" if row.low == row.low else ""
            print(f"  {row.task:>3} {row.metric:<6} {row.training_set:<24} n={row.n_real_patients:<3} "
                  f"{row.mean:.3f}{interval}")
    print(f"results: {args.out}")
    for name, path in result.paths.items():
        print(f"  {name:>15}: {path}")
    return 0 if n_cells else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``utility`` command to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "utility", help="train on real, synthetic and both; test on held-out real patients",
        description="Measure whether a synthetic cohort trains models that work on real patients: LV segmentation "
                    "(Dice, EF from its masks) and EF regression from the video (MAE, R²), trained on the real "
                    "training split, on the synthetic cohort and on both, at several numbers of real patients and "
                    "seeds, tested on the real test split (patients the generator never saw). Writes utility.csv, "
                    "summary.md (patient-bootstrap intervals) and plots/utility.png. Resumable: run the same command "
                    "again to finish an interrupted run.")
    p.add_argument("--real", required=True, metavar="REAL.csv",
                   help="manifest of the real clips: its test split is the test set, train and val the training pool")
    p.add_argument("--synthetic", required=True, metavar="SYN.csv",
                   help="manifest of the synthetic cohort (echokdm manifest COHORT --format echonet)")
    p.add_argument("-o", "--out", required=True, help="output folder (created; resumed when it holds this run)")
    p.add_argument("--real-patients", nargs="+", type=_patients, default=[2, 4, 8, "all"], metavar="N",
                   help="numbers of real training patients (integers or all; default: 2 4 8 all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--tasks", default="seg,ef", help="comma-separated tasks: seg, ef (default: %(default)s)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help="split the real patients afresh with this test fraction instead of the manifest's test split "
                        "(then make sure the generator never saw the test patients)")
    p.add_argument("--privacy-filter", action="store_true",
                   help="also train on the cohort without the loops the privacy filter drops, and list them "
                        "(privacy_dropped.csv)")
    p.add_argument("--quick", action="store_true",
                   help="tiny models and a few dozen steps: a smoke run, not figures to quote")
    p.add_argument("--seg-steps", type=int, default=None, help="training steps of each segmentation model")
    p.add_argument("--ef-steps", type=int, default=None, help="training steps of each EF network")
    p.add_argument("--seg-look-augment", action="store_true",
                   help="train the segmentation models with the sim-to-real look augmentation of seg_phantom_112 "
                        "(blood brightness, speckle, blur, TGC, haze, noise, gamma, DCT blocks) on every training set")
    add_run_options(p, overwrite="discard a run in --out made with other inputs or settings")
    p.set_defaults(func=cmd_utility)
