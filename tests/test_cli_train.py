"""``echokdm train autoencoder``: KDM's first stage on its own, through the command line."""

import pandas as pd
import pytest

from echokdm.cli import build_parser, main
from echokdm.data.phantom.export import write_cohort

TINY = """\
data: {size: 32, pairs_per_clip: 2, val_pairs: 2}
autoencoder:
  model: {block_out_channels: [8, 16, 16], norm_num_groups: 8}
  loss: {lpips: 0.0}
  train: {steps: 4, batch_size: 2, lr: 0.001, val_every: 2, checkpoint_every: 2, device: cpu}
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_train_cohort")
    write_cohort(out, n_patients=3, format="nifti", seed=2, size=32, fps=20.0, n_beats=0.4, progress=False)
    return out / "manifest.csv"


def test_train_autoencoder_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "autoencoder", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config", "--manifest", "--out", "--resume", "--overwrite", "--no-progress"):
        assert option in text
    assert "--stages" not in text


def test_train_autoencoder_runs_and_reports_psnr(cohort, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    args = ["train", "autoencoder", "--config", str(config), "--manifest", str(cohort), "--out", str(tmp_path / "kdm"),
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    log = pd.read_csv(tmp_path / "kdm" / "autoencoder" / "log.csv")
    assert list(log["step"]) == [2, 4]
    assert f"best validation PSNR {log['val_psnr'].max():.2f} dB" in out
    assert (tmp_path / "kdm" / "autoencoder" / "best" / "config.json").exists()
    assert not (tmp_path / "kdm" / "k2f").exists()  # only the autoencoder stage ran
    assert main(args) == 0  # finished: skipped, not retrained
    assert "skipped" in capsys.readouterr().out
    assert list(pd.read_csv(tmp_path / "kdm" / "autoencoder" / "log.csv")["step"]) == [2, 4]


def test_train_autoencoder_needs_its_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "autoencoder", "--manifest", "m.csv", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--config" in capsys.readouterr().err
