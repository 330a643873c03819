"""``run_utility``: train on real / synthetic / both, test on held-out real patients, resumable."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.data.manifest import load_manifest, scan_folder, write_manifest
from echokdm.data.phantom.export import write_cohort
from echokdm.evaluation.utility import (
    UTILITY_COLUMNS,
    UtilitySettings,
    _prepare,
    _training_rows,
    plan_cells,
    run_utility,
    split_real,
)
from echokdm.generation.settings import SamplingSettings
from echokdm.generation.synthesize import synthesize_cohort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline

QUICK = UtilitySettings.quick(real_patients=(2,), seeds=(0,), seg_size=SIZE, seg_steps=4, ef_steps=4, ef_frames=4,
                              ef_size=16, ef_channels=(4, 8), n_boot=50)


def _synthetic(root: Path, real: Path, split: str, n: int) -> Path:
    """A tiny synthetic cohort from ``split`` of ``real`` and its manifest (as ``echokdm manifest`` writes it)."""
    synthesize_cohort(real, tiny_pipeline(), root, n_loops=n, split=split, fps=10.0, progress=False,
                      sampling=SamplingSettings(k=2, num_inference_steps=3, seed=0), memorisation_frames=20)
    scan = scan_folder(root, "echonet", progress=False)
    return write_manifest(scan.manifest, root.parent / f"{root.name}.csv")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("utility")
    write_cohort(root / "real", n_patients=10, format="echonet", size=SIZE, fps=20.0, n_beats=1.3, seed=0,
                 style="realistic", progress=False)
    real = root / "real" / "manifest.csv"
    return {"root": root, "real": real, "synthetic": _synthetic(root / "syn", real, "train", 3)}


@pytest.fixture(scope="module")
def ran(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ran") / "out"
    return out, run_utility(data["real"], data["synthetic"], out, QUICK, progress=False)


def test_every_cell_writes_its_metrics(ran):
    out, result = ran
    table = pd.read_csv(out / "utility.csv")
    assert list(table.columns) == list(UTILITY_COLUMNS)
    cells = table.groupby(["task", "training_set", "n_real_patients"]).size()
    assert cells.to_dict() == {("ef", "real", 2): 2, ("ef", "real+synthetic", 2): 2, ("ef", "synthetic", 0): 2,
                               ("seg", "real", 2): 2, ("seg", "real+synthetic", 2): 2, ("seg", "synthetic", 0): 2}
    assert set(table["metric"]) == {"dice", "ef_mae", "ef_r2"}
    dice = table.loc[table["metric"] == "dice", "value"]
    assert dice.between(0, 1).all()
    assert result.trained == 6
    assert (out / "summary.md").read_text().count("| seg |") == 6
    assert (out / "plots" / "utility.png").stat().st_size > 1000
    patients = pd.read_csv(out / "patients.csv")
    test_patients = set(load_manifest(json.loads((out / "utility.json").read_text())["real"])
                        .query("split == 'test'")["patient_id"])
    assert set(patients["patient_id"]) == test_patients  # tested on the test split's patients only


def test_a_second_run_trains_nothing_and_gives_the_same_table(ran, data):
    out, first = ran
    again = run_utility(data["real"], data["synthetic"], out, QUICK, progress=False)
    assert again.trained == 0
    pd.testing.assert_frame_equal(again.utility, first.utility)


def test_other_settings_are_refused_unless_overwrite(ran, data, tmp_path):
    out, _ = ran
    other = UtilitySettings.quick(**{**QUICK.record(), "seeds": (1,), "real_patients": (2,),
                                     "seg_channels": (8, 16, 32), "ef_channels": (4, 8)})
    with pytest.raises(ValueError, match="other inputs or settings.*seeds"):
        run_utility(data["real"], data["synthetic"], out, other, progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an echokdm utility folder"):
        run_utility(data["real"], data["synthetic"], tmp_path / "mine", QUICK, progress=False)


def test_test_patients_never_reach_training(data):
    prepared = _prepare(data["real"], data["synthetic"], QUICK)
    test = set(prepared.test["patient_id"])
    cells, _ = plan_cells(UtilitySettings.quick(real_patients=(1, 2, "all"), seeds=(0, 1)), len(prepared.pool_patients))
    for cell in cells:
        rows = _training_rows(prepared, cell)
        assert not test & set(rows["patient_id"])
        real = rows[~rows["clip_id"].astype(str).str.startswith("synthetic")]
        assert real["patient_id"].nunique() == cell.n_real
    smaller, larger = (set(_training_rows(prepared, c)["patient_id"]) for c in cells
                       if c.task == "seg" and c.training_set == "real" and c.seed == 0 and c.n_real in (1, 2))
    assert smaller < larger  # the subsets of one seed are nested


def test_sizes_above_the_pool_are_left_out_with_a_note():
    cells, notes = plan_cells(UtilitySettings.quick(real_patients=(2, 50), seeds=(0,), tasks=("ef",)), 9)
    assert sorted({c.n_real for c in cells}) == [0, 2] and "50 real patients" in notes[0]


def test_a_fresh_split_is_by_patient(data):
    real = load_manifest(data["real"])
    pool, test = split_real(real, test_fraction=0.3, seed=0)
    assert len(test) == 3 and not set(pool["patient_id"]) & set(test["patient_id"])


def test_loops_made_from_test_patients_are_left_out(data):
    synthetic = _synthetic(data["root"] / "syn_test", data["real"], "test", 1)
    with pytest.raises(ValueError, match="made from a test patient"):
        run_utility(data["real"], synthetic, data["root"] / "never", QUICK, progress=False)


def test_bad_inputs_name_the_file(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.csv: no such synthetic manifest"):
        run_utility(data["real"], tmp_path / "nothing.csv", tmp_path / "o", QUICK, progress=False)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="bad.csv"):
        run_utility(tmp_path / "bad.csv", data["synthetic"], tmp_path / "o", QUICK, progress=False)
    with pytest.raises(ValueError, match="tasks"):
        UtilitySettings(tasks=("cls",))


def test_privacy_filter_lists_what_it_drops(data, tmp_path):
    settings = UtilitySettings.quick(**{**QUICK.record(), "tasks": ("ef",), "privacy_filter": True,
                                        "seg_channels": (8, 16, 32), "ef_channels": (4, 8), "real_patients": (2,),
                                        "seeds": (0,)})
    result = run_utility(data["real"], data["synthetic"], tmp_path / "out", settings, progress=False)
    dropped = pd.read_csv(tmp_path / "out" / "privacy_dropped.csv")
    assert any(note.startswith("privacy filter") for note in result.notes)
    sets = set(result.utility["training_set"])
    assert ("synthetic-filtered" in sets) == (len(dropped) > 0)
    assert np.isfinite(result.utility["value"].iloc[0])


def test_look_augmentation_reaches_every_segmentation_model():
    from echokdm.evaluation.utility import _seg_config

    assert _seg_config(UtilitySettings(), 0).data.look_augment is False
    on = UtilitySettings(seg_look_augment=True)
    assert _seg_config(on, 1).data.look_augment is True and _seg_config(on, 1).data.augment is True
    assert on.record()["seg_look_augment"] is True  # part of the run's record: a rerun without it needs --overwrite


def test_utility_reads_ef_from_a_models_masks_as_echokdm_ef_does(tmp_path):
    """On pydicom's real scanner cine (320 × 240, text and an ECG around the fan), utility's "seg → EF" is the EF
    that ``echokdm ef --segmentation MODEL`` reads: segmented inside the fan, the apex on the sector's side. It used
    to segment the whole frame and guess the side from masks that run on into the atrium."""
    import shutil
    import types
    import warnings

    import pydicom.examples

    from echokdm.echo.segmentation import LVSegmentationNet
    from echokdm.evaluation.utility import _Cache, _ef_from_masks
    from echokdm.metrics.lv_function import ef_table, keypoints_table
    from echokdm.pretrained import resolve_checkpoint

    (tmp_path / "dicom").mkdir()
    shutil.copy(pydicom.examples.get_path("ybr_color"), tmp_path / "dicom" / "cine.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its calibration region belongs to another image size
        manifest = scan_folder(tmp_path / "dicom", "dicom", progress=False).manifest.assign(split="test")
        model = LVSegmentationNet.from_pretrained(resolve_checkpoint("seg_phantom_112", "segmentation")).eval()
        utility = _ef_from_masks(model, _Cache(types.SimpleNamespace(test=manifest), None))
        command = ef_table(keypoints_table(manifest, segmentation="seg_phantom_112", progress=False)).clips
    assert command["apex_direction"].tolist() == ["up"]
    assert utility["ef"].iloc[0] == pytest.approx(command["ef"].iloc[0], abs=1e-6)
    assert 20 < utility["ef"].iloc[0] < 60
