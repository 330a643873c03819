"""Own beats from speckle-tracked keypoints against per-frame segmentation keypoints.

``echokdm generate --own`` needs the clip's keypoints on every frame. On a real clip they come from
the phantom-trained segmentation network, whose masks wander from frame to frame; the alternative
(:func:`echokdm.generation.tracking.track_keypoints`) segments the source frame only and carries its
keypoints through the clip by TV-L1 optical flow (speckle tracking). This script measures both.

**Frames.** Own beat from the ED frame, scored against the real frames (MSE, SSIM, LPIPS-Alex),
one sample per case and seed (seeds 0 and 1; no best-of-N), for TPS warp, ``w/o F2I`` (K2F's
flow, k = 0) and ``KDM fast`` (the default sampler), with repeat-source and the oracle TV-L1 warp
(flows measured to the real frames: not a method, the best a warp can do) in the same table.
Cases: pydicom's real cine at its own size and at 112×112, and held-out realistic-phantom patients
(seed 7, never used in training) whose keypoints come from the packaged segmentation, from
tracking, or exactly from the phantom.

"auto" is what ``generate --own`` does on an unlabelled clip
(:func:`~echokdm.generation.tracking.own_beat_motion`): tracking, unless the tracked keypoints' EF
falls more than 10 points below the segmentation's (the tracking lost the wall).

**Geometry** (phantom only, where the truth is known): mean keypoint error against the exact
keypoints, and the EF bias of each keypoint source (one beat from ED, ``(max V - min V) / max V``),
on the realistic phantom and, for tracking from the exact ED keypoints, on the classic phantom,
whose speckle moves with the tissue.

**Speed.** Seconds per tracked frame at 112×112 and at the real cine's size.

Saves ``benchmarks/results/motion_tracking.json`` and a figure (``--figure PATH``; default
``benchmarks/results/motion_tracking.png``): the real cine with both keypoint sets, and KDM's own
beat from each.

**Trackers** (``--trackers``): the comparison behind the README's tracker table. Each tracker
carries keypoints frame to frame as :func:`~echokdm.generation.tracking.track_keypoints` does
(the flow between consecutive frames sampled at the keypoints): TV-L1 at attachment 10 (the
default), TV-L1 on frames scaled to their 99.5th percentile, TV-L1 at attachment 40, iterative
Lucas–Kanade (radius 7; contrast-invariant) and the packaged OF-net (``ofnet_phantom_112``).
Realistic and classic phantom: keypoint error and EF bias against the exact keypoints, tracked
from the exact ED keypoints; on the realistic phantom also KDM fast's own beat from keypoints
tracked from the segmented ED frame (as ``generate --own`` tracks). pydicom's real cine at
112×112: the tracked keypoints' EF (the segmentation's over the same frames beside it) and KDM
fast's own beat from them (MSE, SSIM, LPIPS-Alex against the real frames, the seeds above).

    python benchmarks/motion_tracking.py [--quick] [--patients 4] [--seeds 0 1] [--figure PATH] [--trackers]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, alex_lpips, paired_scores, save
from kdm_real import _phantom_cases, _real_case, _real_case_112


def _segmented(case: dict, seg) -> np.ndarray:
    """The packaged segmentation's keypoints of a phantom case (the real case already has them)."""
    from echokdm.generation.loop import segment_frames
    from echokdm.geometry.temporal import sequence_keypoints

    masks = segment_frames(seg, case["frames"]) * case["fan"][None].astype(np.uint8)
    return sequence_keypoints(masks, apex_direction="up").keypoints


def _keypoint_sources(case: dict, seg) -> tuple[dict[str, np.ndarray], str]:
    """Keypoints by segmentation, tracking, "auto" (what ``generate --own`` does) and, on the phantom,
    exactly; and the method "auto" chose."""
    from echokdm.generation.tracking import own_beat_motion, track_keypoints

    real = "phantom" not in case["name"]
    segmented = case["keypoints"] if real else _segmented(case, seg)
    auto = own_beat_motion(case["frames"], segmented, 0)  # frames alone: no labels, as from a scanner
    out = {"segmentation": segmented, "tracking": track_keypoints(case["frames"], segmented[0]), "auto": auto.targets}
    if not real:
        out["exact"] = case["keypoints"]
    return out, auto.method


