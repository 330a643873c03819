"""Manifest validation, splits and CSV round trips on hand-made manifests (no readers needed)."""

import numpy as np
import pandas as pd
import pytest

from echokdm.data.manifest import COLUMNS, assign_splits, check_manifest, load_manifest, write_manifest
from echokdm.errors import ManifestError


def _manifest(tmp_path, n=4):
    rows = []
    for i in range(n):
        f = tmp_path / "clips" / f"c{i}.avi"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x")
        rows.append({"patient_id": f"p{i // 2}", "clip_id": f"c{i}", "dataset": "d", "view": "A4C", "path": str(f),
                     "format": "video", "fps": 50.0, "n_frames": 10, "height": 112, "width": 112,
                     "ef_reference": 55.0, "edv_reference": 100.0, "esv_reference": 45.0,
                     "split": "train" if i < 2 else "test"})
    return pd.DataFrame(rows)


def test_assign_splits_is_deterministic_patient_level_and_sized():
    pids = [f"patient{i:04d}" for i in range(20)]
    a = assign_splits(pids, (0.7, 0.15, 0.15), seed=3)
    assert a == assign_splits(list(reversed(pids)), (0.7, 0.15, 0.15), seed=3)  # order-independent
    assert [list(a.values()).count(s) for s in ("train", "val", "test")] == [14, 3, 3]
    assert a != assign_splits(pids, (0.7, 0.15, 0.15), seed=4)
    assert set(assign_splits(pids, (1, 0, 0)).values()) == {"train"}
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(pids, (0.5, 0.5))


def test_valid_manifest_round_trips_with_relative_paths(tmp_path):
    m = _manifest(tmp_path)
    assert check_manifest(m) == []
    out = write_manifest(m, tmp_path / "m.csv")
    text = out.read_text()
    assert "clips/c0.avi" in text and str(tmp_path) not in text  # stored relative to the manifest
    loaded = load_manifest(out)
    assert list(loaded.columns) == list(COLUMNS)
    assert loaded["path"].tolist() == m["path"].tolist()  # absolute again
    assert loaded["fps"].dtype == float and np.isnan(loaded["spacing_mm"]).all()
    with pytest.raises(FileExistsError, match="m.csv"):
        write_manifest(m, out)
    write_manifest(m.iloc[:1], out, overwrite=True)
    assert len(load_manifest(out)) == 1


def test_check_reports_every_problem_one_line_each(tmp_path):
    m = _manifest(tmp_path).astype({"n_frames": float})
    m.loc[1, "split"] = "test"  # p0 now in train and test
    m.loc[3, "clip_id"] = "c2"  # duplicate clip id
    m.loc[2, "path"] = str(tmp_path / "missing.avi")
    m.loc[0, "fps"] = -1
    m.loc[0, "ef_reference"] = 120
    m.loc[1, "esv_reference"] = 200
    m.loc[1, "format"] = "mpeg"
    m.loc[2, "n_frames"] = 2.5
    problems = check_manifest(m)
    joined = "\n".join(problems)
    assert "patient 'p0'" in joined and "several splits" in joined
    assert "clip 'c2'" in joined and "more than once" in joined
    assert "missing.avi does not exist" in joined
    assert "fps must be > 0" in joined
    assert "ef_reference must be <= 100" in joined
    assert "esv_reference 200.0 exceeds edv_reference 100.0" in joined
    assert "format 'mpeg'" in joined
    assert "n_frames must be a whole number" in joined
    assert len(problems) == 8


def test_missing_and_unknown_columns(tmp_path):
    m = _manifest(tmp_path).drop(columns=["split"])
    assert check_manifest(m) == ["missing column(s): split"]
    m = _manifest(tmp_path).rename(columns={"view": "veiw"})
    assert any("veiw" in p and "misspelt" in p for p in check_manifest(m))


def test_load_manifest_raises_listing_problems_and_naming_file(tmp_path):
    m = _manifest(tmp_path)
    m.loc[[0, 1], "split"] = "training"
    path = write_manifest(m, tmp_path / "bad.csv")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert "bad.csv" in str(err.value) and "'training'" in str(err.value)
    assert len(err.value.problems) == 2
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_manifest(tmp_path / "nope.csv")
