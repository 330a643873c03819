"""Keypoint file readers and writers on hand-written files: .pts, CSV (wide, long), JSON, OpenPose JSON."""

import json

import numpy as np
import pytest

from echokdm.errors import ReadError
from echokdm.io.keypoint_files import (
    read_keypoint_file,
    read_keypoints_csv,
    read_keypoints_json,
    read_openpose_json,
    read_pts,
    write_keypoints_csv,
    write_keypoints_json,
    write_openpose_json,
    write_pts,
)

PTS = """version: 1
n_points:  3
{
1.0 1.0
11.5 21.25
100 50
}
"""


def test_read_pts_is_one_based(tmp_path):
    path = tmp_path / "a.pts"
    path.write_text(PTS)
    np.testing.assert_allclose(read_pts(path), [[0, 0], [10.5, 20.25], [99, 49]])
    np.testing.assert_allclose(read_pts(path, one_based=False), [[1, 1], [11.5, 21.25], [100, 50]])
    with pytest.raises(ReadError, match="expected 68 keypoints, found 3"):
        read_pts(path, n_keypoints=68)


def test_pts_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.pts"
    bad.write_text("version: 1\nn_points: 2\n{\n1 2\n3\n}\n")
    with pytest.raises(ReadError, match=r"bad.pts: line 5 is not two numbers"):
        read_pts(bad)
    count = tmp_path / "count.pts"
    count.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ReadError, match="n_points: 3 but the file holds 2"):
        read_pts(count)
    (tmp_path / "none.pts").write_text("1 2\n")
    with pytest.raises(ReadError, match="no '{ ... }' block"):
        read_pts(tmp_path / "none.pts")
    with pytest.raises(FileNotFoundError):
        read_pts(tmp_path / "missing.pts")


def test_pts_round_trip_keeps_nan_and_refuses_overwrite(tmp_path):
    kp = np.array([[0.0, 0.0], [np.nan, np.nan], [12.25, 3.5]])
    path = write_pts(tmp_path / "k.pts", kp)
    assert "1.000 1.000" in path.read_text() and "nan nan" in path.read_text()
    np.testing.assert_allclose(read_pts(path), kp)
    with pytest.raises(FileExistsError):
        write_pts(path, kp)
    write_pts(path, kp + 1, overwrite=True)
    np.testing.assert_allclose(read_pts(path), kp + 1)


def test_wide_and_long_csv(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("frame,x0,x1,y0,y1,score\n0,1,2,3,4,0.9\n1,5,,7,8,0.8\n")
    kp = read_keypoints_csv(wide)
    assert kp.shape == (2, 2, 2)
    np.testing.assert_allclose(kp[0], [[1, 3], [2, 4]])
    assert np.isnan(kp[1, 1, 0]) and kp[1, 1, 1] == 8
    long = tmp_path / "long.csv"
    long.write_text("frame,keypoint,x,y\n3,1,2,4\n3,0,1,3\n0,0,9,9\n0,1,8,8\n")
    out = read_keypoints_csv(long)
    np.testing.assert_allclose(out, [[[9, 9], [8, 8]], [[1, 3], [2, 4]]])  # frames sorted, keypoints ordered
    (tmp_path / "neither.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ReadError, match="expected columns x0"):
        read_keypoints_csv(tmp_path / "neither.csv")
    (tmp_path / "text.csv").write_text("x0,y0\nabc,1\n")
    with pytest.raises(ReadError, match="numbers"):
        read_keypoints_csv(tmp_path / "text.csv")


def test_csv_round_trip(tmp_path):
    kp = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    kp[1, 2] = np.nan
    path = write_keypoints_csv(tmp_path / "k.csv", kp, frames=[4, 9])
    np.testing.assert_allclose(read_keypoints_csv(path), kp)
    assert path.read_text().splitlines()[0] == "frame,x0,x1,x2,y0,y1,y2"


def test_json_layouts(tmp_path):
    cases = {
        "list.json": [[1, 2], [3, 4, 0.5]],
        "object.json": {"landmarks": [{"x": 1, "y": 2}, None]},
        "frames.json": {"frames": [{"keypoints": [[1, 2], [3, 4]]}, {"keypoints": [[5, 6], [7, 8]]}]},
        "sequence.json": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],
    }
    for name, data in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
    np.testing.assert_allclose(read_keypoints_json(tmp_path / "list.json"), [[[1, 2], [3, 4]]])
    obj = read_keypoints_json(tmp_path / "object.json")
    assert obj.shape == (1, 2, 2) and np.isnan(obj[0, 1]).all()
    np.testing.assert_allclose(read_keypoints_json(tmp_path / "frames.json")[1], [[5, 6], [7, 8]])
    np.testing.assert_allclose(read_keypoints_json(tmp_path / "sequence.json"),
                               read_keypoints_json(tmp_path / "frames.json"))
    path = write_keypoints_json(tmp_path / "out.json", obj)
    np.testing.assert_allclose(read_keypoints_json(path), obj)
    (tmp_path / "ragged.json").write_text(json.dumps([[[1, 2]], [[1, 2], [3, 4]]]))
    with pytest.raises(ReadError, match="different numbers"):
        read_keypoints_json(tmp_path / "ragged.json")


def test_openpose_zero_confidence_is_missing(tmp_path):
    path = tmp_path / "frame_keypoints.json"
    path.write_text(json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": [10.0, 20.0, 0.9, 0.0, 0.0, 0.0, 30.0, 40.0, 0.1]},
        {"person_id": [-1], "pose_keypoints_2d": [1.0, 2.0, 0.5, 3.0, 4.0, 0.5, 5.0, 6.0, 0.5]}]}))
    kp = read_openpose_json(path)
    np.testing.assert_allclose(kp[[0, 2]], [[10, 20], [30, 40]])
    assert np.isnan(kp[1]).all()  # not (0, 0)
    assert np.isnan(read_openpose_json(path, min_confidence=0.2)[2]).all()
    np.testing.assert_allclose(read_openpose_json(path, person=1)[2], [5, 6])
    with pytest.raises(ReadError, match="person 2 requested"):
        read_openpose_json(path, person=2)
    with pytest.raises(ReadError, match="expected 25 keypoints, found 3"):
        read_openpose_json(path, n_keypoints=25)
    empty = tmp_path / "nobody.json"
    empty.write_text(json.dumps({"people": []}))
    assert np.isnan(read_openpose_json(empty, n_keypoints=25)).all()
    with pytest.raises(ReadError, match="OpenPose file; read it with read_openpose_json"):
        read_keypoints_json(path)


