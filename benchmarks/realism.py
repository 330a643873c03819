"""How real the phantom looks: statistics of pydicom's real apical four-chamber cine against the
phantom's, and a real-vs-phantom classifier (issue 18, item 2).

    python benchmarks/realism.py [--quick] [--style classic|realistic|both]

The real frames are pydicom's ``ybr_color`` cine (30 frames, 30 fps), cropped to the sector and
resized to 112 × 112 (:func:`echokdm.metrics.realism.real_cine_112`); its blood pool and
myocardium are the hand-placed boxes of :data:`~echokdm.metrics.realism.REAL_CINE_ROIS`. Each
phantom patient is simulated for 30 frames at the same frame rate and size. Its regions are placed
as the real boxes are: blood is the LV interior (the exact mask eroded by 2 px, as the real box
stays inside the cavity), myocardium the mid-septal part of a 4-pixel ring around the mask (the
real box lies on the mid septum). ``blood_myocardium_ratio_mask_ring`` keeps the earlier
definition for the phantom (the whole mask over the whole ring, lateral wall included; the real
figure is the boxes' either way). Statistics (``echokdm.metrics.realism``): blood / myocardium
intensity ratio, envelope SNR in tissue patches, speckle autocorrelation FWHM
(axial, lateral), grey levels in the fan (near-black fraction, percentiles), consecutive-frame
correlation, and the speckle correlation once motion is removed (``compensated_correlation``: frame
``t`` warped onto frame ``t + gap`` by TV-L1 flow, high-passed, on the brighter tissue; gaps 1, 2, 4
and 8 frames); phantom figures are the mean (and SD) over patients.

Classifier: 64 × 64 patches (≥ 90 % inside the sector). Real: the cine in three time blocks of
10 frames; seed ``s`` tests on block ``s mod 3`` and trains on the others (the frame on each side
of the test block left out). Phantom: the patients in turn, two held out per seed. A tiny CNN and
a logistic regression on hand features; held-out balanced accuracy, mean ± SD over seeds
(0.5: the classifier cannot tell them apart).

Writes ``benchmarks/results/realism.json`` and ``realism.md`` (``realism_quick.*`` with
``--quick``) and the figure ``docs/images/realism_stats.png`` (quick: ``benchmarks/results/
realism_stats_quick.png``, so that a smoke run never replaces the documented figure).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

DOCS_FIGURE = Path(__file__).resolve().parents[1] / "docs" / "images" / "realism_stats.png"
STATS = ["blood_myocardium_ratio", "blood_myocardium_ratio_mask_ring", "envelope_snr", "acf_fwhm_axial_px",
         "acf_fwhm_lateral_px", "near_black", "mean", "p5", "p25", "p50", "p75", "p95", "frame_correlation",
         "compensated_correlation_gap1", "compensated_correlation_gap2", "compensated_correlation_gap4",
         "compensated_correlation_gap8"]
PATCH, MIN_FILL = 64, 0.9
SEPTUM_KEYPOINTS = range(5, 15)  # mid-septum: keypoints 5-14 of the image-left wall (25-34 in a mirrored view)


def _real():
    from echokdm.metrics.realism import REAL_CINE_ROIS, box_mask, real_cine_112

    frames, fan, fps = real_cine_112()
    blood = box_mask(fan.shape, REAL_CINE_ROIS["blood"])
    myocardium = box_mask(fan.shape, REAL_CINE_ROIS["myocardium"])
    return {"frames": frames, "fan": fan, "fps": fps, "blood": blood, "myocardium": myocardium}


def _septum(ring: np.ndarray, keypoints: np.ndarray, mirrored: bool) -> np.ndarray:
    """The part of a ``(T, H, W)`` ring around the LV nearest to the mid-septal keypoints."""
    septal = np.array(SEPTUM_KEYPOINTS) if not mirrored else 39 - np.array(SEPTUM_KEYPOINTS)
    out = np.zeros_like(ring)
    for t, (frame_ring, kp) in enumerate(zip(ring, keypoints, strict=True)):
        rows, cols = np.nonzero(frame_ring)
        d2 = (cols[:, None] - kp[None, :, 0]) ** 2 + (rows[:, None] - kp[None, :, 1]) ** 2  # (pixels, 40)
        near = np.isin(np.argmin(d2, axis=1), septal)
        out[t, rows[near], cols[near]] = True
    return out


def _phantom(style: str, n_patients: int, fps: float, n_frames: int) -> list[dict]:
    """Phantom cines with two pairs of regions: ``blood`` / ``myocardium``, the LV interior (the mask
    eroded by 2 px) and the ring's mid-septal part, placed as the real cine's boxes are (inside the
    cavity, on the septum); ``blood_mask`` / ``ring``, the whole LV mask and the 4-px ring around it."""
    from scipy import ndimage

    from echokdm.metrics.realism import phantom_cine, ring_around

    clips = []
    for index in range(n_patients):
        clip = phantom_cine(2025, index, style=style, fps=fps, n_frames=n_frames)
        masks = clip.masks.astype(bool)
        ring = ring_around(masks, inner=1, width=4, within=clip.fan_mask)
        interior = np.stack([ndimage.binary_erosion(m, iterations=2) for m in masks])
        mirrored = clip.patient.look is not None and clip.patient.look.mirror
        clips.append({"frames": clip.frames, "fan": clip.fan_mask, "blood": interior,
                      "myocardium": _septum(ring, clip.keypoints, mirrored), "blood_mask": masks, "ring": ring})
    return clips


def _stats(cine: dict) -> dict:
    from echokdm.metrics.realism import compensated_correlation, intensity_ratio, realism_stats

    stats = realism_stats(cine["frames"], cine["fan"], cine["blood"], cine["myocardium"])
    for gap, value in compensated_correlation(cine["frames"], cine["fan"], (1, 2, 4, 8)).items():
        stats[f"compensated_correlation_gap{gap}"] = value
    whole = ((cine["blood_mask"], cine["ring"]) if "ring" in cine else (cine["blood"], cine["myocardium"]))
    stats["blood_myocardium_ratio_mask_ring"] = intensity_ratio(cine["frames"], *whole)
    return {k: stats[k] for k in STATS}


def _classify(real: dict, phantom: list[dict], seeds: int, n_train: int, n_test: int, steps: int) -> dict:
    """Held-out accuracies ``{"cnn": [...], "logistic": [...]}``, one per seed."""
    from echokdm.metrics.realism import heldout_accuracy

    frames, fan = real["frames"], real["fan"]
    blocks = np.array_split(np.arange(len(frames)), 3)
    out: dict[str, list[float]] = {"cnn": [], "logistic": []}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        test_block = blocks[seed % 3]
        train_frames = [t for t in range(len(frames)) if t < test_block[0] - 1 or t > test_block[-1] + 1]
        held = {(2 * seed + k) % len(phantom) for k in range(2)}
        ph_train = [c for i, c in enumerate(phantom) if i not in held]
        ph_test = [c for i, c in enumerate(phantom) if i in held]
        sets = (_patches([(frames[train_frames], fan)], n_train, rng),
                _patches([(c["frames"], c["fan"]) for c in ph_train], n_train, rng),
                _patches([(frames[test_block], fan)], n_test, rng),
                _patches([(c["frames"], c["fan"]) for c in ph_test], n_test, rng))
        for model in out:
            out[model].append(heldout_accuracy(*sets, model=model, seed=seed, steps=steps))
    return out


def _patches(frame_sets: list[tuple[np.ndarray, np.ndarray]], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` patches drawn evenly from ``(frames, fan)`` pairs (see ``sample_patches``)."""
    from echokdm.metrics.realism import sample_patches

    per = -(-n // len(frame_sets))
    return np.concatenate([sample_patches(f, m, per, size=PATCH, min_fill=MIN_FILL, rng=rng)
                           for f, m in frame_sets])[:n]


def _figure(path: Path, real: dict, phantoms: dict[str, list[dict]], table: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from echokdm.metrics.realism import REAL_CINE_ROIS, autocorrelation_profiles, intensity_histogram

    sources = {"real (pydicom A4C cine)": [real]} | {f"{s} phantom": clips for s, clips in phantoms.items()}
    colours = dict(zip(sources, ["black", "tab:orange", "tab:blue"], strict=False))  # at most three sources
    fig, axes = plt.subplots(2, max(3, len(sources)), figsize=(4 * max(3, len(sources)), 8))
    for ax in axes[0]:
        ax.axis("off")
    for ax, (name, clips) in zip(axes[0], sources.items(), strict=False):  # a row of at least three panels
        clip = clips[0]
        ax.imshow(clip["frames"][0], cmap="gray", vmin=0, vmax=1)
        stats = table[name.split(" ")[0]]
        ax.set_title(f"{name}\nblood/myo {stats['blood_myocardium_ratio']:.2f}, SNR {stats['envelope_snr']:.2f}",
                     fontsize=9)
        if clips is sources["real (pydicom A4C cine)"]:
            for key, colour in (("blood", "tab:red"), ("myocardium", "tab:cyan")):
                for r0, r1, c0, c1 in REAL_CINE_ROIS[key]:
                    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec=colour, lw=1))
        else:
            ax.contour(clip["blood"][0], levels=[0.5], colors="tab:red", linewidths=0.6)
            ax.contour(clip["myocardium"][0], levels=[0.5], colors="tab:cyan", linewidths=0.6)
    hist_ax, axial_ax, lateral_ax = axes[1][:3]
    for name, clips in sources.items():
        dens = np.mean([intensity_histogram(c["frames"], c["fan"], bins=32)[0] for c in clips], axis=0)
        centres = (np.arange(32) + 0.5) / 32
        hist_ax.step(centres, dens, where="mid", color=colours[name], label=name)
        profiles = np.mean([autocorrelation_profiles(c["frames"], c["fan"]) for c in clips], axis=0)  # (2, lags)
        axial_ax.plot(profiles[0], "o-", ms=3, color=colours[name], label=name)
        lateral_ax.plot(profiles[1], "o-", ms=3, color=colours[name], label=name)
    hist_ax.set(yscale="log", xlabel="grey level (inside the sector)", ylabel="density", title="intensity histograms")
    for ax, title in ((axial_ax, "axial (rows)"), (lateral_ax, "lateral (columns)")):
        ax.axhline(0.5, color="grey", lw=0.5, ls="--")
        ax.set(xlabel="lag (pixels at 112x112)", ylabel="autocorrelation", title=f"speckle autocorrelation, {title}")
    hist_ax.legend(fontsize=8)
    for ax in axes[1][3:]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _markdown(table: dict, accuracy: dict, settings: str) -> str:
    columns = list(table)
    lines = ["# Realism: real echo against the phantom", "", settings, "",
             "| statistic | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for stat in STATS:
        cells = []
        for c in columns:
            value, sd = table[c][stat], table[c].get(f"{stat}_sd")
            cells.append(f"{value:.3g}" + (f" ± {sd:.2g}" if sd is not None else ""))
        lines.append(f"| {stat} | " + " | ".join(cells) + " |")
    for model in ("cnn", "logistic"):
        cells = ["—"] + [f"{np.mean(accuracy[s][model]):.2f} ± {np.std(accuracy[s][model]):.2f}"
                         for s in columns[1:]]
        lines.append(f"| real-vs-phantom held-out accuracy ({model}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 patients, 2 seeds, shorter training (CI)")
    parser.add_argument("--style", default="both", choices=("classic", "realistic", "both"),
                        help="phantom style(s) to compare (both: every style this echokdm has)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="classifier seeds (default 6, 2 with --quick); more seeds, a steadier mean")
    args = parser.parse_args(argv)
    from echokdm.metrics.realism import phantom_styles

    available = phantom_styles()
    styles = available if args.style == "both" else [args.style]
    if any(s not in available for s in styles):
        print(f"error: --style {args.style}: this echokdm's phantom offers only {', '.join(available)}",
              file=sys.stderr)
        return 2
    n_patients, seeds, n_train, n_test, steps = (4, 2, 192, 96, 150) if args.quick else (8, 6, 384, 192, 300)
    seeds = seeds if args.seeds is None else max(1, args.seeds)
    start = time.perf_counter()
    real = _real()
    phantoms = {s: _phantom(s, n_patients, real["fps"], len(real["frames"])) for s in styles}
    table = {"real": _stats(real)}
    accuracy = {}
    for style, clips in phantoms.items():
        per_patient = [_stats(c) for c in clips]
        table[style] = {k: float(np.mean([p[k] for p in per_patient])) for k in STATS}
        table[style].update({f"{k}_sd": float(np.std([p[k] for p in per_patient])) for k in STATS})
        accuracy[style] = _classify(real, clips, seeds, n_train, n_test, steps)
    figures: dict = {"phantom_patients": n_patients, "classifier_seeds": seeds}
    for source, stats in table.items():
        figures.update({f"{k}_{source}": round(stats[k], 4) for k in STATS})
    for style, acc in accuracy.items():
        for model, values in acc.items():
            figures[f"classifier_{model}_accuracy_{style}"] = round(float(np.mean(values)), 3)
            figures[f"classifier_{model}_accuracy_sd_{style}"] = round(float(np.std(values)), 3)
    figure = RESULTS / "realism_stats_quick.png" if args.quick else DOCS_FIGURE
    _figure(figure, real, phantoms, table)
    figures["figure"] = str(figure)
    figures["benchmark_seconds"] = round(time.perf_counter() - start, 1)
    name = "realism_quick" if args.quick else "realism"
    settings = (f"Real: pydicom ybr_color cine, 30 frames at {real['fps']:.0f} fps, 112x112. "
                f"Phantom: {n_patients} patients x 30 frames at the same fps (mean ± SD over patients). "
                f"Classifier: {PATCH}x{PATCH} patches, {n_train} training / {n_test} held-out patches per class, "
                f"{seeds} seeds (mean ± SD); 0.5 = indistinguishable.")
    save(name, figures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(_markdown(table, accuracy, settings))
    print(_markdown(table, accuracy, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
