"""Scale: the batch commands on 1 and 2 processes, the flow cache's options, and a predicted EchoNet-Dynamic run.

    python benchmarks/scale.py [--quick] [--clips 8] [--skip-224]

1. **Processes 1 → 2.** On a phantom cohort (NIfTI, 112×112), each batch command of the engine
   (:mod:`echokdm.distributed`) runs as ``python -m echokdm <command> ...`` in one process and with
   ``--workers 2`` (the same sharded code as ``accelerate launch --num_processes 2 -m echokdm``, whose
   launch the segment row also times); ``synthesize`` and ``evaluate`` (no ``--workers``) under
   ``accelerate launch --multi_gpu --num_processes 2`` (two CPU processes on a machine without CUDA).
   Wall times include starting the processes; the outputs are compared (byte for byte; flows value for
   value, atol 2e-3 px: float16 files; evaluate's scores, its measured seconds per frame left out).
2. **Per-item costs** from the one-process runs: segmentation and keypoint frames/s, OF-net pairs/s.
3. **The flow cache** (issue 23): for the OF-net flows of one clip, bytes per pair and read time per
   pair of (a) no cache — OF-net on the fly, timed per pair at 112² and 224² (the 112 model on
   upsampled frames: the same network, 4× the pixels); (b) the cache at K2F's latent resolution
   (area-pooled by 4, float16, the default); (c) compression of the full-resolution flows: float16 (the
   old default) and 8-bit quantised (per-pair scale); and (b)+(c). The error each costs K2F: max
   difference of K2F's flow code (``encode_flow``, px) from the float32 flows.
4. **One training step at 224²** (K2F and F2I of ``configs/echo/kdm_224_paper.yaml``, random weights,
   forward + backward, batch 2) on this CPU.
5. **Predicted EchoNet-Dynamic run** (10,030 clips, 175 frames, gaps 1 2 4 and the paper's 1 2 4 8 16):
   preprocessing hours (per process, and on N processes at the measured 2-process efficiency), flow
   cache disk per option at 112² and 224² (224²: 4× the pixels of the measured 112² bytes), the paper's
   training (K2F + F2I + the w/o-flow F2I, 200,000 steps of 32 each) per sample at the timed step cost
   with each flow option, and a 10,000-loop synthetic cohort from the 224² timed pieces of
   ``benchmarks/generation.py`` (``results/generation*.json``; synthesize's default sampling, 32 frames).

No GPU was available when these figures were made: every time is this CPU's (``--device`` is not
offered; on GPUs divide by the measured GPU speed-up, which is not measured here). Saved to
``benchmarks/results/scale.json`` (``scale_quick.json`` with ``--quick``: 2 clips, the flow cache and
the predictions only, no process runs and no 224² step).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, save

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "echokdm" / "checkpoints"
PAPER_CONFIG = ROOT / "configs" / "echo" / "kdm_224_paper.yaml"
ECHONET_CLIPS, ECHONET_FRAMES = 10_030, 175
GAPS = {"gaps_1_2_4": (1, 2, 4), "gaps_paper_1_2_4_8_16": (1, 2, 4, 8, 16)}
TRAIN_SAMPLES = 3 * 200_000 * 32  # K2F, F2I and the w/o-flow F2I: 200,000 steps of 32 pairs each


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")}


def _run(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=_env(), capture_output=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr.decode()[-3000:]}")
    return time.perf_counter() - started


def _echokdm(*argv: str) -> list[str]:
    return [sys.executable, "-m", "echokdm", *argv, "--no-progress"]


def _accelerate(*argv: str) -> list[str]:
    """Two processes under accelerate: ``--multi_gpu`` on this CUDA-less machine starts two CPU processes (gloo);
    ``--cpu`` would start one (accelerate's multi-CPU mode needs MPI)."""
    import socket

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return [accelerate, "launch", "--multi_gpu", "--main_process_port", str(port), "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "echokdm", *argv,
            "--no-progress"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _same(one: Path, two: Path, flows: bool = False) -> bool:
    a, b = _files(one), _files(two)
    if a.keys() != b.keys():
        return False
    for name in a:
        if flows and name.endswith(".npz"):
            with np.load(io.BytesIO(a[name])) as x, np.load(io.BytesIO(b[name])) as y:
                if not np.allclose(x["flows"].astype(np.float32), y["flows"].astype(np.float32), atol=2e-3):
                    return False
        elif flows and name.endswith("flows.csv"):
            import pandas as pd

            cols = ["clip_id", "file", "n_frames", "n_pairs", "status"]
            if not pd.read_csv(io.BytesIO(a[name]))[cols].equals(pd.read_csv(io.BytesIO(b[name]))[cols]):
                return False
        elif a[name] != b[name]:
            return False
    return True


def _processes(manifest: Path, work: Path, figures: dict) -> None:
    """Each batch command in 1 process and in 2 (--workers 2); segment also under accelerate launch."""
    commands = {
        "segment": lambda out: ("segment", str(manifest), "--checkpoint", "seg_phantom_112", "-o", str(out)),
        "keypoints": lambda out: ("keypoints", str(manifest), "-o", str(out / "kp.csv")),
        "ef": lambda out: ("ef", str(manifest), "-o", str(out)),
        "flow": lambda out: ("flow", str(manifest), "--checkpoint", "ofnet_phantom_112", "-o", str(out), "--gaps",
                             "1", "2", "4"),
    }
    for name, argv in commands.items():
        one, two = work / f"{name}_1", work / f"{name}_2"
        t1 = _run(_echokdm(*argv(one)))
        t2 = _run(_echokdm(*argv(two), "--workers", "2"))
        figures[f"{name}_seconds_1_process"] = round(t1, 2)
        figures[f"{name}_seconds_2_processes"] = round(t2, 2)
        figures[f"{name}_speedup_2_processes"] = round(t1 / t2, 2)
        if name == "ef":  # the plots' PNG files carry no data of their own
            figures[f"{name}_outputs_identical"] = all(
                (one / f).read_bytes() == (two / f).read_bytes() for f in ("ef_per_clip.csv", "ef_summary.csv"))
        else:
            figures[f"{name}_outputs_identical"] = _same(one, two, flows=name == "flow")
        if name == "segment":
            three = work / "segment_accelerate"
            t3 = _run(_accelerate(*argv(three)))
            figures["segment_seconds_accelerate_launch_2_processes"] = round(t3, 2)
            figures["segment_speedup_accelerate_launch_2"] = round(t1 / t3, 2)
            figures["segment_accelerate_outputs_identical"] = _same(one, three)
    # synthesize and evaluate have no --workers: two processes under accelerate launch
    lpips = Path("/work/shared/weights/lpips")
    if "ECHOKDM_LPIPS_WEIGHTS" not in os.environ and lpips.is_dir():
        os.environ["ECHOKDM_LPIPS_WEIGHTS"] = str(lpips)
    n_loops = figures["clips"]
    launched = {
        "synthesize": lambda out: ("synthesize", str(manifest), "-o", str(out), "--n", str(n_loops), "--split", "all",
                                   "--steps", "10", "--k", "5"),
        "evaluate": lambda out: ("evaluate", str(manifest), "-o", str(out), "--pipeline", "kdm_phantom_112", "--split",
                                 "all", "--max-targets", "4", "--lpips-nets", "alex", "--steps", "10", "--k", "5",
                                 "--no-memorisation"),
    }
    for name, argv in launched.items():
        one, two = work / f"{name}_1", work / f"{name}_2"
        t1 = _run(_echokdm(*argv(one)))
        t2 = _run(_accelerate(*argv(two)))
        figures[f"{name}_seconds_1_process"] = round(t1, 2)
        figures[f"{name}_seconds_2_processes"] = round(t2, 2)
        figures[f"{name}_speedup_2_processes"] = round(t1 / t2, 2)
        if name == "synthesize":
            figures[f"{name}_outputs_identical"] = _same(one, two)
        else:  # every score; the wall-time column seconds_per_frame is a measurement, not an output
            import pandas as pd

            same = all((one / f).read_bytes() == (two / f).read_bytes() for f in ("per_frame.csv", "per_patient.csv"))
            for f in ("per_clip.csv", "summary.csv"):
                a, b = pd.read_csv(one / f), pd.read_csv(two / f)
                timing = [c for c in a.columns if c.startswith("seconds_per_frame")]
                same = same and a.drop(columns=timing).equals(b.drop(columns=timing))
            figures[f"{name}_scores_identical"] = same
    figures["synthesize_seconds_per_loop_112_1_process"] = round(figures["synthesize_seconds_1_process"] / n_loops, 2)
    import pandas as pd

    seg = pd.read_csv(work / "segment_1" / "segmentation.csv")
    frames = int(seg["n_frames"].sum())
    pairs = int(pd.read_csv(work / "flow_1" / "flows.csv")["n_pairs"].sum())
    figures["segment_frames_per_s_1_process"] = round(frames / figures["segment_seconds_1_process"], 1)
    figures["keypoints_frames_per_s_1_process"] = round(frames / figures["keypoints_seconds_1_process"], 1)
    figures["flow_pairs_per_s_1_process"] = round(pairs / figures["flow_seconds_1_process"], 1)
    figures["per_item_note"] = "wall time of the whole command (start-up included) over its frames or pairs"


def _quantise(flows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.abs(flows).reshape(len(flows), -1).max(axis=1).clip(min=1e-6) / 127.0
    return np.round(flows / scale[:, None, None, None]).astype(np.int8), scale.astype(np.float32)


def _npz_bytes(**arrays) -> tuple[bytes, float]:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue(), 0.0


def _flow_cache(manifest: Path, figures: dict) -> None:
    """Bytes and read time per pair of each cache option; OF-net per pair on the fly; K2F code error."""
    import torch

    from echokdm.data.manifest import load_manifest, read_clip
    from echokdm.geometry.resize import resize_images
    from echokdm.models.kdm import encode_flow
    from echokdm.models.ofnet import OFNet
    from echokdm.training.flow import frame_pairs, pool_flows, predict_clip_flows

    torch.manual_seed(0)
    model = OFNet.from_pretrained(CHECKPOINTS / "ofnet_phantom_112").eval()
    row = load_manifest(manifest).iloc[0]
    cine = read_clip(row)
    pairs = frame_pairs(cine.n_frames, (1, 2, 4))
    frames = resize_images(cine.frames, 112, dtype=np.uint8)
    started = time.perf_counter()
    flows = predict_clip_flows(model, frames, pairs, batch_size=32)  # float32 (N, 2, 112, 112)
    figures["ofnet_on_the_fly_ms_per_pair_112"] = round(1000 * (time.perf_counter() - started) / len(pairs), 2)
    big = resize_images(cine.frames, 224, dtype=np.uint8)
    few = pairs[:8]
    started = time.perf_counter()
    predict_clip_flows(model, big, few, batch_size=32)
    figures["ofnet_on_the_fly_ms_per_pair_224"] = round(1000 * (time.perf_counter() - started) / len(few), 2)
    figures["flow_cache_pairs_measured"] = len(pairs)

    code = encode_flow(torch.from_numpy(flows), 4, 1.0).numpy()  # what K2F diffuses (px)
    latent = pool_flows(flows, 4)
    q_full, s_full = _quantise(flows)
    q_latent, s_latent = _quantise(latent)
    options = {
        "full_float16": ({"flows": flows.astype(np.float16)},
                         lambda d: d["flows"].astype(np.float32)),
        "full_int8": ({"flows": q_full, "scale": s_full},
                      lambda d: d["flows"].astype(np.float32) * d["scale"][:, None, None, None]),
        "latent_float16": ({"flows": latent.astype(np.float16), "pool": np.int64(4)},
                           lambda d: d["flows"].astype(np.float32).repeat(4, 2).repeat(4, 3)),
        "latent_int8": ({"flows": q_latent, "scale": s_latent, "pool": np.int64(4)},
                        lambda d: (d["flows"].astype(np.float32) * d["scale"][:, None, None, None]).repeat(4, 2)
                        .repeat(4, 3)),
    }
    for name, (arrays, decode) in options.items():
        data, _ = _npz_bytes(pairs=pairs.astype(np.int32), **arrays)
        started = time.perf_counter()
        for _ in range(3):
            with np.load(io.BytesIO(data)) as f:
                back = decode({k: f[k] for k in f.files})
        read = (time.perf_counter() - started) / 3
        got = encode_flow(torch.from_numpy(np.ascontiguousarray(back)), 4, 1.0).numpy()
        figures[f"cache_{name}_bytes_per_pair_112"] = round(len(data) / len(pairs), 1)
        figures[f"cache_{name}_read_ms_per_pair"] = round(1000 * read / len(pairs), 3)
        figures[f"cache_{name}_k2f_code_max_error_px"] = float(f"{np.abs(got - code).max():.3g}")
        figures[f"cache_{name}_full_res_epe_px"] = float(
            f"{np.linalg.norm(back - flows, axis=1).mean():.3g}")  # what F2I is conditioned on, vs OF-net's


def _train_step_224(figures: dict) -> None:
    """Seconds of one forward + backward step (batch 2) of K2F and of F2I at 224² (paper architecture)."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from generation import _pipeline_224

    pipe, config, _ = _pipeline_224("cpu")
    batch, size = 2, config.data.size
    for name, net, channels in (("k2f", pipe.k2f, 2), ("f2i", pipe.f2i, pipe.f2i.config.sample_channels)):
        net.train()
        d = net.config.downsample
        x = torch.randn(batch, channels, size // d, size // d)
        cond = torch.randn(batch, net.config.condition_channels, size, size)
        t = torch.randint(0, 1000, (batch,))
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            loss = net(x, t, cond).square().mean()
            loss.backward()
            best = min(best, time.perf_counter() - started)
            net.zero_grad(set_to_none=True)
        figures[f"train_step_224_{name}_seconds_batch{batch}"] = round(best, 2)
    figures["train_224_seconds_per_sample"] = round(
        (figures[f"train_step_224_k2f_seconds_batch{batch}"] + 2 * figures[f"train_step_224_f2i_seconds_batch{batch}"])
        / (3 * batch), 3)


def _generation_224_seconds(frames: int = 32) -> float | None:
    """A ``frames``-frame loop at 224² with the paper's sampler (γ mode, 200 DDIM steps, k = 100 on every
    frame, batch 16; synthesize's default before the fast sampler, an upper bound), from the timed
    pieces of ``benchmarks/generation.py`` (K2F step; F2I step per frame and fixed cost per batch; the
    loop is linear in them, :func:`generation._loop_model`)."""
    import math

    from echokdm.generation.settings import SamplingSettings

    sampling = SamplingSettings.paper()  # the predicted figures are the paper's sampler's (the slowest)
    for name in ("generation.json", "generation_quick.json"):
        path = RESULTS / name
        if path.exists():
            f = json.loads(path.read_text())["figures"]
            if "loop_224_k2f_step_ms" in f:
                batch = min(sampling.batch_size, frames)
                k2f = sampling.num_inference_steps * f["loop_224_k2f_step_ms"] / 1000
                f2i_step = f["loop_224_f2i_step_ms_per_frame"] * batch / 1000
                f2i = math.ceil(frames / batch) * (f["loop_224_f2i_fixed_seconds_per_batch"] + sampling.k * f2i_step)
                return k2f + f2i
    return None


def _predict(figures: dict) -> None:
    """EchoNet-Dynamic from the measured per-item costs."""
    frames = ECHONET_CLIPS * ECHONET_FRAMES
    prediction: dict = {"echonet_clips": ECHONET_CLIPS, "echonet_frames_per_clip": ECHONET_FRAMES}
    if "segment_speedup_2_processes" in figures:
        hours = {"segment": frames / figures["segment_frames_per_s_1_process"] / 3600,
                 "keypoints": frames / figures["keypoints_frames_per_s_1_process"] / 3600}
        pairs = ECHONET_CLIPS * len(frame_pairs_count(ECHONET_FRAMES, GAPS["gaps_1_2_4"]))
        hours["flow_gaps_1_2_4"] = pairs / figures["flow_pairs_per_s_1_process"] / 3600
        for key, value in hours.items():
            prediction[f"preprocess_{key}_process_hours"] = round(value, 1)
        total = sum(hours.values())
        prediction["preprocess_total_process_hours"] = round(total, 1)
        for n in (16, 64):  # one process per core or GPU; the shards differ by one clip at most
            prediction[f"preprocess_hours_on_{n}_processes"] = round(total / n, 2)
    for gname, gaps in GAPS.items():
        pairs = ECHONET_CLIPS * len(frame_pairs_count(ECHONET_FRAMES, gaps))
        prediction[f"flow_pairs_{gname}"] = pairs
        for option in ("full_float16", "full_int8", "latent_float16", "latent_int8"):
            per_pair = figures[f"cache_{option}_bytes_per_pair_112"]
            prediction[f"flow_cache_{option}_gb_112_{gname}"] = round(pairs * per_pair / 1e9, 1)
            prediction[f"flow_cache_{option}_gb_224_{gname}"] = round(4 * pairs * per_pair / 1e9, 1)
    if "train_224_seconds_per_sample" in figures:
        per_sample = figures["train_224_seconds_per_sample"]
        base = TRAIN_SAMPLES * per_sample / 3600
        prediction["train_224_cpu_process_hours_cached_flows"] = round(base, 0)
        fly = 2 / 3 * TRAIN_SAMPLES * figures["ofnet_on_the_fly_ms_per_pair_224"] / 1000 / 3600  # K2F + F2I pairs
        read = 2 / 3 * TRAIN_SAMPLES * figures["cache_latent_float16_read_ms_per_pair"] / 1000 / 3600
        prediction["train_224_extra_cpu_process_hours_on_the_fly_flows"] = round(fly, 0)
        prediction["train_224_extra_cpu_process_hours_reading_latent_cache"] = round(read, 1)
        prediction["train_224_on_the_fly_slowdown"] = round((base + fly) / base, 3)
    loop = _generation_224_seconds()
    if loop:
        prediction["synthetic_loop_224_seconds_32_frames_default_sampling"] = round(loop, 1)
        prediction["synthetic_cohort_10000_loops_process_hours_224"] = round(10_000 * loop / 3600, 1)
        for n in (16, 64):
            prediction[f"synthetic_cohort_10000_loops_hours_on_{n}_processes"] = round(10_000 * loop / 3600 / n, 1)
    if "train_224_cpu_process_hours_cached_flows" in prediction:
        for n in (16, 64):
            prediction[f"train_224_cpu_hours_on_{n}_processes"] = round(
                prediction["train_224_cpu_process_hours_cached_flows"] / n, 0)
    prediction["scaling_note"] = ("N processes: the one-process per-item costs / N (each process on its own core "
                                  "or GPU); the 2-process speed-ups above were measured on this 2-core CPU at the "
                                  "load average given, start-up included")
    figures.update({f"predicted_{k}": v for k, v in prediction.items()})


def frame_pairs_count(n_frames: int, gaps) -> list:
    """The (source, target) pairs of ``echokdm flow`` for an ``n_frames`` clip (both directions)."""
    return [(t, t + g) for g in gaps for t in range(n_frames - g)] * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 clips: flow cache and predictions only")
    parser.add_argument("--clips", type=int, default=8, help="phantom clips for the process runs (default 8)")
    parser.add_argument("--skip-224", action="store_true", help="leave out the 224² training step")
    parser.add_argument("--predict-only", action="store_true",
                        help="recompute the predictions from the measured figures of results/scale.json")
    args = parser.parse_args()
    if args.predict_only:
        record = json.loads((RESULTS / "scale.json").read_text())
        figures = {k: v for k, v in record["figures"].items() if not k.startswith("predicted_")}
        _predict(figures)
        save("scale", figures)
        return
    from echokdm.data.phantom.export import write_cohort

    started = time.perf_counter()
    figures: dict = {"device": "cpu", "gpu_available": False, "cpus": os.cpu_count(),
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                     "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = 2 if args.quick else args.clips
        write_cohort(work / "cohort", clips, "nifti", seed=7, fps=30.0, n_beats=1.0 if args.quick else 2.0,
                     progress=False)
        manifest = work / "cohort" / "manifest.csv"
        figures["clips"] = clips
        if not args.quick:
            _processes(manifest, work, figures)
        _flow_cache(manifest, figures)
    if not (args.quick or args.skip_224):
        _train_step_224(figures)
    _predict(figures)
    figures["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    save("scale_quick" if args.quick else "scale", figures)


if __name__ == "__main__":
    main()
