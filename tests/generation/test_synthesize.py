"""``synthesize_cohort`` and ``echokdm synthesize`` on a tiny phantom NIfTI cohort with a tiny random pipeline."""

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ks_2samp, kstest

from echokdm.cli.synthesize import register
from echokdm.data.phantom import load_npz
from echokdm.data.phantom.export import write_cohort
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.generation.motion import synthetic_motion
from echokdm.generation.settings import SamplingSettings
from echokdm.generation.synthesize import (
    COHORT_COLUMNS,
    MEMORISATION_COLUMNS,
    load_ef_reference,
    loop_seed,
    sample_efs,
    sample_heart_rates,
    synthesize_cohort,
)
from echokdm.geometry.keypoints import keypoints_to_mask
from echokdm.io.echonet import read_echonet_clip, read_echonet_filelist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline

FAST = {"sampling": SamplingSettings(k=2, num_inference_steps=3), "fps": 10.0, "progress": False}


def fast(**changes):
    """:data:`FAST` with some sampling settings changed (the seed is the cohort's)."""
    return {**FAST, "sampling": FAST["sampling"].replace(**changes)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthesize")
    cohort = write_cohort(root / "cohort", n_patients=3, format="nifti", size=SIZE, fps=20.0, n_beats=1.3, seed=0,
                          progress=False)
    tiny_pipeline().save_pretrained(root / "pipe")
    manifest = cohort.manifest
    assert sorted(manifest["split"]) == ["train", "train", "val"]  # the layout the tests rely on
    return {"manifest": root / "cohort" / "manifest.csv", "pipe": root / "pipe", "table": manifest}


@pytest.fixture(scope="module")
def made(data, tmp_path_factory):
    """Four loops from the three clips (split 'all': sources cycle) with seed 3."""
    out = tmp_path_factory.mktemp("made") / "cohort"
    result = synthesize_cohort(data["manifest"], data["pipe"], out, n_loops=4, split="all", **fast(seed=3))
    return result, out


class CopyPipeline:
    """A 'generator' that returns its source frame for every target: it memorises perfectly."""

    vae = types.SimpleNamespace(config=types.SimpleNamespace(sample_size=SIZE))

    def __call__(self, source_frame, source_keypoints, target_keypoints, **kwargs):
        t = len(target_keypoints)
        return types.SimpleNamespace(frames=np.repeat(source_frame[None], t, axis=0),
                                     flows=np.zeros((t, 2, SIZE, SIZE), np.float32), gammas=np.zeros(t))


# --------------------------------------------------------------------------------------------
# the cohort on disk
# --------------------------------------------------------------------------------------------


def test_loops_are_written_in_echonet_layout_and_read_back(made, data):
    result, out = made
    filelist = read_echonet_filelist(out)
    cohort = pd.read_csv(out / "cohort.csv")
    assert list(cohort.columns) == list(COHORT_COLUMNS)
    assert filelist["FileName"].tolist() == [f"synthetic_{i:05d}.avi" for i in range(4)]
    expected_frames = np.round(60.0 / cohort["heart_rate_bpm"] * 10.0).astype(int)
    assert cohort["n_frames"].tolist() == expected_frames.tolist()
    assert filelist["NumberOfFrames"].tolist() == expected_frames.tolist()
    np.testing.assert_allclose(filelist["FPS"], 10.0)
    np.testing.assert_allclose(filelist["EF"], cohort["ef_target"], rtol=1e-6)  # no segmentation: EF = target
    assert cohort["ef_achieved"].isna().all()
    for name, n_frames in zip(filelist["FileName"], expected_frames, strict=True):
        cine = read_echonet_clip(out, name, filelist=filelist)
        assert cine.frames.shape == (n_frames, SIZE, SIZE) and cine.fps == pytest.approx(10.0)
        assert cine.tracings and len(cine.tracings) == 2  # ES and ED, 21 segments each
    for name in ("VolumeTracings.csv", "echokdm_cohort.csv", "memorisation.png", "ef_distribution.png"):
        assert (out / name).stat().st_size > 0
    pd.testing.assert_frame_equal(result.cohort, cohort, check_dtype=False)


def test_sources_cycle_and_splits_follow_the_source(made, data):
    result, out = made
    table = data["table"]
    cohort = result.cohort
    assert cohort["source_clip_id"].tolist() == [*table["clip_id"], table["clip_id"].iloc[0]]
    assert (cohort["keypoints_source"] == "phantom").all()
    truth = pd.read_csv(data["manifest"].parent / "ground_truth.csv")
    first_ed = {row.clip_id: int(str(row.ed_frames).split()[0]) for row in truth.itertuples()}
    assert cohort["source_frame"].tolist() == [first_ed[c] for c in cohort["source_clip_id"]]
    splits = dict(zip(table["clip_id"], table["split"].str.upper(), strict=True))
    filelist = read_echonet_filelist(out)
    assert filelist["Split"].tolist() == [splits[c] for c in cohort["source_clip_id"]]
    patients = dict(zip(table["clip_id"], table["patient_id"], strict=True))
    assert cohort["source_patient_id"].tolist() == [patients[c] for c in cohort["source_clip_id"]]


def test_targets_are_in_range_and_reproducible_from_the_seed(made):
    result, _ = made
    cohort = result.cohort
    assert ((cohort["ef_target"] >= 20) & (cohort["ef_target"] <= 70)).all()
    assert ((cohort["heart_rate_bpm"] >= 55) & (cohort["heart_rate_bpm"] <= 95)).all()
    np.testing.assert_array_equal(cohort["ef_target"], sample_efs(4, seed=3))
    np.testing.assert_array_equal(cohort["heart_rate_bpm"], sample_heart_rates(4, seed=3))
    assert cohort["seed"].tolist() == [loop_seed(3, i) for i in range(4)]
    assert not np.array_equal(sample_efs(4, seed=4), sample_efs(4, seed=3))


def test_a_loop_depends_only_on_seed_and_index(made, data, tmp_path):
    result, out = made
    again = synthesize_cohort(data["manifest"], data["pipe"], tmp_path / "two", n_loops=2, split="all",
                              **fast(seed=3))
    pd.testing.assert_frame_equal(again.cohort, result.cohort.iloc[:2].reset_index(drop=True))
    for name in ("synthetic_00000", "synthetic_00001"):
        first = read_echonet_clip(out, name).frames
        second = read_echonet_clip(tmp_path / "two", name).frames
        np.testing.assert_array_equal(first, second)


def test_memorisation_csv_counts_every_generated_frame(made, data):
    result, out = made
    memo = pd.read_csv(out / "memorisation.csv")
    assert list(memo.columns) == list(MEMORISATION_COLUMNS) and len(memo) == 1
    row = memo.iloc[0]
    assert 0.0 <= row["fraction_closer"] <= 1.0
    assert row["n_generated"] == (result.cohort["n_frames"] - 1).sum()  # frame 0 is the real source frame
    table = data["table"]
    assert row["n_held_out"] == table.loc[table["split"] == "val", "n_frames"].sum()
    assert row["n_training_frames"] == table.loc[table["split"] == "train", "n_frames"].sum()
    assert row["expected_fraction"] == pytest.approx(0.05)
    assert result.report.generated_distance.size == row["n_generated"]
    # issue 21: the test is per patient (generated frames by their loop's source patient, held-out by patient)
    assert row["test_unit"] == "group"
    assert row["n_generated_groups"] == result.cohort["source_patient_id"].nunique() == 3
    assert row["n_held_out_groups"] == (table["split"] == "val").sum() == 1
    assert row["mannwhitney_p_min"] == pytest.approx(1 / 4)  # 1 / C(3 + 1, 3)
    assert row["mannwhitney_p_min"] <= row["mannwhitney_p"] <= 1.0 and 0.0 <= row["mannwhitney_p_per_frame"] <= 1.0
    assert 0.0 <= row["fraction_closer_low"] <= row["fraction_closer_high"] <= 1.0
    assert row["mannwhitney_p"] == pytest.approx(result.report.mannwhitney_p)
    assert row["mannwhitney_p_per_frame"] == pytest.approx(result.report.mannwhitney_p_per_frame)


def test_settings_record_what_made_the_cohort(made, data):
    import json

    _, out = made
    settings = json.loads((out / "settings.json").read_text())
    assert settings["seed"] == 3 and settings["n_loops"] == 4 and settings["split"] == "all"
    assert settings["num_inference_steps"] == 3 and settings["k"] == 2 and settings["fps"] == 10.0
    assert settings["pipeline"] == str(data["pipe"].resolve()) and settings["ef_reference"] is None
    assert settings["fit_keypoints"] is True and settings["ef_attempts"] == 3


class MemorisingPipeline(CopyPipeline):
    """A 'generator' that returns one fixed training frame, whatever its source: it memorises."""

    def __init__(self, frame):
        self.frame = np.asarray(frame, np.float32)

    def __call__(self, source_frame, source_keypoints, target_keypoints, **kwargs):
        return super().__call__(self.frame, source_keypoints, target_keypoints, **kwargs)


def test_memorisation_flags_a_generator_that_outputs_training_frames(data, tmp_path):
    table = data["table"]
    train_clip = table.loc[table["split"] == "train", "clip_id"].iloc[0]
    frame = load_npz(data["manifest"].parent / "ground_truth" / f"{train_clip}.npz").frames[3]
    result = synthesize_cohort(data["manifest"], MemorisingPipeline(frame), tmp_path / "memo", n_loops=2,
                               split="val", fan_mask=False, **fast(seed=0))
    assert result.memorisation["fraction_closer"] == 1.0
    assert result.memorisation["median_generated"] < 1e-5  # the file holds the frame at 8 bits
    assert result.memorisation["loops_source_left_out"] == 0  # a val source: no training patient to leave out
    # issue 21: the p-value is per patient; one source patient against one held-out patient cannot give a
    # small p (the per-frame p, which counts correlated frames as independent, is kept for comparison)
    memo = result.memorisation
    assert memo["test_unit"] == "group" and memo["n_generated_groups"] == 1 and memo["n_held_out_groups"] == 1
    assert memo["mannwhitney_p"] == memo["mannwhitney_p_min"] == 0.5
    assert memo["mannwhitney_p_per_frame"] < 0.01
    assert memo["fraction_closer_low"] == memo["fraction_closer_high"] == 1.0
    text = "\n".join(result.summary_lines())
    assert "100.0 % of" in text and "per patient, 1 source vs 1 held-out patient(s)" in text


def test_loops_of_training_patients_are_compared_with_the_other_patients(data, tmp_path):
    """A loop animates its source frame: when that is a training frame, closeness to it says nothing about
    memorisation (the old report printed "100 % ... p = 1e-25" for a cohort made from the training split)."""
    table = data["table"]
    result = synthesize_cohort(data["manifest"], CopyPipeline(), tmp_path / "copy", n_loops=2, split="train",
                               **fast(seed=0))
    memo = result.memorisation
    assert memo["loops_source_left_out"] == 2
    assert memo["fraction_closer"] < 0.5 and memo["median_generated"] > 0.0
    # the nearest training frame of every frame of loop 0 is of the other training patient
    first_frames = int(table.loc[table["split"] == "train", "n_frames"].iloc[0])
    loop0 = int(result.cohort["n_frames"].iloc[0]) - 1  # frame 0 is the real source frame
    assert (result.report.generated_index[:loop0] >= first_frames).all()
    assert (result.report.generated_index[loop0:] < first_frames).all()
    text = "\n".join(result.summary_lines())
    assert "closer to their nearest training frame of another patient" in text
    assert "2 of 2 loop(s) animate a training patient's frame" in text
    saved = pd.read_csv(tmp_path / "copy" / "memorisation.csv").iloc[0]
    assert saved["loops_source_left_out"] == 2 and "other patients" in saved["note"]


def test_every_frame_is_generated_without_the_source_frame(data, tmp_path):
    result = synthesize_cohort(data["manifest"], CopyPipeline(), tmp_path / "gen", n_loops=2, split="val",
                               include_source=False, **FAST)
    assert result.memorisation["n_generated"] == result.cohort["n_frames"].sum()


def test_existing_outputs_are_not_overwritten(made, data, tmp_path):
    _, out = made
    before = (out / "cohort.csv").read_bytes()
    with pytest.raises(FileExistsError, match="FileList.csv"):
        synthesize_cohort(data["manifest"], data["pipe"], out, n_loops=2, split="all", **fast(seed=9))
    assert (out / "cohort.csv").read_bytes() == before
    late = tmp_path / "late"
    late.mkdir()
    (late / "memorisation.png").write_bytes(b"mine")  # written last: checked before generating anything
    with pytest.raises(FileExistsError, match="memorisation.png"):
        synthesize_cohort(data["manifest"], data["pipe"], late, n_loops=2, split="all", **FAST)
    assert sorted(p.name for p in late.iterdir()) == ["memorisation.png"]


def test_overwrite_replaces_the_outputs(data, tmp_path):
    out = tmp_path / "cohort"
    synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=2, split="val", **fast(seed=0))
    result = synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=2, split="val", overwrite=True,
                               **fast(seed=1))
    np.testing.assert_array_equal(pd.read_csv(out / "cohort.csv")["ef_target"], result.cohort["ef_target"])
    np.testing.assert_allclose(read_echonet_filelist(out)["EF"], sample_efs(2, seed=1), rtol=1e-6)


