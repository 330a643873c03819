"""The privacy filter: planted copies of training clips are dropped, genuinely new loops kept."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.data.manifest import load_manifest, read_clip
from echokdm.data.phantom.export import write_cohort
from echokdm.generation.privacy_filter import (
    DROPPED_COLUMNS,
    filter_cohort,
    identity_features,
    identity_separation,
    privacy_filter,
)
from echokdm.generation.settings import SamplingSettings
from echokdm.generation.synthesize import synthesize_cohort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Ten realistic phantom patients at 32 px (7 train, 2 val, 1 test), one EchoNet clip each."""
    root = tmp_path_factory.mktemp("privacy")
    result = write_cohort(root / "real", n_patients=10, format="echonet", size=SIZE, fps=20.0, n_beats=1.3, seed=0,
                          style="realistic", progress=False)
    table = load_manifest(root / "real" / "manifest.csv")
    clips = {str(r["patient_id"]): read_clip(r).frames for _, r in table.iterrows()}
    assert (result.manifest["split"] == "train").sum() == 7
    return {"root": root, "manifest": root / "real" / "manifest.csv", "table": table, "clips": clips}


def _by_split(phantom, split):
    return [str(p) for p in phantom["table"].loc[phantom["table"]["split"] == split, "patient_id"]]


def test_identity_features_ignore_gain_and_offset(phantom):
    frames = next(iter(phantom["clips"].values()))
    a, b = identity_features(frames), identity_features(0.5 * frames + 0.2)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert not np.allclose(identity_features(frames, "pixels"), identity_features(0.5 * frames + 0.2, "pixels"))


def test_features_tell_the_same_heart_from_another(phantom):
    clips = list(phantom["clips"].items())
    assert identity_separation(clips, "normalised") > 0.9


def test_a_planted_copy_is_dropped_and_new_patients_kept(phantom):
    train, val, test = _by_split(phantom, "train"), _by_split(phantom, "val"), _by_split(phantom, "test")
    clips = phantom["clips"]
    training = [(p, clips[p]) for p in train[:5]]
    held_out = [(p, clips[p]) for p in train[5:] + test]  # patients outside training calibrate the threshold
    loops = [("copy", clips[train[0]], None),  # a training clip leaked into the cohort
             ("own-source", clips[train[1]], train[1]),  # close to its own source by construction: left out
             *((f"new-{p}", clips[p], None) for p in val)]  # patients the training set never held
    result = privacy_filter(loops, training, held_out, percentile=5)
    table = result.table.set_index("loop")
    assert list(result.table.columns) == list(DROPPED_COLUMNS)
    assert result.dropped == ["copy"]
    assert table.loc["copy", "nearest_patient_id"] == train[0] and table.loc["copy", "distance"] < 1e-6
    assert table.loc["own-source", "nearest_patient_id"] != train[1]
    assert result.summary()["n_dropped"] == 1 and result.summary()["n_held_out"] == 3


def test_held_out_patients_must_be_outside_training(phantom):
    clips = phantom["clips"]
    p = _by_split(phantom, "train")[0]
    with pytest.raises(ValueError, match="outside training"):
        privacy_filter([], [(p, clips[p])], [(p, clips[p])])
    with pytest.raises(ValueError, match="percentile"):
        privacy_filter([], [(p, clips[p])], [("x", clips[p])], percentile=0)


def _plant(out: Path, phantom, patient: str, claimed_source: str) -> str:
    """Copy the real clip of ``patient`` into the cohort ``out`` as a loop made from ``claimed_source``."""
    row = phantom["table"][phantom["table"]["patient_id"] == patient].iloc[0]
    name = "synthetic_planted"
    shutil.copy(row["path"], out / "Videos" / f"{name}.avi")
    cohort = pd.read_csv(out / "cohort.csv")
    planted = cohort.iloc[[0]].assign(loop=name, source_patient_id=claimed_source)
    pd.concat([cohort, planted]).to_csv(out / "cohort.csv", index=False)
    filelist = pd.read_csv(out / "FileList.csv")
    pd.concat([filelist, filelist.iloc[[0]].assign(FileName=name)]).to_csv(out / "FileList.csv", index=False)
    return name


def test_filter_cohort_removes_a_planted_training_clip(phantom, tmp_path):
    out = tmp_path / "cohort"
    synthesize_cohort(phantom["manifest"], tiny_pipeline(), out, n_loops=4, split="train", fps=10.0, progress=False,
                      sampling=SamplingSettings(k=2, num_inference_steps=3, seed=0), memorisation_frames=50)
    train = _by_split(phantom, "train")
    planted = _plant(out, phantom, train[2], claimed_source=train[0])
    result = filter_cohort(out, phantom["manifest"])
    assert result.dropped == [planted]
    assert not (out / "Videos" / f"{planted}.avi").exists()
    assert planted not in set(pd.read_csv(out / "FileList.csv")["FileName"])
    assert planted not in set(pd.read_csv(out / "cohort.csv")["loop"]) and len(pd.read_csv(out / "cohort.csv")) == 4
    dropped = pd.read_csv(out / "privacy_dropped.csv")
    assert dropped["loop"].tolist() == [planted] and dropped["nearest_patient_id"].tolist() == [train[2]]
    assert pd.read_csv(out / "privacy_filter.csv")["n_dropped"].tolist() == [1]
    with pytest.raises(FileExistsError, match="privacy_dropped.csv"):
        filter_cohort(out, phantom["manifest"])


def test_synthesize_with_the_filter_reports_it(phantom, tmp_path):
    out = tmp_path / "cohort"
    result = synthesize_cohort(phantom["manifest"], tiny_pipeline(), out, n_loops=3, split="train", fps=10.0,
                               progress=False, sampling=SamplingSettings(k=2, num_inference_steps=3, seed=0),
                               memorisation_frames=50, privacy_filter=True)
    assert result.paths["privacy_dropped"].is_file() and result.paths["privacy_filter"].is_file()
    assert len(result.cohort) + len(result.privacy.dropped) == 3
    assert len(pd.read_csv(out / "FileList.csv")) == len(result.cohort)
    with pytest.raises(FileExistsError):  # the filter's files are outputs too: checked before generating
        synthesize_cohort(phantom["manifest"], tiny_pipeline(), out, n_loops=3, split="train", fps=10.0,
                          progress=False, sampling=SamplingSettings(k=2, num_inference_steps=3, seed=0))
