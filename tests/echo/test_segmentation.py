"""Segmentation training on a tiny phantom cohort: it learns, checkpoints, resumes and segments."""

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.data.manifest import load_manifest
from echokdm.data.phantom.export import write_cohort
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.echo.segmentation_training import (
    _evaluate,
    dice_scores,
    labelled_frames,
    load_seg_config,
    segment_manifest,
    train_segmentation,
)

TINY = {"model": {"channels": [8, 16, 32], "num_res_units": 1}, "data": {"size": 64},
        "train": {"steps": 160, "batch_size": 8, "lr": 0.003, "val_every": 80, "seed": 1}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_cohort")
    write_cohort(out, n_patients=5, format="camus", seed=5, size=64, fps=25.0, n_beats=0.6, progress=False)
    return out / "manifest.csv"


def test_dice_scores():
    a = np.zeros((3, 4, 4), np.uint8)
    b = a.copy()
    a[0, :2] = 1
    b[0, :2] = 1
    a[1, :2] = 1
    b[1, 1:3] = 1
    np.testing.assert_allclose(dice_scores(a, b), [1.0, 0.5, 1.0])


def test_model_round_trip(tmp_path):
    model = LVSegmentationNet(channels=(4, 8), num_res_units=1, sample_size=32)
    model.save_pretrained(tmp_path / "m")
    again = LVSegmentationNet.from_pretrained(tmp_path / "m")
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(model(x), again(x))
    assert again.predict_masks(torch.rand(3, 40, 50)).shape == (3, 40, 50)


@pytest.mark.slow
def test_training_learns_checkpoints_resumes_and_segments(cohort, tmp_path):
    manifest = load_manifest(cohort)
    config = load_seg_config(None, TINY)
    val = labelled_frames(manifest, "val", 64, progress=False)
    torch.manual_seed(1)
    untrained, _ = _evaluate(LVSegmentationNet(channels=(8, 16, 32), num_res_units=1, sample_size=64), val)

    run = tmp_path / "run"
    result = train_segmentation(config, cohort, run, progress=False)
    assert result["steps"] == 160 and result["validated_on"] == "val"
    assert result["best_dice"] > max(0.6, untrained + 0.2), (result, untrained)
    for name in ("config.yaml", "git.txt", "log.csv", "best/config.json", "last/trainer_state.pt"):
        assert (run / name).exists(), name
    log = pd.read_csv(run / "log.csv")
    assert log["step"].tolist() == [80, 160]
    assert load_seg_config(run / "config.yaml") == config  # the run folder rebuilds the config

    with pytest.raises(FileExistsError, match="--resume"):
        train_segmentation(config, cohort, run, progress=False)
    longer = load_seg_config(None, {**TINY, "train": {**TINY["train"], "steps": 200}})
    resumed = train_segmentation(longer, cohort, run, resume=True, progress=False)
    assert resumed["steps"] == 200 and pd.read_csv(run / "log.csv")["step"].tolist() == [80, 160, 200]

    table, skipped = segment_manifest(cohort, run / "best", tmp_path / "seg", progress=False)
    assert skipped == [] and len(table) == len(manifest)
    assert (table["n_labelled"] == table["n_frames"]).all() and table["dice"].between(0, 1).all()
    masks = np.load(tmp_path / "seg" / table["masks"].iloc[0])["masks"]
    assert masks.shape == (table["n_frames"].iloc[0], 64, 64) and masks.dtype == np.uint8
    assert table.loc[table.split == "train", "dice"].mean() > 0.6
    with pytest.raises(FileExistsError, match="segmentation.csv"):
        segment_manifest(cohort, run / "best", tmp_path / "seg", progress=False)