def test_unusable_clips_are_skipped_and_listed(data, tmp_path):
    table = pd.read_csv(data["manifest"])
    table["path"] = [str((data["manifest"].parent / p).resolve()) for p in table["path"]]
    table["mask_path"] = [str((data["manifest"].parent / p).resolve()) for p in table["mask_path"]]
    table.loc[0, "mask_path"] = ""  # no mask, no phantom truth (not beside the copy), no segmentation model
    copy = tmp_path / "manifest.csv"
    table.to_csv(copy, index=False)
    result = synthesize_cohort(copy, CopyPipeline(), tmp_path / "out", n_loops=2, split="all", **FAST)
    assert result.cohort["source_clip_id"].tolist() == table["clip_id"].iloc[1:].tolist()
    assert (result.cohort["keypoints_source"] == "mask").all()
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped["item"].tolist() == [f"clip {table['clip_id'].iloc[0]}"]
    assert "segmentation" in skipped["reason"].iloc[0]


def test_bad_settings_fail_before_anything_is_written(data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"no clips in split 'test' .*; choose one with --split \("):
        synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=1, **FAST)
    with pytest.raises(ValueError, match="not both"):
        synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=1, ef_range=(30, 40),
                          ef_reference=[30, 40], **FAST)
    with pytest.raises(ValueError, match="ef_range"):
        synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=1, ef_range=(40, 120), **FAST)
    with pytest.raises(ValueError, match="n_loops"):
        synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=0, **FAST)
    with pytest.raises(ValueError, match="k \\(--k\\) must be at most"):
        synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=1, **fast(k=5))
    with pytest.raises(ValueError, match="num_inference_steps"):
        synthesize_cohort(data["manifest"], CopyPipeline(), out, n_loops=1, **fast(num_inference_steps=0))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        synthesize_cohort(data["manifest"], tmp_path / "nowhere", out, n_loops=1, split="val", **FAST)
    assert not (out / "FileList.csv").exists()


