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
# # 03 · Train a small KDM and evaluate it (the paper's Table 3)
#
# 1. simulate a small **phantom cohort** with patient-level train / val / test splits;
# 2. **train KDM** from a config dict: the latent autoencoder, K2F (keypoints → flow), F2I (flow →
#    image) and the "w/o K2F" F2I ablation, each through the one training loop;
# 3. **evaluate** on the test split: for every test clip, each method predicts the frames of one beat
#    from its ED frame and the target keypoints (KDM, "w/o F2I", "w/o K2F", thin-plate-spline warp,
#    no edit), scored per frame and summarised per patient with bootstrap 95 % intervals;
# 4. show the **Table-3-style** markdown, the summary table and plots, and the memorisation check.
#
# **Run time**: about 20 minutes on a laptop CPU with the defaults (a 64 px KDM, 600 steps per stage:
# far from the paper's quality); about a minute with `QUICK = True` (a 32 px KDM trained for a few
# steps, which only shows the workflow). For the full 112 px model use `configs/echo/kdm_112.yaml`
# (`echokdm train kdm`). Outputs go under `OUT` (default `notebook_outputs/03_train_and_evaluate-full/`,
# or `-quick`; a rerun replaces it).

# %% tags=["parameters"]
QUICK = False         # True: a tiny 32 px KDM and a 5-patient cohort (CI; shows the workflow only)
N_PATIENTS = 12       # phantom patients, split 70/15/15 % train/val/test by patient
SIZE = 64             # frame size of the cohort and the model (pixels, divisible by 16)
FPS = 25.0            # phantom frame rate
N_BEATS = 1.5         # clip length in beats
TRAIN_STEPS = 600     # optimisation steps of each stage (autoencoder, K2F, F2I, F2I w/o flow)
BATCH_SIZE = 8        # training batch size
STEPS = 50            # DDIM steps at evaluation (the paper: 200)
K = 25                # F2I start step at evaluation (the paper: 100 of 200)
MAX_TARGETS = 6       # target frames per test clip (ES always included)
LPIPS_NETS = ("alex", "vgg")  # LPIPS variants; () skips LPIPS
LPIPS_BACKBONE = None # folder of alexnet_features.pth / vgg16_features.pth; None: $ECHOKDM_LPIPS_WEIGHTS,
                      # else torchvision's cache or download, else LPIPS is left out with a note
SEED = 0              # cohort and evaluation seed
OUT = None            # None: notebook_outputs/03_train_and_evaluate-quick or -full (by QUICK), replaced
                      #   by a rerun; or a new or empty folder of yours (never overwritten)

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, Markdown, display

if QUICK:
    N_PATIENTS, SIZE, FPS, N_BEATS = 5, 32, 20.0, 1.3
    TRAIN_STEPS, BATCH_SIZE, STEPS, K, MAX_TARGETS = 10, 4, 4, 2, 4

from echokdm.notebook import output_folder

OUT = output_folder("03_train_and_evaluate", quick=QUICK, out=OUT)  # the notebook's own folder, emptied by a rerun
(OUT / "figures").mkdir()
print(f"outputs in {OUT.resolve()}")

# %% [markdown]
# ## 1. A phantom cohort with patient-level splits
#
# No patient appears in two splits. The manifest is what every later step reads.

# %%
from echokdm.data.phantom.export import write_cohort

cohort = write_cohort(OUT / "cohort", n_patients=N_PATIENTS, format="nifti", seed=SEED, size=SIZE, fps=FPS,
                      n_beats=N_BEATS, progress=False)
manifest = OUT / "cohort" / "manifest.csv"
print(cohort.ground_truth["split"].value_counts().to_dict())
cohort.ground_truth[["clip_name", "split", "ef_percent", "heart_rate_bpm", "n_frames"]]

# %% [markdown]
# ## 2. Train KDM
#
# The config is a plain dict validated by `load_kdm_config` (a misspelt key is an error that names
# it); the same keys as `configs/echo/kdm_112.yaml`. Training pairs (source frame, target frame, their
# keypoints, the exact flow between them) come from the phantom's ground truth. The run folder holds
# one folder per stage (resolved config, git commit, `log.csv`, `best/`, `last/`) and the assembled
# `pipeline/` and `pipeline_noflow/`; a stage whose `best/` exists is skipped on a rerun.

# %%
from echokdm.training.kdm import load_kdm_config, train_kdm

small = QUICK or SIZE <= 32
unet = {"block_out_channels": [16, 32] if small else [32, 64, 64], "layers_per_block": 1,
        "attention_levels": [False, True] if small else [False, False, True],
        "condition_embed_channels": 8 if small else 16, "norm_num_groups": 8, "flow_scale": 4.0}
