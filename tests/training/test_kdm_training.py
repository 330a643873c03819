"""KDM training on a tiny phantom cohort: every stage runs through the one loop, the pipeline
folders are assembled and generate; stages with a best/ are skipped; a tiny K2F learns."""

import numpy as np
import pytest
import torch

from echokdm.data.manifest import load_manifest
from echokdm.data.phantom.export import write_cohort
from echokdm.pipelines import KDMPipeline
from echokdm.training.kdm import build_pair_bank, load_kdm_config, train_kdm

LOOP = {"batch_size": 4, "val_every": 10, "checkpoint_every": 10, "device": "cpu"}
UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "attention_levels": [False, True],
        "condition_embed_channels": 8, "norm_num_groups": 8, "flow_scale": 4.0}
TINY = {
    "data": {"size": 32, "pairs_per_clip": 6, "val_pairs": 4},
    "autoencoder": {"model": {"block_out_channels": [8, 16, 16], "norm_num_groups": 8},
                    "loss": {"lpips": 0.0}, "train": {**LOOP, "steps": 10, "lr": 0.001}},
    "k2f": {"model": UNET, "train": {**LOOP, "steps": 10, "lr": 0.001}},
    "f2i": {"model": UNET, "train": {**LOOP, "steps": 10, "lr": 0.001}},
    "sampling": {"num_train_timesteps": 100, "num_inference_steps": 10, "k": 5, "val_inference_steps": 4},
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("kdm_cohort")
    write_cohort(out, n_patients=4, format="nifti", seed=2, size=32, fps=20.0, n_beats=0.6, progress=False)
    return out / "manifest.csv"


def test_pair_bank_from_phantom(cohort):
    config = load_kdm_config(None, TINY)
    bank = build_pair_bank(load_manifest(cohort), cohort, "train", config.data, progress=False)
    assert bank.frames.shape[1:] == (32, 32) and bank.renders.shape[1:] == (3, 32, 32)
    n_train = (load_manifest(cohort)["split"] == "train").sum()
    assert bank.flows.shape == (len(bank), 2, 32, 32) and len(bank) == 6 * n_train
    assert (bank.pairs[:, 0] != bank.pairs[:, 1]).all() and bank.skipped == []
    b = bank.batch(torch.arange(3))
    assert b["source"].shape == (3, 1, 32, 32) and b["target_render"].min() >= -1


@pytest.mark.slow
def test_train_all_stages_assemble_and_generate(cohort, tmp_path):
    config = load_kdm_config(None, TINY)
    out = tmp_path / "kdm"
    result = train_kdm(config, cohort, out, progress=False)
    assert sorted(p.split("/")[-1] for p in result["pipelines"]) == ["pipeline", "pipeline_noflow"]
    for stage in ("autoencoder", "k2f", "f2i", "f2i_noflow"):
        assert (out / stage / "best").exists() and (out / stage / "log.csv").exists(), stage
    pipe = KDMPipeline.from_pretrained(out / "pipeline")
    bank = build_pair_bank(load_manifest(cohort), cohort, "val", config.data, progress=False)
    gen = pipe(bank.frames[0], bank.keypoints[0], bank.keypoints[1:4], k=3, num_inference_steps=6,
               generator=torch.Generator().manual_seed(0), progress=False)
    assert gen.frames.shape == (3, 32, 32) and np.isfinite(gen.frames).all()
    again = train_kdm(config, cohort, out, progress=False)  # finished stages are skipped
    assert all(again[s] == "skipped (best/ exists)" for s in ("autoencoder", "k2f", "f2i", "f2i_noflow"))


@pytest.mark.slow
def test_k2f_learns_to_lower_its_loss(cohort, tmp_path):
    import pandas as pd

    steps = {**LOOP, "steps": 60, "lr": 0.002, "val_every": 30}
    config = load_kdm_config(None, {**TINY, "k2f": {"model": UNET, "train": steps}})
    train_kdm(config, cohort, tmp_path / "k", stages=("k2f",), progress=False)
    log = pd.read_csv(tmp_path / "k" / "k2f" / "log.csv")
    assert log["train_loss"].iloc[-1] < 0.8 * log["train_loss"].iloc[0]


def test_k2f_with_the_displacement_condition_trains_and_saves_it(cohort, tmp_path):
    from echokdm.models.kdm import ConditionalUNet
    from echokdm.pipelines import KeypointToFlowPipeline

    steps = {**LOOP, "steps": 4, "val_every": 4, "checkpoint_every": 4}
    config = load_kdm_config(None, {**TINY, "k2f": {"model": {**UNET, "displacement_sigma": 2.0}, "train": steps}})
    train_kdm(config, cohort, tmp_path / "k", stages=("k2f",), progress=False)
    k2f = ConditionalUNet.from_pretrained(tmp_path / "k" / "k2f" / "best")
    assert k2f.config.displacement_sigma == 2.0 and k2f.config.condition_channels == 1 + 2 * 3 + 3
    bank = build_pair_bank(load_manifest(cohort), cohort, "val", config.data, progress=False)
    flow = KeypointToFlowPipeline(k2f)(bank.frames[0], bank.keypoints[0], bank.keypoints[1], num_inference_steps=3)
    assert flow.shape == (1, 2, 32, 32) and np.isfinite(flow).all()


def test_f2i_with_the_warped_source_trains_saves_it_and_the_ablation_does_not(cohort, tmp_path):
    from echokdm.models.kdm import ConditionalUNet

    steps = {**LOOP, "steps": 2, "val_every": 2, "checkpoint_every": 2}
    config = load_kdm_config(None, {**TINY, "autoencoder": {**TINY["autoencoder"], "train": {**LOOP, "steps": 2}},
                                    "f2i": {"model": {**UNET, "warped_source": True}, "train": steps}})
    out = tmp_path / "k"
    train_kdm(config, cohort, out, stages=("autoencoder", "f2i", "f2i_noflow"), progress=False)
    f2i = ConditionalUNet.from_pretrained(out / "f2i" / "best")
    assert f2i.config.warped_source is True and f2i.config.condition_channels == 1 + 3 + 2 + 1
    noflow = ConditionalUNet.from_pretrained(out / "f2i_noflow" / "best")  # no flow, nothing to warp by
    assert noflow.config.warped_source is False and noflow.config.condition_channels == 1 + 3
