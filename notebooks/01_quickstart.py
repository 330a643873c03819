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
# # 01 · Quickstart: from an echo cine to a generated heart beat
#
# The echokdm demo, step by step:
#
# 1. read a **real ultrasound cine** (the one that ships with pydicom) and look at its frames;
# 2. simulate a **held-out phantom patient** (one the demo KDM never saw in training), derive its 40
#    left-ventricle (LV) keypoints from the masks and draw them;
# 3. load the packaged **KDM pipeline** (`kdm_phantom_112`);
# 4. generate, from the patient's end-diastolic (ED) frame, its **own beat** and a beat at a
#    **new ejection fraction (EF)**;
# 5. compare frames side by side and the **LV volume curves**: the target, and the one re-measured on
#    the generated frames by the packaged segmentation model (`seg_phantom_112`);
# 6. write the loops as **MP4, GIF and synthetic-marked DICOM**.
#
# **Run time**: about a minute on a laptop CPU with the defaults (the fast sampler: 25 DDIM steps,
# F2I from step 3 on 8 keyframes), seconds on a GPU, less with `QUICK = True`. The packaged
# checkpoints must be installed (see `echokdm.pretrained`); or point `PIPELINE` / `SEGMENTATION` at
# your own folders.
#
# Everything is written under `OUT` (default `notebook_outputs/01_quickstart-full/` next to this
# notebook, `-quick` with `QUICK = True`; a rerun replaces it). Conventions: frames are `float32` in
# [0, 1], keypoints are `(x, y)` pixels (x = column, y = row), volumes are in mL.

# %% tags=["parameters"]
QUICK = False        # True: fewer frames per beat and DDIM steps (shows every step, not the quality)
PIPELINE = None      # None: the packaged demo checkpoint "kdm_phantom_112"; or a KDM pipeline folder
SEGMENTATION = None  # None: the packaged "seg_phantom_112" if installed; False: no re-measurement; or a folder
PATIENT_SEED = 1000  # phantom seed of the held-out patient (the demo KDM was trained on seed 0)
SIZE = 112           # phantom frame size in pixels (the pipeline resizes to its own size and back)
FPS = 25.0           # phantom frame rate (frames/s), also the loops' (as in `echokdm demo`)
NEW_EF = 30.0        # EF (%) of the edited beat
STEPS = 25           # DDIM steps (echokdm's default; the paper's sampler: 200, K = 100)
K = 3                # F2I starts from the warped source noised to step K of STEPS
SEED = 0             # seed of the generation noise: same seed, same loop
OUT = None           # None: notebook_outputs/01_quickstart-quick or -full (by QUICK), replaced
                     #   by a rerun; or a new or empty folder of yours (never overwritten)

# %%
# %matplotlib inline
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Image, display

import echokdm
from echokdm.pretrained import available, pretrained_path

if QUICK:
    FPS, STEPS, K = min(FPS, 10.0), min(STEPS, 4), min(K, 2)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

from echokdm.notebook import output_folder

OUT = output_folder("01_quickstart", quick=QUICK, out=OUT)  # the notebook's own folder, emptied by a rerun
(OUT / "figures").mkdir()
print(f"echokdm {echokdm.__version__} on {DEVICE}; packaged checkpoints: {available() or 'none'}")
print(f"outputs in {OUT.resolve()}")

# %% [markdown]
# ## 1. A real ultrasound cine
#
# pydicom ships a real cardiac ultrasound cine (`ybr_color`: 30 JPEG-compressed colour frames).
# `read_dicom` decodes it, converts it to gray, reads the frame rate and the pixel spacing from the
# ultrasound calibration regions, and with `crop_to_fan=True` crops it to the ultrasound fan (the
# burned-in text outside it is gone). Nothing personal is kept: the patient becomes a salted hash.

# %%
import pydicom.examples

from echokdm.io import read_dicom

with warnings.catch_warnings(record=True) as notes:
    warnings.simplefilter("always")
    real = read_dicom(pydicom.examples.get_path("ybr_color"), crop_to_fan=True)
print(real.summary())
for note in notes:
    print("note:", note.message)

