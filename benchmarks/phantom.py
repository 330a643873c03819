"""Phantom speed and ground-truth checks: frames per second of the simulator at 112×112 and
224×224 (image formation + masks + keypoints) for the classic and the realistic style (and their
ratio), time per exact flow, and how well the exact flow
explains the images (warp MSE against unwarped MSE inside the sector, noiseless and without
speckle decorrelation) and the keypoints (transport error). Also saves a figure of a few
frames with their keypoints to ``benchmarks/results/phantom_frames.png``.

    python benchmarks/phantom.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, best_time, save


def _speed(figures: dict, sizes: tuple[int, ...], n_frames: int, repeats: int) -> None:
    from echokdm.data.phantom import sample_patient, simulate_clip

    patient = sample_patient(0)
    realistic = sample_patient(0, style="realistic")
    for size in sizes:
        simulate_clip(patient, size=size, n_frames=2)  # build and cache the scanner once
        t = best_time(partial(simulate_clip, patient, size=size, n_frames=n_frames), repeats)
        figures[f"simulate_{size}_frames_per_s"] = round(n_frames / t, 1)
        simulate_clip(realistic, size=size, n_frames=2)
        t_real = best_time(partial(simulate_clip, realistic, size=size, n_frames=n_frames), repeats)
        figures[f"simulate_realistic_{size}_frames_per_s"] = round(n_frames / t_real, 1)
        figures[f"realistic_over_classic_time_{size}"] = round(t_real / t, 2)
        clip = simulate_clip(patient, size=size, n_frames=n_frames)
        t = best_time(partial(clip.flow, 0, n_frames // 2), repeats)
        figures[f"exact_flow_{size}_ms_per_flow"] = round(1000 * t, 1)


def _flow_checks(figures: dict, n_patients: int, size: int) -> None:
    """Warp and keypoint-transport errors of the exact flow over a few patients (ED->ES and t->t+1)."""
    from echokdm.data.phantom import sample_patient, simulate_clip
    from echokdm.geometry.flow import transport_keypoints, warp

    rows = {"ed_es": [], "consecutive": [], "decorrelated_ed_es": []}
    kp_err = []
    for index in range(n_patients):
        patient = sample_patient(2024, patient_index=index)
        clip = simulate_clip(patient, size=size, fps=50.0, noise=0.0, decorrelation=0.0)
        decorrelated = simulate_clip(patient, size=size, fps=50.0, noise=0.0, decorrelation=0.05)
        fan, ed, es = clip.fan_mask, int(clip.ed_frames[0]), int(clip.es_frames[0])
        mid = (ed + es) // 2
        for name, cine, (a, b) in [("ed_es", clip, (ed, es)), ("consecutive", clip, (mid, mid + 1)),
                                   ("decorrelated_ed_es", decorrelated, (ed, es))]:
            flow = clip.flow(a, b)
            warped = np.mean((warp(cine.frames[a], flow) - cine.frames[b])[fan] ** 2)
            unwarped = np.mean((cine.frames[a] - cine.frames[b])[fan] ** 2)
            rows[name].append((warped, unwarped))
            if cine is clip:
                kp_err.append(np.abs(transport_keypoints(clip.keypoints[b], flow) - clip.keypoints[a]).max())
    for name, values in rows.items():
        values = np.array(values)
        figures[f"warp_mse_{name}_{size}"] = float(f"{values[:, 0].mean():.3g}")
        figures[f"unwarped_mse_{name}_{size}"] = float(f"{values[:, 1].mean():.3g}")
        figures[f"warp_over_unwarped_{name}_{size}"] = round(float(np.mean(values[:, 0] / values[:, 1])), 3)
    figures[f"keypoint_transport_max_error_px_{size}"] = float(f"{max(kp_err):.2g}")
    figures["flow_check_patients"] = n_patients


def _figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from echokdm.data.phantom import sample_patient, simulate_clip

    patients = [sample_patient(2024, patient_index=i) for i in range(3)]
    fig, axes = plt.subplots(len(patients), 3, figsize=(9, 3.2 * len(patients)))
    for row, patient in zip(axes, patients, strict=True):
        clip = simulate_clip(patient, size=112)
        ed, es = int(clip.ed_frames[0]), int(clip.es_frames[0])
        for ax, (label, t) in zip(row, [("ED", ed), ("mid-systole", (ed + es) // 2), ("ES", es)], strict=True):
            ax.imshow(clip.frames[t], cmap="gray", vmin=0, vmax=1)
            ax.plot(clip.keypoints[t, :, 0], clip.keypoints[t, :, 1], ".", color="tab:red", ms=2.5)
            ax.set_title(f"{label} (frame {t}), EF {clip.ef:.0f}%, {clip.volumes_ml[t]:.0f} mL", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, patients and repeats (CI)")
    args = parser.parse_args()
    n_frames, repeats, n_patients = (24, 2, 2) if args.quick else (100, 5, 6)

    figures: dict[str, float | int | str] = {"frames_per_clip": n_frames}
    start = time.perf_counter()
    _speed(figures, (112, 224), n_frames, repeats)
    _flow_checks(figures, n_patients, 112)
    if not args.quick:
        _flow_checks(figures, n_patients, 224)
    figure = RESULTS / "phantom_frames.png"
    _figure(figure)
    figures["figure"] = str(figure)
    figures["benchmark_seconds"] = round(time.perf_counter() - start, 1)
    save("phantom" + ("_quick" if args.quick else ""), figures)


if __name__ == "__main__":
    main()
