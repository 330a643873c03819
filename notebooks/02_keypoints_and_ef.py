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
# # 02 · Keypoints, Simpson volumes and EF
#
# From LV segmentations to the clinical numbers, on phantom data whose truth is known exactly:
#
# 1. **masks → keypoints** (`mask_keypoints`): mitral annulus, apex, long axis, 20 chords, 40 keypoints;
# 2. **EchoNet-style tracings → keypoints** (`tracing_keypoints`), compared with the mask keypoints of
#    the same frame;
# 3. **Simpson volumes over a clip**, ED and ES per beat (`cardiac_cycle`) and the EF, against the
#    phantom's true volume curve and EF;
# 4. **a whole manifest**: `keypoints_table` → `ef_table` → `ef_agreement` and `plot_ef_agreement`
#    (Bland–Altman), for masks on every frame (NIfTI) and for EchoNet's two traced frames.
#
# **Run time**: about 1 minute on a laptop CPU with the defaults; seconds with `QUICK = True`. No
# model is needed. Outputs go under `OUT` (default `notebook_outputs/02_keypoints_and_ef-full/`, or
# `-quick`; a rerun replaces it).
# The same from a terminal: `echokdm keypoints MANIFEST -o keypoints.parquet` and `echokdm ef MANIFEST -o DIR`.

# %% tags=["parameters"]
QUICK = False      # True: 3 small patients (CI)
N_PATIENTS = 8     # phantom patients in the manifest
SIZE = 112         # frame size in pixels
FPS = 50.0         # frames per second
N_BEATS = 2.0      # clip length in heart beats
SEED = 3           # phantom cohort seed: the same seed gives the same patients
OUT = None         # None: notebook_outputs/02_keypoints_and_ef-quick or -full (by QUICK), replaced
                   #   by a rerun; or a new or empty folder of yours (never overwritten)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

if QUICK:
    N_PATIENTS, SIZE, FPS = min(N_PATIENTS, 3), min(SIZE, 64), min(FPS, 25.0)

from echokdm.notebook import output_folder

OUT = output_folder("02_keypoints_and_ef", quick=QUICK, out=OUT)  # the notebook's own folder, emptied by a rerun
(OUT / "figures").mkdir()
print(f"outputs in {OUT.resolve()}")

# %% [markdown]
# ## A small phantom cohort, written twice
#
# The same patients (same seed) as **NIfTI** with the LV mask of every frame, and in the
# **EchoNet-Dynamic** layout (`Videos/*.avi`, `FileList.csv`, `VolumeTracings.csv` with the ES and
# ED tracings). `ground_truth` holds the exact values.

# %%
from echokdm.data.phantom.export import write_cohort

options = {"n_patients": N_PATIENTS, "seed": SEED, "size": SIZE, "fps": FPS, "n_beats": N_BEATS,
           "progress": False}
nifti = write_cohort(OUT / "phantom_nifti", format="nifti", **options)
echonet = write_cohort(OUT / "phantom_echonet", format="echonet", **options)
truth = nifti.ground_truth.set_index("clip_name")
truth[["split", "ef_percent", "edv_ml", "esv_ml", "heart_rate_bpm", "n_frames", "ed_frames", "es_frames"]]

# %% [markdown]
# ## 1. Masks → keypoints
#
# `mask_keypoints` takes one binary mask `(H, W)` (1 = LV blood pool): the mitral annulus is the flat
# basal side (its two hinge points), the apex the boundary point farthest from the basal centre, and
# 20 chords perpendicular to the long axis at t_j = (j + 0.5)/20 cut the boundary twice. Keypoints
# are `(x, y)` pixels: x the column, y the row.

# %%
from echokdm.data.manifest import load_manifest, read_clip
from echokdm.data.phantom import load_npz
from echokdm.geometry import mask_keypoints, simpson_volume

