"""The long-axis limit on a real clip: pydicom's real cine segmented by ``seg_phantom_112``.

On real diastolic frames the phantom-trained segmentation runs on through the open mitral valve
into the atrium with no neck to cut at. This segments pydicom's real cardiac cine as ``echokdm ef
--segmentation seg_phantom_112`` does (inside its fan, apex side from the sector), measures the
40 keypoints with and without the clip-level long-axis limit of
:func:`echokdm.geometry.temporal.sequence_keypoints` (``max_length_ratio``), and prints and saves
the long axis per frame, the frames flagged, the volume curve and the EF of each (``echokdm ef``
measures the network's masks with the limit), and those of the masks repaired as ``echokdm segment``
writes them measured again (a second pass, which no command makes), with a figure of
the keypoint outlines on the frames (``benchmarks/results/open_valve_real.png``; the README's
``docs/images/open_valve_leak.png``). There is no tracing of this cine: the figure is for the eye.

    python benchmarks/open_valve_real.py [--quick] [--figure PATH]

``--quick`` is the same run (it takes seconds).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

SHOWN = (0, 6, 8, 10, 12, 18)


def _measure(masks: np.ndarray, direction, spacing_mm, fps: float, ratio) -> dict:
    """Keypoints, volumes, EF, long axis and open-valve frames of ``masks`` with the limit ``ratio`` (None: off)."""
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.geometry.volumes import cardiac_cycle, long_axis_from_keypoints, simpson_volume

    seq = sequence_keypoints(masks, apex_direction=direction, max_length_ratio=ratio)
    volumes = simpson_volume(seq.keypoints, spacing_mm)
    cycle = cardiac_cycle(volumes, fps)
    length = [float(long_axis_from_keypoints(k.astype(np.float64))[2]) for k in seq.keypoints]
    return {"keypoints": seq.keypoints, "volumes": volumes, "ef": float(cycle.ef_mean),
            "ed": [int(t) for t in cycle.ed_frames], "es": [int(t) for t in cycle.es_frames],
            "long_axis_px": length,
            "flagged": [t for t, f in enumerate(seq.flags) if "open mitral valve" in f]}


def _figure(frames: np.ndarray, fan: np.ndarray, runs: dict, fps: float, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = np.flatnonzero(fan.any(1)), np.flatnonzero(fan.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    fig = Figure(figsize=(2.1 * len(SHOWN), 4.6))
    FigureCanvasAgg(fig)
    colours = {"without the limit": "#e8443a", "with the limit": "#3ad14a",
               "the repaired masks measured again": "#3a7be8"}
    for k, t in enumerate(SHOWN):
        ax = fig.add_subplot(2, len(SHOWN), k + 1)
        ax.imshow(frames[t, r0:r1, c0:c1], cmap="gray", vmin=0, vmax=float(np.percentile(frames[t], 99.8)))
        for name, run in list(runs.items())[:2]:
            kp = run["keypoints"][t]
            if np.isfinite(kp).all():
                closed = np.concatenate([kp, kp[:1]])
                ax.plot(closed[:, 0] - c0, closed[:, 1] - r0, color=colours[name], linewidth=0.9)
        ax.set_title(f"frame {t}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(2, 1, 2)
    time = np.arange(len(frames)) / fps
    for name, run in runs.items():
        ax.plot(time, run["volumes"], "o-", markersize=3, color=colours[name],
                label=f"{name}: EF {run['ef']:.1f} % (ED {run['ed']}, ES {run['es']})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("LV volume (mL)")
    ax.legend(fontsize=7)
    fig.suptitle("pydicom's real cine, seg_phantom_112: keypoints without (red) and with (green) the long-axis limit",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    import pydicom.examples

    from echokdm.echo.segmentation import LVSegmentationNet
    from echokdm.generation.loop import segment_clip, segment_frames
    from echokdm.geometry.temporal import MAX_LENGTH_RATIO
    from echokdm.io.dispatch import read_cine
    from echokdm.io.fan import apex_direction_with_fan, fan_mask_or_none
    from echokdm.pretrained import pretrained_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same run (it takes seconds)")
    parser.add_argument("--figure", help="where to save the figure (default: benchmarks/results/open_valve_real.png)")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_cine(pydicom.examples.get_path("ybr_color"), "dicom")
    frames = np.asarray(cine.frames, np.float32)
    fan = fan_mask_or_none(cine)
    model = LVSegmentationNet.from_pretrained(pretrained_path("seg_phantom_112")).eval()
    masks = segment_frames(model, frames, fan)
    direction = apex_direction_with_fan(fan, "auto")
    spacing = getattr(cine, "spacing_mm", None)
    runs = {name: _measure(masks, direction, spacing, cine.fps, ratio)
            for name, ratio in (("without the limit", None), ("with the limit", MAX_LENGTH_RATIO))}
    # what echokdm segment writes (leaks cut at the annulus line), measured again: a second pass, which echokdm
    # ef does not make (it measures the network's masks, kept beside the repaired ones)
    repaired = segment_clip(model, frames, fan)[0]
    runs["the repaired masks measured again"] = _measure(repaired, direction, spacing, cine.fps, MAX_LENGTH_RATIO)
    figures = {"frames": len(frames), "fps": round(float(cine.fps), 2), "apex_direction": str(direction),
               "max_length_ratio": MAX_LENGTH_RATIO}
    for name, run in runs.items():
        key = {"with the limit": "limit", "without the limit": "no_limit"}.get(name, "repaired_masks")
        figures[f"{key}_ef"] = round(run["ef"], 2)
        figures[f"{key}_ed_frames"] = run["ed"]
        figures[f"{key}_es_frames"] = run["es"]
        figures[f"{key}_flagged_frames"] = run["flagged"]
        figures[f"{key}_long_axis_px"] = [round(x, 1) for x in run["long_axis_px"]]
        figures[f"{key}_volumes_ml"] = [round(float(v), 2) for v in run["volumes"]]
    path = Path(args.figure) if args.figure else RESULTS / "open_valve_real.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    _figure(frames, fan, runs, float(cine.fps), path)
    figures["figure"] = str(path)
    save("open_valve_real", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
