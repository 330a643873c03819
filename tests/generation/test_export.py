"""Tests of echokdm.generation.export: generated loops written and read back.

Tolerances: DICOM and NIfTI store 8 bits per pixel and are lossless at that depth (read back
exactly ``round(255 * frames) / 255``); GIF stores 256 gray levels, also exact; MP4 (H.264) is
lossy: PSNR > 30 dB against the input frames.

The synthetic DICOM writer and its validator are tested in ``tests/io/test_dicom_write.py``, the
EchoNet cohort writer in ``tests/generation/test_echonet_cohort.py`` and the tracing of a keypoint
set in ``tests/geometry/test_tracings.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.errors import EchoKDMWarning
from echokdm.generation import export
from echokdm.generation.export import KEYPOINTS_CSV_COLUMNS, write_loop
from echokdm.generation.motion import load_keypoints_file as read_keypoints_csv
from echokdm.geometry.volumes import simpson_volume
from echokdm.io.dicom import read_dicom
from echokdm.io.nifti import read_nifti
from echokdm.io.video import read_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _generated_loops import FPS, SPACING, eight_bit, lv_keypoints, make_loop, psnr

# --------------------------------------------------------------------------------------------
# write_loop
# --------------------------------------------------------------------------------------------


def test_keypoint_columns_are_those_of_the_lv_function_tables():
    from echokdm.metrics.lv_function import KEYPOINT_COLUMNS

    assert list(KEYPOINTS_CSV_COLUMNS) == ["frame", *KEYPOINT_COLUMNS]


def test_write_loop_writes_every_format_readable_by_the_package_readers(tmp_path):
    loop = make_loop()
    paths = write_loop(tmp_path / "out", loop, stem="case01")
    assert set(paths) == {"mp4", "gif", "dicom", "nifti", "keypoints", "preview"}
    assert all(path.is_file() and path.name.startswith("case01") for path in paths.values())

    dicom = read_dicom(paths["dicom"])  # lossless at 8 bits
    np.testing.assert_allclose(dicom.frames, eight_bit(loop.frames), atol=1e-6)
    assert dicom.fps == pytest.approx(FPS) and dicom.spacing_mm == pytest.approx(SPACING)

    nifti = read_nifti(paths["nifti"])  # lossless at 8 bits
    np.testing.assert_allclose(nifti.frames, eight_bit(loop.frames), atol=1e-6)
    assert nifti.fps == pytest.approx(FPS) and nifti.spacing_mm == pytest.approx(SPACING)

    gif = read_video(paths["gif"])  # 256 gray levels: exact
    np.testing.assert_allclose(gif.frames, eight_bit(loop.frames), atol=1e-6)
    assert gif.fps == pytest.approx(FPS)

    mp4 = read_video(paths["mp4"])
    assert mp4.frames.shape == loop.frames.shape and mp4.fps == pytest.approx(FPS)
    assert psnr(mp4.frames, loop.frames) > 30.0


def test_keypoints_csv_round_trip_keeps_nan(tmp_path):
    keypoints = lv_keypoints()
    keypoints[2, 7] = np.nan  # a keypoint that could not be found
    paths = write_loop(tmp_path, make_loop(keypoints=keypoints), formats=())
    assert set(paths) == {"keypoints", "preview"}
    table = pd.read_csv(paths["keypoints"])
    assert list(table.columns) == [*KEYPOINTS_CSV_COLUMNS, "volume", "volume_units"]
    assert table.loc[3, "volume"] == pytest.approx(simpson_volume(keypoints[3], SPACING), rel=1e-4)
    assert np.isnan(table.loc[2, "volume"]) and (table["volume_units"] == "mL").all()
    assert table["frame"].tolist() == list(range(8))
    assert table.loc[3, "x5"] == pytest.approx(keypoints[3, 5, 0], abs=1e-4)
    assert table.loc[3, "y5"] == pytest.approx(keypoints[3, 5, 1], abs=1e-4)
    back = read_keypoints_csv(paths["keypoints"])
    assert back.shape == keypoints.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, keypoints, atol=1e-4)
    assert np.isnan(back[2, 7]).all() and np.isfinite(np.delete(back.reshape(-1, 2), 2 * 40 + 7, axis=0)).all()


def test_preview_is_a_png_strip_of_three_frames(tmp_path):
    from PIL import Image

    path = write_loop(tmp_path, make_loop(), formats="gif")["preview"]
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 2 * image.height


def test_preview_marks_the_smallest_volume_frame_as_es():
    keypoints = lv_keypoints(9)
    frames = export._preview_frames(keypoints)
    volumes = simpson_volume(keypoints)
    assert [frame for frame, _ in frames] == [0, int(np.argmin(volumes)), 8]
    assert frames[1][1].startswith("ES")


def test_side_by_side_puts_real_left_and_generated_right(tmp_path):
    loop = make_loop()
    real = 1.0 - loop.frames  # any clip that differs from the generated one
    path = write_loop(tmp_path, loop, formats=(), side_by_side=real)["side_by_side"]
    video = read_video(path).frames  # (T, band + H, 2 W + 2)
    width, band = loop.frames.shape[2], export._LABEL_PX
    assert video.shape == (8, band + 48, 2 * width + 2)
    body = video[:, band:]
    assert psnr(body[:, :, :width], real) > 30.0
    assert psnr(body[:, :, width + 2 :], loop.frames) > 30.0
    assert psnr(body[:, :, width + 2 :], real) < 25.0  # not the same clip twice
    # the band says "real" over the left half and "generated" over the right half (white text on black)
    left, right = video[0, :band, :width], video[0, :band, width + 2 :]
    assert (left > 0.5).sum() > 10 and (right > 0.5).sum() > (left > 0.5).sum()  # "generated" is longer
    expected = export._label_band("real", "generated", width, width)
    assert np.abs(video[:, :band] - expected[None]).mean() < 0.08


def test_side_by_side_checks_the_reference(tmp_path):
    loop = make_loop()
    with pytest.raises(ValueError, match="side_by_side"):
        write_loop(tmp_path, loop, formats=(), side_by_side=np.zeros((8, 32, 32), np.float32))
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.warns(EchoKDMWarning, match="first 5"):
        path = write_loop(tmp_path, loop, formats=(), side_by_side=loop.frames[:5])["side_by_side"]
    assert read_video(path).frames.shape[0] == 5


def test_write_loop_checks_every_target_before_writing(tmp_path):
    existing = tmp_path / "loop.gif"
    existing.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="loop.gif"):
        write_loop(tmp_path, make_loop())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop.gif"]
    assert existing.read_bytes() == b"mine"
    write_loop(tmp_path, make_loop(), overwrite=True)
    assert read_video(existing).frames.shape == (8, 48, 48)


def test_write_loop_removes_its_files_when_a_writer_fails(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "write_nifti", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_loop(tmp_path, make_loop())
    assert not any(p for p in tmp_path.iterdir() if not p.name.startswith("."))


def test_write_loop_names_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="formats"):
        write_loop(tmp_path, make_loop(), formats=("mp4", "avi"))
    with pytest.raises(ValueError, match="keypoints"):
        write_loop(tmp_path, make_loop(keypoints=np.zeros((8, 20, 2), np.float32)))
    with pytest.raises(ValueError, match="fps"):
        write_loop(tmp_path, make_loop(fps=0.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_loop(tmp_path, make_loop(frames=np.full((8, 48, 48), 2.0, np.float32)))
    with pytest.raises(ValueError, match="stem"):
        write_loop(tmp_path, make_loop(), stem="../escape")
    assert not any(tmp_path.iterdir())


def test_preview_shows_what_the_segmentation_read(tmp_path):
    """The dashed re-detected contour is drawn when the loop was measured, and a loop whose EF was not a
    reading of the generated LV says so in the title instead of 'n/a'."""
    from PIL import Image

    from echokdm.io.loop_record import read_loop_record

    plain = make_loop()
    measured = make_loop(detected_keypoints=plain.keypoints + np.float32(4.0))
    images = []
    for name, loop in (("plain", plain), ("measured", measured)):
        with Image.open(write_loop(tmp_path / name, loop, formats="gif")["preview"]) as image:
            images.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    assert images[0].shape == images[1].shape and np.abs(images[0] - images[1]).max() > 100  # the contour is drawn
    assert "achieved 52.5 %" in export._preview_title(read_loop_record(measured))
    lost = make_loop(ef_achieved=None, detected_keypoints=plain.keypoints + np.float32(4.0),
                     metadata={"ef_achieved_note": "not a reading of the generated LV: lost on 2-5"})
    title = export._preview_title(read_loop_record(lost))
    assert "achieved not read: the segmentation lost the LV (dashed)" in title and title.startswith("SYNTHETIC")
    unmeasured = make_loop(ef_achieved=None, metadata={"ef_achieved_note": "no segmentation model"})
    assert export._preview_title(read_loop_record(unmeasured)).endswith("achieved n/a")
