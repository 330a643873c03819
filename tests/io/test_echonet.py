"""Tests of echokdm.io.echonet: the EchoNet-Dynamic layout, its quirks, and the writer."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from echokdm.errors import EchoKDMWarning, ReadError, TracingWarning
from echokdm.io.echonet import (
    FILELIST_COLUMNS,
    TRACING_COLUMNS,
    read_echonet_clip,
    read_echonet_filelist,
    read_echonet_tracings,
    tracing_to_mask,
    tracing_to_polygon,
    write_echonet_dataset,
)

sys.path.insert(0, str(Path(__file__).parent))
from echonet_factory import build_quirky_echonet, make_clip, rectangle_area, rectangle_tracing


@pytest.fixture
def quirky(tmp_path):
    return build_quirky_echonet(tmp_path / "echonet")


def write_text(path, text):
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# FileList.csv
# --------------------------------------------------------------------------------------------


def test_filelist_is_normalised(quirky):
    table = read_echonet_filelist(quirky.root)  # a folder is accepted

    assert table["FileName"].tolist() == ["0XAAAA.avi", "0XBBBB.avi", "0XCCCC.avi"]
    assert table["Split"].tolist() == ["TRAIN", "VAL", "TEST"]
    assert table["EF"].tolist() == [60.0, 45.5, 70.25]
    assert table["NumberOfFrames"].dtype == np.int64 and table["NumberOfFrames"].tolist() == [16, 16, 16]
    assert table["FPS"].dtype == np.float64
    assert list(table.columns) == list(FILELIST_COLUMNS)
    assert table.attrs["source"] == str(quirky.root / "FileList.csv")


def test_filelist_missing_columns_are_all_named(tmp_path):
    path = write_text(tmp_path / "FileList.csv", "FileName,EF,ESV,FrameHeight,FrameWidth,NumberOfFrames\na,1,2,3,4,5\n")
    with pytest.raises(ReadError) as info:
        read_echonet_filelist(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "EDV" in message and "FPS" in message and "Split" in message


def test_filelist_non_numeric_value_names_line_and_column(tmp_path):
    header = ",".join(FILELIST_COLUMNS)
    path = write_text(tmp_path / "FileList.csv",
                      f"{header}\na,50,10,20,112,112,50,100,train\nb,abc,10,20,112,112,50,100,VAL\n")
    with pytest.raises(ReadError, match=r"line 3, column EF: 'abc'") as info:
        read_echonet_filelist(path)
    assert str(path) in str(info.value)


def test_filelist_rejects_fractional_frame_count_and_unknown_split(tmp_path):
    header = ",".join(FILELIST_COLUMNS)
    path = write_text(tmp_path / "FileList.csv", f"{header}\na,50,10,20,112,112,50,100.5,TRAIN\n")
    with pytest.raises(ReadError, match="NumberOfFrames.*whole number"):
        read_echonet_filelist(path)
    write_text(path, f"{header}\na,50,10,20,112,112,50,100,TRIAN\n")
    with pytest.raises(ReadError, match="Split.*TRIAN"):
        read_echonet_filelist(path)


def test_filelist_rejects_a_clip_listed_twice(tmp_path):
    header = ",".join(FILELIST_COLUMNS)
    path = write_text(tmp_path / "FileList.csv",
                      f"{header}\na,50,10,20,112,112,50,100,TRAIN\na.avi,50,10,20,112,112,50,100,TEST\n")
    with pytest.raises(ReadError, match="more than once: a.avi"):
        read_echonet_filelist(path)


def test_filelist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="FileList.csv"):
        read_echonet_filelist(tmp_path)


# --------------------------------------------------------------------------------------------
# VolumeTracings.csv
# --------------------------------------------------------------------------------------------


def test_tracings_leave_out_and_report_odd_frames(quirky):
    with pytest.warns(TracingWarning, match="left out 2 traced frame"):
        tracings, problems = read_echonet_tracings(quirky.root)

    assert list(tracings) == ["0XAAAA.avi", "0XBBBB.avi", "0XCCCC.avi"]
    assert list(tracings["0XAAAA.avi"]) == [3, 10]
    assert list(tracings["0XBBBB.avi"]) == [10]  # frame 3 (42 rows) left out
    assert list(tracings["0XCCCC.avi"]) == [9, 40]  # frame 4 (20 rows) left out; 40 is checked by the clip reader
    assert len(problems) == 2
    (dup_name, dup_frame), (short_name, short_frame) = quirky.duplicated, quirky.short
    assert any(p.startswith(f"{dup_name} frame {dup_frame}: 42 rows") for p in problems)
    assert any(p.startswith(f"{short_name} frame {short_frame}: 20 rows") for p in problems)


def test_tracings_keep_rows_in_file_order(quirky):
    with pytest.warns(TracingWarning):
        tracings, _ = read_echonet_tracings(quirky.root / "VolumeTracings.csv")
    segments = tracings["0XAAAA.avi"][10]
    assert segments.dtype == np.float32 and segments.shape == (21, 4)
    np.testing.assert_array_equal(segments, quirky.clips[0]["tracings"][10])


def test_tracings_any_count_when_expected_chords_is_none(quirky):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so nothing is warned
        tracings, problems = read_echonet_tracings(quirky.root, expected_chords=None)
    assert problems == []
    assert tracings["0XBBBB.avi"][3].shape == (42, 4)
    assert tracings["0XCCCC.avi"][4].shape == (20, 4)


def test_tracings_missing_column_is_named(tmp_path):
    path = write_text(tmp_path / "VolumeTracings.csv", "FileName,X1,Y1,X2,Frame\na.avi,1,2,3,4\n")
    with pytest.raises(ReadError, match="Y2") as info:
        read_echonet_tracings(path)
    assert str(info.value).startswith(str(path))


def test_tracings_bad_value_is_named(tmp_path):
    header = ",".join(TRACING_COLUMNS)
    path = write_text(tmp_path / "VolumeTracings.csv", f"{header}\na.avi,1,2,3,4,5\na.avi,1,2,3,4,-1\n")
    with pytest.raises(ReadError, match="line 3, column Frame"):
        read_echonet_tracings(path)


# --------------------------------------------------------------------------------------------
# Tracing geometry
# --------------------------------------------------------------------------------------------


def test_polygon_is_left_ends_then_right_ends_reversed():
    segments = np.array([
        [5, 0, 5, 9],  # long axis, not used
        [2, 2, 8, 2],
        [1, 4, 9, 4],
        [3, 7, 7, 7],
    ], dtype=np.float32)
    polygon = tracing_to_polygon(segments)
    assert polygon.dtype == np.float32
    np.testing.assert_array_equal(polygon, [[2, 2], [1, 4], [3, 7], [7, 7], [9, 4], [8, 2]])


def test_polygon_needs_at_least_two_chords():
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        tracing_to_polygon(np.zeros((2, 4)))


def test_mask_area_of_a_rectangle_tracing():
    left, right, top, bottom = 20.3, 61.7, 10.2, 90.6
    mask = tracing_to_mask(rectangle_tracing(left, right, top, bottom), (100, 80))
    assert mask.dtype == np.uint8 and mask.shape == (100, 80)
    assert set(np.unique(mask)) == {0, 1}
    assert mask.sum() == pytest.approx(rectangle_area(left, right, top, bottom), rel=0.03)
    rows, cols = np.nonzero(mask)
    assert cols.min() == 21 and cols.max() == 61  # pixel centres inside [20.3, 61.7]


def test_mask_of_an_ellipse_tracing_matches_its_area():
    centre_x, centre_y, half_width, half_height = 40.0, 50.0, 15.0, 35.0
    ys = centre_y - half_height + (np.arange(20) + 0.5) * 2 * half_height / 20
    half = half_width * np.sqrt(1 - ((ys - centre_y) / half_height) ** 2)
    chords = np.stack([centre_x - half, ys, centre_x + half, ys], axis=1)
    axis = [[centre_x, centre_y - half_height, centre_x, centre_y + half_height]]
    mask = tracing_to_mask(np.concatenate([axis, chords]), (100, 80))
    assert mask.sum() == pytest.approx(np.pi * half_width * half_height, rel=0.08)  # polygon inside the ellipse


# --------------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------------


def test_clip_has_masks_at_traced_frames(quirky):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cine = read_echonet_clip(quirky.root, "0XAAAA")

    assert (cine.clip_id, cine.patient_id, cine.dataset, cine.view) == ("0XAAAA", "0XAAAA", "echonet", "A4C")
    assert cine.frames.shape == (16, 32, 40) and cine.fps == pytest.approx(50.0)
    assert cine.spacing_mm is None
    assert cine.labelled_frames.tolist() == [3, 10]
    assert list(cine.tracings) == [3, 10]
    expected = tracing_to_mask(quirky.clips[0]["tracings"][3], (32, 40))
    np.testing.assert_array_equal(cine.masks[3], expected)
    assert cine.masks[3].sum() > 100 and cine.masks[10].sum() > 100
    assert cine.masks[[0, 1, 2, 4, 9, 11, 15]].sum() == 0
    assert cine.metadata["ef_percent"] == 60.0 and cine.metadata["split"] == "TRAIN"
    assert cine.metadata["edv_ml"] == 100.0 and cine.metadata["esv_ml"] == 40.0
    assert cine.metadata["fps_video"] == pytest.approx(50.0) and cine.metadata["fps_filelist"] == 50.0
    assert cine.metadata["tracing_problems"] == []


def test_clip_frames_traced_beyond_the_video_are_dropped(quirky):
    with pytest.warns(TracingWarning) as record:
        cine = read_echonet_clip(quirky.root, "0XCCCC.avi")
    messages = " | ".join(str(w.message) for w in record)
    assert "[40]" in messages  # the dropped frame
    assert "left out 1 traced frame" in messages  # frame 4, 20 rows
    assert cine.labelled_frames.tolist() == [9]
    assert list(cine.tracings) == [9]
    assert len(cine.metadata["tracing_problems"]) == 2
    assert any(f"frame {quirky.beyond[1]}" in p for p in cine.metadata["tracing_problems"])
    assert cine.metadata["split"] == "TEST"


def test_clip_with_given_tables(quirky):
    filelist = read_echonet_filelist(quirky.root)
    with pytest.warns(TracingWarning):
        tracings, _ = read_echonet_tracings(quirky.root)
    cine = read_echonet_clip(quirky.root, "0XBBBB.avi", filelist=filelist, tracings=tracings)
    assert cine.labelled_frames.tolist() == [10]
    assert cine.metadata["ef_percent"] == 45.5 and cine.metadata["split"] == "VAL"


def test_clip_without_tracings_has_no_masks(tmp_path):
    root = write_echonet_dataset(tmp_path, [make_clip("0XDDDD", traced_frames=())])
    (root / "VolumeTracings.csv").unlink()
    cine = read_echonet_clip(root, "0XDDDD")
    assert cine.masks is None and cine.tracings is None and cine.labelled_frames is None


def test_clip_missing_video(quirky):
    with pytest.raises(FileNotFoundError, match="0XZZZZ.avi"):
        read_echonet_clip(quirky.root, "0XZZZZ")


def test_clip_not_in_filelist(quirky):
    (quirky.root / "Videos" / "0XAAAA.avi").rename(quirky.root / "Videos" / "0XEEEE.avi")
    with pytest.raises(ReadError, match="no row for clip 0XEEEE.avi") as info:
        read_echonet_clip(quirky.root, "0XEEEE")
    assert "FileList.csv" in str(info.value)


def test_clip_fps_disagreeing_with_filelist_is_warned(tmp_path):
    root = write_echonet_dataset(tmp_path, [make_clip("0XFFFF", fps=25.0)])
    text = (root / "FileList.csv").read_text().replace(",25,", ",50,")
    (root / "FileList.csv").write_text(text)
    with pytest.warns(EchoKDMWarning, match="fps 25 vs FPS 50"):
        cine = read_echonet_clip(root, "0XFFFF")
    assert cine.fps == pytest.approx(25.0)
    assert cine.metadata["fps_filelist"] == 50.0


# --------------------------------------------------------------------------------------------
# Writing the layout
# --------------------------------------------------------------------------------------------


def test_written_files_have_the_public_layout(tmp_path):
    clip = make_clip("0X1234", ef=55.123456, edv=120.5, esv=54.0, split="val")
    root = write_echonet_dataset(tmp_path / "out", [clip])

    filelist_lines = (root / "FileList.csv").read_text().splitlines()
    assert filelist_lines == ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split",
                              "0X1234,55.123456,54,120.5,32,40,50,16,VAL"]
    tracing_lines = (root / "VolumeTracings.csv").read_text().splitlines()
    assert tracing_lines[0] == "FileName,X1,Y1,X2,Y2,Frame"
    assert len(tracing_lines) == 1 + 2 * 21
    assert tracing_lines[1].startswith("0X1234.avi,") and tracing_lines[1].endswith(",3")
    assert tracing_lines[-1].endswith(",10")
    assert sorted(p.name for p in (root / "Videos").iterdir()) == ["0X1234.avi"]


def test_round_trip_through_the_readers(tmp_path):
    clips = [make_clip("0XA1", split="TRAIN", seed=1, traced_frames=(12, 2)),
             make_clip("0XB2", split="TEST", ef=33.3, fps=30.0, n_frames=10, height=24, width=24, seed=2,
                       traced_frames=(0,))]
    root = write_echonet_dataset(tmp_path, iter(clips))  # a generator is fine

    filelist = read_echonet_filelist(root)
    tracings, problems = read_echonet_tracings(root)
    assert problems == []
    assert filelist["FileName"].tolist() == ["0XA1.avi", "0XB2.avi"]
    assert filelist["EF"].tolist() == [60.0, 33.3]
    assert filelist["FPS"].tolist() == [50.0, 30.0]
    assert filelist[["NumberOfFrames", "FrameHeight", "FrameWidth"]].values.tolist() == [[16, 32, 40], [10, 24, 24]]
    for clip in clips:
        name = clip["file_name"] + ".avi"
        assert list(tracings[name]) == list(clip["tracings"])  # frame order kept
        for frame, segments in clip["tracings"].items():
            np.testing.assert_array_equal(tracings[name][frame], segments)  # float32 exactly
        cine = read_echonet_clip(root, name, filelist=filelist, tracings=tracings)
        assert cine.frames.shape == clip["frames"].shape
        assert np.abs(cine.frames - clip["frames"]).mean() < 2 / 255
        assert cine.labelled_frames.tolist() == sorted(clip["tracings"])
        assert cine.fps == pytest.approx(clip["fps"])


def test_writer_refuses_to_overwrite(tmp_path):
    write_echonet_dataset(tmp_path, [make_clip("0XA1")])
    before = (tmp_path / "FileList.csv").read_bytes()
    with pytest.raises(FileExistsError, match="FileList.csv"):
        write_echonet_dataset(tmp_path, [make_clip("0XA1", ef=10.0)])
    assert (tmp_path / "FileList.csv").read_bytes() == before
    write_echonet_dataset(tmp_path, [make_clip("0XA1", ef=10.0)], overwrite=True)
    assert read_echonet_filelist(tmp_path)["EF"].tolist() == [10.0]
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary files left


def test_writer_refuses_an_existing_video(tmp_path):
    (tmp_path / "Videos").mkdir()
    (tmp_path / "Videos" / "0XA1.avi").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="0XA1.avi"):
        write_echonet_dataset(tmp_path, [make_clip("0XA1")])
    assert (tmp_path / "Videos" / "0XA1.avi").read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": "HOLDOUT"}, "split"),
        ({"ef": float("nan")}, "ef"),
        ({"tracings": {99: rectangle_tracing(1, 5, 1, 5)}}, "traced frame 99"),
        ({"tracings": {1: np.zeros((2, 4))}}, r"\(K, 4\)"),
        ({"frames": np.zeros((4, 8, 8, 3))}, "grayscale"),
    ],
)
def test_writer_names_the_bad_clip(tmp_path, change, message):
    clip = {**make_clip("0XBAD", n_frames=4, traced_frames=(1,)), **change}
    with pytest.raises(ValueError, match=message) as info:
        write_echonet_dataset(tmp_path, [clip])
    assert "0XBAD" in str(info.value)


def test_writer_needs_every_field_and_unique_names(tmp_path):
    clip = make_clip("0XA1", n_frames=4, traced_frames=(1,))
    del clip["esv"]
    with pytest.raises(ValueError, match=r"missing field\(s\) 'esv'"):
        write_echonet_dataset(tmp_path / "a", [clip])
    twins = [make_clip("0XA1", n_frames=4, traced_frames=(1,)), make_clip("0XA1.avi", n_frames=4, traced_frames=(1,))]
    with pytest.raises(ValueError, match="used twice"):
        write_echonet_dataset(tmp_path / "b", twins)