shown = np.linspace(0, real.n_frames - 1, 4).round().astype(int)
fig, axes = plt.subplots(1, len(shown), figsize=(14, 3.2))
for ax, t in zip(axes, shown, strict=True):
    ax.imshow(real.frames[t], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"frame {t} (t = {t / real.fps:.2f} s)")
    ax.axis("off")
fig.suptitle(f"real ultrasound cine, {real.height}×{real.width} px, {real.fps:.0f} fps")
fig.savefig(OUT / "figures" / "real_cine.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 2. A held-out phantom patient and its 40 keypoints
#
# Real echo datasets need registration, so the demo uses echokdm's **phantom**: simulated B-mode
# apical four-chamber cines whose LV masks, keypoints, volumes and EF are known exactly.
# `write_cohort` writes one patient (as NIfTI, with its masks) and a manifest; `read_clip` reads it
# back through the same readers as real data. `clip_keypoints` derives the 40 keypoints of every
# frame from the masks, and `cardiac_cycle` finds ED and end-systole (ES) on the Simpson volumes.

# %%
from echokdm.data.manifest import load_manifest, read_clip
from echokdm.data.phantom.export import write_cohort
from echokdm.generation import clip_keypoints
from echokdm.geometry import cardiac_cycle, simpson_volume

cohort = write_cohort(OUT / "phantom", n_patients=1, format="nifti", seed=PATIENT_SEED, size=SIZE, fps=FPS,
                      n_beats=2.0, style="realistic", progress=False)
truth = cohort.ground_truth.iloc[0]  # the phantom's exact EF, volumes, heart rate
cine = read_clip(load_manifest(OUT / "phantom" / "manifest.csv").iloc[0])
print(cine.summary())

keypoints = clip_keypoints(cine)  # (T, 40, 2) (x, y) px, from the mask of every frame
volumes = simpson_volume(keypoints, cine.spacing_mm)  # (T,) mL
cycle = cardiac_cycle(volumes, cine.fps)
ed = int(cycle.ed_frames[0]) if cycle.n_beats else int(np.nanargmax(volumes))
later = cycle.ed_frames[cycle.ed_frames > ed]
next_ed = int(later[0]) if len(later) else cine.n_frames  # one whole beat: frames ed .. next_ed - 1
print(f"ED frames {cycle.ed_frames.tolist()}, ES frames {cycle.es_frames.tolist()}")
print(f"EF from the masks {cycle.ef_mean:.1f} % (true {truth.ef_percent:.1f} %), "
      f"heart rate {truth.heart_rate_bpm:.0f} bpm")

# %% [markdown]
# The keypoints follow the KDM paper: the long axis runs from the middle of the mitral annulus
# (the basal hinge points) to the apex; 20 chords perpendicular to it cross the LV boundary twice.
# Keypoint *j* is the image-left crossing of chord *j* (red, base → apex), keypoint 39 − *j* the
# image-right one (green). The chords are Simpson's discs. Right: the image the KDM networks are
# conditioned on (`render_keypoints`).

# %%
from echokdm.adapters.echo import render_keypoints
from echokdm.geometry import mask_keypoints

frame = cine.frames[ed]
geo = mask_keypoints(cine.masks[ed])  # the ED frame alone, no temporal smoothing
kp = geo.keypoints

fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
axes[0].imshow(frame, cmap="gray", vmin=0, vmax=1)
axes[0].contour(cine.masks[ed], levels=[0.5], colors="cyan", linewidths=0.8)
axes[0].set_title(f"ED frame {ed} and its LV mask")
axes[1].imshow(frame, cmap="gray", vmin=0, vmax=1)
for j in range(20):  # the chords (Simpson's discs)
    axes[1].plot(kp[[j, 39 - j], 0], kp[[j, 39 - j], 1], color="white", linewidth=0.4, alpha=0.6)
axes[1].plot(*geo.annulus.T, color="tab:blue", linewidth=1.5, label="mitral annulus")
axes[1].plot(*np.stack([geo.basal_centre, geo.apex]).T, color="gold", linewidth=1, label="long axis")
axes[1].scatter(*kp[:20].T, s=9, color="red", label="keypoints 0–19 (left wall)")
axes[1].scatter(*kp[20:].T, s=9, color="lime", label="keypoints 20–39 (right wall)")
axes[1].legend(loc="lower left", fontsize=7)
axes[1].set_title(f"40 keypoints, L = {geo.length:.1f} px")
axes[2].imshow(render_keypoints(kp, frame.shape).transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)
axes[2].set_title("KDM conditioning image")
for ax in axes:
    ax.axis("off")
fig.savefig(OUT / "figures" / "keypoints.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 3. The KDM pipeline
#
# A KDM pipeline folder holds the autoencoder, K2F (keypoints → flow), F2I (flow → image) and the
# DDIM scheduler. The packaged `kdm_phantom_112` was trained on a 32-patient realistic-phantom cohort
# (seed 0) at 112 × 112 px, with the scanner look randomised so that it keeps the look of its source
# frame. The segmentation model re-detects the keypoints on the generated frames, which measures the EF
# the loop actually shows.

# %%
from echokdm.generation import load_segmentation
from echokdm.pipelines import KDMPipeline

pipeline_folder = pretrained_path("kdm_phantom_112") if PIPELINE is None else Path(PIPELINE)
pipe = KDMPipeline.from_pretrained(pipeline_folder).to(DEVICE)
print(f"KDM pipeline: {pipeline_folder} (works at {pipe.vae.config.sample_size} px)")

if SEGMENTATION is None and "seg_phantom_112" in available():
    SEGMENTATION = pretrained_path("seg_phantom_112")
segmentation = load_segmentation(SEGMENTATION).to(DEVICE) if SEGMENTATION else None
print(f"segmentation model: {SEGMENTATION or 'none (the EF of the generated loops is not re-measured)'}")

# %% [markdown]
# ## 4. Generate the patient's own beat and a beat at a new EF
#
# The source is the ED frame and its keypoints. A **motion** is a keypoint trajectory `(T, 40, 2)`
# starting at the source pose: `own_motion` replays the clip's own keypoints over one beat;
# `synthetic_motion` makes a physiological beat of the same heart whose Simpson EF is `NEW_EF`.
# `generate_loop` runs KDM on a motion (one K2F flow scaled per frame, then F2I) and returns the frames,
# flows, the target EF and, with a segmentation model, the EF achieved (re-measured on the frames).
# `generate_ef_loop` does this for a synthetic beat and, with a segmentation model, regenerates with a
# corrected keypoint motion (at most 3 loops) until the EF re-measured on the frames is within 2 points
# of `NEW_EF`: the frames show less contraction than the keypoints (with the packaged realistic-phantom
# KDM much less, see the README), so the keypoints may have to move more than asked (`metadata["ef_trajectory"]`).

# %%
from echokdm.generation import SamplingSettings, generate_ef_loop, generate_loop, own_motion

common = {"fps": cine.fps, "spacing_mm": cine.spacing_mm, "segmentation": segmentation,
          "sampling": SamplingSettings(k=K, num_inference_steps=STEPS, seed=SEED), "source_index": ed,
          "patient_id": cine.patient_id}
own = generate_loop(pipe, frame, keypoints[ed], own_motion(keypoints, ed, stop=next_ed), motion="own",
                    **common)
new = generate_ef_loop(pipe, frame, keypoints[ed], NEW_EF, heart_rate_bpm=truth.heart_rate_bpm, n_beats=1,
                       calibrate=segmentation is not None, **common)


def percent(value):
    return np.nan if value is None else round(value, 1)


pd.DataFrame({
    "loop": ["real beat (phantom truth)", "own beat", f"new EF {NEW_EF:g} %"],
    "frames": [next_ed - ed, own.n_frames, new.n_frames],
    "EF target (%)": [round(truth.ef_percent, 1), percent(own.ef_target), percent(new.ef_target)],
    "EF re-measured (%)": [np.nan, percent(own.ef_achieved), percent(new.ef_achieved)],
    "EF of the keypoints (%)": [np.nan, percent(own.ef_target), percent(new.metadata["ef_trajectory"])],
})

# %% [markdown]
# ## 5. Frames side by side, and the volume curves
#
# Frame 0 of each loop is the real source frame; the others are generated. The volume curves are the
# Simpson volumes of the **target** keypoints (what was asked for) and, with a segmentation model,
# of the keypoints **re-detected** on the generated frames (what the loop shows).

# %%
n_columns = 5  # frames evenly spread over each beat, ED first
rows = {"real": cine.frames[ed:next_ed], "KDM, own beat": own.frames, f"KDM, EF {NEW_EF:g} %": new.frames}
fig, axes = plt.subplots(len(rows), n_columns, figsize=(2.6 * n_columns, 2.7 * len(rows)))
for r, (name, frames) in enumerate(rows.items()):
    for c, t in enumerate(np.linspace(0, len(frames) - 1, n_columns).round().astype(int)):
        axes[r, c].imshow(frames[t], cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_title(f"{name}, frame {t}", fontsize=8)
        axes[r, c].axis("off")
fig.tight_layout()
fig.savefig(OUT / "figures" / "frames_side_by_side.png", dpi=100, bbox_inches="tight")
plt.show()

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(np.arange(next_ed - ed) / cine.fps, volumes[ed:next_ed], color="k", label="real (from the masks)")
for loop, colour in ((own, "tab:blue"), (new, "tab:red")):
    seconds = np.arange(loop.n_frames) / loop.fps
    ax.plot(seconds, simpson_volume(loop.keypoints, loop.spacing_mm), "--", color=colour,
            label=f"{loop.motion}: keypoints, EF {percent(loop.metadata.get('ef_trajectory', loop.ef_target))} %")
    if loop.detected_keypoints is not None:
        achieved = "not measurable" if loop.ef_achieved is None else f"{loop.ef_achieved:.1f} %"
        ax.plot(seconds, simpson_volume(loop.detected_keypoints, loop.spacing_mm), "o-", ms=3, color=colour,
                label=f"{loop.motion}: re-measured, EF {achieved}")
ax.set_xlabel("time from ED (s)")
ax.set_ylabel("LV volume (mL, Simpson)")
ax.legend(fontsize=8)
fig.savefig(OUT / "figures" / "volume_curves.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 6. Write the loops: MP4, GIF and DICOM
#
# `write_loop` writes each loop where clinicians look: an H.264 MP4, a GIF, and an *Ultrasound
# Multi-frame* DICOM file marked as synthetic (*Synthetic Data* = YES, *Image Type* DERIVED\SECONDARY,
# fresh UIDs, no personal data), plus the keypoints of every frame as CSV and a preview strip. The
# own beat also gets a real | generated MP4. Writers never replace a file unless `overwrite=True`.

# %%
import pydicom

from echokdm.generation import write_loop
from echokdm.io import read_video

written = {
    "own_beat": write_loop(OUT / "loops", own, formats=("mp4", "gif", "dicom"), stem="own_beat",
                           side_by_side=cine.frames[ed:next_ed]),
    "new_ef": write_loop(OUT / "loops", new, formats=("mp4", "gif", "dicom"), stem="new_ef"),
}
for stem, paths in written.items():
    video = read_video(paths["mp4"])
    dataset = pydicom.dcmread(paths["dicom"])
    print(f"{stem}: MP4 {video.n_frames} frames at {video.fps:.1f} fps; DICOM {int(dataset.NumberOfFrames)} "
          f"frames, SyntheticData={dataset.SyntheticData}, ImageType={list(dataset.ImageType)}")
    for name, path in paths.items():
        print(f"  {name:>12}: {path}")
display(Image(filename=str(written["new_ef"]["preview"])))

# %% [markdown]
# ## Next
#
# * `02_keypoints_and_ef.ipynb`: keypoints from masks and EchoNet tracings, Simpson volumes, EF.
# * `03_train_and_evaluate.ipynb`: train a small KDM and compare it with its ablations and baselines.
# * `04_synthetic_cohort.ipynb`: an EF-conditioned synthetic cohort in the EchoNet-Dynamic layout.
# * The same from a terminal: `echokdm demo` (the whole demo on several held-out patients), and
#   `echokdm generate SOURCE --own --pipeline FOLDER --out DIR` (one loop from any file).
