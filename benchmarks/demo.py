"""Wall time of ``echokdm demo`` on this machine, and seconds per generated frame.

    python benchmarks/demo.py [--quick]

Runs :func:`echokdm.demo.run_demo` (the packaged checkpoints, default settings: 3 held-out phantom
patients, two loops each, 200 DDIM steps with k = 100, γ mode) in a temporary folder. The issue's
target: the demo under 5 minutes on a 2-core CPU. Seconds per generated frame count the whole
``generate_loop`` call of the own-beat loops (K2F once, F2I per frame, EF re-measurement) divided
by the frames it generated (the source frame is the real one); the new-EF loops are timed
separately, as they may be generated up to 3 times by the closed-loop EF control.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the demo's --quick settings (CI smoke run)")
    args = parser.parse_args()

    import torch

    from echokdm.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = run_demo(Path(tmp) / "demo", settings=settings, progress=False)
        wall = time.perf_counter() - start
    own, new = report[report["loop"] == "own"], report[report["loop"] == "new_ef"]
    generated = int((own["frames"] - 1).sum())  # own-beat loops: one generation each

    def abs_error(rows):
        return round(float(rows["ef_error"].abs().mean()), 2) if rows["ef_error"].notna().any() else None

    figures = {
        "demo_wall_seconds": round(wall, 1),
        "target_seconds": 300,
        "patients": settings.n_patients,
        "loops": len(report),
        "ddim_steps": settings.sampling.num_inference_steps,
        "k": settings.sampling.k,
        "generation_seconds": round(float(report["seconds"].sum()), 1),
        "own_generated_frames": generated,
        "seconds_per_generated_frame": round(float(own["seconds"].sum()) / max(generated, 1), 3),
        "new_ef_loops_generated_mean": round(float(new["ef_attempts"].mean()), 2),
        "new_ef_seconds_mean": round(float(new["seconds"].mean()), 1),
        "ef_abs_error_mean_own": abs_error(own),
        "ef_abs_error_mean_new_ef": abs_error(new),
        "ef_abs_error_mean": abs_error(report),
        "torch_threads": torch.get_num_threads(),
    }
    save("demo_quick" if args.quick else "demo", figures)


if __name__ == "__main__":
    main()