loop = {"steps": TRAIN_STEPS, "batch_size": BATCH_SIZE, "val_every": max(TRAIN_STEPS // 3, 1),
        "checkpoint_every": max(TRAIN_STEPS // 3, 1)}
config = load_kdm_config(None, {
    "data": {"size": SIZE, "pairs_per_clip": 6 if small else 24, "val_pairs": 4 if small else 12},
    "autoencoder": {"model": {"block_out_channels": [8, 16, 16] if small else [16, 32, 32],
                              "norm_num_groups": 8},
                    "loss": {"lpips": 0.0}, "train": {**loop, "lr": 1e-3}},
    "k2f": {"model": unet, "train": {**loop, "lr": 1e-3 if small else 5e-4}},
    "f2i": {"model": unet, "train": {**loop, "lr": 1e-3 if small else 5e-4}},
    "sampling": {"num_train_timesteps": 100 if small else 1000, "num_inference_steps": STEPS, "k": K,
                 "val_inference_steps": min(STEPS, 4 if small else 10)},
})
run = train_kdm(config, manifest, OUT / "run", progress=not QUICK)
print("pipelines:", run["pipelines"])
print("clips skipped while building training pairs:", run["skipped_clips"] or "none")

# %%
stages = ("autoencoder", "k2f", "f2i", "f2i_noflow")
fig, axes = plt.subplots(1, len(stages), figsize=(16, 3))
for ax, stage in zip(axes, stages, strict=True):
    log = pd.read_csv(OUT / "run" / stage / "log.csv")  # one row per validation
    ax.plot(log["step"], log["train_loss"], "o-", color="tab:blue")
    ax.set_ylabel("training loss", color="tab:blue")
    validation = [c for c in log.columns if c.startswith("val_")][:1]  # the stage's validation metric
    if validation:
        ax.twinx().plot(log["step"], log[validation[0]], "s--", color="tab:orange")
        ax.set_title(f"{stage} (orange: {validation[0]})", fontsize=9)
    ax.set_xlabel("step")
fig.tight_layout()
fig.savefig(OUT / "figures" / "training_losses.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 3. Evaluate on the test split
#
# Every method predicts the same target frames from the same ED source frame, one sample per case
# with a seed derived from the clip id (no best-of-N). Frames are scored by MSE, PSNR, SSIM, LPIPS and
# the flow end-point error against the phantom's exact flow (whole frame and inside the LV); the
# summary averages per patient first, then over patients, with patient-level bootstrap intervals.
# (`evaluate` can resume its folder: called again with the same settings it reuses finished clips.)

# %%
from echokdm.evaluation import EvaluateConfig, evaluate
from echokdm.evaluation.runner import table3_sampling

settings = EvaluateConfig(split="test", max_targets=MAX_TARGETS,
                          sampling=table3_sampling().replace(num_inference_steps=STEPS, k=K, seed=SEED),
                          lpips_nets=tuple(LPIPS_NETS), lpips_backbone=LPIPS_BACKBONE,
                          n_boot=200 if QUICK else 2000)
result = evaluate(manifest, OUT / "run" / "pipeline", out=OUT / "evaluation", config=settings,
                  progress=not QUICK)
display(Markdown(result.table3))

# %%
summary = result.summary.set_index("method")
shown = [c for c in ("n_patients", "mse", "psnr", "ssim", "lpips_alex", "lpips_vgg", "epe", "epe_lv",
                     "temporal_error", "seconds_per_frame") if c in summary]
summary[shown].round(4)

# %%
methods = [m for m in summary.index if m != "real"]
means = summary.loc[methods, "mse"]
errors = np.stack([means - summary.loc[methods, "mse_low"], summary.loc[methods, "mse_high"] - means])
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].bar(methods, means, yerr=errors, capsize=4, color="tab:blue")
axes[0].set_ylabel("MSE (mean over patients, 95 % CI)")
axes[0].set_title("image error per method")
per_patient = result.patients.pivot_table(index="patient_id", columns="method", values="epe_lv")
with_flow = [m for m in methods if m in per_patient]  # "w/o K2F" makes no flow: no EPE
axes[1].boxplot([per_patient[m].dropna() for m in with_flow], tick_labels=with_flow)
axes[1].set_ylabel("flow EPE inside the LV (px), per patient")
axes[1].set_title("motion error per method")
fig.tight_layout()
fig.savefig(OUT / "figures" / "methods.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# One test clip: the source (ED) frame, the real target frames, and what each method made of them
# (the evaluation keeps every generated frame in `generated/<clip>.npz`).

# %%
clip = min((OUT / "evaluation" / "generated").glob("*.npz"))  # the first test clip by name
with np.load(clip) as saved:
    rows = {"real": saved["real"]} | {m: saved[f"{m}_frames"] for m in methods if f"{m}_frames" in saved}
    source, targets = saved["source"], saved["targets"]
fig, axes = plt.subplots(len(rows), len(targets) + 1, figsize=(1.9 * (len(targets) + 1), 1.9 * len(rows)))
for r, (name, frames) in enumerate(rows.items()):
    axes[r, 0].imshow(source, cmap="gray", vmin=0, vmax=255)
    axes[r, 0].set_ylabel(name)
    for c, t in enumerate(targets):
        axes[r, c + 1].imshow(frames[c], cmap="gray", vmin=0, vmax=255)
        axes[0, c + 1].set_title(f"frame {t}", fontsize=8)
    for ax in axes[r]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_title("source (ED)", fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "figures" / "test_clip.png", dpi=100, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## 4. Memorisation check
#
# Are the generated frames closer to the training frames than real frames of unseen patients are?
# `fraction_closer` should be near `expected_fraction` (and the Mann–Whitney p-value not small) for a
# model that does not copy its training data. A privacy signal, not a proof.

# %%
display(result.memorisation)
for name in ("metrics_per_patient.png", "worst_patients_kdm.png"):
    if (OUT / "evaluation" / "plots" / name).exists():
        display(Image(filename=str(OUT / "evaluation" / "plots" / name)))
print(f"every table is also written as CSV in {result.out}")
