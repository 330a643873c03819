"""``echokdm utility``: the table, a resumed second run, one-line errors and exit codes."""

import sys
from pathlib import Path

import pandas as pd
import pytest

from echokdm.cli import main
from echokdm.data.manifest import scan_folder, write_manifest
from echokdm.data.phantom.export import write_cohort
from echokdm.generation.settings import SamplingSettings
from echokdm.generation.synthesize import synthesize_cohort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_utility")
    write_cohort(root / "real", n_patients=8, format="echonet", size=SIZE, fps=20.0, n_beats=1.3, seed=0,
                 progress=False)
    real = root / "real" / "manifest.csv"
    synthesize_cohort(real, tiny_pipeline(), root / "syn", n_loops=2, split="train", fps=10.0, progress=False,
                      sampling=SamplingSettings(k=2, num_inference_steps=3, seed=0), memorisation_frames=20)
    synthetic = write_manifest(scan_folder(root / "syn", "echonet", progress=False).manifest, root / "syn.csv")
    return real, synthetic


def _argv(real, synthetic, out, *extra):
    return ["utility", "--real", str(real), "--synthetic", str(synthetic), "-o", str(out), "--quick", "--tasks", "ef",
            "--real-patients", "2", "--seeds", "0", "--ef-steps", "3", "--no-progress", *extra]


def test_command_writes_the_table_and_resumes(manifests, tmp_path, capsys):
    real, synthetic = manifests
    out = tmp_path / "out"
    assert main(_argv(real, synthetic, out)) == 0
    printed = capsys.readouterr().out
    assert "3 cell(s) finished (3 trained now" in printed and "summary.md" in printed
    table = pd.read_csv(out / "utility.csv")
    assert set(table["training_set"]) == {"real", "synthetic", "real+synthetic"}
    assert (out / "plots" / "utility.png").is_file()
    assert main(_argv(real, synthetic, out)) == 0
    assert "(0 trained now, 3 from earlier runs)" in capsys.readouterr().out


def test_other_settings_need_overwrite(manifests, tmp_path, capsys):
    real, synthetic = manifests
    out = tmp_path / "out"
    assert main(_argv(real, synthetic, out)) == 0
    capsys.readouterr()
    assert main(_argv(real, synthetic, out, "--ef-steps", "4")) == 1
    err = capsys.readouterr().err
    assert err.startswith("echokdm utility: error:") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(_argv(real, synthetic, out, "--ef-steps", "4", "--overwrite")) == 0


def test_a_missing_manifest_is_one_line_naming_it(manifests, tmp_path, capsys):
    real, _ = manifests
    assert main(_argv(real, tmp_path / "missing.csv", tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert "missing.csv" in err and len(err.splitlines()) == 1


def test_bad_values_are_usage_errors(manifests, tmp_path):
    real, synthetic = manifests
    with pytest.raises(SystemExit) as exc:
        main(_argv(real, synthetic, tmp_path / "o", "--real-patients", "zero"))
    assert exc.value.code == 2
    assert main(_argv(real, synthetic, tmp_path / "o2", "--tasks", "nope")) == 1


def test_seg_look_augment_flag_reaches_the_settings():
    import argparse

    from echokdm.cli.utility import _settings, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["utility", "--real", "r.csv", "--synthetic", "s.csv", "-o", "out", "--seg-look-augment"])
    assert _settings(args).seg_look_augment is True
    args = parser.parse_args(["utility", "--real", "r.csv", "--synthetic", "s.csv", "-o", "out", "--quick"])
    assert _settings(args).seg_look_augment is False
