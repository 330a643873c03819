"""``echokdm demo``: the whole job on embedded data, in minutes on a laptop CPU.

1. a real ultrasound cine (the one pydicom ships) → manifest and preview (the readers on real data);
2. a held-out phantom cohort written as DICOM (patients the demo model never saw);
3. the packaged demo checkpoints (KDM at 112×112 and the segmentation model that finds the LV),
   or, with ``--train``, both retrained from scratch by the committed configs;
4. the 40 LV keypoints of every frame, found by the segmentation model (scanner DICOMs carry no
   masks), Simpson volumes, ED/ES and EF (against the phantom's true EF);
5. for each patient, two loops from the ED frame: the patient's own beat, and a beat at a new EF
   (the patient's EF moved by 25 points towards the normal/abnormal side), written as MP4, GIF and
   synthetic-marked DICOM, with a real | generated MP4 for the own beat;
6. a per-patient evaluation (own beat against the real frames: MSE, SSIM, LPIPS; EF target against
   the EF re-measured on the generated frames for both loops), ``report.csv``, ``summary.png``
   and a printed summary.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DemoSettings", "run_demo"]

HELD_OUT_SEED = 1000  # the demo checkpoints were trained on seed 0 patients


@dataclasses.dataclass
class DemoSettings:
    """Knobs of the demo (the CLI's ``--quick`` shrinks them for CI)."""

    n_patients: int = 3
    fps: float = 25.0
    num_inference_steps: int = 200
    k: int = 100
    ef_shift: float = 25.0
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(n_patients=1, num_inference_steps=20, k=10)


def _print(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def _real_dicom(out: Path, overwrite: bool, progress: bool) -> None:
    import pydicom.examples

    from echokdm.data.manifest import scan_folder, write_manifest
    from echokdm.io.dispatch import read_cine
    from echokdm.io.preview import write_preview

    source = Path(pydicom.examples.get_path("ybr_color"))
    data_dir = out / "real"
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, data_dir / "us_cine.dcm")
    scan = scan_folder(data_dir, "dicom", dataset="pydicom-example", progress=progress)
    write_manifest(scan.manifest, out / "real_manifest.csv", overwrite=overwrite)
    row = scan.manifest.iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_cine(data_dir / "us_cine.dcm", "dicom", crop_to_fan=True)
    write_preview(cine, out / "real_preview", stem="us_cine", overwrite=overwrite)
    _print("1/6", f"real ultrasound cine (pydicom's {source.name}): {int(row.n_frames)} frames "
                  f"{int(row.height)}x{int(row.width)} at {row.fps:.0f} fps, {row.spacing_mm:.3f} mm/px; "
                  f"cropped to the fan ({cine.height}x{cine.width}) -> {out / 'real_preview'}")


def _checkpoints(out: Path, train: bool, progress: bool) -> tuple[Path, Path]:
    from echokdm.pretrained import pretrained_path

    if not train:
        pipe, seg = pretrained_path("kdm_phantom_112"), pretrained_path("seg_phantom_112")
        _print("3/6", f"packaged demo checkpoints: {pipe.name} (KDM, 112x112) and {seg.name} (segmentation)")
        return pipe, seg
    from echokdm.data.phantom.export import write_cohort
    from echokdm.echo.segmentation_training import load_seg_config, train_segmentation
    from echokdm.training.kdm import load_kdm_config, train_kdm

    configs = Path(__file__).resolve().parent.parent / "configs" / "echo"
    if not (configs / "kdm_112.yaml").exists():
        raise FileNotFoundError(f"{configs}: --train needs the repository's configs/echo (kdm_112.yaml, seg_demo.yaml); "
                                "run it from a source checkout")
    _print("3/6", "training the demo checkpoints from scratch (about 45 min on a 2-core CPU)")
    cohort = out / "train" / "phantom"
    write_cohort(cohort, n_patients=24, format="nifti", seed=0, progress=progress)
    train_segmentation(load_seg_config(configs / "seg_demo.yaml"), cohort / "manifest.csv", out / "train" / "seg",
                       progress=progress)
    train_kdm(load_kdm_config(configs / "kdm_112.yaml"), cohort / "manifest.csv", out / "train" / "kdm",
              progress=progress)
    return out / "train" / "kdm" / "pipeline", out / "train" / "seg" / "best"


def _lpips_metric():
    """LPIPS-Alex when its backbone is available (local folder, cache or download), else None."""
    from echokdm.metrics.lpips import LPIPSMetric

    metric = LPIPSMetric("alex")
    try:
        metric.model  # noqa: B018 - loads (and downloads if needed) the backbone now
    except (RuntimeError, OSError, FileNotFoundError) as exc:
        print(f"  note: LPIPS left out ({str(exc).splitlines()[0][:160]})")
        return None
    return metric


def _patient_loops(row, manifest_path: Path, pipe, seg, settings: DemoSettings, out: Path, overwrite: bool,
                   progress: bool) -> tuple[list[dict], dict]:
    """Own-beat and new-EF loops of one patient, written; their report rows and figure material."""
    from echokdm.data.manifest import read_clip
    from echokdm.generation import (
        clip_keypoints,
        generate_loop,
        own_motion,
        synthetic_motion,
        write_loop,
    )
    from echokdm.geometry.volumes import cardiac_cycle, simpson_volume

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_clip(row)
    kp = clip_keypoints(cine, seg)  # scanner DICOMs carry no masks: the segmentation model finds the LV
    volumes = simpson_volume(kp, cine.spacing_mm)
    cycle = cardiac_cycle(volumes, cine.fps)
    ed = int(cycle.ed_frames[0]) if len(cycle.ed_frames) else int(np.nanargmax(volumes))
    later = cycle.ed_frames[cycle.ed_frames > ed] if len(cycle.ed_frames) else []
    end = int(later[0]) if len(later) else cine.n_frames
    ef_clip = float(cycle.ef[0]) if len(cycle.ef) else float("nan")
    new_ef = float(np.clip(ef_clip + (settings.ef_shift if ef_clip < 45 else -settings.ef_shift), 15, 75))
    heart_rate = 60.0 * cine.fps / max(end - ed, 2)
    common = {"fps": cine.fps, "spacing_mm": cine.spacing_mm, "mode": "gamma", "k": settings.k,
                  "num_inference_steps": settings.num_inference_steps, "seed": settings.seed, "segmentation": seg,
                  "progress": progress, "source_index": ed, "patient_id": cine.patient_id}
    motions = {"own": (own_motion(kp, ed, end), "own"),
               "new_ef": (synthetic_motion(kp[ed], new_ef, heart_rate, cine.fps, 1.0), "synthetic")}
    loops, seconds = {}, {}
    for name, (targets, motion) in motions.items():
        start = time.perf_counter()
        loops[name] = generate_loop(pipe, cine.frames[ed], kp[ed], targets, motion=motion, **common)
        seconds[name] = time.perf_counter() - start
    pid = str(row["patient_id"])
    rows = []
    for name, loop in loops.items():
        reference = cine.frames[ed:end] if name == "own" else None
        paths = write_loop(out / "loops" / pid, loop, formats=("mp4", "gif", "dicom"), stem=f"{pid}_{name}",
                           overwrite=overwrite, side_by_side=reference)
        rows.append({"patient_id": pid, "loop": name, "frames": loop.n_frames, "ef_clip_truth": row.get("ef_reference"),
                     "ef_clip_keypoints": ef_clip, "seconds": round(seconds[name], 2),
                     "seconds_per_frame": round(seconds[name] / max(loop.n_frames - 1, 1), 3),
                     "ef_target": loop.ef_target, "ef_achieved": loop.ef_achieved,
                     "ef_error": None if loop.ef_achieved is None or loop.ef_target is None
                     else loop.ef_achieved - loop.ef_target,
                     "mp4": str(paths["mp4"]), "dicom": str(paths["dicom"])})
    return rows, {"patient_id": pid, "real": cine.frames[ed:end], "loops": loops, "kp": kp[ed:end]}


def _image_scores(material: dict, lpips) -> dict:
    """MSE / SSIM / LPIPS of the own-beat loop against the real beat (source frame left out)."""
    from echokdm.metrics.image import mse, ssim

    gen = material["loops"]["own"].frames[1:]
    real = material["real"][1:len(gen) + 1]
    scores = {"mse": float(np.mean(mse(gen, real))), "ssim": float(np.mean(ssim(gen, real)))}
    scores["lpips_alex"] = float(np.mean(lpips(gen, real))) if lpips is not None else None
    return scores


def _summary_figure(materials: list[dict], path: Path) -> Path:
    """Per patient: real ED / real ES / own-beat ES / new-EF ES, and the volume curves."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from echokdm.geometry.volumes import simpson_volume

    fig = Figure(figsize=(13, 2.8 * len(materials)))
    FigureCanvasAgg(fig)
    for r, m in enumerate(materials):
        own, new = m["loops"]["own"], m["loops"]["new_ef"]
        v_own = simpson_volume(own.keypoints, own.spacing_mm)
        es_real = int(np.nanargmin(simpson_volume(m["kp"], own.spacing_mm)))
        es_own, es_new = int(np.nanargmin(v_own)), int(np.nanargmin(simpson_volume(new.keypoints, new.spacing_mm)))
        panels = [("real ED (source)", m["real"][0]), (f"real ES (frame {es_real})", m["real"][es_real]),
                  ("KDM own beat, ES", own.frames[es_own]),
                  (f"KDM EF {new.ef_target:.0f} %, ES", new.frames[es_new])]
        for c, (title, image) in enumerate(panels):
            ax = fig.add_subplot(len(materials), 5, 5 * r + c + 1)
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title if r == 0 else title.split(",")[0] if c < 2 else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(m["patient_id"], fontsize=8)
        ax = fig.add_subplot(len(materials), 5, 5 * r + 5)
        for loop, label in ((own, "own beat"), (new, "new EF")):
            t = np.arange(loop.n_frames) / loop.fps
            ax.plot(t, simpson_volume(loop.keypoints, loop.spacing_mm), label=f"{label} target")
            if loop.detected_keypoints is not None:
                ax.plot(t, simpson_volume(loop.detected_keypoints, loop.spacing_mm), "--",
                        label=f"{label} re-measured")
        ax.set_xlabel("s", fontsize=8)
        ax.set_ylabel("LV volume (mL)", fontsize=8)
        ax.tick_params(labelsize=7)
        if r == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def run_demo(out: str | Path = "echokdm-demo", *, settings: DemoSettings | None = None, train: bool = False,
             pipeline: str | Path | None = None, segmentation: str | Path | None = None,
             overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Run the demo into ``out`` (see the module docstring) and return the per-loop report.

    ``pipeline`` / ``segmentation`` replace the packaged checkpoints (folders of a KDM pipeline and
    of a segmentation model), e.g. to run the demo with a model trained by ``echokdm train kdm``.
    """
    from tqdm.auto import tqdm

    from echokdm.data.manifest import load_manifest
    from echokdm.data.phantom.export import write_cohort
    from echokdm.pipelines import KDMPipeline

    settings = settings or DemoSettings()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: already holds outputs (an earlier demo?); pass --overwrite to replace them, "
                              "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _real_dicom(out, overwrite, progress)

    cohort = out / "phantom"
    write_cohort(cohort, n_patients=settings.n_patients, format="dicom", seed=HELD_OUT_SEED, fps=settings.fps,
                 n_beats=1.3, overwrite=overwrite, progress=progress)
    manifest = load_manifest(cohort / "manifest.csv")
    _print("2/6", f"held-out phantom cohort: {len(manifest)} patient(s) as DICOM (seed {HELD_OUT_SEED}, never seen "
                  f"in training) -> {cohort}")
    if pipeline is not None and segmentation is not None and not train:
        pipe_path, seg_path = Path(pipeline), Path(segmentation)
        _print("3/6", f"checkpoints: {pipe_path} (KDM) and {seg_path} (segmentation)")
    else:
        pipe_path, seg_path = _checkpoints(out, train, progress)
    from echokdm.generation import load_segmentation

    pipe, seg = KDMPipeline.from_pretrained(pipe_path), load_segmentation(seg_path)
    _print("4/6", "40 LV keypoints per frame: LV segmented by the model (DICOMs carry no masks), Simpson volumes, "
                  "ED/ES and EF")
    _print("5/6", f"generating two loops per patient ({settings.num_inference_steps} DDIM steps, k = {settings.k}, "
                  "one K2F flow scaled by gamma per frame)")
    rows, materials = [], []
    for _, row in tqdm(list(manifest.iterrows()), desc="patients", unit="patient", disable=not progress):
        r, m = _patient_loops(row, cohort / "manifest.csv", pipe, seg, settings, out, overwrite, progress)
        rows += r
        materials.append(m)
    lpips = _lpips_metric()
    for m in materials:
        scores = _image_scores(m, lpips)
        for r in rows:
            if r["patient_id"] == m["patient_id"] and r["loop"] == "own":
                r.update(scores)
    report = pd.DataFrame(rows)
    report.to_csv(out / "report.csv", index=False)
    figure = _summary_figure(materials, out / "summary.png")
    seconds = time.perf_counter() - started
    _print("6/6", f"per-patient evaluation -> {out / 'report.csv'}, {figure}")
    _print_summary(report, seconds, out)
    return report


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}{suffix}"


def _print_summary(report: pd.DataFrame, seconds: float, out: Path) -> None:
    print("\n  patient         loop     frames  EF target  EF achieved    MSE     SSIM   LPIPS")
    for r in report.itertuples():
        print(f"  {r.patient_id:<15} {r.loop:<8} {r.frames:>5}  {_fmt(r.ef_target, 1, ' %'):>9}  "
              f"{_fmt(r.ef_achieved, 1, ' %'):>11}  {_fmt(getattr(r, 'mse', None), 4):>6}  "
              f"{_fmt(getattr(r, 'ssim', None), 3):>6}  {_fmt(getattr(r, 'lpips_alex', None), 3):>6}")
    errors = pd.to_numeric(report["ef_error"], errors="coerce").dropna()
    if len(errors):
        print(f"\n  EF achieved - target: mean {errors.mean():+.1f}, mean |error| {errors.abs().mean():.1f} EF points "
              f"over {len(errors)} loops")
    print(f"\nDone in {seconds:.0f} s. Outputs in {out.resolve()}: loops/<patient>/ (MP4, GIF, DICOM, keypoints, "
          "previews), report.csv, summary.png, phantom/, real_preview/")
