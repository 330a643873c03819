"""KDM on real echo and on the realistic phantom: does a generated beat stay closer to the real
beat than simply repeating the source frame, and than warping it?

For each case the source is an end-diastolic frame and the targets are the clip's own following
frames with their keypoints (own motion); every method predicts each target from the source and
the target keypoints, one sample per case and seed (seeds 0, 1, 2; no best-of-N):

- each KDM pipeline given with ``--pipeline NAME=FOLDER`` (default: the packaged one);
- "repeat source": the source frame for every target (no edit);
- "TPS warp": the source warped by a thin-plate spline through the keypoints.

Cases: pydicom's real apical four-chamber cine (keypoints from the packaged sim-to-real
segmentation, inside the fan, from its ED frame to the end of the clip), and held-out
realistic-phantom patients (seed 7, exact keypoints). Frames are masked to the fan. Reported per
case kind and method: MSE, SSIM and LPIPS-Alex (when its backbone is available: ``--lpips-backbone``
or ``$ECHOKDM_LPIPS_WEIGHTS``) against the real frames, mean over frames and seeds.

    python benchmarks/kdm_real.py [--quick] [--pipeline NAME=FOLDER ...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alex_lpips, load_named, save

HELD_OUT_SEED = 7


def _real_case():
    import pydicom.examples

    from echokdm.generation import clip_keypoints
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume
    from echokdm.io.dispatch import read_cine
    from echokdm.io.fan import apply_fan, source_fan
    from echokdm.pretrained import pretrained_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_cine(pydicom.examples.get_path("ybr_color"), "dicom", crop_to_fan=True)
    kp = clip_keypoints(cine, pretrained_path("seg_phantom_112"))
    cycle = cardiac_cycle(simpson_volume(kp, cine.spacing_mm), cine.fps)
    ed = int(cycle.ed_frames[0]) if len(cycle.ed_frames) else 0
    fan = source_fan(cine).mask
    return {"name": "real cine", "frames": apply_fan(cine.frames[ed:], fan), "keypoints": kp[ed:], "fps": cine.fps,
            "fan": fan}


def _real_case_112(case: dict) -> dict:
    """The real case resized to 112×112 (EchoNet-Dynamic's storage size), its keypoints and fan with it."""
    from echokdm.geometry.resize import resize_images
    from echokdm.io.fan import apply_fan

    h, w = case["frames"].shape[1:]
    fan = resize_images(case["fan"].astype(np.float32), (112, 112), antialias=True) > 0.5
    frames = apply_fan(np.clip(resize_images(case["frames"], (112, 112), antialias=True), 0, 1), fan)
    return {"name": "real cine 112", "frames": frames, "fps": case["fps"], "fan": fan,
            "keypoints": case["keypoints"] * np.array([112 / w, 112 / h], np.float32)}


def _phantom_cases(n: int, style: str = "realistic"):
    """Held-out phantom patients (seed 7) of ``style``, from their first ED frame, exact keypoints."""
    from echokdm.data.phantom import sample_patient, simulate_clip

    rng = np.random.default_rng(HELD_OUT_SEED)
    for i in range(n):
        clip = simulate_clip(sample_patient(rng, i, style=style), n_beats=1.0, fps=25.0, size=112,
                             seed=HELD_OUT_SEED + i)
        ed = int(clip.ed_frames[0]) if len(clip.ed_frames) else 0
        yield {"name": f"{style} phantom", "frames": clip.frames[ed:], "keypoints": clip.keypoints[ed:],
               "fps": clip.fps, "fan": clip.fan_mask}


def _predictions(case, pipelines: dict, seeds: list[int], steps: int, k: int):
    from echokdm.baselines.tps import tps_warp
    from echokdm.generation import SamplingSettings, generate_loop
    from echokdm.io.fan import apply_fan

    src, kp = case["frames"][0], case["keypoints"]
    out = {"repeat source": [np.broadcast_to(src, case["frames"][1:].shape)],
           "TPS warp": [apply_fan(np.stack([tps_warp(src, kp[0], kp[t]) for t in range(1, len(kp))]), case["fan"])]}
    for name, pipe in pipelines.items():
        out[name] = []
        for seed in seeds:
            loop = generate_loop(pipe, src, kp[0], kp, fps=case["fps"],
                                 sampling=SamplingSettings.paper(k=k, num_inference_steps=steps, seed=seed),
                                 fan_mask=case["fan"], progress=False, motion="own")
            out[name].append(loop.frames[1:])
    return out


def main(argv: list[str] | None = None) -> int:
    from echokdm.metrics.image import mse, ssim
    from echokdm.pipelines import KDMPipeline
    from echokdm.pretrained import pretrained_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 phantom patient, 1 seed, 20 DDIM steps")
    parser.add_argument("--pipeline", action="append", default=[], metavar="NAME=FOLDER",
                        help="a KDM pipeline folder to compare (repeatable); default: the packaged kdm_phantom_112")
    parser.add_argument("--patients", type=int, default=4, help="held-out realistic phantom patients (default 4)")
    parser.add_argument("--lpips-backbone", default=None, help="folder with alexnet_features.pth (offline LPIPS)")
    args = parser.parse_args(argv)
    pipelines = load_named(args.pipeline, f"packaged={pretrained_path('kdm_phantom_112')}",
                           KDMPipeline.from_pretrained, "--pipeline")
    seeds, steps, k = ([0], 20, 10) if args.quick else ([0, 1, 2], 50, 25)
    lpips = alex_lpips(args.lpips_backbone)
    cases = [_real_case(), *_phantom_cases(1 if args.quick else args.patients)]
    scores: dict[tuple[str, str], dict[str, list[float]]] = {}
    for case in cases:
        real = case["frames"][1:]
        for method, runs in _predictions(case, pipelines, seeds, steps, k).items():
            entry = scores.setdefault((case["name"], method), {"mse": [], "ssim": [], "lpips_alex": []})
            for frames in runs:
                entry["mse"].append(float(np.mean(mse(frames, real))))
                entry["ssim"].append(float(np.mean(ssim(frames, real))))
                if lpips is not None:
                    entry["lpips_alex"].append(float(np.mean(lpips(np.ascontiguousarray(frames), real))))
    figures = {"seeds": len(seeds), "ddim_steps": steps, "k": k, "phantom_patients": len(cases) - 1}
    print(f"\n{'case':<18} {'method':<16} {'MSE':>8} {'SSIM':>7} {'LPIPS':>7}")
    for (case, method), entry in scores.items():
        row = {key: (round(float(np.mean(v)), 4) if v else None) for key, v in entry.items()}
        print(f"{case:<18} {method:<16} {row['mse']:>8} {row['ssim']:>7} {str(row['lpips_alex']):>7}")
        for key, value in row.items():
            figures[f"{case.replace(' ', '_')}__{method.replace(' ', '_')}__{key}"] = value
    save("kdm_real_quick" if args.quick else "kdm_real", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
