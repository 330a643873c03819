"""Does the wall move with its keypoints? ``fit_region`` (the thin-plate spline around the keypoints)
against the default fit (K2F's flow corrected at the keypoints only).

The default sampler fits K2F's flow so that it carries every keypoint exactly
(:func:`~echokdm.geometry.flow.fit_flow_to_keypoints`), but the correction fades within a few
pixels: a wall that K2F moves short keeps its place just off the contour, and the segmentation
reads the generated cavity larger than the keypoints put it. ``SamplingSettings(fit_region=True)``
(``--fit-region``) replaces K2F's flow near the keypoints by the thin-plate spline through them
(:func:`~echokdm.geometry.flow.keypoint_region_flow`). This script measures both, with the packaged
``kdm_phantom_112`` and ``seg_phantom_112``, the default fast sampler, seeds 0 and 1 (no best-of-N):

* **Own beats** of held-out realistic-phantom patients (seed 7, from their first ED frame), driven
  by the exact keypoints and by the packaged segmentation's (what ``generate --own`` falls back to
  on them): the EF re-measured on the generated frames minus the phantom's truth, and MSE / SSIM /
  LPIPS-Alex against the real frames, next to repeating the source frame. pydicom's real cine
  (own beat from ED, keypoints tracked as ``generate --own`` does) at its size and at 112 × 112:
  the re-measured EF minus the segmentation's over the same frames, and the scores.
* **New-EF loops** (closed-loop EF control, at most 3 attempts, tolerance 2 points) at EF 30 and 65
  from the segmented ED keypoints of each phantom patient and of the real cine: |achieved − target|
  and the attempts used.
* **Speed**: seconds per 32-frame 112 × 112 loop (one phantom patient, a synthetic beat at EF 30, no
  re-measurement), each setting timed alternately, the median of 5 (1 with ``--quick``), and their
  ratio: the price of the region.

    python benchmarks/fit_region.py [--quick] [--patients 4] [--seeds 0 1] [--lpips-backbone DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alex_lpips, paired_scores, save
from kdm_real import _phantom_cases, _real_case, _real_case_112
from motion_tracking import _segmented

VARIANTS = ("fit", "fit_region")


def _own_beats(cases: list[dict], pipe, seg, seeds: list[int], lpips) -> dict:
    """``{(case group, keypoints, variant): [(EF error, MSE, SSIM, LPIPS), ...]}`` and the repeat-source rows."""
    from echokdm.generation import SamplingSettings, generate_loop

    def scored(frames: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
        values = paired_scores(frames, truth, lpips)
        return values["mse"], values["ssim"], np.nan if values["lpips_alex"] is None else values["lpips_alex"]

    rows: dict[tuple, list] = {}
    for case in cases:
        truth = case["frames"][1:]
        repeat = np.broadcast_to(case["frames"][0], truth.shape)
        rows.setdefault((case["name"], "-", "repeat source"), []).append((np.nan, *scored(repeat, truth)))
        for source, keypoints in case["sources"].items():
            for variant in VARIANTS:
                for seed in seeds:
                    loop = generate_loop(pipe, case["frames"][0], keypoints[0], keypoints, fps=case["fps"],
                                         sampling=SamplingSettings(seed=seed, fit_region=variant == "fit_region"),
                                         fan_mask=case["fan"], progress=False, motion="own", segmentation=seg)
                    error = (loop.ef_achieved if loop.ef_achieved is not None else np.nan) - case["ef_reference"]
                    rows.setdefault((case["name"], source, variant), []).append(
                        (error, *scored(loop.frames[1:], truth)))
    return rows


def _new_ef(cases: list[dict], pipe, seg, seeds: list[int], efs: list[float]) -> dict:
    """``{(case group, variant): [(|achieved - target|, attempts), ...]}``."""
    from echokdm.generation import SamplingSettings, generate_ef_loop

    rows: dict[tuple, list] = {}
    for case in cases:
        for ef in efs:
            for variant in VARIANTS:
                for seed in seeds:
                    sampling = SamplingSettings(seed=seed, fit_region=variant == "fit_region")
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # a missed target is in the table
                        loop = generate_ef_loop(pipe, case["frames"][0], case["segmented_ed"], ef, fps=case["fps"],
                                                n_beats=1.0, segmentation=seg, max_attempts=3, fan_mask=case["fan"],
                                                progress=False, sampling=sampling)
                    rows.setdefault((case["name"], variant), []).append(
                        (abs(loop.ef_achieved - ef) if loop.ef_achieved is not None else np.nan,
                         len(loop.metadata.get("ef_attempts", [])) or 1))
    return rows


def _speed(case: dict, pipe, repeats: int) -> dict[str, float]:
    """Median seconds per 32-frame loop of each variant, timed alternately (same machine state)."""
    from echokdm.generation import SamplingSettings, generate_loop, synthetic_motion

    targets = synthetic_motion(case["segmented_ed"], 30.0, heart_rate_bpm=94.0, fps=50.0)[:32]
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(repeats + 1):  # the first round warms up and is not counted
        for variant in VARIANTS:
            start = time.perf_counter()
            generate_loop(pipe, case["frames"][0], case["segmented_ed"], targets, fps=50.0, progress=False,
                          sampling=SamplingSettings(fit_region=variant == "fit_region"), include_source=False)
            times[variant].append(time.perf_counter() - start)
    return {variant: float(np.median(values[1:])) for variant, values in times.items()}


def _cases(n: int, seg) -> list[dict]:
    """Held-out realistic phantom patients and pydicom's real cine (its own size and 112 × 112)."""
    from echokdm.generation.loop import loop_ef
    from echokdm.generation.tracking import own_beat_motion

    cases = []
    for case in _phantom_cases(n, "realistic"):
        segmented = _segmented(case, seg)
        cases.append({**case, "sources": {"exact": case["keypoints"], "segmentation": segmented},
                      "ef_reference": loop_ef(case["keypoints"]), "segmented_ed": segmented[0]})
    real = _real_case()
    for case in (real, _real_case_112(real)):
        beat = own_beat_motion(case["frames"], case["keypoints"], 0)  # frames alone, as from a scanner
        cases.append({**case, "sources": {beat.method: beat.targets}, "ef_reference": beat.ef_segmentation,
                      "segmented_ed": case["keypoints"][0]})
    return cases