def _frames(case: dict, kp: np.ndarray, pipe, seeds: list[int]):
    from echokdm.baselines.tps import tps_warp
    from echokdm.generation import SamplingSettings, generate_loop
    from echokdm.io.fan import apply_fan

    src = case["frames"][0]
    yield "TPS warp", apply_fan(np.stack([tps_warp(src, kp[0], kp[t]) for t in range(1, len(kp))]), case["fan"])
    fast = SamplingSettings(fit_region=False)  # K2F's flow everywhere, as the README's tables were measured
    methods = (("w/o F2I", fast.replace(num_inference_steps=25, k=0)), ("KDM fast", fast))
    for name, settings in methods:
        for seed in seeds:
            loop = generate_loop(pipe, src, kp[0], kp, fps=case["fps"], sampling=settings.replace(seed=seed),
                                 fan_mask=case["fan"], progress=False, motion="own")
            yield name, loop.frames[1:]


def _geometry(case: dict, sources: dict) -> dict[str, tuple[float, float]]:
    from echokdm.generation.loop import loop_ef

    truth = case["keypoints"]
    ef_true = loop_ef(truth)
    return {name: (float(np.nanmean(np.linalg.norm(kp - truth, axis=-1))), loop_ef(kp) - ef_true)
            for name, kp in sources.items() if name != "exact"}


def _classic_tracking(n: int) -> tuple[float, float]:
    """Keypoint error (px) and EF bias of tracking from the exact ED keypoints on the classic phantom,
    whose speckle moves with the tissue (the realistic phantom's decorrelates)."""
    from echokdm.generation.loop import loop_ef
    from echokdm.generation.tracking import track_keypoints

    errors, biases = [], []
    for case in _phantom_cases(n, "classic"):
        tracked = track_keypoints(case["frames"], case["keypoints"][0])
        errors.append(float(np.mean(np.linalg.norm(tracked - case["keypoints"], axis=-1))))
        biases.append(loop_ef(tracked) - loop_ef(case["keypoints"]))
    return float(np.mean(errors)), float(np.mean(biases))


def _trackers() -> dict:
    """Flow estimators ``f(sources, targets) -> (B, 2, H, W)`` (this package's convention: the flow on the
    source's grid pointing into the target, as :func:`~echokdm.baselines.flow.tvl1_flow`)."""
    from echokdm.baselines.flow import ilk_flow, tvl1_flow

    def scaled(a, b):  # the pair's gain undone: the data term no longer shrinks with the contrast
        top = max(float(np.percentile(np.concatenate([a.ravel(), b.ravel()]), 99.5)), 1e-3)
        return tvl1_flow(np.clip(a / top, 0, 1), np.clip(b / top, 0, 1))

    @functools.cache
    def packaged_ofnet():
        from echokdm.models.ofnet import OFNet
        from echokdm.pretrained import pretrained_path

        return OFNet.from_pretrained(pretrained_path("ofnet_phantom_112"))

    def ofnet(a, b):
        import torch

        return packaged_ofnet().predict(torch.from_numpy(np.ascontiguousarray(a, np.float32)),
                                        torch.from_numpy(np.ascontiguousarray(b, np.float32))).numpy()

    return {"TV-L1, attachment 10 (default)": lambda a, b: tvl1_flow(a, b),
            "TV-L1 on frames scaled to their 99.5th pct": scaled,
            "TV-L1, attachment 40": lambda a, b: tvl1_flow(a, b, attachment=40),
            "iterative Lucas-Kanade, radius 7": lambda a, b: ilk_flow(a, b, radius=7),
            "OF-net ofnet_phantom_112": ofnet}


