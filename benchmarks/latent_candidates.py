r"""Which latent space keeps echo texture? Reconstruction of candidate autoencoders (issue 20, item 1).

KDM's F2I diffuses in the latent space of an ``AutoencoderKL``; whatever that space cannot hold, F2I
cannot paint. Candidates, each trained exactly as the packaged one was (the autoencoder section of
``configs/echo/kdm_112_realistic.yaml``: L1 + 0.1 LPIPS-Alex + KL, 800 steps, batch 8, the scanner
look drawn per frame, on 32 realistic-phantom patients of seed 0), only the model changing:

* ``f4 c4``: the packaged ``kdm_phantom_112`` autoencoder, 112 → 28 × 28 × 4 (used as packaged);
* ``f4 c8``: twice the latent channels, 28 × 28 × 8;
* ``f2 c4``: one downsampling less, 56 × 56 × 4 (K2F and F2I would diffuse 4× the positions);
* the detail path (generation's default): each frame is the warp plus what F2I changed,
  ``warp + D(z) − D(z₀)``, so an unedited frame is reconstructed exactly whatever the autoencoder.

Each is scored on frames it never saw: 8 held-out realistic-phantom patients (seed 7, every
frame of one beat) and pydicom's real apical four-chamber cine (30 frames, cropped to the fan and
resized to 112 × 112 as EchoNet-Dynamic stores clips): PSNR, SSIM and LPIPS-Alex inside the fan
(LPIPS on the whole frame), and the encode + decode time per frame.

    python benchmarks/latent_candidates.py --lpips-backbone DIR     # about 30 min on 2 cores
    python benchmarks/latent_candidates.py --quick                  # 4 patients, 30 steps: a smoke run (CI)
    python benchmarks/latent_candidates.py --lpips-backbone DIR --f2i   # + F2I on the 28x28x8 latent: 10 more min

``--f2i`` then trains F2I on the ``f4 c8`` autoencoder (the F2I section of the same config, 1500
steps; the packaged K2F reused: K2F diffuses the flow, not the image latent) and assembles a pipeline
in ``f4_c8/pipeline``; ``benchmarks/f2i.py --pipeline`` scores it (the README's commands).

The training cohort and the candidates' runs are kept in ``benchmarks/results/latent_candidates[_quick]/``
(a rerun reuses finished runs). Writes ``benchmarks/results/latent_candidates[_quick].json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, alex_lpips, save

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "echo" / "kdm_112_realistic.yaml"
CANDIDATES = {  # name: autoencoder.model overrides (None: the packaged autoencoder as it is)
    "f4 c4 (packaged)": None,
    "f4 c8": {"latent_channels": 8},
    "f2 c4": {"block_out_channels": [32, 64]},
}


def _train(name: str, model: dict, cohort: Path, work: Path, steps: int, backbone: str | None) -> Path:
    """Train one candidate (reused when its run finished) and return its ``best/`` folder."""
    from echokdm.training.kdm import load_kdm_config, train_kdm

    out = work / name.replace(" ", "_")
    best = out / "autoencoder" / "best"
    if best.exists():
        return best
    changes = _autoencoder_changes(model, backbone)
    changes["autoencoder"]["train"] = {"steps": steps, "val_every": max(steps // 4, 1),
                                       "checkpoint_every": max(steps // 4, 1)}
    config = load_kdm_config(CONFIG, overrides=changes)
    start = time.perf_counter()
    train_kdm(config, cohort / "manifest.csv", out, stages=("autoencoder",), progress=True)
    print(f"  {name}: trained in {time.perf_counter() - start:.0f} s", flush=True)
    return best


def _train_f2i(candidate: Path, cohort: Path, model: dict, steps: int | None, backbone: str | None) -> Path:
    """F2I trained on a candidate's autoencoder, with the packaged K2F; returns the pipeline folder."""
    import shutil

    from echokdm.pretrained import pretrained_path
    from echokdm.training.kdm import load_kdm_config, train_kdm

    out = candidate.parents[1]  # <work>/<candidate>/autoencoder/best -> <work>/<candidate>
    if (out / "pipeline").exists():
        return out / "pipeline"
    if not (out / "k2f" / "best").exists():
        shutil.copytree(Path(pretrained_path("kdm_phantom_112")) / "k2f", out / "k2f" / "best")
    changes = _autoencoder_changes(model, backbone)  # the F2I stage reads the latent's shape from it
    if steps is not None:
        changes["f2i"] = {"train": {"steps": steps, "val_every": steps, "checkpoint_every": steps}}
    start = time.perf_counter()
    train_kdm(load_kdm_config(CONFIG, overrides=changes), cohort / "manifest.csv", out, stages=("f2i",))
    print(f"  F2I on {out.name}: trained in {time.perf_counter() - start:.0f} s -> {out / 'pipeline'}", flush=True)
    return out / "pipeline"