class OracleSegmentation(LVSegmentationNet):
    """A 'model' whose masks are the polygons of known keypoints (one set per frame, in order)."""

    def __init__(self, keypoints):
        super().__init__(channels=(4, 8), num_res_units=0, sample_size=SIZE)
        self.known = np.asarray(keypoints)

    def predict_masks(self, frames, batch_size=32, threshold=0.5):
        return torch.from_numpy(np.stack([keypoints_to_mask(k, tuple(frames.shape[-2:]))
                                          for k in self.known[: len(frames)]]))


def test_achieved_ef_is_measured_and_written_as_the_echonet_ef(data, tmp_path):
    val = data["table"][data["table"]["split"] == "val"].iloc[0]
    truth = load_npz(data["manifest"].parent / "ground_truth" / f"{val['clip_id']}.npz")
    ed = int(truth.ed_frames[0])
    ef, hr = sample_efs(1, ef_range=(35, 45), seed=0)[0], sample_heart_rates(1, seed=0)[0]
    targets = synthetic_motion(truth.keypoints[ed], ef, hr, 10.0, 1.0)
    result = synthesize_cohort(data["manifest"], CopyPipeline(), tmp_path / "seg", n_loops=1, split="val",
                               ef_range=(35, 45), segmentation=OracleSegmentation(targets), **FAST)
    achieved = result.cohort["ef_achieved"].iloc[0]
    assert achieved == pytest.approx(ef, abs=8.0)  # re-detected from the masks of the target keypoints
    assert read_echonet_filelist(tmp_path / "seg")["EF"].iloc[0] == pytest.approx(achieved, rel=1e-6)
    assert "(1 measured)" in "\n".join(result.summary_lines())
    assert result.cohort["ef_achieved_note"].iloc[0] == "measured"


