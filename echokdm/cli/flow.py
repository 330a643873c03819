"""The ``echokdm train flow`` and ``echokdm flow`` commands.

Argument parsing and printing only; the work is done by :mod:`echokdm.training.flow`.
:func:`register_train` adds ``flow`` to the subparsers of ``echokdm train``; :func:`register`
adds the ``flow`` command (flow caching) to the ``echokdm`` parser's subparsers.
"""

from __future__ import annotations

import argparse
import functools

__all__ = ["cmd_flow", "cmd_train_flow", "register", "register_train"]


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_train_flow(args: argparse.Namespace) -> int:
    """Train OF-net on a manifest's frame pairs into a run folder."""
    from echokdm.training.flow import load_flow_config, train_flow

    overrides = {"train": {"steps": args.steps}} if args.steps is not None else None
    config = load_flow_config(args.config, overrides)
    result = train_flow(config, args.manifest, args.out, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress)
    best = "n/a" if result["best"] is None else f"{result['best']:.4f}"
    print(f"trained {result['steps']} steps on {result['train_pairs']} frame pairs in {result['seconds']:.0f} s; "
          f"best {result['metric']} on {result['validated_on']} ({result['val_pairs']} pairs): {best}")
    row = result.get("last_row") or {}
    if "val_epe_zero" in row:
        print(f"  last validation: EPE {row['val_epe']:.3f} px (zero flow {row['val_epe_zero']:.3f} px), "
              f"photometric {row['val_photometric']:.4f}")
    print(f"run folder: {result['run']} (config.yaml, git.txt, log.csv, best/, last/)")
    for clip, reason in result["skipped"]:
        print(f"  skipped {clip}: {reason}")
    return 0


def cmd_flow(args: argparse.Namespace) -> int:
    """Cache OF-net flows of every frame pair of a manifest (resumable), in ``--workers`` processes."""
    from echokdm.cli.parallel import cache_flows_parallel
    from echokdm.training.flow import cache_flows

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    run = cache_flows if args.workers == 1 else functools.partial(cache_flows_parallel, workers=args.workers)
    table, skipped = run(args.manifest, args.checkpoint, args.out, gaps=tuple(args.gaps), splits=args.splits,
                         batch_size=args.batch_size, device=args.device, resume=not args.no_resume,
                         overwrite=args.overwrite, progress=not args.no_progress)
    if not len(table):
        from echokdm.errors import NothingProducedError

        for clip, reason in skipped:
            print(f"  skipped {clip}: {reason}")
        raise NothingProducedError(f"{args.manifest}: no clip's flows could be computed ({len(skipped)} skipped"
                                   + (", listed above)" if skipped else "; no clip in the chosen splits)"))
    computed = table[table["status"] == "computed"]
    cached = len(table) - len(computed)
    pairs = int(computed["n_pairs"].sum()) if len(computed) else 0
    seconds = float(computed["seconds"].sum()) if len(computed) else 0.0
    rate = f", {pairs / seconds:.0f} pairs/s" if seconds > 0 else ""
    print(f"flows of {len(table)} clip(s) in {args.out}/flows ({len(computed)} computed: {pairs} pairs{rate}; "
          f"{cached} already cached); summary {args.out}/flows.csv")
    for clip, reason in skipped:
        print(f"  skipped {clip}: {reason}")
    return 0


def register_train(train_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``flow`` to the subparsers of ``echokdm train``; returns its parser."""
    t = train_subparsers.add_parser(
        "flow", help="OF-net optical flow, unsupervised, on frame pairs of a manifest",
        description="Train OF-net (PWC-Net style) on frame pairs of the train split with a photometric, smoothness "
                    "and occlusion-aware loss; validate on the val split (end-point error against the exact flow "
                    "for a phantom cohort, else photometric error).")
    t.add_argument("--config", default=None,
                   help="YAML config (default: built-in defaults = configs/echo/flow.yaml)")
    t.add_argument("--manifest", required=True, help="manifest CSV")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--steps", type=_positive_int, default=None, help="override train.steps (>= 1)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="start afresh in an existing run folder")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.set_defaults(func=cmd_train_flow)
    return t


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``flow`` command (cache OF-net flows of a manifest) to ``subparsers``; returns its parser."""
    p = subparsers.add_parser(
        "flow", help="precompute OF-net flows of every frame pair of a manifest (for K2F)",
        description="Compute OF-net flows for all frame pairs (t, t+g) of every clip, both directions, at the "
                    "model's frame size; one compressed .npz per clip (float16) and flows.csv. Resumable: clips "
                    "whose file is complete are skipped.")
    p.add_argument("manifest", help="manifest CSV of the clips whose flows to cache")
    p.add_argument("--checkpoint", required=True,
                   help="OF-net folder (a run's best/ or last/) or a packaged name, e.g. ofnet_phantom_112")
    p.add_argument("-o", "--out", required=True, help="output folder (flows/*.npz, flows.csv)")
    p.add_argument("--gaps", type=int, nargs="+", default=[1, 2, 4], help="frame gaps (default: 1 2 4)")
    p.add_argument("--splits", nargs="+", choices=("train", "val", "test"), default=None,
                   help="splits to cache (default: all)")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per batch (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes, one clip at a time each, with cpu_count / N threads (default: "
                        "%(default)s; on a GPU one process with a large --batch-size is usually enough)")
    p.add_argument("--no-resume", action="store_true", help="fail instead of skipping clips already cached")
    p.add_argument("--overwrite", action="store_true", help="recompute every clip")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_flow)
    return p