def _autoencoder_changes(model: dict, backbone: str | None) -> dict:
    """Config overrides (merged into ``CONFIG``) of a candidate: its model, and the LPIPS loss term
    from ``backbone`` (left out without one)."""
    return {"autoencoder": {"model": dict(model), "loss": {"lpips_backbone": backbone} if backbone else {"lpips": 0.0}}}


def _frames(n_patients: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out frames: ``{set: (frames (N, 112, 112), fan (112, 112))}``."""
    from kdm_real import _phantom_cases

    from echokdm.metrics.realism import real_cine_112

    phantom = [(c["frames"], c["fan"]) for c in _phantom_cases(n_patients)]
    real, fan, _ = real_cine_112()
    return {"realistic phantom": (np.concatenate([f for f, _ in phantom]), phantom[0][1]),
            "real cine at 112": (real, fan)}


def _reconstruct(vae, frames: np.ndarray, batch: int = 16) -> tuple[np.ndarray, float]:
    """Encode (posterior mean) and decode every frame; the seconds per frame."""
    import torch

    out = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch], np.float32))[:, None] * 2 - 1
            z = vae.encode(x).latent_dist.mean
            out.append(((vae.decode(z).sample + 1) / 2).clamp(0, 1)[:, 0].numpy())
    return np.concatenate(out), (time.perf_counter() - start) / len(frames)


def _scores(recon: np.ndarray, frames: np.ndarray, fan: np.ndarray, lpips) -> dict[str, float]:
    from echokdm.metrics.image import psnr, ssim

    fans = np.broadcast_to(fan, frames.shape)
    out = {"psnr": float(np.mean(psnr(recon, frames, fans))), "ssim": float(np.mean(ssim(recon, frames, fans)))}
    if lpips is not None:
        out["lpips_alex"] = float(np.mean(lpips(np.ascontiguousarray(recon, np.float32),
                                                np.ascontiguousarray(frames, np.float32))))
    return out


def main(argv: list[str] | None = None) -> int:
    import torch
    from diffusers import AutoencoderKL

    from echokdm.data.phantom.export import write_cohort
    from echokdm.pretrained import pretrained_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 training and 2 held-out patients, 30 steps (CI)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per candidate (default 800)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--f2i", action="store_true",
                        help="also train F2I on the 28x28x8 candidate (with the packaged K2F) and assemble a pipeline")
    parser.add_argument("--lpips-backbone", default=os.environ.get("ECHOKDM_LPIPS_WEIGHTS"),
                        help="folder with the LPIPS backbone weights (the training loss and the score; without it "
                             "the candidates train without the LPIPS term and LPIPS is not reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = "latent_candidates_quick" if args.quick else "latent_candidates"
    work = RESULTS / name
    steps = args.steps or (30 if args.quick else 800)
    n_train, n_held = (4, 2) if args.quick else (32, 8)
    cohort = work / "cohort"
    if not (cohort / "manifest.csv").exists():
        write_cohort(cohort, n_train, "nifti", seed=0, style="realistic", progress=False)
    lpips = alex_lpips(args.lpips_backbone)
    held_out = _frames(n_held)
    figures: dict = {"training_steps": steps, "training_patients": n_train, "held_out_patients": n_held,
                     "held_out_frames": {k: len(v[0]) for k, v in held_out.items()}}
    print(f"\n{'candidate':<18} {'latent':<10} {'set':<18} {'PSNR':>6} {'SSIM':>6} {'LPIPS':>6} {'ms/frame':>8}")
    for candidate, model in CANDIDATES.items():
        if model is None:
            folder = Path(pretrained_path("kdm_phantom_112")) / "vae"
        else:
            folder = _train(candidate, model, cohort, work, steps, args.lpips_backbone)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae = AutoencoderKL.from_pretrained(folder).eval().float()
        down = 2 ** (len(vae.config.block_out_channels) - 1)
        latent = f"{112 // down}²×{vae.config.latent_channels}"
        for set_name, (frames, fan) in held_out.items():
            recon, seconds = _reconstruct(vae, frames)
            scores = _scores(recon, frames, fan, lpips)
            key = f"{candidate.split(' (')[0].replace(' ', '_')}__{set_name.replace(' ', '_')}"
            figures.update({f"{key}__{k}": round(v, 4) for k, v in scores.items()})
            figures[f"{key}__ms_per_frame"] = round(1000 * seconds, 2)
            print(f"{candidate:<18} {latent:<10} {set_name:<18} {scores['psnr']:6.2f} {scores['ssim']:6.3f} "
                  f"{scores.get('lpips_alex', float('nan')):6.3f} {1000 * seconds:8.1f}", flush=True)
    print("detail path (default)  any        every set           exact (an unedited frame is the warp itself)")
    if args.f2i:
        figures["f2i_pipeline"] = str(_train_f2i(work / "f4_c8" / "autoencoder" / "best", cohort,
                                                 CANDIDATES["f4 c8"], steps if args.quick else None,
                                                 args.lpips_backbone))
    save(name, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
