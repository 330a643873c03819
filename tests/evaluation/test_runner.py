"""``evaluate`` on a tiny random pipeline and a tiny phantom cohort: content of every table,
fixed seeds, resume, and refusal to mix settings."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.data.phantom.export import write_cohort
from echokdm.evaluation import EvaluateConfig, evaluate, runner
from echokdm.evaluation.runner import table3_sampling
from echokdm.metrics.image import mse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    write_cohort(root / "cohort", n_patients=4, format="nifti", seed=3, size=SIZE, fps=20.0, n_beats=1.3,
                 progress=False)
    tiny_pipeline().save_pretrained(root / "run" / "pipeline")
    tiny_pipeline(use_flow=False).save_pretrained(root / "run" / "pipeline_noflow")
    return root


FAST = table3_sampling().replace(num_inference_steps=4, k=2)
CONFIG = {"split": "all", "sampling": FAST, "max_targets": 4, "lpips_nets": (), "n_boot": 200, "device": "cpu"}


def test_tables_hold_every_method_and_honest_values(setup, tmp_path):
    from echokdm.data.manifest import load_manifest
    from echokdm.evaluation.cases import load_case

    out = tmp_path / "eval"
    result = evaluate(setup / "cohort" / "manifest.csv", setup / "run" / "pipeline", out=out,
                      config=EvaluateConfig(**CONFIG), progress=False)
    frames = result.frames
    assert set(frames["method"]) == {"no_edit", "tps", "wo_f2i", "wo_k2f", "kdm"}
    assert frames.groupby("method").size().nunique() == 1  # every method scored on the same frames
    assert frames["patient_id"].nunique() == 4 and len(result.patients) == 4 * 5
    # no edit: the source itself, scored against the real targets
    manifest = setup / "cohort" / "manifest.csv"
    row = load_manifest(manifest).iloc[0]
    case = load_case(row, manifest, SIZE, max_targets=4)
    mine = frames[(frames["clip_id"] == row["clip_id"]) & (frames["method"] == "no_edit")]
    np.testing.assert_array_equal(mine["frame"], case.targets)
    expected = mse(np.repeat(case.frames[case.source][None], len(case.targets), 0), case.frames[case.targets])
    np.testing.assert_allclose(mine["mse"], expected, rtol=1e-6)
    # no-edit flow EPE is the mean length of the exact flow
    np.testing.assert_allclose(mine["epe"], np.linalg.norm(case.reference_flows, axis=1).mean(axis=(1, 2)), rtol=1e-5)
    # w/o F2I is the source warped by KDM's own K2F flows
    with np.load(out / "generated" / f"{row['clip_id']}.npz") as saved:
        flows_epe = frames[(frames["clip_id"] == row["clip_id"]) & (frames["method"] == "wo_f2i")]["epe"].to_numpy()
        kdm_epe = frames[(frames["clip_id"] == row["clip_id"]) & (frames["method"] == "kdm")]["epe"].to_numpy()
        np.testing.assert_allclose(flows_epe, kdm_epe)
        assert saved["kdm_frames"].shape == (len(case.targets), SIZE, SIZE)
    # clip table: a real row per clip, EF target from the exact keypoints, timings for generated methods
    clips = result.clips
    methods = clips.groupby("clip_id")["method"].apply(set)
    assert (methods == {"no_edit", "tps", "wo_f2i", "wo_k2f", "kdm", "real"}).all()
    assert clips["ef_target"].between(10, 90).all() and clips["temporal_error"].notna().all()
    # the target EF and volumes are those of the phantom's exact volume curve over the evaluated frames
    from echokdm.data.ground_truth import ground_truth_files
    from echokdm.data.phantom import load_npz

    truth = load_npz(ground_truth_files(manifest)[row["clip_id"]]).volumes_ml[[case.source, *case.targets]]
    mine = clips[(clips["clip_id"] == row["clip_id"]) & (clips["method"] == "kdm")].iloc[0]
    assert mine["volume_units"] == "mL"
    assert abs(mine["ef_target"] - 100 * (truth.max() - truth.min()) / truth.max()) < 3.0
    np.testing.assert_allclose([mine["edv_target"], mine["esv_target"]], [truth.max(), truth.min()], rtol=0.08)
    assert (clips.loc[clips["method"] == "kdm", "seconds_per_frame"] > 0).all()
    # summary: patient-level intervals bracket the mean
    s = result.summary.set_index("method")
    assert np.isnan(s.loc["real", "mse"]) and np.isfinite(s.loc["real", "temporal_error"])  # real: clip metrics only
    s = s.drop("real")
    assert (s["mse_low"] <= s["mse"]).all() and (s["mse"] <= s["mse_high"]).all()
    assert (s["n_patients"].loc[["kdm", "tps"]] == 4).all()
    assert "| KDM |" in result.table3 and "| TPS warp |" in result.table3 and "| w/o K2F |" in result.table3
    for name in ("per_frame.csv", "per_clip.csv", "per_patient.csv", "summary.csv", "table3.md",
                 "plots/metrics_per_patient.png", "plots/worst_patients_kdm.png"):
        assert (out / name).stat().st_size > 0, name
    written = pd.read_csv(out / "per_frame.csv")
    np.testing.assert_allclose(written["mse"], frames["mse"])


def test_resume_reuses_parts_and_same_seed_same_numbers(setup, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    manifest, pipe = setup / "cohort" / "manifest.csv", setup / "run" / "pipeline"
    config = EvaluateConfig(**{**CONFIG, "max_clips": 2, "methods": ("no_edit", "kdm")})
    first = evaluate(manifest, pipe, out=out, config=config, progress=False, plots=False)
    again = evaluate(manifest, pipe, out=tmp_path / "other", config=config, progress=False, plots=False)
    np.testing.assert_array_equal(first.frames["mse"], again.frames["mse"])  # fixed seeds: same samples

    def boom(*args, **kwargs):
        raise AssertionError("a finished clip was generated again")

    monkeypatch.setattr(runner, "generate_case", boom)
    resumed = evaluate(manifest, pipe, out=out, config=config, progress=False, plots=False)
    pd.testing.assert_frame_equal(resumed.frames, first.frames, check_dtype=False)
    with pytest.raises(ValueError, match="different settings.*k"):
        other_k = EvaluateConfig(**{**CONFIG, "max_clips": 2, "sampling": FAST.replace(k=3),
                                    "methods": ("no_edit", "kdm")})
        evaluate(manifest, pipe, out=out, config=other_k,
                 progress=False, plots=False)


def test_baselines_without_a_model_and_errors(setup, tmp_path):
    manifest = setup / "cohort" / "manifest.csv"
    result = evaluate(manifest, None, config=EvaluateConfig(**{**CONFIG, "size": SIZE}), progress=False)
    assert set(result.frames["method"]) == {"no_edit", "tps"} and result.out is None
    # TPS moves the LV where asked: it beats no edit on the flow inside the LV (outside, it drags the
    # surroundings along, which the whole-frame EPE shows)
    s = result.summary.set_index("method")
    assert s.loc["tps", "epe_lv"] < 0.5 * s.loc["no_edit", "epe_lv"]
    with pytest.raises(ValueError, match="no clips in split 'nope'"):
        evaluate(manifest, None, config=EvaluateConfig(**{**CONFIG, "split": "nope"}), progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        EvaluateConfig(methods=("kdm", "magic"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="busy"):
        evaluate(manifest, None, out=tmp_path / "busy", config=EvaluateConfig(**CONFIG), progress=False)


def test_an_evaluation_of_no_clip_says_why_and_leaves_no_folder(setup, tmp_path):
    """Every clip unusable (here: a file that is not a clip): the error lists each clip with its reason, readably, and
    the run folder it began is removed; a folder holding the user's own files is left as it was."""
    table = pd.read_csv(setup / "cohort" / "manifest.csv").iloc[:2]
    (tmp_path / "gone.nii.gz").write_bytes(b"not a NIfTI file")
    table["path"] = str(tmp_path / "gone.nii.gz")  # unreadable
    table["mask_path"] = ""
    manifest = tmp_path / "broken.csv"
    table.to_csv(manifest, index=False)
    config = EvaluateConfig(**{**CONFIG, "size": SIZE})
    listed = r"no clip could be evaluated \(2 skipped\): phantom0000: .*gone.*; phantom0001"
    with pytest.raises(ValueError, match=listed):
        evaluate(manifest, None, out=tmp_path / "eval", config=config, progress=False, plots=False)
    assert not (tmp_path / "eval").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError, match="no clip could be evaluated"):
        evaluate(manifest, None, out=tmp_path / "mine", config=config, progress=False, plots=False)
    assert not (tmp_path / "mine" / "evaluate.json").exists() and not (tmp_path / "mine" / "parts").exists()
