"""Preprocessing at scale: segmentation, keypoints and the OF-net flow cache per clip, with 1 and 2
worker processes, and what that means for EchoNet-Dynamic (10,030 videos, 112×112, 177 frames on
average).

    python benchmarks/preprocess.py [--quick] [--device cpu|cuda] [--workers 1 2]

A phantom cohort in the EchoNet-Dynamic layout (AVI videos at 50 fps, 112×112, about three beats
a clip) goes through the three commands a real EchoNet-Dynamic training needs before
``echokdm train kdm`` (``configs/echo/kdm_224_paper.yaml`` says ``keypoints: masks`` and
``flows: cache``), with the packaged models:

1. ``echokdm segment`` (every frame; :func:`echokdm.cli.parallel.segment_manifest_parallel`),
2. ``echokdm keypoints --segmentation`` (40 keypoints and the volume per frame;
   :func:`echokdm.cli.parallel.keypoints_table_parallel`),
3. ``echokdm flow`` with the default gaps 1, 2, 4, both directions (:func:`echokdm.training.flow.cache_flows`
   in one process, :func:`echokdm.cli.parallel.cache_flows_parallel` with more).

Measured: frames (or pairs) per second for each worker count, bytes written per frame (masks),
per frame (keypoints table, parquet) and per flow pair (compressed float16 npz). The EchoNet-
Dynamic estimate scales these to 10,030 × 177 frames and 10,030 × 2 × (3 · 177 − 7) flow pairs
(the figures' ``echonet_*``); the clips are read from AVI as EchoNet's are. Each worker takes a
few seconds to start (it imports torch and the package), which a few clips do not amortise:
for worker scaling use ``--clips 32`` or more, on free cores (the load average is recorded with
the figures; with every core busy, more workers only add start-up time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "echokdm" / "checkpoints"
ECHONET_CLIPS, ECHONET_FRAMES, GAPS = 10_030, 177, (1, 2, 4)


def _pairs(n_frames: int, gaps=GAPS) -> int:
    return sum(2 * max(0, n_frames - g) for g in gaps)


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def _segment(manifest: Path, out: Path, workers: int, device: str) -> float:
    from echokdm.cli.parallel import segment_manifest_parallel

    start = time.perf_counter()
    segment_manifest_parallel(manifest, CHECKPOINTS / "seg_phantom_112", out, workers=workers, device=device,
                              overwrite=True, progress=False)
    return time.perf_counter() - start


def _keypoints(manifest: Path, segmentation: Path, out: Path, workers: int) -> float:
    from echokdm.cli.parallel import keypoints_table_parallel
    from echokdm.metrics.lv_function import write_table

    start = time.perf_counter()
    table = keypoints_table_parallel(manifest, out / ".parts", workers=workers, segmentation=segmentation,
                                     progress=False)
    write_table(table.frames, out / "keypoints.parquet", overwrite=True)
    shutil.rmtree(out / ".parts")
    return time.perf_counter() - start


def _flows(manifest: Path, out: Path, workers: int, device: str) -> float:
    from echokdm.cli.parallel import cache_flows_parallel
    from echokdm.training.flow import cache_flows

    start = time.perf_counter()
    options = {"gaps": GAPS, "device": device, "overwrite": True, "progress": False}
    if workers == 1:
        cache_flows(manifest, CHECKPOINTS / "ofnet_phantom_112", out, **options)
    else:
        cache_flows_parallel(manifest, CHECKPOINTS / "ofnet_phantom_112", out, workers=workers, **options)
    return time.perf_counter() - start


def _estimate(figures: dict, workers: int) -> None:
    """EchoNet-Dynamic hours and gigabytes from the per-frame and per-pair figures."""
    frames = ECHONET_CLIPS * ECHONET_FRAMES
    pairs = ECHONET_CLIPS * _pairs(ECHONET_FRAMES)
    hours = {
        "segment": frames / figures[f"segment_frames_per_s_workers{workers}"] / 3600,
        "keypoints": frames / figures[f"keypoints_frames_per_s_workers{workers}"] / 3600,
        "flow": pairs / figures[f"flow_pairs_per_s_workers{workers}"] / 3600,
    }
    for step, value in hours.items():
        figures[f"echonet_{step}_hours_workers{workers}"] = round(value, 1)
    figures[f"echonet_total_hours_workers{workers}"] = round(sum(hours.values()), 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 one-beat clips, one worker (CI smoke run)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="segmentation and OF-net device")
    parser.add_argument("--clips", type=int, default=24, help="phantom clips (default 24)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    args = parser.parse_args(argv)
    import torch

    from echokdm.data.manifest import load_manifest
    from echokdm.data.phantom.export import write_cohort

    n_clips, n_beats, worker_counts = (2, 1.0, [1]) if args.quick else (args.clips, 3.0, args.workers)
    figures: dict = {"device": args.device, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                     "load_average_start": [round(x, 2) for x in os.getloadavg()], "gaps": list(GAPS)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cohort(tmp / "cohort", n_clips, "echonet", seed=2000, n_beats=n_beats, progress=False)
        manifest = tmp / "cohort" / "manifest.csv"
        n_frames = load_manifest(manifest)["n_frames"].astype(int)
        frames, pairs = int(n_frames.sum()), int(sum(_pairs(int(t)) for t in n_frames))
        figures.update({"clips": n_clips, "frames": frames, "frames_per_clip_mean": round(frames / n_clips, 1),
                        "flow_pairs": pairs})
        for workers in worker_counts:
            seg, kp, flow = (tmp / f"{name}{workers}" for name in ("seg", "kp", "flow"))
            figures[f"segment_frames_per_s_workers{workers}"] = round(frames / _segment(manifest, seg, workers,
                                                                                         args.device), 1)
            figures[f"keypoints_frames_per_s_workers{workers}"] = round(frames / _keypoints(manifest, seg, kp,
                                                                                             workers), 1)
            figures[f"flow_pairs_per_s_workers{workers}"] = round(pairs / _flows(manifest, flow, workers,
                                                                                  args.device), 1)
            _estimate(figures, workers)
        last = worker_counts[-1]
        figures["mask_bytes_per_frame"] = round(_size((tmp / f"seg{last}" / "masks").glob("*.npz")) / frames, 1)
        figures["keypoints_bytes_per_frame"] = round(_size([tmp / f"kp{last}" / "keypoints.parquet"]) / frames, 1)
        figures["flow_bytes_per_pair"] = round(_size((tmp / f"flow{last}" / "flows").glob("*.npz")) / pairs, 1)
        echonet_frames, echonet_pairs = ECHONET_CLIPS * ECHONET_FRAMES, ECHONET_CLIPS * _pairs(ECHONET_FRAMES)
        figures["echonet_clips"], figures["echonet_frames"] = ECHONET_CLIPS, echonet_frames
        figures["echonet_flow_pairs"] = echonet_pairs
        figures["echonet_masks_gb"] = round(figures["mask_bytes_per_frame"] * echonet_frames / 1e9, 2)
        figures["echonet_keypoints_gb"] = round(figures["keypoints_bytes_per_frame"] * echonet_frames / 1e9, 2)
        figures["echonet_flow_cache_gb"] = round(figures["flow_bytes_per_pair"] * echonet_pairs / 1e9, 1)
        flows_csv = pd.read_csv(tmp / f"flow{last}" / "flows.csv")
        figures["flow_files_complete"] = bool((flows_csv["n_pairs"] > 0).all())
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    save("preprocess_quick" if args.quick else "preprocess", figures)
    return 0 if np.isfinite(figures["benchmark_seconds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