def test_openpose_round_trip_and_dispatch(tmp_path):
    kp = np.array([[1.5, 2.5], [np.nan, np.nan], [7.0, 8.0]])
    path = write_openpose_json(tmp_path / "k_keypoints.json", kp)
    triples = json.loads(path.read_text())["people"][0]["pose_keypoints_2d"]
    assert triples[3:6] == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(read_openpose_json(path), kp)
    np.testing.assert_allclose(read_keypoint_file(path)[0], kp)  # .json with "people" -> OpenPose
    np.save(tmp_path / "k.npy", kp)
    np.testing.assert_allclose(read_keypoint_file(tmp_path / "k.npy"), kp[None])
    (tmp_path / "k.txt").write_text("1 2")
    with pytest.raises(ReadError, match="unknown keypoint file type"):
        read_keypoint_file(tmp_path / "k.txt")


# ---------------------------------------------------------------------------------------------
# the one reader of echo keypoint tables (issue 19): float64, ReadError naming the file
# ---------------------------------------------------------------------------------------------


def test_echo_table_reads_as_float64_with_its_frames(tmp_path):
    """An ``echokdm keypoints`` / ``write_loop`` table: frame, x0..x39, y0..y39 and other columns."""
    kp = np.random.default_rng(0).uniform(0, 100, size=(3, 40, 2)).round(4)
    kp[1, 5] = np.nan
    path = write_keypoints_csv(tmp_path / "loop_keypoints.csv", kp, frames=[7, 8, 9],
                               extra_columns={"volume": [1.0, np.nan, 3.0], "volume_units": "mL"})
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "frame" and header[-2:] == ["volume", "volume_units"] and len(header) == 83
    out, frames = read_keypoints_csv(path, n_keypoints=40, return_frames=True)
    assert out.dtype == np.float64 and out.shape == (3, 40, 2) and frames.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(out, kp)  # 4 decimals written, read back exactly
    assert read_keypoint_file(path, n_keypoints=40).dtype == np.float64
    assert read_keypoints_csv(path, return_frames=True)[1].dtype == np.int64


def test_frames_of_long_tables_and_tables_without_a_frame_column(tmp_path):
    long = tmp_path / "long.csv"
    long.write_text("frame,keypoint,x,y\n5,0,1,3\n2,0,9,9\n")  # one keypoint per frame, frames unsorted
    out, frames = read_keypoints_csv(long, return_frames=True)
    assert frames.tolist() == [2, 5] and out[:, 0, 0].tolist() == [9.0, 1.0]
    wide = tmp_path / "wide.csv"
    wide.write_text("x0,y0\n1,2\n")
    assert read_keypoints_csv(wide, return_frames=True)[1] is None


def test_errors_are_read_errors_naming_the_file(tmp_path):
    missing = tmp_path / "bad.csv"
    missing.write_text("frame,x0\n0,1.0\n")
    with pytest.raises(ReadError, match=r"bad\.csv: missing keypoint column\(s\) x1, x2, x3, x4, x5 and 74 more"):
        read_keypoints_csv(missing, n_keypoints=40)
    with pytest.raises(ValueError, match=r"bad\.csv: missing keypoint column\(s\) y0"):  # ReadError is a ValueError
        read_keypoints_csv(missing)
    frames = tmp_path / "frames.csv"
    frames.write_text("frame,x0,y0\nfirst,1,2\n")
    with pytest.raises(ReadError, match=r"frames\.csv: the frame column must hold integer frame indices"):
        read_keypoints_csv(frames)
    empty = tmp_path / "empty.csv"
    empty.write_text("frame,x0,y0\n")
    with pytest.raises(ReadError, match=r"empty\.csv: the keypoint table has no rows"):
        read_keypoints_csv(empty)
    np.save(tmp_path / "three.npy", np.zeros((3, 2)))
    with pytest.raises(ReadError, match=r"three\.npy: keypoints must have shape \(40, 2\) or \(T, 40, 2\), got "
                                        r"\(3, 2\): expected 40 keypoints, found 3"):
        read_keypoint_file(tmp_path / "three.npy", n_keypoints=40)
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with pytest.raises(ReadError, match=r"text\.npy: keypoints must be numbers"):
        read_keypoint_file(tmp_path / "text.npy")
    with pytest.raises(ReadError, match="is a folder"):
        read_keypoint_file(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.csv: no such keypoint file"):
        read_keypoints_csv(tmp_path / "nope.csv")


def test_extra_columns_may_not_replace_keypoint_columns(tmp_path):
    with pytest.raises(ValueError, match="'x0' is a keypoint column"):
        write_keypoints_csv(tmp_path / "k.csv", np.zeros((1, 2, 2)), extra_columns={"x0": 1.0})
