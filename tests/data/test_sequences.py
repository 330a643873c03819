"""Sequence manifests and procedural datasets on disk: layout, validation, training clips."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from echokdm.adapters import get_adapter
from echokdm.data.procedural import write_procedural_dataset
from echokdm.data.sequences import (
    check_sequence_manifest,
    load_sequence_manifest,
    read_sequence_frames,
    read_sequence_keypoints,
    sequence_clip_loader,
)
from echokdm.errors import ManifestError, ReadError


@dataclasses.dataclass
class Data:
    size: int = 32
    flows: str = "dataset"
    flow_cache: str | None = None
    pairs_per_clip: int = 5


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    write_procedural_dataset(out, "face", n_subjects=3, sequences_per_subject=1, n_frames=4, size=40,
                             pairs_per_sequence=3, seed=1, progress=False)
    return out


@pytest.fixture(scope="module")
def poses(tmp_path_factory):
    out = tmp_path_factory.mktemp("poses")
    write_procedural_dataset(out, "pose", n_subjects=2, sequences_per_subject=2, n_frames=5, size=32,
                             pairs_per_sequence=4, missing=0.5, seed=2, progress=False)
    return out


def test_face_dataset_layout_and_manifest(faces):
    manifest = load_sequence_manifest(faces / "manifest.csv")
    assert len(manifest) == 3 and set(manifest["split"]) <= {"train", "val", "test"}
    row = manifest.iloc[0]
    folder = faces / "sequences" / row["clip_id"]
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"{t:04d}.png" for t in range(4)]
    assert min(p.name for p in (folder / "keypoints").iterdir()) == "0000.pts"
    frames = read_sequence_frames(row)
    assert frames.shape == (4, 40, 40) and frames.dtype == np.float32 and 0 <= frames.min() < frames.max() <= 1
    kp = read_sequence_keypoints(row, get_adapter("face").read_keypoints, 4)
    truth = np.load(faces / "truth" / f"{row['clip_id']}.npz")["keypoints"]
    np.testing.assert_allclose(kp, truth, atol=2e-3)  # .pts stores 3 decimals
    assert manifest["path"].map(lambda p: p.startswith("/")).all()  # absolute after loading
    assert "sequences/" in (faces / "manifest.csv").read_text().splitlines()[1]  # relative on disk
    with pytest.raises(FileExistsError, match="manifest.csv"):
        write_procedural_dataset(faces, "face", n_subjects=1, n_frames=2, size=16, progress=False)


def test_pose_files_mark_missing_joints(poses):
    manifest = load_sequence_manifest(poses / "manifest.csv")
    assert len(manifest) == 4 and manifest.groupby("patient_id")["split"].nunique().max() == 1
    row = manifest.iloc[1]
    kp = read_sequence_keypoints(row, get_adapter("pose").read_keypoints, 5)
    truth = np.load(poses / "truth" / f"{row['clip_id']}.npz")["keypoints"]
    missing = np.isnan(kp).any(-1)
    assert missing.any() and not missing[:, :15].any()  # only eyes, ears and feet go missing
    np.testing.assert_allclose(kp[~missing], truth[~missing], atol=1e-3)


def test_clip_loader_dataset_and_tps_flows(faces):
    manifest = load_sequence_manifest(faces / "manifest.csv")
    row = manifest.iloc[0]
    clip = sequence_clip_loader(Data(), get_adapter("face").read_keypoints)(row, np.random.default_rng(0))
    assert clip.frames.shape == (4, 32, 32) and clip.frames.dtype == np.uint8
    assert clip.keypoints.shape == (4, 68, 2) and clip.pairs.shape == (3, 2) and clip.flows.dtype == np.float16
    with np.load(row["flows_path"]) as f:
        stored = f["flows"].astype(np.float32)
    # flows resized 40 -> 32 and scaled by 32 / 40 with the frames
    assert np.abs(clip.flows.astype(np.float32)).max() == pytest.approx(np.abs(stored).max() * 0.8, rel=0.15)
    truth = np.load(faces / "truth" / f"{row['clip_id']}.npz")["keypoints"]
    np.testing.assert_allclose(clip.keypoints, (truth + 0.5) * 0.8 - 0.5, atol=2e-3)
    tps = sequence_clip_loader(Data(flows="tps"), get_adapter("face").read_keypoints)(row, np.random.default_rng(0))
    assert tps.pairs.shape == (5, 2) and (tps.pairs[:, 0] != tps.pairs[:, 1]).all()
    a, b = tps.pairs[0]
    q = np.round(tps.keypoints[b, 30]).astype(int)  # the nose tip, on a pixel centre after rounding
    assert np.linalg.norm(tps.flows[0, :, q[1], q[0]].astype(np.float32)
                          - (tps.keypoints[a, 30] - tps.keypoints[b, 30])) < 1.0


def test_manifest_problems_are_listed(faces, tmp_path):
    table = pd.read_csv(faces / "manifest.csv", dtype=str, keep_default_na=False)
    bad = table.copy()
    bad["colour"] = "x"
    bad.loc[0, "split"] = "training"
    bad.loc[1, "keypoints_path"] = "nowhere"
    bad = pd.concat([bad, table.iloc[[2]].assign(clip_id="another", split="test" if table.loc[2, "split"] != "test"
                                                   else "train")])
    problems = check_sequence_manifest(bad, base_dir=faces)
    text = "\n".join(problems)
    assert "unknown column(s) (misspelt?): colour" in text and "split 'training'" in text
    assert "keypoints_path" in text and "nowhere" in text and "several splits" in text
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ManifestError, match="problem"):
        load_sequence_manifest(tmp_path / "bad.csv")
    echo_like = tmp_path / "echo.csv"
    echo_like.write_text("patient_id,clip_id,dataset,path,format,split\np,c,d,x.avi,video,train\n")
    assert "missing column(s): keypoints_path" in check_sequence_manifest(echo_like)[0]


def test_keypoint_count_mismatch_names_the_folder(faces):
    row = load_sequence_manifest(faces / "manifest.csv").iloc[0]
    with pytest.raises(ReadError, match=r"keypoints: 4 keypoint file\(s\) for 5 frames"):
        read_sequence_keypoints(row, get_adapter("face").read_keypoints, 5)


def test_coco18_pose_dataset(tmp_path):
    write_procedural_dataset(tmp_path, "pose", n_subjects=1, sequences_per_subject=1, n_frames=2, size=16,
                             pairs_per_sequence=1, skeleton="coco18", missing=0.0, progress=False)
    row = load_sequence_manifest(tmp_path / "manifest.csv").iloc[0]
    kp = read_sequence_keypoints(row, get_adapter("pose_coco18").read_keypoints, 2)
    truth = np.load(tmp_path / "truth" / f"{row['clip_id']}.npz")["keypoints"]  # BODY_25
    np.testing.assert_allclose(kp[:, 8], truth[:, 9], atol=1e-3)  # COCO RHip is BODY_25 RHip (not MidHip)
    assert '"adapter": "pose_coco18"' in (tmp_path / "dataset.json").read_text()
