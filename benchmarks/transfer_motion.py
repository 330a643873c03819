"""Transferring one heart's beat onto another (``echokdm generate --transfer``): does the transferred
keypoint motion keep the donor's EF, and does it stay a plausible LV?

For every ordered pair of held-out realistic phantom patients (exact keypoints, seed 7; the source
heart at its ED frame, the donor's beat from its ED frame) and for pydicom's real cine as the source
(keypoints of its ED frame from the packaged segmentation inside the fan, as ``generate`` takes them)
with each phantom donor, this compares

* ``length`` (the rule before): every displacement in units of the donor's long-axis length, scaled
  by the source's;
* ``transfer_motion`` (echokdm's rule now): along the axis by the lengths, across it by each
  keypoint's own distance from the axis (fractional shortening kept per keypoint).

Figures: mean |EF of the transferred keypoints − donor's EF| (Simpson, 20 discs) and the share of
transferred frames whose walls cross (some keypoint pair ``k``, ``39 − k`` with the left wall right
of the right wall). Saves ``benchmarks/results/transfer_motion.json``.

    python benchmarks/transfer_motion.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save

HELD_OUT_SEED = 7


def length_only_transfer(src: np.ndarray, sequence: np.ndarray) -> np.ndarray:
    """The previous rule: displacements in units of the donor's long axis, scaled by the source's."""
    from echokdm.generation.motion import _long_axis_frame

    b_o, r_o, l_o = _long_axis_frame(sequence[0].astype(np.float64), "donor")
    _, r_s, l_s = _long_axis_frame(src.astype(np.float64), "source")
    normalised = (sequence - b_o) @ r_o.T / l_o
    return (src + l_s * (normalised - normalised[:1]) @ r_s).astype(np.float32)


def ef_of(sequence: np.ndarray) -> float:
    from echokdm.geometry.volumes import simpson_volume

    v = simpson_volume(sequence)
    return float(100.0 * (np.nanmax(v) - np.nanmin(v)) / np.nanmax(v))


def crossed(sequence: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: frames where a wall crosses the other (keypoint k right of 39 - k along the normal)."""
    from echokdm.generation.motion import _long_axis_frame

    _, r, _ = _long_axis_frame(sequence[0].astype(np.float64), "sequence")
    normal = sequence @ r[1]  # (T, 40): position along the ED normal (image-right side positive)
    gap = normal[:, ::-1][:, :20] - normal[:, :20]  # right wall (39 - k) minus left wall (k)
    sign = np.sign(np.nanmedian(gap[0]))
    return (sign * gap < 0).any(axis=1)


def phantom_hearts(n: int) -> list[tuple[np.ndarray, float]]:
    """``(keypoints from the ED frame over one beat (T, 40, 2), EF)`` of ``n`` held-out patients."""
    from echokdm.data.phantom import sample_patient, simulate_clip

    rng = np.random.default_rng(HELD_OUT_SEED)
    hearts = []
    for i in range(n):
        clip = simulate_clip(sample_patient(rng, i, style="realistic"), n_beats=1.2, fps=30.0, size=112,
                             seed=HELD_OUT_SEED + i)
        beat = clip.keypoints[clip.reference_frame:].astype(np.float32)  # from the first ED
        hearts.append((beat, ef_of(beat)))
    return hearts


def real_source() -> np.ndarray:
    """pydicom's real cine: the ED frame's keypoints from the packaged segmentation, at 112 px."""
    from echokdm.generation.loop import clip_keypoints
    from echokdm.generation.motion import first_end_diastole
    from echokdm.io.cine import Cine
    from echokdm.metrics.realism import real_cine_112
    from echokdm.pretrained import pretrained_path

    frames, fan, fps = real_cine_112()
    cine = Cine(frames=frames, fps=fps, clip_id="real_cine")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kp = clip_keypoints(cine, pretrained_path("seg_phantom_112"), fan_mask=fan)
    return kp[first_end_diastole(kp, fps)]


def score(pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> dict:
    from echokdm.generation.motion import transfer_motion

    out = {}
    for name, rule in (("length", length_only_transfer), ("transfer_motion", lambda s, q: transfer_motion(s, q, 0))):
        errors, crossings, frames = [], 0, 0
        for src, beat, ef in pairs:
            moved = rule(src, beat)
            errors.append(abs(ef_of(moved) - ef))
            c = crossed(moved)
            crossings += int(c.sum())
            frames += len(c)
        out[name] = {"ef_abs_error": round(float(np.mean(errors)), 2),
                     "ef_abs_error_max": round(float(np.max(errors)), 2),
                     "frames_crossed": round(crossings / frames, 3), "pairs": len(pairs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 phantom patients instead of 8")
    args = parser.parse_args()
    hearts = phantom_hearts(4 if args.quick else 8)
    phantom_pairs = [(a[0][0], b[0], b[1]) for i, a in enumerate(hearts) for j, b in enumerate(hearts) if i != j]
    real = real_source()
    real_pairs = [(real, b[0], b[1]) for b in hearts]
    figures = {"phantom_to_phantom": score(phantom_pairs), "phantom_to_real_cine": score(real_pairs)}
    save("transfer_motion", figures)
    print(f"{'':28s} {'rule':16s} {'|EF error|':>10s} {'max':>6s} {'frames crossed':>15s}")
    for setting, rows in figures.items():
        for rule, f in rows.items():
            print(f"{setting:28s} {rule:16s} {f['ef_abs_error']:10.2f} {f['ef_abs_error_max']:6.2f} "
                  f"{100 * f['frames_crossed']:14.1f}%")


if __name__ == "__main__":
    main()