name = truth.index[0]
nifti_manifest = load_manifest(OUT / "phantom_nifti" / "manifest.csv")
cine = read_clip(nifti_manifest[nifti_manifest["clip_id"] == truth.loc[name, "clip_id"]].iloc[0])
exact = load_npz(OUT / "phantom_nifti" / truth.loc[name, "npz"])  # the phantom's exact keypoints and volumes
ed = int(exact.ed_frames[0])
geo = mask_keypoints(cine.masks[ed])
kp = geo.keypoints  # (40, 2) (x, y) px

fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(cine.frames[ed], cmap="gray", vmin=0, vmax=1)
ax.contour(cine.masks[ed], levels=[0.5], colors="cyan", linewidths=0.7)
for j in range(20):
    ax.plot(kp[[j, 39 - j], 0], kp[[j, 39 - j], 1], color="white", linewidth=0.5)
ax.scatter(*kp[:20].T, s=10, color="red", label="left wall, 0 (base) … 19")
ax.scatter(*kp[20:].T, s=10, color="lime", label="right wall, 20 … 39 (base)")
ax.scatter(*geo.annulus.T, s=40, marker="s", color="tab:blue", label="annulus hinge points")
ax.scatter(*geo.apex, s=60, marker="*", color="gold", label="apex")
ax.plot(*np.stack([geo.basal_centre, geo.apex]).T, color="gold", linewidth=1)
ax.legend(loc="lower left", fontsize=7)
ax.set_title(f"{name}, ED frame {ed}")
ax.axis("off")
fig.savefig(OUT / "figures" / "mask_keypoints.png", dpi=100, bbox_inches="tight")
plt.show()

volume = float(simpson_volume(kp, cine.spacing_mm))
print(f"long axis {geo.length:.1f} px; Simpson volume {volume:.1f} mL (exact {exact.volumes_ml[ed]:.1f} mL); "
      f"flags: {geo.flags or 'none'}")
print(f"mean distance to the exact keypoints: {np.linalg.norm(kp - exact.keypoints[ed], axis=1).mean():.2f} px")

# %% [markdown]
# ## 2. EchoNet-style tracings → keypoints
#
# EchoNet-Dynamic traces only two frames per clip, as line segments: the long axis, then chords
# across the LV. `read_echonet_clip` returns them as `(K, 4)` rows `(x1, y1, x2, y2)`;
# `tracing_keypoints` re-cuts them into the same 40 keypoints as the masks.

# %%
from echokdm.geometry import tracing_keypoints
from echokdm.io import read_echonet_clip

traced = read_echonet_clip(OUT / "phantom_echonet", name)
rows = []
fig, axes = plt.subplots(1, len(traced.tracings), figsize=(10, 5))
for ax, (t, segments) in zip(np.atleast_1d(axes), sorted(traced.tracings.items()), strict=True):
    from_tracing = tracing_keypoints(segments).keypoints
    from_mask = mask_keypoints(cine.masks[t]).keypoints
    ax.imshow(traced.frames[t], cmap="gray", vmin=0, vmax=1)
    for x1, y1, x2, y2 in segments:
        ax.plot([x1, x2], [y1, y2], color="orange", linewidth=0.7)
    ax.scatter(*from_tracing.T, s=10, color="red", label="from the tracing")
    ax.scatter(*from_mask.T, s=10, marker="x", color="cyan", label="from the mask")
    phase = "ED" if t in exact.ed_frames else "ES" if t in exact.es_frames else "traced"
    ax.set_title(f"{phase} frame {t}: {len(segments)} traced segments")
    ax.legend(loc="lower left", fontsize=7)
    ax.axis("off")
    rows.append({"frame": t, "segments": len(segments),
                 "tracing vs mask keypoints (px)": np.linalg.norm(from_tracing - from_mask, axis=1).mean(),
                 "volume from tracing (px³)": float(simpson_volume(from_tracing))})
fig.savefig(OUT / "figures" / "tracing_keypoints.png", dpi=100, bbox_inches="tight")
plt.show()
pd.DataFrame(rows)

