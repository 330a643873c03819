r"""Train the small keypoint detectors packaged as ``kpdet_face_64`` / ``kpdet_pose_64`` (issue 24).

The MD of ``echokdm evaluate`` for faces and poses re-detects keypoints on generated frames; without
face-alignment or OpenPose it uses these heatmap detectors, trained on procedural data:

    echokdm procedural face --out /tmp/det_face --subjects 24 --sequences-per-subject 2 --frames 12 \
        --size 64 --pairs 2 --seed 11
    echokdm procedural pose --out /tmp/det_pose --subjects 24 --sequences-per-subject 2 --frames 12 \
        --size 64 --pairs 2 --seed 11
    OMP_NUM_THREADS=1 python benchmarks/keypoint_detector.py face /tmp/det_face/manifest.csv \
        echokdm/checkpoints/kpdet_face_64
    OMP_NUM_THREADS=1 python benchmarks/keypoint_detector.py pose /tmp/det_pose/manifest.csv \
        echokdm/checkpoints/kpdet_pose_64

Prints (and writes to ``<out>/training.json``) the mean keypoint distance on the train and val
splits, in pixels at 64 × 64, and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from echokdm.adapters.detector import train_keypoint_detector

#: Not run by run_all.py: it trains the packaged detectors from a manifest given on its command line.
RUN_ALL = False


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", choices=("face", "pose", "pose_coco18"))
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    start = time.perf_counter()
    result = train_keypoint_detector(args.manifest, args.adapter, args.out, size=args.size, steps=args.steps,
                                     batch_size=args.batch_size, progress=False)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["manifest"] = Path(args.manifest).name
    (Path(args.out) / "training.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