def _track_with(estimator, frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """``keypoints`` on ``frames[0]`` carried through ``frames`` (112 px or less) by ``estimator``."""
    from echokdm.generation.tracking import _sample

    stack = np.ascontiguousarray(frames, np.float32)
    flows = estimator(stack[1:], stack[:-1]).reshape(len(stack) - 1, 2, *stack.shape[1:])
    current, out = np.asarray(keypoints, np.float64), [np.asarray(keypoints, np.float64)]
    for flow in flows:
        current = current + _sample(flow, current)
        out.append(current)
    return np.stack(out).astype(np.float32)


def _kdm_scores(pipe, case: dict, keypoints: np.ndarray, seeds: list[int], lpips) -> dict[str, list[float]]:
    """KDM fast's own beat of ``case`` driven by ``keypoints``, scored against its real frames, per seed."""
    from echokdm.generation import SamplingSettings, generate_loop

    scores = {"mse": [], "ssim": [], "lpips_alex": []}
    for seed in seeds:
        frames = generate_loop(pipe, case["frames"][0], keypoints[0], keypoints, fps=case["fps"],
                               sampling=SamplingSettings(seed=seed, fit_region=False),  # as in the README
                               fan_mask=case["fan"], progress=False, motion="own").frames[1:]
        for key, value in paired_scores(frames, case["frames"][1:], lpips).items():
            if value is not None:
                scores[key].append(value)
    return scores


def _tracker_row(estimator, phantoms: dict, real112: dict, pipe, seg, seeds: list[int], lpips) -> dict:
    """One tracker's figures (see :func:`_compare_trackers`)."""
    from echokdm.generation.loop import loop_ef

    row, frame_scores = {}, {"mse": [], "ssim": [], "lpips_alex": []}
    for style, cases in phantoms.items():
        values = []
        for case in cases:
            tracked = _track_with(estimator, case["frames"], case["keypoints"][0])
            values.append((float(np.mean(np.linalg.norm(tracked - case["keypoints"], axis=-1))),
                           loop_ef(tracked) - loop_ef(case["keypoints"])))
            if style == "realistic":  # the own beat as generate --own makes it: tracked from the segmented ED
                start = _segmented(case, seg)[0]
                if np.isfinite(start).all():
                    scores = _kdm_scores(pipe, case, _track_with(estimator, case["frames"], start), seeds, lpips)
                    for key, v in scores.items():
                        frame_scores[key] += v
        err, bias = np.array(values).T
        row[f"{style}_keypoint_error_px"] = round(float(err.mean()), 3)
        row[f"{style}_ef_bias"] = round(float(bias.mean()), 2)
    row.update({f"realistic_kdm_{k}": (round(float(np.mean(v)), 4) if v else None) for k, v in frame_scores.items()})
    tracked = _track_with(estimator, real112["frames"], real112["keypoints"][0])
    row["real_tracked_ef"] = round(loop_ef(tracked), 2)
    scores = _kdm_scores(pipe, real112, tracked, seeds, lpips)
    row.update({f"real_kdm_{k}": (round(float(np.mean(v)), 4) if v else None) for k, v in scores.items()})
    return row


def _compare_trackers(real: dict, n_patients: int, pipe, seg, seeds: list[int], lpips) -> dict:
    """The tracker table (module docstring): printed, and returned as figures."""
    from echokdm.generation.loop import loop_ef

    phantoms = {style: list(_phantom_cases(n_patients, style)) for style in ("realistic", "classic")}
    real112 = _real_case_112(real)
    figures = {"trackers_real_segmentation_ef": round(loop_ef(real112["keypoints"]), 2)}
    print(f"\ntrackers ({n_patients} held-out phantom patients: geometry tracked from the exact ED keypoints, KDM "
          f"fast's own beat from the segmented ED keypoints; real cine at 112, segmentation EF "
          f"{loop_ef(real112['keypoints']):.1f}; {len(seeds)} seed(s); MSE / SSIM / LPIPS against the real frames):")
    print(f"  {'tracker':<44} {'realistic: px / EF bias':>24} {'realistic KDM':>24} {'classic: px / EF bias':>22} "
          f"{'real EF':>8} {'real KDM':>24}")
    for name, estimator in _trackers().items():
        row = _tracker_row(estimator, phantoms, real112, pipe, seg, seeds, lpips)
        print(f"  {name:<44} {row['realistic_keypoint_error_px']:>10.2f} px / {row['realistic_ef_bias']:+6.1f} "
              f"{row['realistic_kdm_mse']:>8} / {row['realistic_kdm_ssim']} / {row['realistic_kdm_lpips_alex']} "
              f"{row['classic_keypoint_error_px']:>8.2f} px / {row['classic_ef_bias']:+6.1f} "
              f"{row['real_tracked_ef']:>8.1f} {row['real_kdm_mse']:>8} / {row['real_kdm_ssim']} / "
              f"{row['real_kdm_lpips_alex']}", flush=True)
        key = name.split(" (")[0].replace(" ", "_").replace(",", "").replace(".", "")
        figures.update({f"trackers__{key}__{k}": v for k, v in row.items()})
    return figures


def _speed(real: dict) -> dict[str, float]:
    from echokdm.generation.tracking import track_keypoints

    out = {}
    for case in (real, _real_case_112(real)):
        frames = case["frames"]
        start = time.perf_counter()
        track_keypoints(frames, case["keypoints"][0], max_size=None)
        seconds = (time.perf_counter() - start) / (len(frames) - 1)
        out[f"seconds_per_frame_{frames.shape[1]}x{frames.shape[2]}"] = seconds
    return out


def _figure(case: dict, sources: dict, loops: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = case["frames"]
    picks = np.linspace(0, len(frames) - 1, 4).round().astype(int)
    fig, axes = plt.subplots(3, len(picks), figsize=(3.2 * len(picks), 7.2))
    for j, t in enumerate(picks):
        ax = axes[0, j]
        ax.imshow(frames[t], cmap="gray", vmin=0, vmax=1)
        for name, colour in (("segmentation", "tab:red"), ("tracking", "tab:cyan")):
            ax.plot(*sources[name][t].T, ".-", color=colour, ms=2.5, lw=0.6, label=name if j == 0 else None)
        ax.set_title(f"real frame {t}", fontsize=9)
        for row, name in ((1, "segmentation"), (2, "tracking")):
            axes[row, j].imshow(frames[0] if t == 0 else loops[name][t - 1], cmap="gray", vmin=0, vmax=1)
            axes[row, j].set_title(f"KDM, {name} keypoints" + (" (source)" if t == 0 else ""), fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].legend(loc="lower left", fontsize=7)
    fig.suptitle("pydicom's real cine: own beat from ED, keypoints by per-frame segmentation (red) or by "
                 "speckle tracking from the ED frame (cyan)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    import torch

    from echokdm.baselines.flow import tvl1_flow
    from echokdm.generation import SamplingSettings, generate_loop, load_segmentation
    from echokdm.geometry.flow import warp_frame
    from echokdm.io.fan import apply_fan
    from echokdm.pipelines import KDMPipeline
    from echokdm.pretrained import pretrained_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 phantom patient, 1 seed")
    parser.add_argument("--patients", type=int, default=4, help="held-out phantom patients (default 4)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds (default 0 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--lpips-backbone", default=None, help="folder with alexnet_features.pth (offline LPIPS)")
    parser.add_argument("--trackers", action="store_true",
                        help="also compare trackers (TV-L1 variants, Lucas-Kanade, OF-net): the README's tracker table")
    parser.add_argument("--figure", type=Path, default=RESULTS / "motion_tracking.png", help="where the figure goes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.quick else args.seeds
    lpips = alex_lpips(args.lpips_backbone)
    pipe = KDMPipeline.from_pretrained(pretrained_path("kdm_phantom_112"))
    seg = load_segmentation(pretrained_path("seg_phantom_112"))
    real = _real_case()
    cases = [real, _real_case_112(real), *_phantom_cases(1 if args.quick else args.patients)]
    scores: dict[tuple[str, str], dict[str, list[float]]] = {}
    geometry: dict[str, list[tuple[float, float]]] = {}

    def score(case_name: str, method: str, frames: np.ndarray, truth: np.ndarray) -> None:
        entry = scores.setdefault((case_name, method), {"mse": [], "ssim": [], "lpips_alex": []})
        for key, value in paired_scores(frames, truth, lpips).items():
            if value is not None:
                entry[key].append(value)

    start = time.perf_counter()
    figure_loops, auto_choices = {}, {}
    for case in cases:
        truth = case["frames"][1:]
        score(case["name"], "repeat source", np.broadcast_to(case["frames"][0], truth.shape), truth)
        flows = tvl1_flow(np.broadcast_to(case["frames"][0], truth.shape), truth)
        score(case["name"], "oracle TV-L1 warp", apply_fan(warp_frame(case["frames"][0], flows), case["fan"]), truth)
        sources, chosen = _keypoint_sources(case, seg)
        auto_choices.setdefault(case["name"], []).append(chosen)
        for kp_name, kp in sources.items():
            for method, frames in _frames(case, kp, pipe, seeds):
                score(case["name"], f"{method}, {kp_name}", frames, truth)
        if "phantom" in case["name"]:
            for name, value in _geometry(case, sources).items():
                geometry.setdefault(name, []).append(value)
        elif case is real:
            for kp_name in ("segmentation", "tracking"):
                kp = sources[kp_name]
                figure_loops[kp_name] = generate_loop(pipe, case["frames"][0], kp[0], kp, fps=case["fps"],
                                                      sampling=SamplingSettings(seed=0, fit_region=False),
                                                      fan_mask=case["fan"], progress=False, motion="own").frames[1:]
            figure_sources = sources
        print(f"  {case['name']} done ({time.perf_counter() - start:.0f} s)", flush=True)

    figures = {"seeds": len(seeds), "phantom_patients": len(cases) - 2}
    print(f"\n{'case':<18} {'method':<28} {'MSE':>8} {'SSIM':>7} {'LPIPS':>7}")
    for (case_name, method), entry in scores.items():
        row = {key: (round(float(np.mean(v)), 4) if v else None) for key, v in entry.items()}
        print(f"{case_name:<18} {method:<28} {row['mse']!s:>8} {row['ssim']!s:>7} {row['lpips_alex']!s:>7}")
        for key, value in row.items():
            figures[f"{case_name.replace(' ', '_')}__{method.replace(' ', '_').replace(',', '')}__{key}"] = value
    print("\nphantom geometry against the exact keypoints (one beat from ED):")
    for name, values in geometry.items():
        err, bias = np.array(values).T
        print(f"  {name:<13} keypoint error {err.mean():.2f} px, EF bias {bias.mean():+.1f}, "
              f"EF MAE {np.abs(bias).mean():.1f}")
        figures.update({f"phantom_{name}_keypoint_error_px": round(float(err.mean()), 3),
                        f"phantom_{name}_ef_bias": round(float(bias.mean()), 2),
                        f"phantom_{name}_ef_mae": round(float(np.abs(bias).mean()), 2)})
    for name, choices in auto_choices.items():
        print(f"  'auto' on {name}: " + ", ".join(f"{c} {choices.count(c)}" for c in sorted(set(choices))))
        figures[f"{name.replace(' ', '_')}__auto_tracking_share"] = round(choices.count("tracking") / len(choices), 3)
    print("tracking where the speckle moves with the tissue (classic phantom, exact ED keypoints):")
    classic = _classic_tracking(1 if args.quick else args.patients)
    print(f"  keypoint error {classic[0]:.2f} px, EF bias {classic[1]:+.1f}")
    figures.update({"classic_tracking_keypoint_error_px": round(classic[0], 3),
                    "classic_tracking_ef_bias": round(classic[1], 2)})
    speed = _speed(real)
    print("\ntracking speed: " + ", ".join(f"{k} {v:.3f}" for k, v in speed.items()))
    figures.update({k: round(v, 4) for k, v in speed.items()})
    print(f"figure: {_figure(real, figure_sources, figure_loops, args.figure)}")
    if args.trackers:
        figures.update(_compare_trackers(real, 1 if args.quick else args.patients, pipe, seg, seeds, lpips))
    save("motion_tracking_quick" if args.quick else "motion_tracking", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