def test_a_loop_the_segmentation_lost_is_listed_as_not_read(data, tmp_path):
    """A segmentation that reads another region than the generated LV gives no EF achieved; cohort.csv says
    why, and the summary says the loop was not read (not "no segmentation model")."""
    val = data["table"][data["table"]["split"] == "val"].iloc[0]
    truth = load_npz(data["manifest"].parent / "ground_truth" / f"{val['clip_id']}.npz")
    ed = int(truth.ed_frames[0])
    ef, hr = sample_efs(1, ef_range=(35, 45), seed=0)[0], sample_heart_rates(1, seed=0)[0]
    targets = synthetic_motion(truth.keypoints[ed], ef, hr, 10.0, 1.0)
    elsewhere = targets.copy()
    elsewhere[len(targets) // 4:, :, 0] -= 0.4 * SIZE  # from a quarter of the loop on, another chamber
    result = synthesize_cohort(data["manifest"], CopyPipeline(), tmp_path / "seg", n_loops=1, split="val",
                               ef_range=(35, 45), segmentation=OracleSegmentation(elsewhere), **FAST)
    assert np.isnan(result.cohort["ef_achieved"].iloc[0])
    assert result.cohort["ef_achieved_note"].iloc[0].startswith("not a reading of the generated LV")
    text = "\n".join(result.summary_lines())
    assert "1 loop(s) not read" in text and "no segmentation model" not in text


# --------------------------------------------------------------------------------------------
# the EF sampler
# --------------------------------------------------------------------------------------------


def test_uniform_efs_fill_the_range():
    efs = sample_efs(300, ef_range=(25.0, 65.0), seed=0)
    assert efs.min() >= 25.0 and efs.max() <= 65.0
    assert kstest((efs - 25.0) / 40.0, "uniform").pvalue > 0.05
    np.testing.assert_array_equal(sample_efs(10, ef_range=(25.0, 65.0), seed=0), efs[:10])


def test_reference_matching_keeps_a_bimodal_distribution():
    rng = np.random.default_rng(7)
    reference = np.concatenate([rng.normal(30.0, 3.0, 150), rng.normal(62.0, 3.0, 150)])
    efs = sample_efs(200, reference=reference, seed=1)
    assert ks_2samp(efs, reference).pvalue > 0.05
    low, gap, high = np.mean(efs < 40), np.mean((efs > 42) & (efs < 50)), np.mean(efs > 52)
    assert low > 0.35 and high > 0.35 and gap < 0.03  # two modes, almost nothing between them
    assert not np.isin(efs, reference).any()  # jittered, never a reference value repeated
    assert reference.min() - 10 < efs.min() and efs.max() < reference.max() + 10


def test_a_unimodal_reference_is_not_matched_by_a_uniform_draw():
    reference = np.random.default_rng(0).normal(55.0, 4.0, 300)
    assert ks_2samp(sample_efs(200, reference=reference, seed=2), reference).pvalue > 0.05
    assert ks_2samp(sample_efs(200, ef_range=(20, 70), seed=2), reference).pvalue < 1e-6


def test_load_ef_reference_reads_csv_columns(tmp_path):
    path = tmp_path / "FileList.csv"
    pd.DataFrame({"FileName": ["a", "b", "c"], "EF": [35.0, None, 60.0], "other": [1.0, 2.0, 3.0]}).to_csv(path)
    np.testing.assert_array_equal(load_ef_reference(path), [35.0, 60.0])
    np.testing.assert_array_equal(load_ef_reference(f"{path}:other"), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no column 'nope'"):
        load_ef_reference(f"{path}:nope")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_ef_reference(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"within \(0, 100\)"):
        load_ef_reference([30.0, 130.0])
    with pytest.raises(ValueError, match="at least 2"):
        load_ef_reference([30.0])


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def run(argv):
    parser = argparse.ArgumentParser(prog="echokdm")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["synthesize", *argv])
    return args.func(args)


def test_command_writes_the_cohort_and_prints_its_summary(data, tmp_path, capsys):
    reference = tmp_path / "reference.csv"
    pd.DataFrame({"ef": np.linspace(30, 60, 40)}).to_csv(reference, index=False)
    out = tmp_path / "out"
    code = run([str(data["manifest"]), "--pipeline", str(data["pipe"]), "--out", str(out), "--n", "3", "--split",
                "val", "--ef-reference", f"{reference}:ef", "--heart-rate-range", "60", "70", "--fps", "10",
                "--beats", "1", "--steps", "3", "--k", "2", "--seed", "5", "--no-segmentation", "--device", "cpu",
                "--no-fit-keypoints", "--no-progress"])
    assert code == 0
    assert json.loads((out / "settings.json").read_text())["fit_keypoints"] is False
    printed = capsys.readouterr().out
    assert "3 loop(s) from 1 source clip(s)" in printed
    assert "not measured (no segmentation model)" in printed and "memorisation (MSE)" in printed
    assert str(out / "cohort.csv") in printed
    cohort = pd.read_csv(out / "cohort.csv")
    np.testing.assert_array_equal(cohort["ef_target"], sample_efs(3, reference=np.linspace(30, 60, 40), seed=5))
    assert cohort["heart_rate_bpm"].between(60, 70).all()
    assert len(read_echonet_filelist(out)) == 3


def test_command_without_packaged_pipeline_says_what_to_give(data, tmp_path, monkeypatch):
    monkeypatch.setattr("echokdm.pretrained.CHECKPOINTS", tmp_path / "no_checkpoints")
    with pytest.raises(FileNotFoundError, match="--pipeline"):
        run([str(data["manifest"]), "--out", str(tmp_path / "out"), "--n", "1"])


def test_a_source_whose_header_says_it_is_not_of_the_heart_is_left_out(tmp_path):
    """pydicom's lymph-node frame (Image Type SMALL PARTS) in a manifest: no loop is made from it, and the reason says
    why (the LV models would animate a ventricle that is not there)."""
    import shutil
    import warnings

    import pydicom.data

    from echokdm.data.manifest import scan_folder, write_manifest

    (tmp_path / "scans").mkdir()
    shutil.copy(pydicom.data.get_testdata_file("examples_jpeg2k.dcm"), tmp_path / "scans" / "node.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = write_manifest(scan_folder(tmp_path / "scans", "dicom", progress=False).manifest,
                                  tmp_path / "m.csv")
        with pytest.raises(ValueError, match=r"not an echocardiogram by its header \(Image Type says SMALL PARTS\)"):
            synthesize_cohort(manifest, CopyPipeline(), tmp_path / "out", n_loops=1, split="all", **FAST)
