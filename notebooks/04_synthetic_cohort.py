# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · An EF-conditioned synthetic cohort
#
# 1. **EF-conditioned generation**: from one end-diastolic (ED) frame of a held-out phantom patient,
#    synthetic beats at EF 25, 45 and 65 % (`generate_ef_loop`: `synthetic_motion` + `generate_loop`,
#    corrected until the EF re-measured on the frames is on target); their volume curves and frames;
# 2. **a small synthetic cohort** (`synthesize_cohort`, the function behind `echokdm synthesize`):
#    ED frames of several held-out patients animated at EFs drawn from a range, written in the
#    **EchoNet-Dynamic layout**, then read back with echokdm's EchoNet reader (videos, `FileList.csv`
#    EF, and the tracings turned back into keypoints and EF);
# 3. the **memorisation check** that comes with it: are the generated frames closer to the
#    pipeline's training frames than real frames of unseen patients are?
# 4. **does the cohort train models?** (`run_utility`, the function behind `echokdm utility`): a
#    real stand-in cohort with a train and a test split, a synthetic cohort made from its train
#    patients only, then segmentation and EF regression trained on real, synthetic and both, tested
#    on the test patients (which the generator never saw), with the privacy filter; the summary table
#    and the plot.
#
# **Run time**: about 4 minutes for all four parts with the defaults on one thread of a busy 2-core
# CPU (measured: 3 min 34 s; 3 + 8 loops with the default fast sampler, 25 DDIM steps with F2I from
# k = 3; the closed-loop EF control generates a loop up to 3 times; part 4 with the tiny utility
# models). `UTILITY_FULL = True` trains the full models instead (1–2 CPU-minutes each, about 20–30
# minutes for the default cells). With the paper's sampler (`STEPS = 200`, `K = 100`) parts 1–3
# took about 6 minutes on a laptop CPU, up to twice that with the EF control's retries.
# About a minute on a GPU, under a minute with `QUICK = True`. Needs the packaged
# `kdm_phantom_112` (or your own `PIPELINE`). Outputs go under `OUT` (default
# `notebook_outputs/04_synthetic_cohort-full/`, or `-quick`; a rerun replaces it).

# %% tags=["parameters"]
QUICK = False               # True: 2 patients, 4 loops, few frames and DDIM steps (CI; shows the workflow only)
PIPELINE = None             # None: the packaged demo checkpoint "kdm_phantom_112"; or a KDM pipeline folder
SEGMENTATION = None         # None: the packaged "seg_phantom_112" if installed; False: none; or a folder
TRAINING_MANIFEST = None    # manifest PIPELINE was trained on; None: re-simulate the packaged pipeline's
TRAINING_SEED = 0           #   phantom cohort (seed 0, 24 patients, as `echokdm phantom --patients 24
TRAINING_PATIENTS = 24      #   --format nifti --seed 0`), for the memorisation check
EFS = (25.0, 45.0, 65.0)    # part 1: EFs (%) of the beats made from one ED frame
HEART_RATE = 70.0           # part 1: beats per minute
N_PATIENTS = 4              # held-out phantom patients: the source ED frames
PATIENT_SEED = 1000         # their phantom seed (the packaged KDM was trained on seed 0)
N_LOOPS = 8                 # part 2: loops of the cohort (the sources are cycled)
EF_RANGE = (20.0, 70.0)     # part 2: target EFs (%) drawn uniformly in this range
SIZE = 112                  # phantom frame size in pixels
FPS = 25.0                  # frame rate of the loops
STEPS = 25                  # DDIM steps (the default sampler; SamplingSettings.paper() is 200 with k = 100)
K = 3                       # F2I start step
SEED = 0                    # generation seed: the same seed gives the same cohort
UTILITY_PATIENTS = 8        # part 4: real stand-in patients (phantom seed PATIENT_SEED + 1): half train, half test
UTILITY_LOOPS = 8           # part 4: synthetic loops, made from the train half only
UTILITY_REAL_PATIENTS = (2, "all")  # part 4: real training patients of the real and real+synthetic models
UTILITY_SEEDS = (0,)        # part 4: training seeds (one model per seed and cell)
UTILITY_FULL = False        # part 4: False: UtilitySettings.quick() (tiny models, seconds each: the workflow,
                            #   not figures to quote); True: the full protocol (1-2 CPU-minutes per model)
OUT = None                  # None: notebook_outputs/04_synthetic_cohort-quick or -full (by QUICK), replaced
                            #   by a rerun; or a new or empty folder of yours (never overwritten)

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, display

from echokdm.pretrained import available, pretrained_path

