"""The memorisation check of ``evaluate`` is tested per patient (issue 21): the KDM frames of a case and its
real targets are grouped by the case's patient."""

import sys
from math import comb
from pathlib import Path

import pandas as pd
import pytest

from echokdm.data.phantom.export import write_cohort
from echokdm.evaluation import EvaluateConfig, evaluate
from echokdm.evaluation.runner import table3_sampling

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


def test_memorisation_is_tested_per_patient(tmp_path):
    evaluated = write_cohort(tmp_path / "cohort", n_patients=4, format="nifti", seed=3, size=SIZE, fps=20.0,
                             n_beats=1.3, progress=False)
    write_cohort(tmp_path / "training", n_patients=3, format="nifti", seed=11, size=SIZE, fps=20.0, n_beats=1.3,
                 progress=False)
    tiny_pipeline().save_pretrained(tmp_path / "run" / "pipeline")
    config = EvaluateConfig(split="all", sampling=table3_sampling().replace(num_inference_steps=2, k=1),
                            max_targets=3, lpips_nets=(), n_boot=20, device="cpu", memorisation_frames=30,
                            training_manifest=str(tmp_path / "training" / "manifest.csv"))
    result = evaluate(tmp_path / "cohort" / "manifest.csv", tmp_path / "run" / "pipeline", out=tmp_path / "eval",
                      config=config, progress=False, plots=False)
    memo = result.memorisation
    assert list(memo["method"]) == ["kdm"]
    row = memo.iloc[0]
    n_patients = evaluated.manifest["patient_id"].nunique()
    assert row["test_unit"] == "group"
    assert row["n_generated_groups"] == row["n_held_out_groups"] == n_patients == 4
    assert row["n_generated"] == row["n_held_out"] == len(result.frames[result.frames["method"] == "kdm"])
    assert row["mannwhitney_p_min"] == pytest.approx(1 / comb(8, 4))
    assert row["mannwhitney_p_min"] <= row["mannwhitney_p"] <= 1.0 and 0.0 <= row["mannwhitney_p_per_frame"] <= 1.0
    assert 0.0 <= row["fraction_closer_low"] <= row["fraction_closer_high"] <= 1.0
    saved = pd.read_csv(tmp_path / "eval" / "memorisation.csv")
    assert {"mannwhitney_p", "mannwhitney_p_per_frame", "test_unit", "fraction_closer_low"} <= set(saved.columns)
