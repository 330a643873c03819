"""Keypoint speed and phantom accuracy checks.

* masks → keypoints, frames per second at 112×112 (:func:`mask_keypoints`, one frame at a
  time; target at least 500/s), and the overhead of the temporal landmark smoothing of
  :func:`sequence_keypoints`;
* the phantom EF check: EF from the phantom's masks (keypoints → Simpson → ``cardiac_cycle``)
  against its true EF (target MAE below 2 EF points), with and without smoothing;
* keypoint error against the phantom's exact keypoints, and keypoint jitter (RMS second
  temporal difference, px/frame²) of the exact, per-frame and smoothed keypoints.

    python benchmarks/keypoints.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, save


def _clips(n_patients: int, seed: int, fps: float, n_beats: float):
    from echokdm.data.phantom import sample_patient, simulate_clip

    return [simulate_clip(sample_patient(seed, i), n_beats=n_beats, fps=fps, size=112) for i in range(n_patients)]


def _speed(figures: dict, clips, repeats: int) -> None:
    from echokdm.geometry.keypoints import mask_keypoints
    from echokdm.geometry.temporal import sequence_keypoints

    masks = np.concatenate([c.masks for c in clips])  # (N, 112, 112)
    t_frame = best_time(lambda: [mask_keypoints(m) for m in masks], repeats)
    figures["mask_keypoints_112_frames_per_s"] = round(len(masks) / t_frame, 1)
    figures["mask_keypoints_112_ms_per_frame"] = round(1000 * t_frame / len(masks), 3)
    t_seq = best_time(lambda: [sequence_keypoints(c.masks, smooth_sigma_frames=1.0) for c in clips], repeats)
    figures["sequence_keypoints_112_frames_per_s"] = round(len(masks) / t_seq, 1)
    figures["smoothing_overhead_percent"] = round(100 * (t_seq / t_frame - 1), 1)
    figures["speed_frames"] = int(len(masks))


def _accuracy(figures: dict, clips) -> None:
    from echokdm.geometry.temporal import jitter, sequence_keypoints
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

    ef_err = {0.0: [], 1.0: []}
    kp_err = {0.0: [], 1.0: []}
    jit = {"exact": [], 0.0: [], 1.0: []}
    landmark = {0.0: [], 1.0: []}
    for clip in clips:
        jit["exact"].append(jitter(clip.keypoints))
        for sigma in (0.0, 1.0):
            seq = sequence_keypoints(clip.masks, smooth_sigma_frames=sigma)
            cycle = cardiac_cycle(simpson_volume(seq.keypoints, clip.spacing_mm), clip.fps)
            ef_err[sigma].append(cycle.ef_mean - clip.ef)
            kp_err[sigma].append(np.linalg.norm(seq.keypoints - clip.keypoints, axis=-1).ravel())
            jit[sigma].append(seq.jitter_smoothed)
            landmark[sigma].append(seq.landmark_jitter_smoothed)
    for sigma, name in ((0.0, "per_frame"), (1.0, "smoothed")):
        err = np.array(ef_err[sigma])
        figures[f"ef_mae_{name}"] = round(float(np.nanmean(np.abs(err))), 3)
        figures[f"ef_bias_{name}"] = round(float(np.nanmean(err)), 3)
        figures[f"ef_max_abs_error_{name}"] = round(float(np.nanmax(np.abs(err))), 3)
        e = np.concatenate(kp_err[sigma])
        figures[f"keypoint_error_mean_px_{name}"] = round(float(np.nanmean(e)), 3)
        figures[f"keypoint_error_p95_px_{name}"] = round(float(np.nanpercentile(e, 95)), 3)
        figures[f"keypoint_error_max_px_{name}"] = round(float(np.nanmax(e)), 3)
        figures[f"keypoint_nan_fraction_{name}"] = round(float(np.isnan(e).mean()), 4)
        figures[f"jitter_px_per_frame2_{name}"] = round(float(np.mean(jit[sigma])), 3)
        figures[f"landmark_jitter_px_per_frame2_{name}"] = round(float(np.mean(landmark[sigma])), 3)
    figures["jitter_px_per_frame2_exact"] = round(float(np.mean(jit["exact"])), 3)
    figures["accuracy_patients"] = len(clips)
    figures["accuracy_frames"] = int(sum(c.n_frames for c in clips))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few patients, one repeat (CI)")
    parser.add_argument("--patients", type=int, help="phantom patients for the EF check (default 16, quick 4)")
    parser.add_argument("--seed", type=int, default=2024, help="draws the phantom patients (default: %(default)s)")
    args = parser.parse_args(argv)
    n_patients = args.patients or (4 if args.quick else 16)
    figures: dict = {"seed": args.seed}
    clips = _clips(n_patients, args.seed, fps=50.0, n_beats=2.0)
    _speed(figures, clips[: 2 if args.quick else 4], repeats=1 if args.quick else 3)
    _accuracy(figures, clips)
    save("keypoints_quick" if args.quick else "keypoints", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
