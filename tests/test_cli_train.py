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


SEG_TINY = """\
model: {channels: [4, 8], num_res_units: 1}
data: {size: 32, augment: false}
train: {steps: 2, batch_size: 2, val_every: 2, device: cpu}
"""


def test_a_run_folder_without_a_completed_step_is_reused(tmp_path):
    """A first attempt that crashed before step 1 leaves config.yaml only: a restart needs no --overwrite;
    once a step is saved (last/ or best/) the folder is protected."""
    from echokdm.echo.segmentation_training import SegConfig
    from echokdm.training.run import RunFolder

    RunFolder(tmp_path / "run", SegConfig())
    assert (tmp_path / "run" / "config.yaml").exists() and not RunFolder.holds_run(tmp_path / "run")
    RunFolder(tmp_path / "run", SegConfig())  # restart: no FileExistsError
    (tmp_path / "run" / "last").mkdir()
    with pytest.raises(FileExistsError, match="already holds a run"):
        RunFolder(tmp_path / "run", SegConfig())


def test_train_seg_restarts_after_a_crash_before_step_one(cohort, tmp_path, capsys):
    config = tmp_path / "seg.yaml"
    config.write_text(SEG_TINY)
    no_train = tmp_path / "val_only.csv"
    frame = pd.read_csv(cohort)
    frame.assign(split="val", path=[str(cohort.parent / p) for p in frame["path"]],
                 mask_path=[str(cohort.parent / p) for p in frame["mask_path"]]).to_csv(no_train, index=False)
    run = tmp_path / "run"
    args = ["train", "seg", "--config", str(config), "--out", str(run), "--no-progress", "--manifest"]
    assert main([*args, str(no_train)]) == 1  # crashes after the run folder was made, before step 1
    assert "no labelled frames in the train split" in capsys.readouterr().err
    assert (run / "config.yaml").exists() and not (run / "last").exists()
    assert main([*args, str(cohort)]) == 0, capsys.readouterr().err  # the same command, fixed input
    assert (run / "best" / "config.json").exists() and (run / "last" / "trainer_state.pt").exists()
    assert list(pd.read_csv(run / "log.csv")["step"]) == [2]