# %% [markdown]
# ## 3. Simpson volumes over a clip, ED/ES and EF
#
# `sequence_keypoints` derives the keypoints of every frame and smooths the apex and annulus over
# time so that keypoint identity is stable over the cycle. `simpson_volume` gives one volume per
# frame (mL with the pixel spacing); `cardiac_cycle` finds each beat's ED (largest volume) and ES
# (smallest) and its EF = 100 (EDV − ESV) / EDV.

# %%
from echokdm.geometry import cardiac_cycle
from echokdm.geometry.temporal import sequence_keypoints

sequence = sequence_keypoints(cine.masks)  # keypoints (T, 40, 2)
volumes = simpson_volume(sequence.keypoints, cine.spacing_mm)  # (T,) mL
cycle = cardiac_cycle(volumes, cine.fps)

seconds = np.arange(cine.n_frames) / cine.fps
fig, ax = plt.subplots(figsize=(8, 3.8))
ax.plot(seconds, exact.volumes_ml, color="k", linewidth=2, alpha=0.4, label="exact (phantom)")
ax.plot(seconds, volumes, ".-", color="tab:blue", label="Simpson, keypoints from the masks")
ax.scatter(seconds[cycle.ed_frames], volumes[cycle.ed_frames], s=60, color="tab:red", zorder=3, label="ED")
ax.scatter(seconds[cycle.es_frames], volumes[cycle.es_frames], s=60, color="tab:green", zorder=3, label="ES")
ax.set_xlabel("time (s)")
ax.set_ylabel("LV volume (mL)")
ax.legend()
fig.savefig(OUT / "figures" / "volume_curve.png", dpi=100, bbox_inches="tight")
plt.show()

pd.DataFrame({"ED frame": cycle.ed_frames, "ES frame": cycle.es_frames, "EDV (mL)": cycle.edv.round(1),
              "ESV (mL)": cycle.esv.round(1), "EF (%)": cycle.ef.round(1),
              "true EF (%)": round(truth.loc[name, "ef_percent"], 1)})

# %% [markdown]
# ## 4. A whole manifest: keypoint and EF tables, agreement with the reference
#
# `keypoints_table` reads every clip of a manifest and derives keypoints and volume for every
# labelled frame (masks, or tracings for EchoNet); `ef_table` makes one row per clip (all frames
# labelled: per beat with `cardiac_cycle`; two traced frames: their larger and smaller volume);
# `ef_agreement` compares with the manifest's `ef_reference` (here the phantom's true EF): MAE,
# bias, limits of agreement, Pearson r, with bootstrap 95 % intervals. Clips or frames that fail are
# listed in `skipped`, never dropped silently.

# %%
from echokdm.metrics.lv_function import ef_agreement, ef_table, keypoints_table, plot_ef_agreement, write_table

tables = []
for folder in ("phantom_nifti", "phantom_echonet"):
    frames = keypoints_table(OUT / folder / "manifest.csv", progress=False)
    ef = ef_table(frames)
    print(f"{folder}: {len(frames.frames)} labelled frames, {len(ef.clips)} clips, "
          f"skipped {frames.skipped + ef.skipped or 'nothing'}")
    tables.append(ef.clips)
clips = pd.concat(tables, ignore_index=True)
write_table(clips, OUT / "ef_clips.csv")
clips[["dataset", "clip_id", "method", "n_beats", "edv", "esv", "volume_units", "ef", "ef_reference",
       "ef_error"]]

# %%
agreement = ef_agreement(clips, n_boot=1000, seed=0)
write_table(agreement, OUT / "ef_agreement.csv")
display(agreement[["dataset", "n", "mae", "mae_ci_low", "mae_ci_high", "bias", "loa_low", "loa_high",
                   "pearson_r"]])

plots = plot_ef_agreement(clips, OUT)
for path in plots.values():
    display(Image(filename=str(path)))
