r"""Faces and poses in colour on held-out procedural sequences: the paper's Tables 1 and 2 layout (issue 24).

The figures in docs/adapters.md ("Measured") come from these commands (2-core CPU shared with other
jobs, OMP_NUM_THREADS=1)::

    echokdm procedural face --out /tmp/face64 --subjects 12 --sequences-per-subject 2 --frames 12 --size 64 \
        --pairs 40 --seed 0
    echokdm procedural pose --out /tmp/pose64 --subjects 12 --sequences-per-subject 2 --frames 12 --size 64 \
        --pairs 40 --seed 0
    echokdm train kdm --config configs/face/kdm_64_cpu.yaml --manifest /tmp/face64/manifest.csv --out runs/face_64
    echokdm train kdm --config configs/pose/kdm_64_cpu.yaml --manifest /tmp/pose64/manifest.csv --out runs/pose_64
    python benchmarks/adapters_colour.py face /tmp/face64/manifest.csv runs/face_64 --out benchmarks/results
    python benchmarks/adapters_colour.py pose /tmp/pose64/manifest.csv runs/pose_64 --out benchmarks/results

Each evaluation is ``echokdm evaluate`` on the manifest's test split (subjects never seen in
training): frame 0 of each sequence is the source, 8 later frames the targets; 50 DDIM steps, k = 25;
LPIPS with the local backbone ($ECHOKDM_LPIPS_WEIGHTS); MD with the packaged heatmap detector
(procedural data, so it is not the paper's detector). Writes ``adapters_colour_<kind>_table.md``
and ``adapters_colour_<kind>.json`` (the summary and the settings).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from echokdm.evaluation.adapters import SequenceEvalConfig, evaluate_sequences
from echokdm.generation.settings import SamplingSettings

#: Not run by run_all.py: it needs a procedural manifest and a trained run (the commands above).
RUN_ALL = False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("face", "pose"))
    p.add_argument("manifest")
    p.add_argument("run", help="the run folder of echokdm train kdm (<run>/pipeline)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--k", type=int, default=25)
    p.add_argument("--eval-dir", default="/tmp/echokdm_adapters_colour",
                   help="where the evaluation folder (per-frame CSV, generated frames) goes")
    args = p.parse_args()
    sampling = SamplingSettings.paper(mode="per_frame", fit_keypoints=False, num_inference_steps=args.steps, k=args.k)
    config = SequenceEvalConfig(split="test", max_targets=8, sampling=sampling, detector="heatmap")
    start = time.perf_counter()
    folder = Path(args.eval_dir) / args.kind
    result = evaluate_sequences(args.manifest, Path(args.run) / "pipeline", out=folder, config=config, progress=False)
    seconds = time.perf_counter() - start
    (Path(args.out) / f"adapters_colour_{args.kind}_table.md").write_text(result.table)
    record = {"kind": args.kind, "seconds": round(seconds, 1), "detector": result.detector,
              "summary": result.summary.to_dict(orient="records"), "steps": args.steps, "k": args.k}
    (Path(args.out) / f"adapters_colour_{args.kind}.json").write_text(json.dumps(record, indent=2, default=float))
    print(result.table)
    print(f"{seconds:.0f} s")


if __name__ == "__main__":
    main()
