"""``echokdm evaluate`` on face and pose sequence manifests: the paper's Table 1 / Table 2 layout."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from echokdm.cli import main
from echokdm.evaluation.adapters import SequenceEvalConfig, evaluate_sequences, is_sequence_manifest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights" / "lpips"


@pytest.fixture(scope="module", params=["face", "pose"])
def trained(request, tmp_path_factory):
    kind = request.param
    tmp = tmp_path_factory.mktemp(kind)
    data, run = tmp / "data", tmp / "run"
    assert main(["procedural", kind, "--out", str(data), "--subjects", "5", "--sequences-per-subject", "1",
                 "--frames", "4", "--size", "32", "--pairs", "4", "--seed", "2", "--no-progress"]) == 0
    config = yaml.safe_load((CONFIGS / kind / "kdm_tiny.yaml").read_text())
    config["train_noflow_ablation"] = True
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "kdm", "--config", str(tmp / "config.yaml"), "--manifest", str(data / "manifest.csv"),
                 "--out", str(run), "--no-progress"]) == 0
    from echokdm.adapters.detector import train_keypoint_detector

    train_keypoint_detector(data / "manifest.csv", kind, tmp / "detector", size=32, steps=3, batch_size=4,
                            progress=False)
    return kind, data, run, tmp


def test_cli_writes_the_paper_table_for_every_method(trained, capsys):
    kind, data, run, tmp = trained
    out = tmp / "eval"
    args = ["evaluate", str(data / "manifest.csv"), "--pipeline", str(run / "pipeline"), "-o", str(out),
            "--split", "all", "--max-targets", "2", "--steps", "3", "--k", "2", "--detector", str(tmp / "detector"),
            "--no-progress"]
    if WEIGHTS.is_dir():
        args += ["--lpips-backbone", str(WEIGHTS)]
    else:
        args += ["--lpips-nets", "squeeze"]
    assert main(args) == 0
    frames = pd.read_csv(out / "per_frame.csv")
    assert set(frames["method"]) == {"no_edit", "tps", "wo_f2i", "wo_k2f", "kdm"}
    assert frames.groupby("method").size().nunique() == 1  # the same target frames for every method
    assert np.isfinite(frames["kp_md"]).all() and (frames.loc[frames["method"] == "no_edit", "frame"] > 0).all()
    table = (out / "table.md").read_text()
    assert ("Table 1" if kind == "face" else "Table 2") in table and "RGB" in table
    for label in ("No edit", "TPS warp", "w/o F2I", "w/o K2F", "KDM", "MSE_img", "MD (px)"):
        assert label in table
    assert "MD detector: small heatmap detector" in table
    if WEIGHTS.is_dir():
        assert frames["lpips_alex"].notna().all() and "LPIPS_vgg" in table
    generated = sorted((out / "generated" / "kdm").rglob("*.png"))
    assert generated and np.asarray(__import__("PIL.Image").Image.open(generated[0])).shape[-1] == 3
    assert "Table" in capsys.readouterr().out


def test_no_edit_of_the_source_frame_scores_zero_and_baselines_need_no_pipeline(trained):
    kind, data, run, tmp = trained
    config = SequenceEvalConfig(split="all", methods=("no_edit", "tps"), max_targets=1, lpips_nets=(),
                                detector="none", size=32)
    result = evaluate_sequences(data / "manifest.csv", adapter=kind, config=config, progress=False, n_boot=50)
    assert set(result.frames["method"]) == {"no_edit", "tps"} and result.detector == "none"
    assert (result.frames["mse"] >= 0).all() and result.frames["kp_md"].isna().all()
    with pytest.raises(ValueError, match="adapter"):
        evaluate_sequences(data / "manifest.csv", config=config, progress=False)


def test_sequence_manifests_are_told_apart(trained, tmp_path):
    _, data, _, _ = trained
    assert is_sequence_manifest(data / "manifest.csv")
    pd.DataFrame({"clip_id": ["a"], "path": ["x.avi"]}).to_csv(tmp_path / "echo.csv", index=False)
    assert not is_sequence_manifest(tmp_path / "echo.csv") and not is_sequence_manifest(tmp_path / "missing.csv")


@pytest.mark.parametrize("kind", ["face", "pose"])
def test_auto_detector_falls_back_on_the_packaged_heatmap_detector(kind, monkeypatch):
    import importlib.util

    from echokdm.adapters import get_adapter
    from echokdm.evaluation.adapters import _Detector

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("face_alignment", "dlib") else real(name, *a))
    detector = _Detector("auto", get_adapter(kind), None)
    assert f"kpdet_{kind}_64" in detector.name and "not " in detector.name
    frames = np.random.default_rng(0).random((2, 40, 40, 3)).astype(np.float32)
    assert detector(frames, "kdm", "clip").shape == (2, get_adapter(kind).n_keypoints, 2)
    with pytest.raises(ValueError, match="no installed detector"):
        _Detector("adapter", get_adapter(kind), None)
    assert _Detector("none", get_adapter(kind), None)(frames, "kdm", "clip") is None