if QUICK:
    N_PATIENTS, N_LOOPS, FPS, STEPS, K = min(N_PATIENTS, 2), min(N_LOOPS, 4), min(FPS, 10.0), 4, 2
    UTILITY_PATIENTS, UTILITY_LOOPS = min(UTILITY_PATIENTS, 6), min(UTILITY_LOOPS, 4)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

from echokdm.notebook import output_folder

OUT = output_folder("04_synthetic_cohort", quick=QUICK, out=OUT)  # the notebook's own folder, emptied by a rerun
(OUT / "figures").mkdir()
print(f"outputs in {OUT.resolve()}; packaged checkpoints: {available() or 'none'}")

# %%
from echokdm.generation import load_segmentation
from echokdm.pipelines import KDMPipeline

pipeline_folder = pretrained_path("kdm_phantom_112") if PIPELINE is None else Path(PIPELINE)
pipe = KDMPipeline.from_pretrained(pipeline_folder).to(DEVICE)
if SEGMENTATION is None and "seg_phantom_112" in available():
    SEGMENTATION = pretrained_path("seg_phantom_112")
segmentation = load_segmentation(SEGMENTATION).to(DEVICE) if SEGMENTATION else None
print(f"KDM pipeline: {pipeline_folder} ({pipe.vae.config.sample_size} px); "
      f"segmentation: {SEGMENTATION or 'none (EF achieved not measured)'}")

# %% [markdown]
# ## 1. One ED frame, three ejection fractions
#
# The sources are held-out phantom patients (a seed the pipeline was not trained on) written as
# scanner-like DICOM files, with the phantom's exact keypoints in `ground_truth/`. `source_from_file`
# reads one frame of a file (frame rate and pixel spacing from the DICOM) with its keypoints.
# `synthetic_motion` scales the heart about its apex, along the long axis and across it, so that the
# Simpson volume follows a physiological volume curve with the requested EF.
# `generate_ef_loop` generates the beat and, with a segmentation model, re-measures the EF on the
# generated frames; while it is more than 2 points off, it regenerates (same noise) with the keypoint
# motion's EF corrected (secant method, at most 3 loops). The table shows the EF of the keypoint
# trajectory finally used next to the EF re-measured on the frames.

# %%
from echokdm.data.manifest import load_manifest
from echokdm.data.phantom import load_npz
from echokdm.data.phantom.export import write_cohort
from echokdm.generation import SamplingSettings, generate_ef_loop, source_from_file
from echokdm.geometry import simpson_volume

sources = write_cohort(OUT / "sources", n_patients=N_PATIENTS, format="dicom", seed=PATIENT_SEED, size=SIZE,
                       fps=FPS, n_beats=1.0, progress=False)
source_manifest = OUT / "sources" / "manifest.csv"
first = sources.ground_truth.iloc[0]
exact = load_npz(OUT / "sources" / first["npz"])  # exact keypoints, volumes, ED/ES frames
ed = int(exact.ed_frames[0])
path = load_manifest(source_manifest).set_index("clip_id").loc[first["clip_id"], "path"]
source = source_from_file(path, ed, keypoints=exact.keypoints[ed])

loops = {}
for ef in EFS:
    loops[ef] = generate_ef_loop(pipe, source.frame, source.keypoints, ef, heart_rate_bpm=HEART_RATE, fps=FPS,
                                 n_beats=1, calibrate=segmentation is not None, spacing_mm=source.spacing_mm,
                                 sampling=SamplingSettings(k=K, num_inference_steps=STEPS, seed=SEED),
                                 segmentation=segmentation, source_index=ed,
                                 patient_id=source.patient_id, progress=not QUICK)
pd.DataFrame([{"EF requested (%)": ef, "frames": loop.n_frames,
               "EF of the keypoints (%)": round(loop.metadata["ef_trajectory"], 1),
               "loops generated": max(len(loop.metadata["ef_attempts"]), 1),
               "EF re-measured (%)": np.nan if loop.ef_achieved is None else round(loop.ef_achieved, 1)}
              for ef, loop in loops.items()])

# %%
fig, ax = plt.subplots(figsize=(7, 3.8))
for loop in loops.values():
    seconds = np.arange(loop.n_frames) / loop.fps
    line, = ax.plot(seconds, simpson_volume(loop.keypoints, loop.spacing_mm),
                    label=f"keypoints, EF {loop.metadata['ef_trajectory']:.1f} %")
    if loop.detected_keypoints is not None:
        achieved = "not measurable" if loop.ef_achieved is None else f"{loop.ef_achieved:.1f} %"
        ax.plot(seconds, simpson_volume(loop.detected_keypoints, loop.spacing_mm), "o", ms=3,
                color=line.get_color(), label=f"re-measured, EF {achieved}")
