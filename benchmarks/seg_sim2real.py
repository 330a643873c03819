"""Segmentation from the phantom to real echo: Dice and EF on held-out phantom cohorts of both
styles, and checks on pydicom's real apical four-chamber cine, for one or more segmentation models.

Held-out phantom patients are drawn with seed 7 (the packaged models are trained on seed 0
cohorts). On the real cine there is no tracing; three checks stand in for it, on hand-placed
boxes (``echokdm.metrics.realism.REAL_CINE_ROIS``): the share of the LV-cavity box the mask covers
(should be near 1), the share of the septum box it covers (near 0), and the share of the mask
outside the sector (0); plus the EF read from the mask's keypoints (plausible: 20-80 %). A figure
of the masks on the real frames is saved for checking by eye.

    python benchmarks/seg_sim2real.py [--quick] [--model NAME=FOLDER ...]

Without ``--model`` it compares the packaged ``seg_phantom_112`` with nothing else.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_named, save

HELD_OUT_SEED = 7


def _models(specs: list[str]) -> dict[str, object]:
    from echokdm.generation import load_segmentation
    from echokdm.pretrained import pretrained_path

    return load_named(specs, f"packaged={pretrained_path('seg_phantom_112')}", load_segmentation, "--model")


def _phantom_scores(models: dict, style: str, n_patients: int, n_beats: float) -> dict[str, dict[str, float]]:
    from echokdm.data.phantom import sample_patient, simulate_clip
    from echokdm.echo.segmentation_training import dice_scores
    from echokdm.generation.loop import segment_frames
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

    rng = np.random.default_rng(HELD_OUT_SEED)
    out = {name: {"dice": [], "ef_err": [], "ef_missing": 0} for name in models}
    for i in range(n_patients):
        patient = sample_patient(rng, i, style=style)
        clip = simulate_clip(patient, n_beats=n_beats, fps=50.0, size=112, seed=HELD_OUT_SEED + i)
        for name, model in models.items():
            masks = segment_frames(model, clip.frames)
            out[name]["dice"].append(float(np.mean(dice_scores(masks, clip.masks))))
            kp = sequence_keypoints(masks, smooth_sigma_frames=0.0).keypoints
            cycle = cardiac_cycle(simpson_volume(kp, clip.spacing_mm), clip.fps)
            ef = float(np.nanmean(cycle.ef)) if len(cycle.ef) else float("nan")
            if np.isfinite(ef):
                out[name]["ef_err"].append(ef - clip.ef)
            else:
                out[name]["ef_missing"] += 1
    return {name: {"dice_mean": round(float(np.mean(v["dice"])), 3),
                   "dice_min": round(float(np.min(v["dice"])), 3),
                   "ef_mae": round(float(np.mean(np.abs(v["ef_err"]))), 2) if v["ef_err"] else None,
                   "ef_bias": round(float(np.mean(v["ef_err"])), 2) if v["ef_err"] else None,
                   "ef_missing": v["ef_missing"]} for name, v in out.items()}


def _real_scores(models: dict) -> tuple[dict, dict]:
    from echokdm.generation.loop import segment_frames
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume
    from echokdm.io.fan import apex_direction_with_fan
    from echokdm.metrics.realism import REAL_CINE_ROIS, box_mask, real_cine_112

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames, fan, fps = real_cine_112()
    blood = box_mask(frames.shape[1:], REAL_CINE_ROIS["blood"])
    septum = box_mask(frames.shape[1:], REAL_CINE_ROIS["myocardium"])
    scores, masks_by_model = {}, {}
    for name, model in models.items():
        masks = segment_frames(model, frames).astype(bool)
        masks_by_model[name] = masks
        # the apex side from the sector, as echokdm ef --segmentation MODEL takes it (the masks alone read
        # it "left" on this cine)
        kp = sequence_keypoints(masks.astype(np.uint8), smooth_sigma_frames=0.0,
                                apex_direction=apex_direction_with_fan(fan, "auto")).keypoints
        volumes = simpson_volume(kp, None)
        cycle = cardiac_cycle(volumes, fps)
        finite = np.isfinite(volumes)
        ef_range = 100 * (np.nanmax(volumes) - np.nanmin(volumes)) / np.nanmax(volumes) if finite.sum() > 1 else np.nan
        area = masks.reshape(len(masks), -1).sum(1)
        scores[name] = {
            "lv_box_covered": round(float(masks[:, blood].mean()), 3),
            "septum_box_covered": round(float(masks[:, septum].mean()), 3),
            "mask_outside_sector": round(float(masks[:, ~fan].sum() / max(masks.sum(), 1)), 3),
            "frames_with_mask": int((area > 0).sum()),
            "frames_with_40_keypoints": int(finite.sum()),
            "ef_cycle": round(float(np.nanmean(cycle.ef)), 1) if len(cycle.ef) else None,
            "ef_max_min": round(float(ef_range), 1) if np.isfinite(ef_range) else None,
        }
    return scores, {"frames": frames, "masks": masks_by_model}


#: Source frames of the real cine for the warped-frame check (spread over its one second), and the EFs
#: its synthetic beats reach.
WARP_SOURCES = (0, 9, 17, 27)
WARP_EFS = (35.0, 55.0, 70.0)


def _warped_real_scores(models: dict, quick: bool) -> dict:
    """The real cine's frames made to contract, with known truth: each source frame, with the keypoints the
    model itself finds on it (inside the fan, as ``generate`` takes them), is warped by a thin-plate spline
    through a synthetic beat of those keypoints at each EF (a generated loop without the generator's errors).
    Per model: Dice of its mask against the warped polygon at end-systole, and the EF it reads on the beat
    (10 frames, ED to ES) against the keypoints' EF. A model that follows the LV as it contracts reads the
    warp's EF; one that loses the narrowed cavity, or keeps reading the old one, does not."""
    from echokdm.baselines.tps import tps_warp
    from echokdm.generation.loop import clip_keypoints, measure_ef, segment_frames
    from echokdm.generation.motion import synthetic_motion
    from echokdm.geometry.keypoints import keypoints_to_mask
    from echokdm.io.cine import Cine
    from echokdm.metrics.realism import real_cine_112

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frames, fan, fps = real_cine_112()
    sources = WARP_SOURCES[:2] if quick else WARP_SOURCES
    out = {}
    for name, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = clip_keypoints(Cine(frames=frames, fps=fps, clip_id="real"), model, fan_mask=fan)
        dice, errors = [], []
        for t in sources:
            if not np.isfinite(reference[t]).all():
                errors.append(np.nan)
                continue
            for ef in WARP_EFS:
                beat = synthetic_motion(reference[t], ef, heart_rate_bpm=70.0, fps=30.0)
                es = int(np.argmin([keypoints_to_mask(k, fan.shape).sum() for k in beat]))
                picks = np.unique(np.linspace(0, es, 10).round().astype(int))  # ED to ES
                warped = np.stack([np.where(fan, tps_warp(frames[t], reference[t], beat[i]), 0.0) for i in picks])
                truth = keypoints_to_mask(beat[es], fan.shape).astype(bool)
                read_es = segment_frames(model, warped[-1:], fan)[0].astype(bool)
                dice.append(2 * (read_es & truth).sum() / max(read_es.sum() + truth.sum(), 1))
                read = measure_ef(warped, model, apex_direction="up", fan_mask=fan)
                errors.append(read - ef if np.isfinite(read) else np.nan)
        out[name] = {"dice_es_mean": round(float(np.mean(dice)), 3) if dice else None,
                     "dice_es_min": round(float(np.min(dice)), 3) if dice else None,
                     "ef_mae": round(float(np.nanmean(np.abs(errors))), 2),
                     "ef_bias": round(float(np.nanmean(errors)), 2),
                     "ef_missing": int(np.isnan(errors).sum()), "beats": len(errors)}
    return out


def _figure(material: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames, masks = material["frames"], material["masks"]
    picks = [0, 10, 20]
    fig = Figure(figsize=(2.4 * len(picks), 2.5 * len(masks)))
    FigureCanvasAgg(fig)
    for r, (name, m) in enumerate(masks.items()):
        for c, t in enumerate(picks):
            ax = fig.add_subplot(len(masks), len(picks), r * len(picks) + c + 1)
            ax.imshow(frames[t], cmap="gray", vmin=0, vmax=0.6)
            if m[t].any():
                ax.contour(m[t].astype(float), levels=[0.5], colors="red", linewidths=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, frame {t}", fontsize=8)
    fig.suptitle("LV segmentation on pydicom's real A4C cine (no tracing: check by eye)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 patients per style (CI smoke run)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                        help="a segmentation model folder to compare (repeatable); default: the packaged one")
    parser.add_argument("--patients", type=int, default=8, help="held-out phantom patients per style (default 8)")
    parser.add_argument("--figure", default=None, help="where to save the real-cine figure "
                        "(default: benchmarks/results/seg_real_cine.png)")
    args = parser.parse_args(argv)
    models = _models(args.model)
    n = 2 if args.quick else args.patients
    figures: dict = {}
    for style in ("classic", "realistic"):
        for name, s in _phantom_scores(models, style, n, 1.2).items():
            for key, value in s.items():
                figures[f"phantom_{style}_{name}_{key}"] = value
    real, material = _real_scores(models)
    for name, s in real.items():
        for key, value in s.items():
            figures[f"real_cine_{name}_{key}"] = value
    for name, s in _warped_real_scores(models, args.quick).items():
        for key, value in s.items():
            figures[f"real_cine_warped_{name}_{key}"] = value
    figure = Path(args.figure) if args.figure else RESULTS / "seg_real_cine.png"
    _figure(material, figure)
    figures["figure"] = str(figure)
    save("seg_sim2real_quick" if args.quick else "seg_sim2real", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
