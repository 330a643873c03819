"""A face and a pose KDM train, generate and write in colour through the CLI (configs/*/kdm_tiny.yaml)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echokdm.cli import main
from echokdm.pipelines import KDMPipeline

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SUFFIX = {"face": ".pts", "pose": "_keypoints.json"}


@pytest.mark.parametrize("kind", ["face", "pose"])
def test_tiny_colour_kdm_end_to_end(kind, tmp_path):
    data, run, out = tmp_path / "data", tmp_path / "run", tmp_path / "gen"
    assert main(["procedural", kind, "--out", str(data), "--subjects", "4", "--sequences-per-subject", "1",
                 "--frames", "4", "--size", "32", "--pairs", "4", "--seed", "1", "--no-progress"]) == 0
    source = np.asarray(Image.open(data / "sequences" / f"{kind}_s000_q0" / "frames" / "0000.png"))
    assert source.ndim == 3 and source.shape[-1] == 3  # procedural frames are RGB
    assert main(["train", "kdm", "--config", str(CONFIGS / kind / "kdm_tiny.yaml"), "--manifest",
                 str(data / "manifest.csv"), "--out", str(run), "--no-progress"]) == 0
    pipe = KDMPipeline.from_pretrained(run / "pipeline")
    assert pipe.vae.config.in_channels == 3 and pipe.k2f.config.frame_channels == 3
    seq = data / "sequences" / f"{kind}_s000_q0"
    assert main(["generate", str(seq / "frames" / "0000.png"),
                 "--keypoints", str(seq / "keypoints" / f"0000{SUFFIX[kind]}"),
                 "--target-keypoints", str(seq / "keypoints" / f"0002{SUFFIX[kind]}"), "--pipeline",
                 str(run / "pipeline"), "-o", str(out), "--steps", "3", "--k", "2", "--no-progress"]) == 0
    stem = "0000_f0_keypoints"
    frames = [np.asarray(Image.open(p)) for p in sorted((out / f"{stem}_frames").glob("*.png"))]
    assert len(frames) == 2 and all(f.shape == (32, 32, 3) for f in frames)
    np.testing.assert_array_equal(frames[0], source)  # the source frame comes back exactly, in colour
    assert (out / f"{stem}.mp4").stat().st_size > 0 and (out / f"{stem}.gif").stat().st_size > 0
    assert json.loads((out / f"{stem}_generate.json").read_text())["adapter"] == kind