ax.set_xlabel("time from ED (s)")
ax.set_ylabel("LV volume (mL)")
ax.legend(fontsize=8)
fig.savefig(OUT / "figures" / "volume_curves.png", dpi=100, bbox_inches="tight")
plt.show()

fig, axes = plt.subplots(len(loops), 3, figsize=(8, 2.8 * len(loops)), squeeze=False)
for r, (ef, loop) in enumerate(loops.items()):
    es = int(np.nanargmin(simpson_volume(loop.keypoints)))
    for c, (t, name) in enumerate(((0, "ED (real source)"), (es, "ES"), (loop.n_frames - 1, "last"))):
        axes[r, c].imshow(loop.frames[t], cmap="gray", vmin=0, vmax=1)
        axes[r, c].plot(*loop.keypoints[t].T, ".", ms=2, color="red")
        axes[r, c].set_title(f"EF {ef:g} %: {name}, frame {t}", fontsize=8)
        axes[r, c].axis("off")
fig.tight_layout()
fig.savefig(OUT / "figures" / "ef_frames.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 2. A synthetic cohort in the EchoNet-Dynamic layout
#
# `synthesize_cohort` takes the ED frame of every source clip (keypoints from the phantom's ground
# truth here; masks, tracings or the segmentation model for other data), draws an EF and a heart rate
# per loop (loop *i* depends only on the seed and *i*), generates the loops one at a time and writes
# `Videos/synthetic_*.avi`, `FileList.csv` (EF = the re-measured EF when a segmentation model
# measured it, else the target), `VolumeTracings.csv` (ES and ED tracings from the keypoints),
# `echokdm_cohort.csv` and `cohort.csv` (source patient pseudonym, target and achieved EF, seed),
# `skipped.csv`, `settings.json` and the memorisation check against the pipeline's training frames.
#
# The training cohort of the packaged pipeline is re-simulated from its seed (the phantom is
# deterministic); its `train` split gives the training frames.

# %%
from echokdm.generation import synthesize_cohort

if TRAINING_MANIFEST is None:
    write_cohort(OUT / "training_cohort", n_patients=TRAINING_PATIENTS, format="nifti", seed=TRAINING_SEED,
                 size=SIZE, progress=False)
    TRAINING_MANIFEST = OUT / "training_cohort" / "manifest.csv"
result = synthesize_cohort(source_manifest, pipe, OUT / "synthetic_echonet", n_loops=N_LOOPS, split="all",
                           ef_range=EF_RANGE, fps=FPS, segmentation=segmentation,
                           training_manifest=TRAINING_MANIFEST,
                           sampling=SamplingSettings(k=K, num_inference_steps=STEPS, seed=SEED),
                           progress=not QUICK)
print("\n".join(result.summary_lines()))
if not result.skipped.empty:
    display(result.skipped)  # every clip or loop left out, with the reason
display(result.cohort)

# %%
from echokdm.geometry import tracing_keypoints
from echokdm.io import read_echonet_clip, read_echonet_filelist

filelist = read_echonet_filelist(result.out)
rows = []
for entry in filelist.itertuples():
    clip = read_echonet_clip(result.out, entry.FileName, filelist=filelist)
    volumes = {t: float(simpson_volume(tracing_keypoints(s).keypoints)) for t, s in clip.tracings.items()}
    ef_tracings = 100 * (max(volumes.values()) - min(volumes.values())) / max(volumes.values())
    rows.append({"FileName": entry.FileName, "frames read": clip.n_frames, "fps": round(clip.fps, 2),
                 "EF (FileList)": round(entry.EF, 2), "EF from the tracings": round(ef_tracings, 2),
                 "traced frames": sorted(clip.tracings)})
read_back = pd.DataFrame(rows)
read_back.to_csv(OUT / "read_back.csv", index=False)
display(read_back)
display(Image(filename=str(result.paths["ef_plot"])))

# %% [markdown]
# ## 3. Memorisation check
#
# Every model-made frame (the real source frame of each loop left out) is compared with its nearest
# training frame (MSE), and so are real frames of patients outside the training split (the held-out
# sources). A generator that copies its training data would put its frames much closer
# (`fraction_closer` near 1); about `expected_fraction` is what unseen real frames give. A privacy
# signal before sharing synthetic data, not a proof of privacy.

# %%
display(pd.DataFrame([result.memorisation]))
display(Image(filename=str(result.paths["memorisation_plot"])))
print(f"cohort, tables and plots: {result.out.resolve()}")

# %% [markdown]
# ## 4. Does the cohort train models? (`run_utility`)
#
# The first question a researcher asks of a synthetic cohort: does a model trained on it work on
# real patients? `run_utility` (the function behind `echokdm utility`) trains the models a
# researcher would train, on real training patients, on the synthetic cohort and on both, and tests
# every one on real **test** patients:
#
# * **seg**: the LV segmentation network of `echokdm train seg` on the labelled frames (the
#   synthetic loops' ED/ES tracings are the keypoints re-detected on the generated frames); Dice on
#   the test clips' labelled frames, and the EF from its masks of every frame through the keypoints;
# * **ef**: EF regression from the video (a small (2+1)D CNN); MAE and R².
#
# So the real data needs a **test split of patients the generator never saw**. Here a fresh cohort of
# held-out phantom patients (standing in for real ones) in the EchoNet-Dynamic layout, half `train`,
# half `test` (`fractions=(0.5, 0, 0.5)`); the synthetic cohort is made from the `train` half only
# (`split="train"`, as `echokdm synthesize REAL.csv --split train`), and read back as a manifest
# (`scan_folder`, as `echokdm manifest COHORT --format echonet`).

# %%
from echokdm.data.manifest import scan_folder, write_manifest

real = write_cohort(OUT / "utility_real", n_patients=UTILITY_PATIENTS, format="echonet", seed=PATIENT_SEED + 1,
                    size=SIZE, fps=FPS, fractions=(0.5, 0.0, 0.5), progress=False)
real_manifest = OUT / "utility_real" / "manifest.csv"
display(load_manifest(real_manifest)[["clip_id", "split", "n_frames", "ef_reference"]])

utility_sampling = SamplingSettings(k=K, num_inference_steps=STEPS, seed=SEED)  # as parts 1-2
utility_cohort = synthesize_cohort(real_manifest, pipe, OUT / "utility_cohort", n_loops=UTILITY_LOOPS,
                                   split="train", fps=FPS, segmentation=segmentation, ef_attempts=1,
                                   training_manifest=TRAINING_MANIFEST, memorisation_frames=200,
                                   sampling=utility_sampling, progress=not QUICK)
print("\n".join(utility_cohort.summary_lines()))
synthetic_manifest = write_manifest(scan_folder(utility_cohort.out, "echonet", progress=False).manifest,
                                    OUT / "utility_cohort.csv")

# %% [markdown]
# `UtilitySettings.quick()` trains tiny models for a few dozen steps: seconds each, enough to see
# every step and file, not figures to quote (`UTILITY_FULL = True` is the full protocol). Each cell
# (task, training set, number of real patients, seed) is one model; `n_real_patients = 0` is the
# synthetic cohort alone. `privacy_filter=True` also runs the **privacy filter**: loops closer to a
# training patient than the real test patients are, are listed in `privacy_dropped.csv`, and, when
# it drops any, the filtered cohort is trained too (`synthetic-filtered`, `real+synthetic-filtered`).
# Run the same call again and only the missing cells are trained (the run is resumable). The same from
# a shell:
#
# ```bash
# echokdm utility --real REAL.csv --synthetic SYN.csv -o utility/ \
#     --real-patients 2 all --seeds 0 --privacy-filter --quick
# ```

# %%
from IPython.display import Markdown

from echokdm.evaluation import UtilitySettings, run_utility

given = dict(real_patients=tuple(UTILITY_REAL_PATIENTS), seeds=tuple(UTILITY_SEEDS), privacy_filter=True)
utility_settings = UtilitySettings(**given) if UTILITY_FULL else UtilitySettings.quick(**given)
utility = run_utility(real_manifest, synthetic_manifest, OUT / "utility", utility_settings, progress=not QUICK)
print("\n".join(utility.notes))
if not utility.skipped.empty:
    display(utility.skipped)  # a cell or a loop left out, with the reason

# %% [markdown]
# The summary (`summary.md`): each metric's mean over the seeds with its 95 % interval, a bootstrap
# over the test patients; `utility.csv` holds one row per cell and metric, `patients.csv` the
# per-patient values. The plot: each metric against the number of real training patients, one line
# per training set, the synthetic-only sets as dashed horizontal lines. With a useful cohort the
# synthetic line sits near the real line at `all`, and real + synthetic above real alone at few real
# patients (for Dice; below it for the EF errors).

# %%
display(Markdown(utility.paths["summary"].read_text()))
display(Image(filename=str(utility.paths["plot"])))
print(f"utility run: {(OUT / 'utility').resolve()}")