def main(argv: list[str] | None = None) -> int:
    import torch

    from echokdm.generation import load_segmentation
    from echokdm.pipelines import KDMPipeline
    from echokdm.pretrained import pretrained_path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 phantom patient, 1 seed, EF 65 only")
    p.add_argument("--patients", type=int, default=4, help="held-out realistic phantom patients (default 4)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lpips-backbone", default=None, help="folder with alexnet_features.pth (offline LPIPS)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds, efs = (args.seeds[:1], [65.0]) if args.quick else (args.seeds, [30.0, 65.0])
    lpips = alex_lpips(args.lpips_backbone)
    pipe = KDMPipeline.from_pretrained(pretrained_path("kdm_phantom_112"))
    seg = load_segmentation(pretrained_path("seg_phantom_112"))
    start = time.perf_counter()
    cases = _cases(1 if args.quick else args.patients, seg)
    own = _own_beats(cases, pipe, seg, seeds, lpips)
    new = _new_ef([c for c in cases if c["name"] != "real cine 112"], pipe, seg, seeds, efs)
    speed = _speed(cases[0], pipe, 1 if args.quick else 5)
    figures = {"seeds": len(seeds), "phantom_patients": len(cases) - 2, "efs": efs,
               "seconds": round(time.perf_counter() - start, 1)}
    print(f"\nown beats: re-measured EF - reference, MSE / SSIM / LPIPS-Alex against the real frames "
          f"(phantom: {len(cases) - 2} patients x {len(seeds)} seed(s))")
    for (group, source, variant), values in own.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the repeat-source rows have no EF
            error, m, s, lp = np.nanmean(np.array(values, dtype=float), axis=0)
        print(f"  {group:<18} {source:<13} {variant:<14} EF {error:+6.1f}   {m:.4f} / {s:.3f} / {lp:.3f}")
        key = f"own__{group}__{source}__{variant}".replace(" ", "_")
        figures.update({f"{key}__ef_error": round(float(error), 2), f"{key}__mse": round(float(m), 5),
                        f"{key}__ssim": round(float(s), 4), f"{key}__lpips_alex": round(float(lp), 4)})
    print(f"\nnew-EF loops (EF {', '.join(f'{e:.0f}' for e in efs)}; closed-loop control, at most 3 attempts): "
          f"|achieved - target| and attempts")
    for (group, variant), values in new.items():
        error, attempts = np.nanmean(np.array(values, dtype=float), axis=0)
        within = float(np.mean(np.array(values)[:, 0] <= 5.0))  # a loop without a reliable reading is not within
        unread = int(np.isnan(np.array(values, dtype=float)[:, 0]).sum())
        print(f"  {group:<18} {variant:<14} |error| {error:5.1f}  within 5 points {within:4.0%}  "
              f"attempts {attempts:.1f}  not read {unread} of {len(values)}")
        key = f"new_ef__{group}__{variant}".replace(" ", "_")
        figures.update({f"{key}__abs_error": round(float(error), 2), f"{key}__within_5": round(within, 3),
                        f"{key}__attempts": round(float(attempts), 2), f"{key}__not_read": unread})
    ratio = speed["fit_region"] / speed["fit"]
    print(f"\nspeed, 32-frame 112 x 112 loop (median, timed alternately): default fit {speed['fit']:.2f} s, "
          f"fit_region {speed['fit_region']:.2f} s ({ratio:.2f}x)")
    figures.update({"loop_seconds__fit": round(speed["fit"], 3), "loop_seconds_ratio": round(ratio, 3),
                    "loop_seconds__fit_region": round(speed["fit_region"], 3)})
    save("fit_region_quick" if args.quick else "fit_region", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
