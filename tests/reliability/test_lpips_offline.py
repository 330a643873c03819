"""LPIPS on a machine without internet (issue 17, item 12): one behaviour everywhere.

Offline is simulated as on a hospital network: ``TORCH_HOME`` is an empty folder (no torchvision
cache), ``ECHOKDM_LPIPS_WEIGHTS`` is unset and torch's download raises ``URLError``. Then
``echokdm evaluate`` (folders and manifest) leaves LPIPS out with one complete note naming
``--lpips-backbone DIR`` and ``ECHOKDM_LPIPS_WEIGHTS=DIR`` (columns present, NaN), ``echokdm train
kdm`` with an LPIPS loss stops before reading any data with one line naming the config key and the
environment variable, and a local backbone (option or environment variable) scores as usual.
"""

import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from echokdm.cli import main
from echokdm.metrics import lpips as lpips_module
from echokdm.metrics.lpips import LPIPSSkippedWarning, LPIPSUnavailableError, lpips_metrics

WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "lpips"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "alexnet_features.pth").is_file(),
                                   reason=f"LPIPS backbone weights not found in {WEIGHTS}")

TRAIN_CONFIG = """\
data: {size: 32, pairs_per_clip: 2, val_pairs: 2}
autoencoder:
  model: {block_out_channels: [8, 16, 16], norm_num_groups: 8}
  loss: {lpips: 0.1, lpips_net: alex}
  train: {steps: 2, batch_size: 2, lr: 0.001, val_every: 2, checkpoint_every: 2, device: cpu}
"""


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No network, no torchvision cache, no ECHOKDM_LPIPS_WEIGHTS, no LPIPS model cached in the process."""
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    empty = tmp_path / "torch_home"
    empty.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(empty))
    monkeypatch.delenv("ECHOKDM_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(lpips_module, "_MODELS", {})
    return calls


def _note_is_complete(text: str) -> None:
    assert "\n" not in text.strip()
    for part in ("--lpips-backbone DIR", "ECHOKDM_LPIPS_WEIGHTS=DIR", "alexnet_features.pth", "vgg16_features.pth"):
        assert part in text, part
    assert text.rstrip().endswith(")")  # not cut off mid-sentence


@pytest.fixture(scope="module")
def loops(tmp_path_factory):
    """Two folders of two 36 x 36 NIfTI loops paired by name (generated = reference + a little noise)."""
    from echokdm.io.nifti import write_nifti

    root = tmp_path_factory.mktemp("lpips_loops")
    rng = np.random.default_rng(0)
    for name in ("P001_a4c", "P002_a4c"):
        frames = rng.random((3, 36, 36)).astype(np.float32)
        write_nifti(root / "reference" / f"{name}.nii.gz", frames, fps=20.0)
        write_nifti(root / "generated" / f"{name}.nii.gz", np.clip(frames + 0.1, 0, 1), fps=20.0)
    return root


def test_note_names_the_options_and_the_download_was_tried(offline):
    metrics, note = lpips_metrics(("alex", "vgg"))
    assert metrics == {} and len(offline) == 2  # the download was attempted once per backbone
    assert note.startswith("LPIPS-alex, LPIPS-vgg skipped:") and "URLError" in note
    _note_is_complete(note)
    with pytest.raises(LPIPSUnavailableError) as info:  # the Python API raises, naming the same options
        _ = lpips_module.LPIPSMetric("alex").model
    _note_is_complete(str(info.value))
    assert isinstance(info.value, RuntimeError)


def test_evaluate_folders_offline_skips_lpips_with_a_note(offline, loops, tmp_path, capsys):
    out = tmp_path / "scores"
    with pytest.warns(LPIPSSkippedWarning) as record:
        code = main(["evaluate", "--generated", str(loops / "generated"), "--reference", str(loops / "reference"),
                     "-o", str(out), "--no-progress"])
    assert code == 0
    _note_is_complete(str(record[0].message))
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if line.startswith("note: LPIPS")]
    assert len(notes) == 1
    _note_is_complete(notes[0])
    frames = pd.read_csv(out / "per_frame.csv")
    assert {"lpips_alex", "lpips_vgg"} <= set(frames.columns)  # the columns are there, empty
    assert frames[["lpips_alex", "lpips_vgg"]].isna().all().all() and frames["mse"].notna().all()
    assert "skipped" in (out / "table3.md").read_text()  # the written summary says so


def test_evaluate_manifest_offline_skips_lpips(offline, tmp_path):
    from echokdm.data.phantom.export import write_cohort
    from echokdm.evaluation import EvaluateConfig, evaluate

    write_cohort(tmp_path / "cohort", n_patients=2, format="nifti", seed=2, size=32, fps=20.0, n_beats=1.3,
                 progress=False)
    config = EvaluateConfig(split="all", methods=("no_edit", "tps"), max_targets=2, max_clips=1,
                            lpips_nets=("alex",), memorisation=False, n_boot=50, device="cpu")
    with pytest.warns(LPIPSSkippedWarning):
        result = evaluate(tmp_path / "cohort" / "manifest.csv", out=tmp_path / "eval", config=config, progress=False)
    assert result.frames["lpips_alex"].isna().all() and result.frames["mse"].notna().all()
    assert len(result.notes) == 1 and result.notes[0].startswith("LPIPS-alex skipped:")
    _note_is_complete(result.notes[0])
    assert f"note: {result.notes[0]}" in result.table3
    assert "lpips_alex" not in result.summary.columns or result.summary["lpips_alex"].isna().all()


def test_train_kdm_with_lpips_loss_fails_before_reading_data(offline, tmp_path, capsys, monkeypatch):
    from echokdm.training import kdm

    def no_data(*args, **kwargs):
        raise AssertionError("training data was read before the LPIPS check")

    monkeypatch.setattr(kdm, "build_pair_bank", no_data)
    config = tmp_path / "kdm.yaml"
    config.write_text(TRAIN_CONFIG)
    missing_manifest = tmp_path / "not_read.csv"  # never opened: the LPIPS check comes first
    for command in ("kdm", "autoencoder"):
        code = main(["train", command, "--config", str(config), "--manifest", str(missing_manifest),
                     "--out", str(tmp_path / "run"), "--no-progress"])
        assert code == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        for part in ("autoencoder.loss.lpips_backbone", "ECHOKDM_LPIPS_WEIGHTS=DIR", "alexnet_features.pth",
                     "autoencoder.loss.lpips: 0"):
            assert part in err, part
    assert not (tmp_path / "run").exists()


def test_train_kdm_wrong_backbone_names_the_config_key(tmp_path, monkeypatch):
    from echokdm.training.kdm import load_kdm_config, train_kdm

    monkeypatch.delenv("ECHOKDM_LPIPS_WEIGHTS", raising=False)
    config = load_kdm_config(None, {"autoencoder": {"loss": {"lpips": 0.1, "lpips_backbone": str(tmp_path / "no")}}})
    with pytest.raises(FileNotFoundError, match=r"autoencoder\.loss\.lpips_backbone: .*no"):
        train_kdm(config, tmp_path / "not_read.csv", tmp_path / "run", progress=False)


@needs_weights
def test_local_backbone_works_offline(offline, loops, tmp_path, monkeypatch):
    from echokdm.evaluation import evaluate_folders
    from echokdm.training.kdm import load_kdm_config, train_kdm

    # the option
    with warnings.catch_warnings():
        warnings.simplefilter("error", LPIPSSkippedWarning)
        result = evaluate_folders(loops / "generated", loops / "reference", lpips_nets=("alex",),
                                  lpips_backbone=str(WEIGHTS), progress=False)
    assert result.notes == [] and np.isfinite(result.frames["lpips_alex"]).all()
    assert (result.frames["lpips_alex"] > 0).all()
    # the environment variable, also for training: the LPIPS check passes, the (missing) manifest is next
    monkeypatch.setenv("ECHOKDM_LPIPS_WEIGHTS", str(WEIGHTS))
    metrics, note = lpips_metrics(("alex", "vgg"))
    assert note is None and set(metrics) == {"alex", "vgg"}
    config = load_kdm_config(None, {"autoencoder": {"loss": {"lpips": 0.1, "lpips_net": "vgg"}}})
    with pytest.raises(FileNotFoundError, match="not_read.csv"):
        train_kdm(config, tmp_path / "not_read.csv", tmp_path / "run", progress=False)
    assert offline == []  # never went to the network


def test_demo_note_is_complete(offline, capsys):
    from echokdm.demo import _lpips_metric

    assert _lpips_metric() is None
    printed = capsys.readouterr().out.strip().splitlines()[-1].strip()  # after torch's "Downloading: ..." line
    assert printed.startswith("note: LPIPS-alex skipped:")
    _note_is_complete(printed)
