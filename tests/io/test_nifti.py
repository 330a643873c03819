"""Tests of echokdm.io.nifti on small NIfTI files written in tmp_path (by nibabel or our writers)."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest

from echokdm.errors import ReadError
from echokdm.io.anonymise import pseudonymise
from echokdm.io.nifti import (
    read_camus,
    read_camus_cfg,
    read_nifti,
    write_camus_patient,
    write_label_nifti,
    write_nifti,
)

# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def save_nifti(path, data, zooms=None, units=("unknown", "unknown"), affine=None, descrip=None):
    """Write ``data`` (voxel order (X, Y, ...)) with nibabel, as a third-party tool would."""
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    if zooms is not None:
        img.header.set_zooms(zooms)
    img.header.set_xyzt_units(*units)
    if descrip is not None:
        img.header["descrip"] = descrip
    nib.save(img, path)
    return path


def block_volume(width=10, height=6, n_frames=3):
    """``(X, Y, T)`` uint8 voxels of a wide image with a bright 3-wide, 2-tall block at the top left."""
    vol = np.zeros((width, height, n_frames), np.uint8)  # (X, Y, T)
    vol[:3, :2, :] = 255
    return vol


def assert_block_top_left(frames, height=6, width=10):
    assert frames.shape[1:] == (height, width)
    for frame in frames:
        assert np.all(frame[:2, :3] == 1.0)  # rows 0-1, columns 0-2
        assert frame.sum() == 6.0


def unit_frames(rng, shape):
    """Random frames in [0, 1] that are exact uint8 levels (k / 255), so uint8 round trips are exact."""
    return rng.integers(0, 256, shape).astype(np.float32) / np.float32(255)


# ------------------------------------------------------------------------------------------
# axis order and layouts
# ------------------------------------------------------------------------------------------


def test_orientation_first_axis_is_column(tmp_path):
    path = save_nifti(tmp_path / "wide.nii.gz", block_volume())
    cine = read_nifti(path)
    assert cine.frames.shape == (3, 6, 10)  # (T, H, W): W = X = 10, H = Y = 6
    assert (cine.height, cine.width) == (6, 10)
    assert_block_top_left(cine.frames)
    assert cine.metadata["nifti_layout"] == "(X, Y, T)"
    assert cine.metadata["axcodes"] == "RAS"


def test_axcodes_recorded_but_no_flip(tmp_path):
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS-like: must not flip the pixels
    path = save_nifti(tmp_path / "lps.nii.gz", block_volume(), affine=affine)
    cine = read_nifti(path)
    assert cine.metadata["axcodes"] == "LPS"
    assert_block_top_left(cine.frames)


def test_xy1t_layout_matches_voxels(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (5, 4, 1, 7)).astype(np.uint8)  # (X, Y, 1, T)
    cine = read_nifti(save_nifti(tmp_path / "c.nii", data))
    assert cine.frames.shape == (7, 4, 5)
    assert cine.metadata["nifti_layout"] == "(X, Y, 1, T)"
    np.testing.assert_array_equal(cine.frames[3, 2, 1], data[1, 2, 0, 3] / np.float32(255))
    np.testing.assert_array_equal(cine.frames, data[:, :, 0, :].transpose(2, 1, 0) / np.float32(255))


def test_xy1t_layout_block(tmp_path):
    vol = block_volume()[:, :, None, :]  # (X, Y, 1, T)
    cine = read_nifti(save_nifti(tmp_path / "b.nii.gz", vol))
    assert_block_top_left(cine.frames)


def test_2d_single_image(tmp_path):
    cine = read_nifti(save_nifti(tmp_path / "one.nii.gz", block_volume()[:, :, 0]))
    assert cine.frames.shape == (1, 6, 10)
    assert cine.metadata["nifti_layout"] == "(X, Y)"
    assert cine.fps is None
    assert_block_top_left(cine.frames)


def test_default_ids(tmp_path):
    cine = read_nifti(save_nifti(tmp_path / "clip_a.nii.gz", block_volume()))
    assert cine.clip_id == "clip_a"
    assert cine.patient_id == pseudonymise("clip_a")
    assert cine.dataset == "nifti"
    cine = read_nifti(tmp_path / "clip_a.nii.gz", patient_id="P1", clip_id="c9", dataset="x", view="A4C")
    assert (cine.patient_id, cine.clip_id, cine.dataset, cine.view) == ("P1", "c9", "x", "A4C")


# ------------------------------------------------------------------------------------------
# intensities
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "value", "expected"),
    [(np.uint8, 51, 0.2), (np.uint16, 13107, 0.2), (np.int16, 0, 32768 / 65535)],
)
def test_integer_scaling_by_dtype_max(tmp_path, dtype, value, expected):
    data = np.zeros((4, 3, 2), dtype)
    data[0, 0, 0] = value
    data[1, 0, 0] = np.iinfo(dtype).max
    cine = read_nifti(save_nifti(tmp_path / "i.nii.gz", data))
    assert cine.frames.dtype == np.float32
    assert cine.frames[0, 0, 0] == pytest.approx(expected, abs=1e-6)
    assert cine.frames[0, 0, 1] == pytest.approx(1.0)


def test_float_in_unit_range_kept(tmp_path):
    data = np.linspace(0.1, 0.6, 24, dtype=np.float32).reshape(4, 3, 2)
    cine = read_nifti(save_nifti(tmp_path / "f.nii.gz", data))
    np.testing.assert_allclose(cine.frames, data.transpose(2, 1, 0), atol=1e-7)


def test_float_out_of_range_min_max_over_volume(tmp_path):
    data = np.zeros((4, 3, 2), np.float32)
    data[..., 0] = -100.0
    data[..., 1] = 300.0
    data[0, 0, 1] = 100.0
    cine = read_nifti(save_nifti(tmp_path / "f.nii.gz", data))
    assert cine.frames[0].max() == 0.0  # the whole first frame is the volume minimum
    assert cine.frames[1, 0, 0] == pytest.approx(0.5)
    assert cine.frames[1, 1, 1] == pytest.approx(1.0)


def test_nan_voxels_rejected(tmp_path):
    data = np.zeros((4, 3, 2), np.float32)
    data[1, 1, 1] = np.nan
    path = save_nifti(tmp_path / "nan.nii.gz", data)
    with pytest.raises(ReadError, match=re.escape(str(path)) + ".*NaN"):
        read_nifti(path)


# ------------------------------------------------------------------------------------------
# spacing and fps
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "zooms", "expected"),
    [
        ("mm", (0.308, 0.154), (0.308, 0.154)),
        ("meter", (0.0003, 0.0002), (0.3, 0.2)),
        ("micron", (154.0, 308.0), (0.154, 0.308)),
        ("unknown", (0.25, 0.5), (0.25, 0.5)),  # unknown unit, real zooms: mm as ITK does
        ("unknown", (1.0, 1.0), None),  # unknown unit, default zooms: uncalibrated
        ("mm", (1.0, 1.0), (1.0, 1.0)),  # stated mm: kept
    ],
)
def test_spacing_from_zooms_and_units(tmp_path, unit, zooms, expected):
    path = save_nifti(tmp_path / "s.nii.gz", np.zeros((4, 3, 2), np.uint8), zooms=(*zooms, 1.0),
                      units=(unit, "unknown"))
    cine = read_nifti(path)
    assert cine.spacing_mm == expected  # exact: float32 storage noise is rounded away
    assert cine.metadata["spatial_unit"] == unit


@pytest.mark.parametrize(("unit", "interval", "fps"),
                         [("sec", 0.02, 50.0), ("msec", 40.0, 25.0), ("usec", 20000.0, 50.0)])
def test_fps_from_pixdim4(tmp_path, unit, interval, fps):
    path = save_nifti(tmp_path / "t.nii.gz", np.zeros((4, 3, 1, 5), np.uint8),
                      zooms=(0.3, 0.3, 1.0, interval), units=("mm", unit))
    cine = read_nifti(path)
    assert cine.fps == fps
    assert cine.metadata["fps_source"] == "header"


def test_fps_none_without_time_unit(tmp_path):
    path = save_nifti(tmp_path / "t.nii.gz", np.zeros((4, 3, 1, 5), np.uint8), zooms=(0.3, 0.3, 1.0, 0.02))
    assert read_nifti(path).fps is None


def test_fps_none_for_third_party_3d_file(tmp_path):
    # ITK writes (X, Y, T) CAMUS files with units mm/sec and a spatial third zoom of 1.0
    path = save_nifti(tmp_path / "t.nii.gz", np.zeros((4, 3, 5), np.uint8), zooms=(0.3, 0.3, 1.0), units=("mm", "sec"))
    cine = read_nifti(path)
    assert cine.fps is None
    assert cine.metadata["fps_source"] is None


def test_fps_argument_overrides_header(tmp_path):
    path = save_nifti(tmp_path / "t.nii.gz", np.zeros((4, 3, 1, 5), np.uint8),
                      zooms=(0.3, 0.3, 1.0, 0.02), units=("mm", "sec"))
    cine = read_nifti(path, fps=30)
    assert cine.fps == 30.0
    assert cine.metadata["fps_source"] == "argument"
    with pytest.raises(ValueError, match="fps"):
        read_nifti(path, fps=-1)


def test_free_text_header_fields_not_copied(tmp_path):
    path = save_nifti(tmp_path / "d.nii.gz", np.zeros((4, 3, 2), np.uint8), descrip=b"Jane Doe 1950-01-01")
    cine = read_nifti(path)
    assert "Jane" not in repr(cine.metadata)


# ------------------------------------------------------------------------------------------
# masks
# ------------------------------------------------------------------------------------------


def test_label_mapping_keeps_only_lv(tmp_path):
    labels = np.zeros((10, 6, 3), np.uint8)  # (X, Y, T)
    labels[0, 0, :] = 1
    labels[1, 0, :] = 2
    labels[2, 0, :] = 3
    labels[9, 5, 2] = 1
    image = save_nifti(tmp_path / "img.nii.gz", block_volume())
    mask = save_nifti(tmp_path / "img_gt.nii.gz", labels)
    cine = read_nifti(image, mask)
    assert cine.masks.dtype == np.uint8
    assert cine.masks.shape == cine.frames.shape
    np.testing.assert_array_equal(cine.masks, (labels == 1).transpose(2, 1, 0))
    assert cine.masks[2, 5, 9] == 1 and cine.masks[0, 0, 1] == 0
    assert cine.labelled_frames is None
    atrium = read_nifti(image, mask, lv_label=3)
    assert atrium.masks.sum() == 3 and atrium.masks[0, 0, 2] == 1


def test_3d_mask_matches_2d_image(tmp_path):
    image = save_nifti(tmp_path / "ed.nii.gz", block_volume()[:, :, 0])  # (X, Y)
    labels = np.zeros((10, 6, 1), np.uint8)  # (X, Y, 1)
    labels[4, 3, 0] = 1
    cine = read_nifti(image, save_nifti(tmp_path / "ed_gt.nii.gz", labels))
    assert cine.masks.shape == (1, 6, 10)
    assert cine.masks[0, 3, 4] == 1 and cine.masks.sum() == 1


def test_mask_shape_mismatch_names_both_files(tmp_path):
    image = save_nifti(tmp_path / "img.nii.gz", block_volume())
    mask = save_nifti(tmp_path / "other_gt.nii.gz", np.zeros((6, 10, 3), np.uint8))
    with pytest.raises(ReadError) as info:
        read_nifti(image, mask)
    assert str(mask) in str(info.value) and str(image) in str(info.value)
    assert "(3, 10, 6)" in str(info.value)


def test_missing_mask_file(tmp_path):
    image = save_nifti(tmp_path / "img.nii.gz", block_volume())
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope_gt.nii.gz"))):
        read_nifti(image, tmp_path / "nope_gt.nii.gz")


# ------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "missing.nii.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_nifti(path)


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(ReadError, match=re.escape(str(tmp_path)) + ".*folder"):
        read_nifti(tmp_path)


@pytest.mark.parametrize("name", ["text.nii", "text.nii.gz"])
def test_not_nifti(tmp_path, name):
    path = tmp_path / name
    path.write_text("hello, not an image")
    with pytest.raises(ReadError, match=re.escape(str(path)) + ".*NIfTI"):
        read_nifti(path)


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_truncated_file(tmp_path, name):
    rng = np.random.default_rng(1)
    path = save_nifti(tmp_path / name, rng.integers(0, 256, (40, 30, 8)).astype(np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError) as info:
        read_nifti(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((4, 3, 1, 2, 3), "5-D data of shape (4, 3, 1, 2, 3)"),
        ((4, 3, 2, 5), "4-D data of shape (4, 3, 2, 5)"),
        ((4,), "shape (4,)"),
    ],
)
def test_wrong_dimensionality(tmp_path, shape, words):
    path = save_nifti(tmp_path / "bad.nii.gz", np.zeros(shape, np.uint8))
    with pytest.raises(ReadError, match=re.escape(str(path)) + ".*" + re.escape(words)):
        read_nifti(path)


def test_trailing_singleton_dims_accepted(tmp_path):
    path = save_nifti(tmp_path / "ok.nii.gz", block_volume()[:, :, None, :, None])  # (X, Y, 1, T, 1)
    assert_block_top_left(read_nifti(path).frames)


def test_colour_voxels_rejected(tmp_path):
    rgb = np.zeros((4, 3, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])  # 3-D colour
    path = save_nifti(tmp_path / "rgb.nii.gz", rgb)
    with pytest.raises(ReadError, match=re.escape(str(path)) + r".*colour.*shape \(4, 3, 2\)"):
        read_nifti(path)


# ------------------------------------------------------------------------------------------
# CAMUS cfg
# ------------------------------------------------------------------------------------------

CFG = "ED: 1\nES: 12\nNbFrame: 20\nSex: F\nAge: 70\nImageQuality: Good\nEF: 51.5\nLVedv: 100.2\nLVesv: 48.6\nFoo: bar\n"


def test_cfg_parsing_zero_based_and_no_personal_data(tmp_path):
    cfg = tmp_path / "Info_4CH.cfg"
    cfg.write_text(CFG)
    out = read_camus_cfg(cfg)
    assert out == {"ed_frame": 0, "es_frame": 11, "n_frames": 20, "image_quality": "Good",
                   "ef_percent": 51.5, "edv_ml": 100.2, "esv_ml": 48.6}
    assert not {"Sex", "Age", "sex", "age", "Foo"} & set(out)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("ED: 1\nES 12\n", 2, "expected 'Key: value'"),
        ("ED: 1\n\nES: twelve\n", 3, "bad value for ES"),
        ("ED: 0\nES: 3\n", 1, "count from 1"),
        ("NbFrame: 2.5\n", 1, "bad value for NbFrame"),
    ],
)
def test_cfg_malformed_line(tmp_path, text, line, words):
    cfg = tmp_path / "Info_2CH.cfg"
    cfg.write_text(text)
    with pytest.raises(ReadError, match=re.escape(str(cfg)) + f": line {line}: .*{re.escape(words)}"):
        read_camus_cfg(cfg)


def test_cfg_frame_beyond_nbframe(tmp_path):
    cfg = tmp_path / "Info_2CH.cfg"
    cfg.write_text("ED: 1\nES: 21\nNbFrame: 20\n")
    with pytest.raises(ReadError, match=re.escape(str(cfg)) + ".*ES = 21.*NbFrame = 20"):
        read_camus_cfg(cfg)


# ------------------------------------------------------------------------------------------
# CAMUS reader
# ------------------------------------------------------------------------------------------


def make_camus_files(folder, patient="patient0007", view="2CH"):
    """A CAMUS-like patient folder written with nibabel, as the release stores it."""
    folder.mkdir(parents=True, exist_ok=True)
    vol = block_volume(n_frames=4)
    labels = np.zeros_like(vol)
    labels[5:8, 2:5, :] = 1  # LV
    labels[4, 2:5, :] = 2  # myocardium
    labels[5:8, 5, :] = 3  # atrium
    base = folder / f"{patient}_{view}"
    units = ("mm", "sec")
    save_nifti(f"{base}_half_sequence.nii.gz", vol, zooms=(0.3, 0.2, 1.0), units=units)
    save_nifti(f"{base}_half_sequence_gt.nii.gz", labels, zooms=(0.3, 0.2, 1.0), units=units)
    save_nifti(f"{base}_ED.nii.gz", vol[:, :, 0], zooms=(0.3, 0.2), units=units)
    save_nifti(f"{base}_ED_gt.nii.gz", labels[:, :, :1], zooms=(0.3, 0.2, 1.0), units=units)
    (folder / f"Info_{view}.cfg").write_text("ED: 1\nES: 4\nNbFrame: 4\nSex: M\nAge: 64\n"
                                             "ImageQuality: Poor\nEF: 40.0\n")
    return base, labels


def test_read_camus_sequence(tmp_path):
    base, labels = make_camus_files(tmp_path / "patient0007")
    cine = read_camus(f"{base}_half_sequence.nii.gz", salt="s")
    assert cine.dataset == "camus"
    assert cine.view == "A2C"
    assert cine.clip_id == "patient0007_2CH_half_sequence"
    assert cine.patient_id == pseudonymise("patient0007", "s")
    assert cine.spacing_mm == (0.3, 0.2)
    assert cine.fps is None
    assert cine.frames.shape == (4, 6, 10)
    assert_block_top_left(cine.frames)
    np.testing.assert_array_equal(cine.masks, (labels == 1).transpose(2, 1, 0))
    assert cine.metadata["ed_frame"] == 0 and cine.metadata["es_frame"] == 3
    assert cine.metadata["image_quality"] == "Poor" and cine.metadata["ef_percent"] == 40.0
    assert "phase" not in cine.metadata
    assert "64" not in repr(cine.metadata) and "sex" not in repr(cine.metadata).lower()


def test_read_camus_single_frame_and_options(tmp_path):
    base, labels = make_camus_files(tmp_path / "patient0007", view="4CH")
    cine = read_camus(f"{base}_ED.nii.gz")
    assert cine.frames.shape == (1, 6, 10)
    assert cine.metadata["phase"] == "ED"
    assert cine.view == "A4C"
    np.testing.assert_array_equal(cine.masks[0], (labels[:, :, 0] == 1).T)
    assert read_camus(f"{base}_ED.nii.gz", with_mask=False).masks is None


def test_read_camus_without_gt_or_cfg(tmp_path):
    path = save_nifti(tmp_path / "patient0002_4CH_ES.nii.gz", block_volume()[:, :, 0])
    cine = read_camus(path)
    assert cine.masks is None
    assert cine.metadata["has_gt"] is False
    assert "ed_frame" not in cine.metadata


def test_read_camus_gt_file_rejected(tmp_path):
    base, _ = make_camus_files(tmp_path / "patient0007")
    gt = tmp_path / "patient0007" / "patient0007_2CH_half_sequence_gt.nii.gz"
    with pytest.raises(ValueError, match=re.escape(str(gt)) + ".*patient0007_2CH_half_sequence.nii.gz"):
        read_camus(gt)


def test_read_camus_bad_name(tmp_path):
    path = save_nifti(tmp_path / "patient7_3CH_ED.nii.gz", block_volume())
    with pytest.raises(ReadError, match=re.escape(str(path)) + ".*patientNNNN_"):
        read_camus(path)
    with pytest.raises(FileNotFoundError, match="patient0001_2CH_ED.nii.gz"):
        read_camus(tmp_path / "patient0001_2CH_ED.nii.gz")


def test_read_camus_malformed_cfg(tmp_path):
    base, _ = make_camus_files(tmp_path / "patient0007")
    cfg = tmp_path / "patient0007" / "Info_2CH.cfg"
    cfg.write_text("ED: 1\nthis line is broken\n")
    with pytest.raises(ReadError, match=re.escape(str(cfg)) + ": line 2"):
        read_camus(f"{base}_half_sequence.nii.gz")


# ------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path):
    frames = unit_frames(np.random.default_rng(2), (5, 6, 9))
    path = write_nifti(tmp_path / "sub" / "c.nii.gz", frames, spacing_mm=(0.308, 0.154), fps=30)
    assert path == tmp_path / "sub" / "c.nii.gz"
    data = np.asarray(nib.load(path).dataobj)
    assert data.shape == (9, 6, 5) and data.dtype == np.uint8  # (X, Y, T)
    np.testing.assert_array_equal(data[7, 4, 2], np.rint(frames[2, 4, 7] * 255))
    cine = read_nifti(path)
    np.testing.assert_array_equal(cine.frames, frames)
    assert cine.spacing_mm == (0.308, 0.154)
    assert cine.fps == 30.0
    assert [p.name for p in path.parent.iterdir()] == ["c.nii.gz"]  # no temporary file left


def test_write_single_frame_is_2d(tmp_path):
    frames = unit_frames(np.random.default_rng(3), (1, 6, 9))
    path = write_nifti(tmp_path / "one.nii", frames)
    assert nib.load(path).shape == (9, 6)
    cine = read_nifti(path)
    np.testing.assert_array_equal(cine.frames, frames)
    assert cine.spacing_mm is None and cine.fps is None


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_write_other_dtypes(tmp_path, dtype):
    frames = np.random.default_rng(4).random((3, 4, 5)).astype(np.float32)
    path = write_nifti(tmp_path / "d.nii.gz", frames, dtype=dtype)
    assert nib.load(path).get_data_dtype() == dtype
    np.testing.assert_allclose(read_nifti(path).frames, frames, atol=1e-5)


def test_write_refuses_overwrite(tmp_path):
    frames = np.zeros((2, 3, 4), np.float32)
    path = write_nifti(tmp_path / "c.nii.gz", frames)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=re.escape(str(path))):
        write_nifti(path, np.ones((2, 3, 4), np.float32))
    assert path.read_bytes() == before
    write_nifti(path, np.ones((2, 3, 4), np.float32), overwrite=True)
    assert read_nifti(path).frames.min() == 1.0
    with pytest.raises(FileExistsError, match=re.escape(str(path))):
        write_label_nifti(path, np.zeros((2, 3, 4), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"frames": np.full((2, 3, 4), 1.5, np.float32)}, "[0, 1]"),
        ({"frames": np.zeros((2, 2, 3, 4), np.float32)}, "(T, H, W)"),
        ({"spacing_mm": (0.3, -1)}, "spacing_mm"),
        ({"fps": 0}, "fps"),
        ({"dtype": np.int8}, "dtype"),
    ],
)
def test_write_bad_arguments(tmp_path, kwargs, words):
    args = {"frames": np.zeros((2, 3, 4), np.float32), **kwargs}
    with pytest.raises(ValueError, match=re.escape(words)):
        write_nifti(tmp_path / "c.nii.gz", **args)
    assert not list(tmp_path.iterdir())


def test_write_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "c.png"))):
        write_nifti(tmp_path / "c.png", np.zeros((2, 3, 4), np.float32))


def test_label_write_read_round_trip(tmp_path):
    labels = np.random.default_rng(5).integers(0, 4, (3, 5, 7)).astype(np.uint8)
    path = write_label_nifti(tmp_path / "gt.nii.gz", labels, spacing_mm=(0.5, 0.25))
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), labels.transpose(2, 1, 0))
    image = write_nifti(tmp_path / "img.nii.gz", np.zeros((3, 5, 7), np.float32))
    np.testing.assert_array_equal(read_nifti(image, path, lv_label=2).masks, labels == 2)
    with pytest.raises(ValueError, match="integers"):
        write_label_nifti(tmp_path / "f.nii.gz", labels.astype(np.float32))
    with pytest.raises(ValueError, match="0 … 255"):
        write_label_nifti(tmp_path / "f.nii.gz", labels.astype(np.int16) + 300)


# ------------------------------------------------------------------------------------------
# CAMUS writer -> reader
# ------------------------------------------------------------------------------------------


def camus_phantom(n_frames=6, height=7, width=11):
    rng = np.random.default_rng(6)
    return unit_frames(rng, (n_frames, height, width)), rng.integers(0, 4, (n_frames, height, width)).astype(np.uint8)


def test_write_camus_patient_round_trip(tmp_path):
    frames, labels = camus_phantom()
    paths = write_camus_patient(tmp_path, "patient0042", "A4C", frames, labels, spacing_mm=(0.3, 0.15),
                                fps=40, ed_frame=1, es_frame=4, ef=55.5, edv=90.0, esv=40.05)
    folder = tmp_path / "patient0042"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["Info_4CH.cfg"] + [f"patient0042_4CH_{k}.nii.gz"
                            for k in ("half_sequence", "half_sequence_gt", "ED", "ED_gt", "ES", "ES_gt")])
    assert "ED: 2\nES: 5\nNbFrame: 6\n" in paths["cfg"].read_text()

    seq = read_camus(paths["half_sequence"], salt="x")
    np.testing.assert_array_equal(seq.frames, frames)
    np.testing.assert_array_equal(seq.masks, labels == 1)
    assert (seq.spacing_mm, seq.fps, seq.view) == ((0.3, 0.15), 40.0, "A4C")
    assert seq.patient_id == pseudonymise("patient0042", "x")
    expected = {"ed_frame": 1, "es_frame": 4, "n_frames": 6, "ef_percent": 55.5, "edv_ml": 90.0, "esv_ml": 40.05}
    assert expected.items() <= seq.metadata.items()

    for phase, index in (("ED", 1), ("ES", 4)):
        one = read_camus(paths[phase])
        assert one.metadata["phase"] == phase
        np.testing.assert_array_equal(one.frames[0], frames[index])
        np.testing.assert_array_equal(one.masks[0], labels[index] == 1)
        assert one.spacing_mm == (0.3, 0.15)


def test_write_camus_patient_refuses_overwrite_before_writing(tmp_path):
    frames, labels = camus_phantom()
    folder = tmp_path / "patient0042"
    folder.mkdir()
    (folder / "Info_2CH.cfg").write_text("ED: 1\n")
    with pytest.raises(FileExistsError, match=re.escape(str(folder / "Info_2CH.cfg"))):
        write_camus_patient(tmp_path, "patient0042", "2CH", frames, labels, spacing_mm=None, ed_frame=0, es_frame=1)
    assert [p.name for p in folder.iterdir()] == ["Info_2CH.cfg"]
    write_camus_patient(tmp_path, "patient0042", "2CH", frames, labels, spacing_mm=None, ed_frame=0, es_frame=1,
                        overwrite=True)
    assert read_camus(folder / "patient0042_2CH_half_sequence.nii.gz").metadata["es_frame"] == 1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"patient_name": "john_smith"}, "patient_name"),
        ({"view": "PLAX"}, "view"),
        ({"ed_frame": 6}, "ed_frame"),
        ({"labels": np.zeros((6, 7, 10), np.uint8)}, "labels shape"),
        ({"labels": np.zeros((6, 7, 11), np.float32)}, "integers"),
    ],
)
def test_write_camus_patient_bad_arguments(tmp_path, kwargs, words):
    frames, labels = camus_phantom()
    args = {"patient_name": "patient0001", "view": "2CH", "frames": frames, "labels": labels,
            "spacing_mm": (0.3, 0.3), "ed_frame": 0, "es_frame": 3, **kwargs}
    with pytest.raises(ValueError, match=words):
        write_camus_patient(tmp_path, **args)
    assert not list(tmp_path.iterdir())
