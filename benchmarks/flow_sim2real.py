"""Optical flow from the phantom to real echo: OF-net models on held-out phantom patients of both
styles (exact flow known) and on pydicom's real apical four-chamber cine (no flow known).

Held-out phantom patients are drawn with seed 7 (the packaged models are trained on seed-0
cohorts); pairs are frame gaps 1, 2, 4 and 8 at random times plus ED→ES and ES→ED. Scores: the
end-point error (EPE, px) against the exact flow inside the sector, and the MSE / SSIM of
``warp(source, flow)`` against the target inside the sector.

On the real cine only the warp can be scored: every pair at gaps 1, 2 and 4, warp MSE / SSIM
inside the sector, and the forward-backward inconsistency (px): ``|f_ab(x) + f_ba(x + f_ab(x))|``
(0 for a consistent field; large where the flow is noise). Every part also gives the mean flow
magnitude ``|flow|`` in the sector (px): a net that barely moves has a small one. Zero flow and
TV-L1 are in the same table as baselines, and on the phantom the exact flow itself (its warp
error is what decorrelating speckle, moving valves and noise leave). A second table splits the
phantom EPE by region: the moving heart outside the LV blood pool ("tissue"), the LV pool of the
target frame ("blood"), and the rest of the sector, where the exact flow is zero ("still"). A good flow lowers the warp
error below zero flow's on real frames; a flow that learnt phantom speckle moves real tissue
wrongly and may not.

    python benchmarks/flow_sim2real.py [--quick] [--model NAME=FOLDER ...]

Without ``--model`` it scores the packaged ``ofnet_phantom_112`` (trained on the realistic phantom)
and ``ofnet_phantom_classic_112`` (the earlier one, trained on the classic phantom), when packaged.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_named, save

HELD_OUT_SEED = 7
PHANTOM_GAPS = (1, 2, 4, 8)
REAL_GAPS = (1, 2, 4)


def _models(specs: list[str]) -> dict[str, object]:
    from echokdm.models.ofnet import OFNet
    from echokdm.pretrained import available, pretrained_path

    if not specs:  # the packaged nets
        specs = [f"{name}={pretrained_path(checkpoint)}" for name, checkpoint in
                 (("packaged", "ofnet_phantom_112"), ("packaged classic", "ofnet_phantom_classic_112"))
                 if checkpoint in available()]
    return load_named(specs, "", lambda folder: OFNet.from_pretrained(folder).eval(), "--model")


def _phantom_pairs(style: str, n_patients: int, per_gap: int) -> dict[str, np.ndarray]:
    from echokdm.data.phantom import sample_patient, simulate_clip

    rng = np.random.default_rng(HELD_OUT_SEED)
    rows: dict[str, list] = {"source": [], "target": [], "flow": [], "fan": [], "blood": [], "still": []}
    for i in range(n_patients):
        clip = simulate_clip(sample_patient(rng, i, style=style), n_beats=1.0, fps=50.0, size=112,
                             seed=HELD_OUT_SEED + i)
        pairs = []
        for gap in PHANTOM_GAPS:
            for t in rng.choice(clip.n_frames - gap, size=min(per_gap, clip.n_frames - gap), replace=False):
                pairs.append((int(t), int(t) + gap) if rng.random() < 0.5 else (int(t) + gap, int(t)))
        ed, es = int(clip.ed_frames[0]), int(clip.es_frames[0])
        grid = clip.geometry.pixel_centres_mm()  # (H, W, 2) mm
        for a, b in [*pairs, (ed, es), (es, ed)]:
            flow = clip.flow(a, b)
            rows["source"].append(clip.frames[a])
            rows["target"].append(clip.frames[b])
            rows["flow"].append(flow)
            rows["fan"].append(clip.fan_mask)
            rows["blood"].append(clip.motion.cavity(grid, b) & clip.fan_mask)  # the LV blood pool (target)
            rows["still"].append(~np.any(flow != 0, axis=0) & clip.fan_mask)  # outside the moving heart
    return {k: np.stack(v) for k, v in rows.items()}


def _real_pairs() -> tuple[dict[str, np.ndarray], np.ndarray]:
    from echokdm.metrics.realism import real_cine_112

    frames, fan, _ = real_cine_112()
    src, tgt = [], []
    for gap in REAL_GAPS:
        for t in range(len(frames) - gap):
            src.append(frames[t])
            tgt.append(frames[t + gap])
    n = len(src)
    return {"source": np.stack(src), "target": np.stack(tgt), "fan": np.repeat(fan[None], n, axis=0)}, fan


def _flows(models: dict, source: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    from echokdm.baselines import tvl1_flow

    flows = {"zero flow": np.zeros((len(source), 2, *source.shape[1:]), np.float32),
             "TV-L1": tvl1_flow(source, target)}
    for name, model in models.items():
        flows[f"OF-net {name}"] = model.predict(torch.from_numpy(source), torch.from_numpy(target),
                                                batch_size=32).numpy()
    return flows


def _fb_inconsistency(forward: np.ndarray, backward: np.ndarray, fan: np.ndarray) -> float:
    """Mean ``|f_ab(x) + f_ba(x + f_ab(x))|`` inside ``fan`` (px), with the flows as (N, 2, H, W).

    ``f_ab`` lives on b's grid and points into a: x on b's grid maps to ``x + f_ab(x)`` on a's
    grid, where ``f_ba`` (on a's grid, pointing into b) should bring it back.
    """
    import torch

    from echokdm.geometry.flow import warp

    back_at = warp(torch.from_numpy(backward), torch.from_numpy(forward)).numpy()  # f_ba sampled at x + f_ab(x)
    err = np.linalg.norm(forward + back_at, axis=1)
    return float(np.mean([e[m].mean() for e, m in zip(err, fan, strict=True)]))


def _scores(data: dict, flows: dict, with_truth: bool) -> dict[str, dict[str, float]]:
    from echokdm.metrics.flow import endpoint_error, warped_mse, warped_ssim

    out = {}
    if with_truth:
        flows = {**flows, "exact flow": data["flow"]}
    for name, flow in flows.items():
        row = {"warp_mse": float(f"{np.mean(warped_mse(data['source'], data['target'], flow, data['fan'])):.4g}"),
               "warp_ssim": round(float(np.mean(warped_ssim(data["source"], data["target"], flow, data["fan"]))), 4)}
        if with_truth:
            row["epe_px"] = round(float(np.mean(endpoint_error(flow, data["flow"], data["fan"]))), 4)
            tissue = data["fan"] & ~data["blood"] & ~data["still"]  # the moving heart outside the LV pool
            for region, mask in (("tissue", tissue), ("blood", data["blood"]), ("still", data["still"])):
                keep = mask.any(axis=(1, 2))
                row[f"epe_{region}_px"] = round(float(np.mean(endpoint_error(flow[keep], data["flow"][keep],
                                                                              mask[keep]))), 4)
        magnitude = np.linalg.norm(flow, axis=1)  # (N, H, W)
        inside = [m[f].mean() for m, f in zip(magnitude, data["fan"], strict=True)]
        row["mean_flow_px"] = round(float(np.mean(inside)), 4)
        out[name] = row
    return out


def _real_consistency(models: dict, data: dict, scores: dict) -> None:
    """Forward-backward inconsistency of every method on the real cine's pairs."""
    import torch

    from echokdm.baselines import tvl1_flow

    src, tgt, fan = data["source"], data["target"], data["fan"]
    pairs = {"zero flow": lambda a, b: np.zeros((len(a), 2, *a.shape[1:]), np.float32), "TV-L1": tvl1_flow}
    for name, model in models.items():
        pairs[f"OF-net {name}"] = (lambda m: lambda a, b: m.predict(torch.from_numpy(a), torch.from_numpy(b),
                                                                      batch_size=32).numpy())(model)
    for name, fn in pairs.items():
        scores[name]["fb_inconsistency_px"] = round(_fb_inconsistency(fn(src, tgt), fn(tgt, src), fan), 4)


def _table(results: dict) -> str:
    lines = ["| method | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    methods = list(next(iter(results.values())))
    for method in methods:
        cells = []
        for part in results.values():
            if method not in part:  # the exact flow: phantom only
                cells.append("–")
                continue
            row = part[method]
            cells.append(" / ".join(f"{row[k]:.4g}" for k in ("epe_px", "warp_mse", "warp_ssim", "fb_inconsistency_px",
                                                              "mean_flow_px") if k in row))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _region_table(results: dict) -> str:
    """EPE by region on the phantoms: the moving heart outside the LV pool, the LV pool, the still sector."""
    parts = {name.split(":")[0]: part for name, part in results.items() if "phantom" in name}
    lines = ["| method | " + " | ".join(f"{name}: EPE tissue / blood / still" for name in parts) + " |",
             "|---|" + "---|" * len(parts)]
    for method in next(iter(parts.values())):
        cells = [" / ".join(f"{part[method][f'epe_{r}_px']:.3g}" for r in ("tissue", "blood", "still"))
                 for part in parts.values()]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 patients a style, fewer pairs (CI)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER",
                        help="an OF-net folder to score (repeat); default: the packaged ofnet_phantom_112 "
                             "and ofnet_phantom_classic_112")
    args = parser.parse_args(argv)
    import torch

    torch.manual_seed(0)
    start = time.perf_counter()
    models = _models(args.model)
    n_patients, per_gap = (2, 2) if args.quick else (8, 4)
    results: dict[str, dict] = {}
    for style in ("classic", "realistic"):
        data = _phantom_pairs(style, n_patients, per_gap)
        flows = _flows(models, data["source"], data["target"])
        results[f"{style} phantom: EPE / warp MSE / warp SSIM / mean flow"] = _scores(data, flows, True)
    data, _ = _real_pairs()
    real = _scores(data, _flows(models, data["source"], data["target"]), False)
    _real_consistency(models, data, real)
    results["real cine: warp MSE / warp SSIM / FB inconsistency / mean flow"] = real
    table, regions = _table(results), _region_table(results)
    print(table, regions, sep="\n\n")
    figures = {"held_out_seed": HELD_OUT_SEED, "patients_per_style": n_patients, "results": results,
               "table_md": table, "regions_md": regions, "benchmark_seconds": round(time.perf_counter() - start, 1)}
    save("flow_sim2real" + ("_quick" if args.quick else ""), figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
