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
    clip_patient_distances,
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


@pytest.fixture(scope="module")
def look_alikes(phantom):
    """Roles for the look-alike case: the two patients closest to each other (``a``, ``b``) in training,
    the three most distinctive patients held out, the rest in training too."""
    clips = phantom["clips"]
    feats = {p: identity_features(c) for p, c in clips.items()}
    d = {p: clip_patient_distances(feats[p], {q: feats[q] for q in clips if q != p}) for p in clips}
    a, b = min(((p, q) for p in clips for q in clips if p < q), key=lambda pq: d[pq[0]][pq[1]] + d[pq[1]][pq[0]])
    rest = sorted((p for p in clips if p not in (a, b)), key=lambda p: -min(d[p].values()))
    return {"a": a, "b": b, "held_out": rest[:3], "training": [a, b, *rest[3:]], "clips": clips}


def _altered(frames, gain=0.85, offset=0.05, noise=0.02, seed=0):
    """A lightly altered copy: gain, offset and noise. (No shift: these 32-pixel frames are the feature's
    own size, where one pixel is a shift of 3.5 pixels at 112, and moves the speckle the feature sees.)"""
    x = gain * frames + offset + np.random.default_rng(seed).normal(0.0, noise, frames.shape)
    return np.clip(x, 0.0, 1.0)


def test_genuine_loops_of_look_alike_patients_are_kept(look_alikes):
    """A loop of ``a`` is as close to ``b`` as ``a``'s real clip is: closer than every held-out patient
    is to training, but no copy of ``b``. The source-relative rule keeps it."""
    la, clips = look_alikes, look_alikes["clips"]
    training = [(p, clips[p]) for p in la["training"]]
    held_out = [(p, clips[p]) for p in la["held_out"]]
    loops = [("loop-of-a", 0.9 * clips[la["a"]][::-1], la["a"]),  # ``a`` re-imaged: its beat reversed, less gain
             ("loop-of-b", 0.9 * clips[la["b"]][::-1], la["b"])]
    old = privacy_filter(loops, training, held_out, calibration="held_out", source_margin=None)
    assert old.dropped == ["loop-of-a", "loop-of-b"]  # the look-alikes are closer than any held-out patient
    result = privacy_filter(loops, training, held_out)  # default: pooled calibration, source margin 0.5
    assert result.dropped == []
    table = result.table.set_index("loop")
    assert table.loc["loop-of-a", "nearest_patient_id"] == la["b"]
    assert table.loc["loop-of-a", "threshold"] < result.threshold  # held to half of a's own distance to b
    assert result.summary()["n_calibration"] == len(held_out) + len(training)


@pytest.mark.parametrize("alter", ["verbatim", "altered", "shifted"])
def test_a_planted_copy_is_dropped_whatever_its_source_label(look_alikes, alter):
    """A copy of ``b`` is dropped with an unknown source, labelled with ``b``'s look-alike ``a`` (the
    label that forgives most), or with another training patient; labelled with ``b`` itself it is
    compared with the others only, as a genuine loop of ``b`` is, and kept. The shifted copy sits at
    about 0.7 × ``a``'s distance to ``b``, above the source margin: it is dropped because it looks
    more like ``b`` than like its claimed source ``a``."""
    la, clips = look_alikes, look_alikes["clips"]
    copy = {"verbatim": clips[la["b"]], "altered": _altered(clips[la["b"]]),
            "shifted": np.pad(clips[la["b"]], ((0, 0), (1, 0), (1, 0)), mode="edge")[:, :-1, :-1]}[alter]
    other = la["training"][-1]
    loops = [("unknown", copy, None), ("labelled-look-alike", copy, la["a"]), ("labelled-other", copy, other),
             ("labelled-own", copy, la["b"])]
    for calibration, margin in (("pooled", 0.5), ("held_out", 0.5), ("pooled", None), ("held_out", None)):
        result = privacy_filter(loops, [(p, clips[p]) for p in la["training"]],
                                [(p, clips[p]) for p in la["held_out"]], calibration=calibration,
                                source_margin=margin)
        copies = ["unknown", "labelled-look-alike", "labelled-other"]
        assert result.dropped[:3] == copies, (calibration, margin)
        if margin is not None:  # without it, "labelled-own" is dropped for b's look-alike a
            assert result.dropped == copies
        table = result.table.set_index("loop")
        assert (table.loc[copies, "nearest_patient_id"] == la["b"]).all()


def test_pooled_calibration_adds_leave_one_out_distances(look_alikes):
    la, clips = look_alikes, look_alikes["clips"]
    training = [(p, clips[p]) for p in la["training"]]
    held_out = [(p, clips[p]) for p in la["held_out"]]
    held = privacy_filter([], training, held_out, calibration="held_out")
    pooled = privacy_filter([], training, held_out, calibration="pooled")
    np.testing.assert_allclose(pooled.calibration_distance[:len(held_out)], held.held_out_distance)
    assert pooled.calibration_distance.size == len(held_out) + len(training)
    assert held.calibration_distance.size == len(held_out)
    # the look-alikes' leave-one-out distances are the smallest real distances between distinct patients
    assert pooled.calibration_distance.min() < held.held_out_distance.min()
    assert pooled.threshold < held.threshold
    assert "leave-one-out" in pooled.summary_line() and "source" in pooled.summary_line()
    with pytest.raises(ValueError, match="calibration"):
        privacy_filter([], training, held_out, calibration="training")
    with pytest.raises(ValueError, match="source_margin"):
        privacy_filter([], training, held_out, source_margin=0)


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
