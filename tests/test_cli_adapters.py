"""A tiny face KDM and a tiny pose KDM train and generate through the same CLI and pipeline as echo,
chosen only by the config (``data.adapter``) and, at generation, by the pipeline folder."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.adapters import get_adapter
from echokdm.cli import main
from echokdm.pipelines import KDMPipeline

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SUFFIX = {"face": ".pts", "pose": "_keypoints.json"}


def _train(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["procedural", kind, "--out", str(data), "--subjects", "4", "--sequences-per-subject", "1",
                 "--frames", "5", "--size", "32", "--pairs", "6", "--seed", "3", "--no-progress"]) == 0
    assert main(["train", "kdm", "--config", str(CONFIGS / kind / "kdm_tiny.yaml"), "--manifest",
                 str(data / "manifest.csv"), "--out", str(run), "--no-progress"]) == 0
    return data, run


@pytest.mark.parametrize("kind", ["face", "pose"])
def test_tiny_kdm_trains_and_generates_through_the_cli(kind, tmp_path, capsys):
    data, run = _train(kind, tmp_path)
    pipe = KDMPipeline.from_pretrained(run / "pipeline")
    assert pipe.adapter == kind and json.loads((run / "pipeline" / "model_index.json").read_text())["adapter"] == kind
    assert (run / "k2f" / "log.csv").exists() and not (run / "pipeline_noflow").exists()
    seq = data / "sequences" / f"{kind}_s000_q0"
    kp = [seq / "keypoints" / f"{t:04d}{SUFFIX[kind]}" for t in range(5)]
    out = tmp_path / "gen"
    args = ["--pipeline", str(run / "pipeline"), "-o", str(out), "--steps", "4", "--k", "2", "--no-progress"]
    assert main(["generate", str(seq / "frames" / "0000.png"), "--keypoints", str(kp[0]), "--target-keypoints",
                 str(kp[3]), *args]) == 0
    stem = "0000_f0_keypoints"
    suffix = get_adapter(kind).keypoint_suffix
    for name in (f"{stem}.mp4", f"{stem}.gif", f"{stem}_keypoints.csv", f"{stem}_preview.png", f"{stem}_flows.npz",
                 f"{stem}_generate.json", f"{stem}_frames/0001.png", f"{stem}_keypoints/0001{suffix}"):
        assert (out / name).is_file(), name
    written = pd.read_csv(out / f"{stem}_keypoints.csv")
    assert len(written) == 2  # the source frame, then the generated one
    np.testing.assert_allclose(written.filter(like="x").to_numpy()[1],
                               np.nan_to_num(get_adapter(kind).read_keypoints(kp[3])[0, :, 0], nan=np.nan), atol=1e-3)
    with np.load(out / f"{stem}_flows.npz") as f:
        assert f["flows"].shape == (2, 2, 32, 32) and np.abs(f["flows"][0]).max() == 0
    settings = json.loads((out / f"{stem}_generate.json").read_text())
    assert settings["adapter"] == kind and settings["pipeline_size"] == [32, 32]

    # the sequence's own motion (keypoint folder), and refusals of echo-only options and of overwriting
    assert main(["generate", str(seq / "frames"), "--frame", "1", "--keypoints", str(seq / "keypoints"), "--own",
                 "--frames", "3", "--formats", "png", *args]) == 0
    assert len(list((out / "frames_f1_own_frames").iterdir())) == 3
    assert main(["generate", str(seq / "frames" / "0000.png"), "--keypoints", str(kp[0]), "--ef", "40", *args]) == 1
    assert "--ef: echo only" in capsys.readouterr().err
    assert main(["generate", str(seq / "frames" / "0000.png"), "--keypoints", str(kp[0]), "--target-keypoints",
                 str(kp[3]), *args]) == 1
    assert "already exist" in capsys.readouterr().err


def test_drag_edit_moves_the_dragged_keypoint_only(tmp_path, monkeypatch):
    """Drag editing (appendix D) through the generic path, with a pipeline saved untrained."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _tiny_kdm import tiny_pipeline

    from echokdm.adapters.face import FACE_SCHEMA
    from echokdm.data.procedural import simulate_face

    face = simulate_face(0, n_frames=1, size=32)
    source = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray((face.render(0) * 255).astype(np.uint8)).save(source)
    get_adapter("face").write_keypoints(tmp_path / "face.pts", face.keypoints(0))
    pipe = tiny_pipeline()
    pipe.adapter = "face"
    pipe.save_pretrained(tmp_path / "pipe")
    pd.DataFrame({"keypoint": [57], "dx": [0.0], "dy": [2.0]}).to_csv(tmp_path / "drag.csv", index=False)
    out = tmp_path / "out"
    assert main(["generate", str(source), "--keypoints", str(tmp_path / "face.pts"),
                 "--drag", str(tmp_path / "drag.csv"), "--frames", "3", "--pipeline", str(tmp_path / "pipe"),
                 "-o", str(out), "--steps", "2", "--k", "1", "--no-progress", "--formats", "gif"]) == 0
    written = pd.read_csv(out / "face_f0_drag_keypoints.csv")
    xs, ys = written.filter(regex=r"^x\d").to_numpy(), written.filter(regex=r"^y\d").to_numpy()
    moved = np.abs(ys - ys[0]).max(axis=0) + np.abs(xs - xs[0]).max(axis=0)
    assert np.flatnonzero(moved > 1e-3).tolist() == [57] and FACE_SCHEMA.keypoint_names[57] == "outer lip 9"
    assert ys[1, 57] - ys[0, 57] == pytest.approx(2.0, abs=1e-3)  # frame 1 of 3 is the full edit
