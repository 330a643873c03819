"""Commands that produce nothing useful exit non-zero with one clear line (issue 17, item 5).

Checkpoint options take a folder or a packaged checkpoint name and never go to a model hub: the
tests below make any network use fail loudly.
"""

import argparse
import socket

import numpy as np
import pandas as pd
import pytest

from echokdm import cli
from echokdm.cli import build_parser, main
from echokdm.data.manifest import load_manifest
from echokdm.data.phantom.export import write_cohort
from echokdm.errors import CheckpointError
from echokdm.pretrained import CHECKPOINTS, available, checkpoint_kind, resolve_checkpoint


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a host name or open a connection is recorded and fails."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network use during a test: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("exit_codes_cohort")
    write_cohort(out, n_patients=2, format="echonet", seed=3, size=48, fps=25.0, n_beats=0.5, progress=False)
    return out / "manifest.csv"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def test_segment_with_a_missing_checkpoint_fails_at_once_without_the_network(cohort, tmp_path, capsys, no_network):
    out = tmp_path / "seg"
    assert main(["segment", str(cohort), "--checkpoint", "/nonexistent", "-o", str(out), "--no-progress"]) == 1
    line = _error_line(capsys)
    assert line.startswith("echokdm segment: error: /nonexistent: no such folder")
    assert "seg_phantom_112" in line  # the packaged alternatives are listed
    assert not out.exists(), "nothing is written for a checkpoint that does not exist"
    assert no_network == []


@pytest.mark.parametrize("argv", [
    ["flow", "M", "--checkpoint", "no_such_model", "-o", "O"],
    ["generate", "S", "--own", "--pipeline", "no_such_pipeline", "-o", "O"],
    ["synthesize", "M", "--n", "1", "--pipeline", "no_such_pipeline", "-o", "O"],
    ["evaluate", "M", "--pipeline", "no_such_pipeline", "-o", "O"],
    ["evaluate", "M", "--segmentation", "kdm_phantom_112", "-o", "O"],  # a packaged name of the wrong kind
    ["demo", "--segmentation", "/nonexistent", "--out", "O"],
])
def test_every_model_option_fails_with_one_line_and_no_network(argv, tmp_path, capsys, no_network, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    line = _error_line(capsys)
    assert line.startswith(f"echokdm {argv[0]}: error: ")
    assert "expected" in line
    assert not (tmp_path / "O").exists()
    assert no_network == []


def test_packaged_names_resolve_for_each_kind():
    names = available()
    assert {"seg_phantom_112", "kdm_phantom_112", "ofnet_phantom_112"} <= set(names)
    assert resolve_checkpoint("seg_phantom_112", "segmentation") == CHECKPOINTS / "seg_phantom_112"
    assert resolve_checkpoint("kdm_phantom_112", "pipeline") == CHECKPOINTS / "kdm_phantom_112"
    assert resolve_checkpoint("ofnet_phantom_112", "ofnet") == CHECKPOINTS / "ofnet_phantom_112"
    for name in names:
        assert checkpoint_kind(CHECKPOINTS / name) is not None, name


def test_a_local_folder_wins_and_is_checked(tmp_path):
    folder = tmp_path / "best"  # what save_pretrained writes, as far as the resolver looks
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "LVSegmentationNet", "_diffusers_version": "0.42.1"}')
    assert resolve_checkpoint(folder, "segmentation") == folder
    with pytest.raises(CheckpointError, match="expected an OF-net model folder"):
        resolve_checkpoint(folder, "ofnet")
    with pytest.raises(CheckpointError, match=r"did you mean .*best"):  # the run folder instead of its best/
        resolve_checkpoint(tmp_path, "segmentation")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_checkpoint(tmp_path / "file.txt", "segmentation")
    with pytest.raises(FileNotFoundError):  # CheckpointError is a FileNotFoundError for older callers
        resolve_checkpoint(tmp_path / "missing", "pipeline")


@pytest.mark.parametrize("argv, attributes", [
    (["segment", "M", "--checkpoint", "seg_phantom_112", "-o", "O"], {"checkpoint": "seg_phantom_112"}),
    (["flow", "M", "--checkpoint", "ofnet_phantom_112", "-o", "O"], {"checkpoint": "ofnet_phantom_112"}),
    (["generate", "S", "--own", "--pipeline", "kdm_phantom_112", "--segmentation", "seg_phantom_112", "-o", "O"],
     {"pipeline": "kdm_phantom_112", "segmentation": "seg_phantom_112"}),
    (["synthesize", "M", "--n", "1", "--pipeline", "kdm_phantom_112", "--segmentation", "seg_phantom_112", "-o", "O"],
     {"pipeline": "kdm_phantom_112", "segmentation": "seg_phantom_112"}),
    (["evaluate", "M", "--pipeline", "kdm_phantom_112", "--segmentation", "seg_phantom_112", "-o", "O"],
     {"pipeline": "kdm_phantom_112", "segmentation": "seg_phantom_112"}),
    (["demo", "--pipeline", "kdm_phantom_112", "--segmentation", "seg_phantom_112"],
     {"pipeline": "kdm_phantom_112", "segmentation": "seg_phantom_112"}),
])
def test_packaged_names_work_in_every_command(argv, attributes, monkeypatch, tmp_path, no_network):
    """main() hands each command the packaged folder; the command itself is replaced by a recorder."""
    monkeypatch.chdir(tmp_path)
    seen = {}

    def record(args: argparse.Namespace) -> int:
        seen.update({name: getattr(args, name) for name in attributes})
        return 0

    parser = build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser, record))
    assert main(argv) == 0
    assert seen == {name: str(CHECKPOINTS / value) for name, value in attributes.items()}


