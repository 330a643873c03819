"""The realism part of ``evaluate``: beats without ground truth (new EF, transferred motion), the
realism tables per beat kind and method, the FID/FVD plumbing with injected networks, resume, and
the CLI options."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.data.phantom.export import write_cohort
from echokdm.evaluation import EvaluateConfig, evaluate
from echokdm.evaluation.cases import load_case, new_ef_case, own_ef, transfer_case
from echokdm.evaluation.realism import RealismSettings
from echokdm.evaluation.runner import table3_sampling
from echokdm.geometry.volumes import simpson_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline

FAST = table3_sampling().replace(num_inference_steps=4, k=2)
SETTINGS = {"download": False, "classifier_folds": 2, "classifier_steps": 10}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("realism")
    write_cohort(root / "cohort", n_patients=4, format="nifti", seed=3, size=SIZE, fps=20.0, n_beats=1.3,
                 progress=False)
    tiny_pipeline().save_pretrained(root / "run" / "pipeline")
    tiny_pipeline(use_flow=False).save_pretrained(root / "run" / "pipeline_noflow")
    return root


def _config(**realism):
    return EvaluateConfig(split="all", sampling=FAST, max_targets=4, lpips_nets=(), n_boot=100, device="cpu",
                          memorisation=False, realism=RealismSettings(**{**SETTINGS, **realism}))


def _cases(setup):
    from echokdm.data.manifest import load_manifest

    manifest = setup / "cohort" / "manifest.csv"
    return [load_case(row, manifest, SIZE, max_targets=4) for _, row in load_manifest(manifest).iterrows()]


def test_new_ef_beat_has_the_own_beats_timing_and_the_asked_ef(setup):
    case = _cases(setup)[0]
    beat = new_ef_case(case, 30.0)
    assert beat.beat == "new_ef" and beat.motion == "ef=30" and beat.frames.shape == (1, SIZE, SIZE)
    assert len(beat.targets) == len(case.targets) and beat.keypoints.shape == (len(case.targets) + 1, 40, 2)
    np.testing.assert_allclose(beat.keypoints[0], case.keypoints[case.source])
    np.testing.assert_allclose(beat.keypoints[-1], case.keypoints[case.source], atol=0.05)  # next ED: the source pose
    v = simpson_volume(beat.keypoints)
    assert 100 * (1 - v.min() / v[0]) <= 30.0 + 1e-3  # sampled at the own beat's frames: at most the asked EF
    assert 100 * (1 - v.min() / v[0]) > 15.0
    assert 10 < own_ef(case) < 90


def test_transfer_beat_moves_the_source_as_the_donor(setup):
    case, donor = _cases(setup)[:2]
    beat = transfer_case(case, donor)
    assert beat.beat == "transfer" and beat.motion == f"from={donor.clip_id}"
    assert len(beat.targets) == len(donor.targets)
    np.testing.assert_allclose(beat.keypoints[0], case.keypoints[case.source])
    # the donor's volume change, relative to its ED, comes through (transfer keeps relative motion)
    donor_v = simpson_volume(donor.keypoints[[donor.source, *donor.targets]])
    beat_v = simpson_volume(beat.keypoints)
    np.testing.assert_allclose(beat_v / beat_v[0], donor_v / donor_v[0], atol=0.08)


def test_realism_tables_per_beat_and_method(setup, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(setup / "cohort" / "manifest.csv", setup / "run" / "pipeline", out=out,
                      config=_config(beats=("own", "new_ef", "transfer")), progress=False)
    realism = result.realism
    methods = {"no_edit", "tps", "wo_f2i", "wo_k2f", "kdm"}
    summary = realism.summary
    for beat in ("own", "new_ef", "transfer"):
        assert set(summary.loc[summary["beat"] == beat, "method"]) - {"real"} == methods
    assert set(summary.loc[summary["method"] == "real", "beat"]) == {"own"}  # the reference: the real own beat
    clips = realism.clips
    assert len(clips[(clips["beat"] == "new_ef")]) == 4 * 5 and clips["motion"].str.startswith("ef=").sum() == 20
    transfers = clips[clips["beat"] == "transfer"]
    assert (transfers["motion"].str.removeprefix("from=") != transfers["clip_id"]).all()
    assert clips["warp_error"].notna().all()
    generated = summary[summary["method"] != "real"]
    assert generated["classifier_acc"].between(0, 1).all() and generated["fid"].isna().all()
    assert (generated["classifier_acc_low"] <= generated["classifier_acc"]).all()
    for name in ("realism.csv", "realism_per_clip.csv", "realism.md", "plots/realism.png"):
        assert (out / name).is_file()
    text = (out / "realism.md").read_text()
    assert "| own | KDM |" in text and "FID left out" in text and "FVD left out" in text
    assert (out / "generated" / "phantom0000.new_ef.npz").is_file()
    # paired metrics stay for the own beat only
    assert set(result.frames["method"]) == methods and "beat" not in result.frames
    # a rerun resumes (nothing regenerated) and gives the same realism numbers
    import echokdm.evaluation.runner as runner

    def fail(*args, **kwargs):
        raise AssertionError("regenerated on resume")

    original = runner.generate_case
    runner.generate_case = fail
    try:
        again = evaluate(setup / "cohort" / "manifest.csv", setup / "run" / "pipeline", out=out,
                         config=_config(beats=("own", "new_ef", "transfer")), progress=False)
    finally:
        runner.generate_case = original
    pd.testing.assert_frame_equal(again.realism.summary, summary)


def test_fid_and_fvd_columns_with_injected_networks(setup, tmp_path, monkeypatch):
    from echokdm.metrics import fid, fvd

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten()).eval()

    def frames_features(frames):
        with torch.no_grad():
            return net(torch.from_numpy(np.asarray(frames, np.float32))[:, None]).numpy()

    def clip_features(clips):
        return np.stack([frames_features(np.asarray(c)).mean(0) for c in clips])

    monkeypatch.setattr(fid, "load_fid_extractor", lambda *a, **k: (frames_features, None))
    monkeypatch.setattr(fvd, "load_fvd_extractor", lambda *a, **k: (clip_features, None))
    with pytest.warns(fid.FewSamplesWarning, match="FID/FVD from"):
        result = evaluate(setup / "cohort" / "manifest.csv", None, out=tmp_path / "eval",
                          config=_config(beats=("own",)), progress=False)
    summary = result.realism.summary.set_index("method")
    assert set(summary.index) == {"no_edit", "tps", "real"}
    assert np.isfinite(summary.loc[["no_edit", "tps"], ["fid", "fvd"]].to_numpy()).all()
    assert "biased upwards" in result.realism.table


def test_without_realism_nothing_changes(setup, tmp_path):
    config = _config()
    config.realism = None
    result = evaluate(setup / "cohort" / "manifest.csv", None, out=tmp_path / "eval", config=config, progress=False)
    assert result.realism is None and not (tmp_path / "eval" / "realism.csv").exists()
    import json

    assert "realism" not in json.loads((tmp_path / "eval" / "evaluate.json").read_text())


def test_settings_and_cli_options(setup, tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="unknown or no beat"):
        RealismSettings(beats=("own", "sideways"))
    with pytest.raises(ValueError, match="new_efs"):
        RealismSettings(new_efs=(120.0,))
    from echokdm.cli import main
    from echokdm.metrics import fid, fvd

    manifest = str(setup / "cohort" / "manifest.csv")
    common = ["--split", "all", "--methods", "no_edit", "tps", "--max-targets", "3", "--lpips-nets", "alex",
              "--no-memorisation", "--no-progress", "--classifier-folds", "2", "--classifier-steps", "5"]
    # a wrong weights path is the user's to fix: one error line naming it
    assert main(["evaluate", manifest, "-o", str(tmp_path / "bad"), *common, "--beats", "own,new_ef",
                 "--fid-weights", str(tmp_path / "missing")]) == 1
    assert "missing: FID weights not found" in capsys.readouterr().err
    assert main(["evaluate", manifest, "-o", str(tmp_path / "bad2"), *common, "--beats", "own,backwards"]) != 0
    monkeypatch.setattr(fid, "load_fid_extractor", lambda *a, **k: (None, "FID left out: test"))
    monkeypatch.setattr(fvd, "load_fvd_extractor", lambda *a, **k: (None, "FVD left out: test"))
    assert main(["evaluate", manifest, "-o", str(tmp_path / "cli"), *common, "--beats", "own,new_ef",
                 "--new-ef", "35"]) == 0
    printed = capsys.readouterr().out
    assert "| new_ef | TPS warp |" in printed and "realism.csv" in printed
    clips = pd.read_csv(tmp_path / "cli" / "realism_per_clip.csv")
    assert set(clips.loc[clips["beat"] == "new_ef", "motion"]) == {"ef=35"}
