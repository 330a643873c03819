"""The ``echokdm flow`` command: cache OF-net flows of every frame pair of a manifest.

Argument parsing and printing only; the work is done by :func:`echokdm.training.flow.cache_flows`
(:func:`echokdm.cli.parallel.cache_flows_parallel` with ``--workers N`` or under ``accelerate launch``).
Training OF-net is ``echokdm train flow`` (:mod:`echokdm.cli.train`).
"""

from __future__ import annotations

import argparse
import functools

from echokdm.cli._common import add_run_options

#: echokdm.training.flow.DEFAULT_CACHE_POOL (not imported here: it imports torch); a test keeps them equal
DEFAULT_CACHE_POOL = 4

__all__ = ["cmd_flow", "register"]


def cmd_flow(args: argparse.Namespace) -> int:
    """Cache OF-net flows of every frame pair of a manifest (resumable), in ``--workers`` processes."""
    from echokdm.cli.parallel import cache_flows_parallel
    from echokdm.distributed import launched
    from echokdm.training.flow import cache_flows

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    sharded = args.workers > 1 or launched()
    run = functools.partial(cache_flows_parallel, workers=args.workers) if sharded else cache_flows
    merged = run(args.manifest, args.checkpoint, args.out, gaps=tuple(args.gaps), splits=args.splits,
                 batch_size=args.batch_size, device=args.device, resume=not args.no_resume,
                 overwrite=args.overwrite, pool=args.pool, progress=not args.no_progress)
    if merged is None:  # a launched process whose clips are done: the main one writes and reports
        return 0
    table, skipped = merged
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``flow`` command (cache OF-net flows of a manifest) to the ``echokdm`` sub-commands."""
    p = subparsers.add_parser(
        "flow", help="precompute OF-net flows of every frame pair of a manifest (for K2F)",
        description="Compute OF-net flows for all frame pairs (t, t+g) of every clip, both directions, at the "
                    "model's frame size, stored at K2F's latent resolution (--pool); one compressed .npz per clip "
                    "(float16) and flows.csv. Resumable: clips whose file is complete are skipped.")
    p.add_argument("manifest", help="manifest CSV of the clips whose flows to cache")
    p.add_argument("--checkpoint", required=True,
                   help="OF-net folder (a run's best/ or last/) or a packaged name, e.g. ofnet_phantom_112")
    p.add_argument("-o", "--out", required=True, help="output folder (flows/*.npz, flows.csv)")
    p.add_argument("--gaps", type=int, nargs="+", default=[1, 2, 4], help="frame gaps (default: 1 2 4)")
    p.add_argument("--splits", nargs="+", choices=("train", "val", "test"), default=None,
                   help="splits to cache (default: all)")
    p.add_argument("--pool", type=int, default=DEFAULT_CACHE_POOL, metavar="P",
                   help="store the flows area-averaged over PxP blocks: 4 = the resolution K2F diffuses, 16x less "
                        "disk, the same K2F training (default: %(default)s); 1 = full resolution")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per batch (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes, one clip at a time each, with cpu_count / N threads (default: "
                        "%(default)s; on a GPU one process with a large --batch-size is usually enough)")
    p.add_argument("--no-resume", action="store_true", help="fail instead of skipping clips already cached")
    add_run_options(p, overwrite="recompute every clip")
    p.set_defaults(func=cmd_flow)
