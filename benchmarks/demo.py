"""Wall time of ``echokdm demo`` on this machine, and seconds per generated frame.

    python benchmarks/demo.py [--quick]

Runs :func:`echokdm.demo.run_demo` (the packaged checkpoints, default settings: 3 held-out phantom
patients, two loops each, 200 DDIM steps with k = 100, γ mode) in a temporary folder. The issue's
target: the demo under 5 minutes on a 2-core CPU. Seconds per generated frame count the whole
``generate_loop`` call (K2F once, F2I per frame, EF re-measurement) divided by the frames it
generated (the source frame is the real one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402


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
    generated = int((report["frames"] - 1).sum())
    figures = {
        "demo_wall_seconds": round(wall, 1),
        "target_seconds": 300,
        "patients": settings.n_patients,
        "loops": len(report),
        "ddim_steps": settings.num_inference_steps,
        "k": settings.k,
        "generated_frames": generated,
        "generation_seconds": round(float(report["seconds"].sum()), 1),
        "seconds_per_generated_frame": round(float(report["seconds"].sum()) / max(generated, 1), 3),
        "ef_abs_error_mean": round(float(report["ef_error"].abs().mean()), 2) if report["ef_error"].notna().any()
        else None,
        "torch_threads": torch.get_num_threads(),
    }
    save("demo_quick" if args.quick else "demo", figures)


if __name__ == "__main__":
    main()
