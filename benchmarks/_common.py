"""Helpers shared by the benchmark scripts: timing and saving figures."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time in seconds of ``repeats`` calls of ``fn`` (the least disturbed run)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load_named(specs: list[str], default: str, load: Callable[[str], object], option: str) -> dict[str, object]:
    """``{NAME: load(FOLDER)}`` for ``NAME=FOLDER`` command-line specs (``[default]`` when none are given).

    ``option`` names the command-line option in the error for a spec without ``=FOLDER``.
    """
    loaded = {}
    for spec in specs or [default]:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"{option} {spec!r}: expected NAME=FOLDER")
        loaded[name] = load(folder)
    return loaded


def alex_lpips(backbone: str | None) -> Callable | None:
    """LPIPS-Alex (``lpips(a, b) -> (n,)``), or None offline without a local backbone; the reason is printed."""
    import warnings

    from echokdm.metrics.lpips import lpips_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics, note = lpips_metrics(("alex",), backbone=backbone)
    if note:
        print(f"note: {note}")
    return metrics.get("alex")


def paired_scores(frames, truth, lpips: Callable | None) -> dict[str, float | None]:
    """Mean MSE, SSIM and LPIPS-Alex (None without ``lpips``) of frames ``(T, H, W)`` against ``truth``."""
    import numpy as np

    from echokdm.metrics.image import mse, ssim

    frames = np.ascontiguousarray(frames, np.float32)
    return {"mse": float(np.mean(mse(frames, truth))), "ssim": float(np.mean(ssim(frames, truth))),
            "lpips_alex": float(np.mean(lpips(frames, truth))) if lpips is not None else None}


def save(name: str, figures: dict) -> Path:
    """Print ``figures`` and save them with machine facts to ``benchmarks/results/<name>.json``."""
    import os

    import torch

    record = {
        "benchmark": name,
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "figures": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2))
    for key, value in figures.items():
        print(f"{key:>40}: {value}")
    print(f"saved {path}")
    return path