def _with_func(parser: argparse.ArgumentParser, func) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(func=func)
    return parser


@pytest.mark.slow
def test_segment_with_a_packaged_name_runs(cohort, tmp_path, capsys, no_network):
    out = tmp_path / "seg"
    assert main(["segment", str(cohort), "--checkpoint", "seg_phantom_112", "-o", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "segmentation.csv")
    assert len(table) == 2 and table["dice"].notna().all()
    assert no_network == []


def test_segment_where_every_clip_fails_exits_1(cohort, tmp_path, capsys, no_network):
    manifest = cohort.with_name("unreadable_manifest.csv")  # beside the cohort: its relative paths hold
    frame = pd.read_csv(cohort)
    (cohort.parent / "Videos" / "broken.avi").write_bytes(b"not a video" * 10)
    frame["path"] = "Videos/broken.avi"  # every clip unreadable
    frame.to_csv(manifest, index=False)
    out = tmp_path / "seg"
    code = main(["segment", str(manifest), "--checkpoint", "seg_phantom_112", "-o", str(out), "--no-progress"])
    assert code == 1
    assert "no clip could be segmented" in _error_line(capsys)
    assert not (out / "segmentation.csv").exists()


# --------------------------------------------------------------------------------------------
# training steps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["seg", "flow"])
def test_train_with_negative_steps_is_a_usage_error(command, cohort, tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", command, "--manifest", str(cohort), "--out", str(run), "--steps", "-3", "--no-progress"])
    assert e.value.code == 2
    assert "--steps: must be >= 1, got -3" in capsys.readouterr().err
    assert not run.exists()


def test_train_seg_config_with_zero_steps_fails_before_the_run_folder(cohort, tmp_path, capsys):
    config = tmp_path / "seg.yaml"
    config.write_text("train: {steps: 0}\n")
    run = tmp_path / "run"
    assert main(["train", "seg", "--config", str(config), "--manifest", str(cohort), "--out", str(run),
                 "--no-progress"]) == 1
    line = _error_line(capsys)
    assert line.startswith("echokdm train seg: error: ") and "train.steps must be >= 1, got 0" in line
    assert not run.exists()


# --------------------------------------------------------------------------------------------
# keypoints
# --------------------------------------------------------------------------------------------


def test_keypoints_where_every_frame_fails_exits_1_without_a_table(cohort, tmp_path, capsys):
    """Predicted masks that are all empty: every frame fails, so no keypoints table and exit 1."""
    seg = tmp_path / "seg"
    (seg / "masks").mkdir(parents=True)
    rows = []
    for r in load_manifest(cohort).to_dict("records"):
        np.savez_compressed(seg / "masks" / f"{r['clip_id']}.npz",
                            masks=np.zeros((int(r["n_frames"]), int(r["height"]), int(r["width"])), np.uint8))
        rows.append({"clip_id": r["clip_id"], "dataset": r["dataset"], "masks": f"masks/{r['clip_id']}.npz"})
    pd.DataFrame(rows).to_csv(seg / "segmentation.csv", index=False)
    output = tmp_path / "kp.csv"
    assert main(["keypoints", str(cohort), "--segmentation", str(seg), "-o", str(output), "--no-progress"]) == 1
    line = _error_line(capsys)
    assert line.startswith("echokdm keypoints: error: ") and "no frame got keypoints" in line
    assert not output.exists()
    skipped = pd.read_csv(tmp_path / "kp_skipped.csv")
    assert skipped["reason"].str.contains("mask is empty").all()


def test_demo_with_one_model_option_keeps_the_other_packaged(monkeypatch, tmp_path, no_network):
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr("echokdm.demo.run_demo", lambda out, **kwargs: calls.append(kwargs))
    assert main(["demo", "--segmentation", "seg_phantom_112", "--quick"]) == 0
    assert calls[0]["pipeline"] == str(CHECKPOINTS / "kdm_phantom_112")
    assert calls[0]["segmentation"] == str(CHECKPOINTS / "seg_phantom_112")
    assert main(["demo", "--pipeline", "kdm_phantom_112", "--train"]) == 1  # --train retrains: not with a model


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import argparse

    import echokdm.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    real_parse = argparse.ArgumentParser.parse_args

    def parse(self, argv=None, namespace=None):
        args = real_parse(self, argv, namespace)
        if hasattr(args, "func"):
            args.func = interrupted  # the command is interrupted while it runs
        return args

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # no busy-machine line
    assert cli.main(["info", "whatever.dcm"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "echokdm info: interrupted; run the same command again to resume where it can"]
