"""KDM on held-out phantom patients at 112×112: the paper's Table 3 layout, and generation speed.

The KDM evaluated is trained with the documented commands (configs/echo/kdm_112.yaml)::

    echokdm phantom --patients 24 --out /tmp/kdm_phantom --format nifti --seed 0
    echokdm train kdm --config configs/echo/kdm_112.yaml --manifest /tmp/kdm_phantom/manifest.csv \\
        --out runs/kdm_112
    python benchmarks/kdm_phantom.py --run runs/kdm_112 --training-manifest /tmp/kdm_phantom/manifest.csv [--quick]

Without ``--run`` the packaged classic-phantom pipeline (``echokdm/checkpoints/kdm_phantom_classic_112``, the
paper-style KDM trained on the classic phantom this benchmark draws) is used, with ``seg_phantom_classic_112``.

Test patients are a fresh phantom cohort (seed 1000, never seen in training). For each patient the
source is the ED frame of the first beat and the targets are up to 8 frames of that beat (ES
included); every method predicts each target from the source and the target keypoints, one sample
per case with a fixed seed (:func:`echokdm.evaluation.evaluate`). Reported, per method, mean over
patients with patient-level bootstrap 95 % intervals: MSE, LPIPS-Alex, LPIPS-VGG (the paper's
Table 3), SSIM, flow EPE against the exact flow over the frame and inside the LV, flow MAE / RMSE
(the paper's Table 5 for K2F), keypoint MD and EF error of the generated beat (keypoints
re-detected by the packaged segmentation model), temporal warping error; plus the autoencoder's
reconstruction PSNR / SSIM / LPIPS on the held-out frames, the round-trip EPE of the flow
representation (why flows are diffused at the latent resolution instead of through an
autoencoder), and seconds per generated frame on this machine for the per-frame and the γ loop
modes.

The paper's EchoNet-Dynamic figures are quoted beside ours; the phantom is far simpler than real
echo (one speckle pattern that moves, no valves or artefacts), so equal numbers are not expected.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

PACKAGED = Path(__file__).resolve().parent.parent / "echokdm" / "checkpoints" / "kdm_phantom_classic_112"
PACKAGED_NOFLOW = PACKAGED.with_name("kdm_phantom_classic_112_noflow")
PAPER = {"paper_kdm_mse": 0.0124, "paper_kdm_lpips_alex": 0.1739, "paper_kdm_lpips_vgg": 0.2645,
         "paper_k2f_flow_mae": 2.231, "paper_k2f_flow_rmse": 3.471}


def _pipelines(run: Path | None) -> tuple[Path, Path | None, Path | None]:
    """(pipeline, pipeline_noflow, autoencoder folder) of a run folder or of the packaged demo."""
    if run is not None:
        pipe = run / "pipeline"
        if not pipe.is_dir():
            raise SystemExit(f"{pipe}: no pipeline folder; train first (see this script's docstring)")
        noflow = run / "pipeline_noflow"
        return pipe, noflow if noflow.is_dir() else None, pipe / "vae"
    if not PACKAGED.is_dir():
        raise SystemExit(f"no --run given and no packaged pipeline in {PACKAGED}")
    return PACKAGED, PACKAGED_NOFLOW if PACKAGED_NOFLOW.is_dir() else None, PACKAGED / "vae"


def _autoencoder_figures(vae_folder: Path, frames: np.ndarray, backbone: str | None) -> dict:
    """Reconstruction PSNR / SSIM / LPIPS of held-out frames through the autoencoder."""
    import torch
    from diffusers import AutoencoderKL

    from echokdm.metrics.image import psnr, ssim
    from echokdm.metrics.lpips import lpips_metrics

    lpips = lpips_metrics(("alex",), backbone)[0].get("alex")  # None offline without a local backbone (noted)
    vae = AutoencoderKL.from_pretrained(vae_folder).eval()
    with torch.inference_mode():
        x = torch.from_numpy(frames)[:, None] * 2 - 1
        recon = np.concatenate([((vae(x[i:i + 32]).sample + 1) / 2).clamp(0, 1)[:, 0].numpy()
                                for i in range(0, len(x), 32)])
    return {"ae_psnr_db": round(float(np.mean(psnr(recon, frames))), 2),
            "ae_ssim": round(float(np.mean(ssim(recon, frames))), 4),
            "ae_lpips_alex": round(float(np.mean(lpips(recon, frames))), 4) if lpips is not None else None,
            "ae_frames": len(frames)}


def _flow_representation(flows: np.ndarray) -> dict:
    """Round-trip EPE of downsampling flows by 4 and back (the K2F flow representation)."""
    import torch

    from echokdm.models.kdm import flow_round_trip_epe

    epe = flow_round_trip_epe(torch.from_numpy(flows)).numpy()
    return {"flow_repr_round_trip_epe_px": round(float(epe.mean()), 4),
            "flow_mean_magnitude_px": round(float(np.linalg.norm(flows, axis=1).mean()), 4)}


def _speed(pipe_folder: Path, case, steps: int, k: int, device: str = "cpu") -> dict:
    """Seconds per generated frame, per-frame and γ modes, on one case (one batch)."""
    import torch

    from echokdm.pipelines.kdm import KDMPipeline

    pipe = KDMPipeline.from_pretrained(pipe_folder).to(device)
    src, kp = case.frames[case.source], case.keypoints[case.source]
    targets = case.keypoints[case.targets]
    figures = {}
    for mode in ("per_frame", "gamma"):
        start = time.perf_counter()
        pipe(src, kp, targets, mode=mode, k=k, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
             batch_size=len(targets), progress=False)
        figures[f"seconds_per_frame_{mode}"] = round((time.perf_counter() - start) / len(targets), 3)
    figures["speed_frames_per_batch"] = len(targets)
    figures["torch_threads"] = torch.get_num_threads()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="run folder of echokdm train kdm")
    parser.add_argument("--patients", type=int, default=12, help="held-out phantom patients (default 12)")
    parser.add_argument("--steps", type=int, default=200, help="DDIM steps (default 200, the paper's)")
    parser.add_argument("--k", type=int, default=100, help="F2I start step (default 100 of 200)")
    parser.add_argument("--lpips-backbone", default=None, help="local LPIPS backbone folder (offline)")
    parser.add_argument("--training-manifest", default=None,
                        help="the training cohort's manifest: adds the memorisation check against its train split")
    parser.add_argument("--out", type=Path, default=None, help="evaluation folder (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="2 patients, 3 targets, 20 steps (CI smoke run)")
    parser.add_argument("--fit-keypoints", action="store_true",
                        help="fit K2F's flows to the target keypoints (default: the paper's KDM)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the models run (default cpu)")
    args = parser.parse_args()

    from echokdm.data.phantom.export import write_cohort
    from echokdm.evaluation import EvaluateConfig, evaluate
    from echokdm.evaluation.runner import table3_sampling

    pipe, noflow, vae = _pipelines(args.run)
    n_patients, max_targets, steps, k = (2, 3, 20, 10) if args.quick else (args.patients, 8, args.steps, args.k)
    backbone = args.lpips_backbone
    if backbone is None:
        shared = Path(__file__).resolve().parents[2] / "shared" / "weights" / "lpips"
        backbone = str(shared) if (shared / "alexnet_features.pth").exists() else None
    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "heldout"
        write_cohort(cohort, n_patients=n_patients, format="nifti", seed=1000, progress=False)
        out = args.out or Path(tmp) / "evaluation"
        seg = PACKAGED.with_name("seg_phantom_classic_112")
        sampling = table3_sampling().replace(num_inference_steps=steps, k=k, fit_keypoints=args.fit_keypoints)
        config = EvaluateConfig(split="all", max_targets=max_targets, sampling=sampling, lpips_backbone=backbone,
                                segmentation=str(seg) if seg.is_dir() else None,
                                memorisation=args.training_manifest is not None,
                                training_manifest=args.training_manifest, n_boot=2000, device=args.device)
        started = time.perf_counter()
        result = evaluate(cohort / "manifest.csv", pipe, pipeline_noflow=noflow, out=out, config=config,
                          progress=not args.quick, overwrite=True)
        seconds = time.perf_counter() - started
        from echokdm.data.manifest import load_manifest
        from echokdm.evaluation.cases import load_case

        manifest = load_manifest(cohort / "manifest.csv")
        cases = [load_case(row, cohort / "manifest.csv", 112, max_targets=max_targets)
                 for _, row in manifest.iterrows()]
        frames = np.concatenate([c.frames[c.targets] for c in cases])
        flows = np.concatenate([c.reference_flows for c in cases])
        figures = {"pipeline": str(pipe), "patients": n_patients, "frames_per_method": len(frames),
                   "ddim_steps": steps, "k": k, "fit_keypoints": args.fit_keypoints,
                   "evaluation_seconds": round(seconds, 1)}
        summary = result.summary.set_index("method")
        for method in summary.index:
            for metric in ("mse", "lpips_alex", "lpips_vgg", "ssim", "epe", "epe_lv", "flow_mae", "flow_rmse", "kp_md",
                           "ef_error", "temporal_error"):
                if metric in summary and np.isfinite(summary.loc[method, metric]):
                    figures[f"{method}_{metric}"] = round(float(summary.loc[method, metric]), 4)
                    figures[f"{method}_{metric}_ci95"] = [round(float(summary.loc[method, f"{metric}_{b}"]), 4)
                                                          for b in ("low", "high")]
        figures.update(PAPER)
        figures.update(_autoencoder_figures(vae, frames, backbone))
        figures.update(_flow_representation(flows))
        figures.update(_speed(pipe, cases[0], steps, k, args.device))
        if len(result.memorisation):
            memo = result.memorisation.iloc[0]
            figures["memorisation_fraction_closer"] = round(float(memo["fraction_closer"]), 4)
            figures["memorisation_expected_fraction"] = float(memo["expected_fraction"])
        if "kdm" in summary.index and "lpips_alex" in summary and np.isfinite(summary.loc["kdm", "lpips_alex"]):
            for other in ("tps", "wo_f2i", "wo_k2f"):  # (offline without a local backbone LPIPS is left out)
                if other in summary.index:
                    figures[f"kdm_beats_{other}_on_lpips_alex"] = bool(summary.loc["kdm", "lpips_alex"]
                                                                      < summary.loc[other, "lpips_alex"])
        name = ("kdm_phantom_quick" if args.quick else "kdm_phantom") + ("_fit" if args.fit_keypoints else "")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}_table3.md").write_text(
            f"Held-out phantom patients: {n_patients}, {len(frames)} frames per method, {steps} DDIM steps, k = {k}; "
            "mean over patients [patient-level bootstrap 95 % interval].\n\n" + result.table3
            + "\nPaper (EchoNet-Dynamic, Table 3): KDM MSE 0.0124, LPIPS-Alex 0.1739, LPIPS-VGG 0.2645.\n")
        print(result.table3)
        save(name, figures)


if __name__ == "__main__":
    main()
