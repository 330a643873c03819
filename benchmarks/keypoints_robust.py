"""Keypoints and EF on masks with the faults of a segmentation network's output.

Phantom clips (exact masks, keypoints, EF) are degraded by
:func:`echokdm.geometry.mask_faults.degrade_masks` (jagged borders, holes, leaks into the atrium
through the open mitral valve, lost apex, one destroyed frame in ten). On the clean and on the
faulty masks this measures:

* ``echokdm``: :func:`sequence_keypoints` (default: apex direction detected per clip, masks
  cleaned, outlier frames interpolated) → Simpson volumes → :func:`cardiac_cycle`;
* ``echokdm_no_length_limit``: the same without the clip-level long-axis limit
  (``max_length_ratio=None``: a leak through the open valve with no neck is not recognised);
* ``echokdm_no_repair``: the same with ``repair=False`` and ``apex_direction="up"`` (the geometry
  before issue 18);
* ``principal_axis``: a plain principal-axis Simpson baseline (largest component, holes filled,
  20 discs perpendicular to the mask's major axis, widths from the pixel count of each slab),
  with the same beat detection.

Three sets of masks: ``clean``; ``faulty`` (the faults above); ``open_valve``: the same but the leak
has no neck, the pool running on through the wide-open valve into the atrium on every filling
frame (what ``seg_phantom_112`` does on pydicom's real cine, frames 7-12 and 18-19).

Figures: EF MAE against the phantom's truth, frames with all 40 keypoints, rejected beats, and the
masks' Dice against the truth as given and repaired by :func:`echokdm.geometry.mask_repair.repair_masks`
(what ``echokdm segment`` writes). Saves
``benchmarks/results/keypoints_robust.json`` and ``keypoints_robust.png``.

    python benchmarks/keypoints_robust.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save


def principal_axis_volume(mask: np.ndarray, n_discs: int = 20) -> float:
    """Simpson volume (px³) of one mask along its principal axis; NaN for an empty mask."""
    from scipy import ndimage

    binary = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(binary)
    if n == 0:
        return float("nan")
    binary = ndimage.binary_fill_holes(labels == (int(np.argmax(np.bincount(labels.ravel())[1:])) + 1))
    ys, xs = np.nonzero(binary)
    if xs.size < 10:
        return float("nan")
    pts = np.stack([xs, ys], axis=1).astype(float)
    d = pts - pts.mean(axis=0)
    _, evecs = np.linalg.eigh(d.T @ d)
    u = d @ evecs[:, 1]
    length = float(u.max() - u.min()) + 1.0
    h = length / n_discs
    counts = np.bincount(np.minimum(((u - u.min() + 0.5) / h).astype(int), n_discs - 1), minlength=n_discs)
    widths = counts / h  # pixels per slab / slab thickness
    return float(np.sum(np.pi / 4 * widths**2) * h)


def _ef(volumes: np.ndarray, fps: float):
    from echokdm.geometry.volumes import cardiac_cycle

    cycle = cardiac_cycle(volumes, fps)
    return cycle.ef_mean, len(cycle.rejected)


def _measure(masks: np.ndarray, clip) -> dict:
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.geometry.volumes import simpson_volume

    out = {}
    for name, kwargs in (("echokdm", {}), ("echokdm_no_length_limit", {"max_length_ratio": None}),
                         ("echokdm_no_repair", {"repair": False, "apex_direction": "up"})):
        seq = sequence_keypoints(masks, **kwargs)
        complete = np.isfinite(seq.keypoints).all(axis=(1, 2))
        ef, rejected = _ef(simpson_volume(seq.keypoints, clip.spacing_mm), clip.fps)
        out[name] = {"ef": ef, "complete": float(complete.mean()), "rejected": rejected}
    from echokdm.echo.segmentation_training import dice_scores
    from echokdm.geometry.mask_repair import repair_masks

    truth = clip.masks.astype(bool)
    out["mask_dice"] = {"network": float(np.mean(dice_scores(masks.astype(bool), truth))),
                        "repaired": float(np.mean(dice_scores(repair_masks(masks).masks.astype(bool), truth)))}
    volumes = np.array([principal_axis_volume(m) for m in masks])
    ef, rejected = _ef(volumes, clip.fps)
    out["principal_axis"] = {"ef": ef, "complete": float(np.isfinite(volumes).mean()), "rejected": rejected}
    return out


METHODS = ("echokdm", "echokdm_no_length_limit", "echokdm_no_repair", "principal_axis")
MASK_SETS = ("clean", "faulty", "open_valve")


def _figure(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4))
    FigureCanvasAgg(fig)
    for k, masks in enumerate(MASK_SETS):
        ax = fig.add_subplot(1, len(MASK_SETS), k + 1)
        truth = np.array([r["ef_true"] for r in rows])
        lo, hi = truth.min() - 10, truth.max() + 10
        ax.plot([lo, hi], [lo, hi], color="k", linewidth=1)
        for m in METHODS:
            est = np.array([r[masks][m]["ef"] for r in rows])
            ok = np.isfinite(est)
            mae = np.mean(np.abs(est[ok] - truth[ok])) if ok.any() else np.nan
            ax.scatter(truth[ok], est[ok], s=14, label=f"{m} (MAE {mae:.1f})")
        ax.set_xlabel("phantom EF (%)")
        ax.set_ylabel("measured EF (%)")
        ax.set_title(f"{masks} masks")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    from echokdm.data.phantom import sample_patient, simulate_clip
    from echokdm.geometry.mask_faults import degrade_masks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 patients instead of 12")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    n = 4 if args.quick else 12
    rows = []
    for i in range(n):
        clip = simulate_clip(sample_patient(args.seed, i), n_beats=2.0, fps=50.0, size=112)
        faulty = degrade_masks(clip.masks, clip.keypoints, seed=args.seed * 100 + i)
        open_valve = degrade_masks(clip.masks, clip.keypoints, seed=args.seed * 100 + i,
                                   faults=("jagged", "holes", "open_valve", "lost_apex", "bad_frames"))
        rows.append({"ef_true": clip.ef, "clean": _measure(clip.masks, clip), "faulty": _measure(faulty.masks, clip),
                     "open_valve": _measure(open_valve.masks, clip)})
    figures = {"patients": n, "faults": "jagged, holes, leak (filling), lost apex (15 % of frames), 1 bad frame in 10",
               "open_valve": "the same with a leak without a neck through the wide-open valve on every filling frame"}
    for masks in MASK_SETS:
        for m in METHODS:
            err = np.array([r[masks][m]["ef"] - r["ef_true"] for r in rows])
            ok = np.isfinite(err)
            figures[f"{masks}_{m}_ef_mae"] = round(float(np.mean(np.abs(err[ok]))), 2) if ok.any() else None
            figures[f"{masks}_{m}_ef_bias"] = round(float(np.mean(err[ok])), 2) if ok.any() else None
            figures[f"{masks}_{m}_clips_without_ef"] = int((~ok).sum())
            figures[f"{masks}_{m}_frames_complete_percent"] = round(
                100 * float(np.mean([r[masks][m]["complete"] for r in rows])), 1)
            figures[f"{masks}_{m}_rejected_beats"] = int(sum(r[masks][m]["rejected"] for r in rows))
        for kind in ("network", "repaired"):
            figures[f"{masks}_mask_dice_{kind}"] = round(float(np.mean([r[masks]["mask_dice"][kind] for r in rows])), 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / "keypoints_robust.png"
    _figure(rows, png)
    figures["figure"] = str(png.relative_to(RESULTS.parent.parent))
    save("keypoints_robust", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
