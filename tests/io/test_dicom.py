"""Tests of echokdm.io.dicom: the DICOM ultrasound reader and writer."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import examples
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from echokdm.errors import EchoKDMWarning, MissingDecoderError, NonUltrasoundWarning, ReadError
from echokdm.io import read_dicom as lazily_exported_read_dicom
from echokdm.io.anonymise import pseudonymise
from echokdm.io.dicom import motion_fan_mask, read_dicom, write_dicom

sys.path.insert(0, str(Path(__file__).parent))
import dicom_factory as factory

RNG = np.random.default_rng(1234)


def _gray8(n_frames=3, height=32, width=48):
    return RNG.integers(0, 256, size=(n_frames, height, width), dtype=np.uint8)


def _smooth8(n_frames=3, height=64, width=64):
    """Smooth uint8 frames, for lossy codecs (noise would make their error large)."""
    yy, xx = np.mgrid[0:height, 0:width]
    t = np.arange(n_frames)[:, None, None]
    return (127.5 + 100 * np.sin(xx / 9.0 + t) * np.cos(yy / 11.0)).astype(np.uint8)


def _write(tmp_path, ds, transfer_syntax=ExplicitVRLittleEndian, name="clip.dcm", **options):
    return factory.save(ds, tmp_path / name, transfer_syntax, **options)


def _read_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EchoKDMWarning)
        return read_dicom(path, **kwargs)


# ---------------------------------------------------------------------------------- pixels


def test_monochrome2_8bit_values_shape_and_dtype(tmp_path):
    pixels = _gray8()
    cine = read_dicom(_write(tmp_path, factory.us_dataset(pixels)))
    assert cine.frames.dtype == np.float32
    assert cine.frames.shape == (3, 32, 48)
    np.testing.assert_allclose(cine.frames, pixels / 255.0, atol=1e-6)
    assert cine.metadata["photometric"] == "MONOCHROME2"
    assert cine.metadata["n_frames"] == 3 and cine.metadata["rows"] == 32 and cine.metadata["columns"] == 48


def test_integers_are_scaled_by_bits_stored_not_dtype_max(tmp_path):
    pixels = np.array([[[0, 1000, 4095], [2048, 4095, 0]]] * 2, dtype=np.uint16)  # 12 bits
    cine = read_dicom(_write(tmp_path, factory.us_dataset(pixels, bits_stored=12)))
    np.testing.assert_allclose(cine.frames, pixels / 4095.0, atol=1e-6)
    assert cine.frames.max() == pytest.approx(1.0)
    assert cine.metadata["bits_stored"] == 12


def test_monochrome1_is_inverted(tmp_path):
    pixels = np.array([[[0, 1000, 4095], [2048, 4095, 0]]] * 2, dtype=np.uint16)
    ds = factory.us_dataset(pixels, "MONOCHROME1", bits_stored=12)
    cine = read_dicom(_write(tmp_path, ds))
    np.testing.assert_allclose(cine.frames, 1.0 - pixels / 4095.0, atol=1e-6)
    assert cine.frames[0, 0, 0] == pytest.approx(1.0)  # 0 is white in MONOCHROME1
    assert cine.metadata["photometric"] == "MONOCHROME1"


def test_signed_pixels_are_shifted_to_unit_range(tmp_path):
    pixels = np.array([[[-2048, 0, 2047]]] * 2, dtype=np.int16)
    cine = read_dicom(_write(tmp_path, factory.us_dataset(pixels, bits_stored=12)))
    np.testing.assert_allclose(cine.frames[0, 0], [0.0, 2048 / 4095, 1.0], atol=1e-6)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "YBR_FULL_422"])
def test_colour_photometrics_give_the_luma_of_known_colours(tmp_path, photometric):
    rgb, luma = factory.colour_blocks(n_frames=2)
    cine = read_dicom(_write(tmp_path, factory.us_dataset(rgb, photometric)))
    assert cine.frames.shape == (2,) + luma.shape
    np.testing.assert_allclose(cine.frames[1], luma, atol=2.5 / 255)
    assert cine.metadata["photometric"] == photometric


def test_palette_colour_goes_through_its_lut(tmp_path):
    lut = np.zeros((256, 3), dtype=np.uint16)
    lut[:, 0] = np.arange(256) * 257  # red ramp, full 16-bit range
    lut[:, 2] = 65535 - np.arange(256) * 257  # blue falls
    indices = np.array([[[0, 64, 128, 255]]] * 2, dtype=np.uint8)
    ds = factory.us_dataset(indices, "PALETTE COLOR")
    factory.palette_lut(ds, lut)
    cine = read_dicom(_write(tmp_path, ds))
    rgb = lut[indices[0, 0]] / 65535.0
    np.testing.assert_allclose(cine.frames[0, 0], rgb @ [0.299, 0.587, 0.114], atol=1e-4)


def test_palette_colour_with_8bit_lut_entries(tmp_path):
    lut = np.stack([np.arange(256)] * 3, axis=1)  # grey ramp, 8-bit entries in 16-bit words
    indices = np.array([[[0, 51, 255]]] * 2, dtype=np.uint8)
    ds = factory.us_dataset(indices, "PALETTE COLOR")
    factory.palette_lut(ds, lut, bits=8)
    cine = read_dicom(_write(tmp_path, ds))
    np.testing.assert_allclose(cine.frames[0, 0], [0.0, 0.2, 1.0], atol=1e-4)


# --------------------------------------------------------------------------- transfer syntaxes


@pytest.mark.parametrize(
    "transfer_syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
     RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1],
)
@pytest.mark.parametrize("n_frames", [1, 3])
def test_lossless_transfer_syntaxes_decode_exactly(tmp_path, transfer_syntax, n_frames):
    pixels = _gray8(n_frames, 32, 48)
    path = _write(tmp_path, factory.us_dataset(pixels), transfer_syntax)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == transfer_syntax
    cine = read_dicom(path)
    assert cine.n_frames == n_frames
    np.testing.assert_allclose(cine.frames, pixels / 255.0, atol=1e-6)
    assert cine.metadata["transfer_syntax"] == str(transfer_syntax)


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRBigEndian, JPEGLossless, RLELossless, JPEGLSLossless])
def test_16bit_pixels_through_byte_order_sensitive_syntaxes(tmp_path, transfer_syntax):
    """12-bit values in 16-bit words: big endian must be byte-swapped, codecs must keep 12 bits."""
    pixels = RNG.integers(0, 4096, size=(2, 32, 40), dtype=np.uint16)
    path = _write(tmp_path, factory.us_dataset(pixels, bits_stored=12), transfer_syntax)
    np.testing.assert_allclose(read_dicom(path).frames, pixels / 4095.0, atol=1e-6)


def test_big_endian_file_really_is_byte_swapped(tmp_path):
    pixels = np.full((2, 4, 4), 0x0102, dtype=np.uint16)
    path = _write(tmp_path, factory.us_dataset(pixels, bits_stored=12), ExplicitVRBigEndian)
    assert b"\x01\x02" * 32 in path.read_bytes()
    np.testing.assert_allclose(read_dicom(path).frames, 0x0102 / 4095.0, atol=1e-6)


@pytest.mark.parametrize(
    "transfer_syntax, options, tolerance",
    [(JPEGBaseline8Bit, {"quality": 95}, 6 / 255), (JPEGExtended12Bit, {"quality": 95}, 6 / 255),
     (JPEGLSNearLossless, {"jls_error": 3}, 3 / 255), (JPEG2000, {"j2k_psnr": [50]}, 16 / 255)],
)
@pytest.mark.parametrize("n_frames", [1, 3])
def test_lossy_transfer_syntaxes_decode_close_to_the_original(
    tmp_path, transfer_syntax, options, tolerance, n_frames
):
    pixels = _smooth8(n_frames)
    path = _write(tmp_path, factory.us_dataset(pixels), transfer_syntax, **options)
    cine = read_dicom(path)
    assert cine.frames.shape == pixels.shape
    assert np.abs(cine.frames - pixels / 255.0).max() <= tolerance + 1e-6
    assert cine.metadata["transfer_syntax"] == str(transfer_syntax)


@pytest.mark.parametrize("transfer_syntax", [JPEGBaseline8Bit, JPEG2000Lossless, RLELossless, JPEGLSLossless])
def test_colour_through_compressed_syntaxes(tmp_path, transfer_syntax):
    rgb, luma = factory.colour_blocks(n_frames=2, block=16)
    path = _write(tmp_path, factory.us_dataset(rgb, "RGB"), transfer_syntax)
    cine = read_dicom(path)
    atol = 8 / 255 if transfer_syntax == JPEGBaseline8Bit else 1e-5
    centre = np.zeros_like(luma, dtype=bool)  # block centres: JPEG chroma bleeds across borders
    for row in range(2):
        for col in range(4):
            centre[row * 16 + 4:row * 16 + 12, col * 16 + 4:col * 16 + 12] = True
    np.testing.assert_allclose(cine.frames[1][centre], luma[centre], atol=atol)


def test_real_12bit_jpeg_extended_file_from_pydicom():
    """A genuine 12-bit JPEG extended (process 4) file; it is nuclear medicine, hence the warning."""
    path = get_testdata_file("JPGExtended.dcm")
    with pytest.warns(NonUltrasoundWarning, match="'NM'"):
        cine = read_dicom(path)
    assert cine.frames.dtype == np.float32 and 0.0 <= cine.frames.min() < cine.frames.max() <= 1.0
    assert cine.metadata["transfer_syntax"] == str(JPEGExtended12Bit)


def test_file_without_preamble_is_read(tmp_path):
    ds = factory.us_dataset(_gray8(2, 8, 8))
    path = tmp_path / "nometa.dcm"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.save_as(path, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    assert path.read_bytes()[128:132] != b"DICM"
    cine = read_dicom(path)
    assert cine.frames.shape == (2, 8, 8)


# ------------------------------------------------------------------------------ frame rate


@pytest.mark.parametrize(
    "elements, fps, source",
    [({"FrameTime": 20.0}, 50.0, "FrameTime"),
     ({"FrameTimeVector": [0, 25, 25, 25]}, 40.0, "FrameTimeVector"),
     ({"FrameTimeVector": [0, 20, 30, 25]}, 40.0, "FrameTimeVector"),
     ({"CineRate": 30}, 30.0, "CineRate"),
     ({"RecommendedDisplayFrameRate": 24}, 24.0, "RecommendedDisplayFrameRate"),
     ({"FrameTime": 40.0, "CineRate": 30, "RecommendedDisplayFrameRate": 24}, 25.0, "FrameTime"),
     ({"FrameTimeVector": [0, 50, 50, 50], "CineRate": 30}, 20.0, "FrameTimeVector"),
     ({"FrameTime": 0, "CineRate": 30}, 30.0, "CineRate"),
     ({}, None, None)],
)
def test_frame_rate_sources_and_priority(tmp_path, elements, fps, source):
    cine = read_dicom(_write(tmp_path, factory.us_dataset(_gray8(4, 8, 8), **elements)))
    assert cine.metadata["fps_source"] == source
    if fps is None:
        assert cine.fps is None and cine.metadata["frame_time_ms"] is None
    else:
        assert cine.fps == pytest.approx(fps)
        assert cine.metadata["frame_time_ms"] == pytest.approx(1000.0 / fps)


# --------------------------------------------------------------------------------- spacing


def test_spacing_from_region_in_cm_is_converted_to_mm(tmp_path):
    region = factory.us_region((4, 2, 43, 29), delta_cm=(0.03, 0.045))
    ds = factory.us_dataset(_gray8(), SequenceOfUltrasoundRegions=[region], PixelSpacing=[1.0, 1.0])
    cine = read_dicom(_write(tmp_path, ds))
    assert cine.spacing_mm == pytest.approx((0.3, 0.45))  # (dx, dy) in mm, region beats PixelSpacing
    assert cine.metadata["spacing_source"] == "SequenceOfUltrasoundRegions"


def test_spacing_picks_the_2d_tissue_region_among_several(tmp_path):
    regions = [
        factory.us_region((0, 0, 47, 31), (0.5, 0.5), spatial_format=1, data_type=2),  # larger, colour flow
        factory.us_region((2, 2, 20, 20), (0.02, 0.02), spatial_format=1, data_type=1),  # tissue
        factory.us_region((0, 25, 47, 31), (0.01, 0.0), units=(4, 0), spatial_format=4, data_type=10),
    ]
    cine = read_dicom(_write(tmp_path, factory.us_dataset(_gray8(), SequenceOfUltrasoundRegions=regions)))
    assert cine.spacing_mm == pytest.approx((0.2, 0.2))


def test_spacing_without_tissue_region_takes_the_largest_2d_region(tmp_path):
    regions = [factory.us_region((0, 0, 9, 9), (0.1, 0.1), data_type=2),
               factory.us_region((0, 0, 39, 29), (0.04, 0.04), data_type=3)]
    cine = read_dicom(_write(tmp_path, factory.us_dataset(_gray8(), SequenceOfUltrasoundRegions=regions)))
    assert cine.spacing_mm == pytest.approx((0.4, 0.4))


def test_non_spatial_region_units_are_ignored_and_pixel_spacing_is_the_fallback(tmp_path):
    spectral = factory.us_region((0, 0, 47, 31), (0.01, 0.0), units=(4, 7), spatial_format=4)
    ds = factory.us_dataset(_gray8(), SequenceOfUltrasoundRegions=[spectral], PixelSpacing=[0.2, 0.4])
    cine = read_dicom(_write(tmp_path, ds))
    assert cine.spacing_mm == pytest.approx((0.4, 0.2))  # PixelSpacing is (row, col) = (dy, dx)
    assert cine.metadata["spacing_source"] == "PixelSpacing"


def test_no_calibration_gives_none(tmp_path):
    seconds = factory.us_region((0, 0, 47, 31), (0.01, 0.01), units=(4, 4), spatial_format=1)
    cine = read_dicom(_write(tmp_path, factory.us_dataset(_gray8(), SequenceOfUltrasoundRegions=[seconds])))
    assert cine.spacing_mm is None and cine.metadata["spacing_source"] is None


# -------------------------------------------------------------------------------- cropping


def test_crop_to_fan_uses_the_calibration_region(tmp_path):
    pixels = _gray8(3, 32, 48)
    region = factory.us_region((5, 3, 40, 25))  # inclusive corners
    path = _write(tmp_path, factory.us_dataset(pixels, SequenceOfUltrasoundRegions=[region]))
    cine = read_dicom(path, crop_to_fan=True)
    assert cine.frames.shape == (3, 23, 36)
    np.testing.assert_allclose(cine.frames, pixels[:, 3:26, 5:41] / 255.0, atol=1e-6)
    assert cine.metadata["crop_box"] == (5, 3, 41, 26)
    assert cine.metadata["crop_method"] == "region"
    assert cine.spacing_mm == pytest.approx((0.3, 0.3))  # spacing per pixel is unchanged


def test_crop_to_fan_by_motion_removes_burned_in_text(tmp_path):
    synthetic = factory.speckle_fan_cine()
    frames = synthetic["frames"]
    path = _write(tmp_path, factory.us_dataset(frames, FrameTime=20.0))
    assert (read_dicom(path).frames > 0.9).any()  # the text is there before cropping
    cine = read_dicom(path, crop_to_fan=True)
    x0, y0, x1, y1 = cine.metadata["crop_box"]
    assert cine.metadata["crop_method"] == "motion"
    np.testing.assert_allclose((x0, y0, x1, y1), synthetic["fan_box"], atol=2)
    assert cine.frames.shape == (frames.shape[0], y1 - y0, x1 - x0)
    assert cine.frames.max() < 0.75  # text (255) and ECG are gone, speckle is at most 178
    inside = synthetic["fan"][y0:y1, x0:x1]
    fan_mean = frames[:, synthetic["fan"]].mean() / 255
    np.testing.assert_allclose(cine.frames[:, inside].mean(), fan_mean, atol=0.01)
    assert synthetic["text_in_box"][y0:y1, x0:x1].any()  # static text inside the box ...
    assert np.all(cine.frames[:, synthetic["text_in_box"][y0:y1, x0:x1]] == 0)  # ... is zeroed


def test_motion_fan_mask_matches_the_sector():
    synthetic = factory.speckle_fan_cine()
    mask = motion_fan_mask(synthetic["frames"] / 255.0)
    assert mask.dtype == bool and mask.shape == synthetic["fan"].shape
    assert (mask ^ synthetic["fan"]).sum() <= 0.01 * synthetic["fan"].sum()
    assert not mask[synthetic["text_in_box"]].any()


def test_motion_fan_mask_rejects_a_single_frame():
    with pytest.raises(ValueError, match="T >= 2"):
        motion_fan_mask(np.zeros((1, 8, 8), np.float32))


def test_single_frame_without_region_warns_and_is_not_cropped(tmp_path):
    path = _write(tmp_path, factory.us_dataset(_gray8(1)))
    with pytest.warns(EchoKDMWarning, match="single frame"):
        cine = read_dicom(path, crop_to_fan=True)
    assert cine.frames.shape == (1, 32, 48)
    assert cine.metadata["crop_box"] is None


def test_region_beyond_the_image_falls_back_to_motion_with_a_warning(tmp_path):
    region = factory.us_region((10, 5, 99, 99))
    path = _write(tmp_path, factory.us_dataset(_gray8(), SequenceOfUltrasoundRegions=[region]))
    with pytest.warns(EchoKDMWarning, match="extends beyond.*cropping by motion"):
        cine = read_dicom(path, crop_to_fan=True)
    assert cine.metadata["crop_method"] == "motion"


# ----------------------------------------------------------------- identifiers and metadata


def test_identifiers_are_pseudonymised_and_metadata_has_no_personal_data(tmp_path):
    ds = factory.us_dataset(_gray8(), PatientID="HOSP-42")
    path = _write(tmp_path, ds)
    cine = read_dicom(path, salt="s3cret")
    assert cine.patient_id == pseudonymise("HOSP-42", salt="s3cret")
    assert cine.clip_id == pseudonymise(ds.SOPInstanceUID, salt="s3cret", prefix="C")
    assert cine.metadata["patient_id_source"] == "PatientID"
    assert cine.dataset == "dicom" and cine.source == path and cine.view is None
    flat = repr(cine.metadata)
    for personal in ("HOSP-42", "Doe", "Jane", "19700101", ds.SOPInstanceUID, ds.StudyInstanceUID):
        assert personal not in flat
    assert cine.metadata["manufacturer"] == "Acme" and cine.metadata["manufacturer_model"] == "Sono 1"


def test_patient_id_falls_back_to_study_uid_then_path(tmp_path):
    ds = factory.us_dataset(_gray8(), PatientID="")
    cine = read_dicom(_write(tmp_path, ds, name="a.dcm"))
    assert cine.patient_id == pseudonymise(ds.StudyInstanceUID, prefix="P")
    assert cine.metadata["patient_id_source"] == "StudyInstanceUID"
    ds = factory.us_dataset(_gray8(), PatientID="", StudyInstanceUID="")
    path = _write(tmp_path, ds, name="b.dcm")
    cine = read_dicom(path)
    assert cine.patient_id == pseudonymise(str(path.resolve()), prefix="P")
    assert cine.metadata["patient_id_source"] == "path"


def test_read_dicom_is_exported_lazily_by_echokdm_io():
    assert lazily_exported_read_dicom is read_dicom


# ------------------------------------------------------------------------ pydicom's examples


def test_pydicom_example_ybr_color_cine():
    path = examples.get_path("ybr_color")
    ds = pydicom.dcmread(path)
    region = ds.SequenceOfUltrasoundRegions[0]
    cine = _read_quietly(path)
    assert cine.frames.shape == (30, 240, 320)
    assert cine.fps == pytest.approx(30.0, abs=0.01) and cine.metadata["fps_source"] == "FrameTime"
    assert 0.0 <= cine.frames.min() and cine.frames.max() <= 1.0 and cine.frames.std() > 0.01
    assert cine.spacing_mm == pytest.approx((region.PhysicalDeltaX * 10, region.PhysicalDeltaY * 10))
    assert cine.metadata["photometric"] == "YBR_FULL_422"
    assert cine.metadata["transfer_syntax"] == str(JPEGBaseline8Bit)


def test_pydicom_example_ybr_color_region_too_large_so_crop_by_motion():
    path = examples.get_path("ybr_color")
    # this example's region is larger than its (downsampled) 320x240 image: its box would cut the
    # fan, so the reader warns and finds the fan by motion
    with pytest.warns(EchoKDMWarning, match="extends beyond"):
        cine = read_dicom(path, crop_to_fan=True)
    assert cine.metadata["crop_method"] == "motion"
    x0, y0, x1, y1 = cine.metadata["crop_box"]
    np.testing.assert_allclose((x0, y0, x1, y1), (40, 19, 299, 208), atol=4)  # the sector, by eye
    assert cine.frames.shape == (30, y1 - y0, x1 - x0)


def test_pydicom_example_ybr_color_crop_by_motion_without_its_region(tmp_path):
    """The real cine, its calibration removed: the fan is found from motion alone."""
    ds = pydicom.dcmread(examples.get_path("ybr_color"))
    del ds.SequenceOfUltrasoundRegions
    path = tmp_path / "no_region.dcm"
    ds.save_as(path)
    full = read_dicom(path).frames
    cine = read_dicom(path, crop_to_fan=True)
    assert cine.metadata["crop_method"] == "motion"
    x0, y0, x1, y1 = cine.metadata["crop_box"]
    np.testing.assert_allclose((x0, y0, x1, y1), (40, 19, 299, 208), atol=4)  # the sector, by eye
    assert full[:, :y0, :x0].max() > 0.5  # the burned-in "PLA" label, outside the box
    label = (slice(None), slice(195, y1), slice(278, x1))  # frame counter "19", inside the box
    assert full[label].max() > 0.3
    assert cine.frames[:, 195 - y0:, 278 - x0:].max() == 0.0
    np.testing.assert_array_equal(cine.frames[:, 100 - y0, 160 - x0], full[:, 100, 160])  # fan centre kept


def test_pydicom_example_palette_color_single_frame():
    path = examples.get_path("palette_color")
    cine = _read_quietly(path)
    assert cine.frames.shape == (1, 350, 800)
    assert cine.fps is None
    assert cine.metadata["photometric"] == "PALETTE COLOR"
    assert 0.0 <= cine.frames.min() and cine.frames.max() <= 1.0 and cine.frames.std() > 0.01
    tissue = pydicom.dcmread(path).SequenceOfUltrasoundRegions[0]  # the other one is a spectrum
    assert cine.spacing_mm == pytest.approx((tissue.PhysicalDeltaX * 10, tissue.PhysicalDeltaY * 10))


def test_pydicom_example_jpeg2000():
    cine = read_dicom(examples.get_path("jpeg2k"))
    assert cine.frames.shape == (1, 480, 640)
    assert cine.metadata["photometric"] == "YBR_RCT"
    assert cine.metadata["transfer_syntax"] == str(JPEG2000Lossless)
    assert 0.0 <= cine.frames.min() and cine.frames.max() <= 1.0 and cine.frames.std() > 0.01


# ------------------------------------------------------------------------------ bad inputs


def test_missing_file_raises_file_not_found_with_the_path(tmp_path):
    path = tmp_path / "nope.dcm"
    with pytest.raises(FileNotFoundError, match=str(path)):
        read_dicom(path)


def test_not_a_dicom_file_raises_read_error_with_the_path(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is not a DICOM file\n" * 20)
    with pytest.raises(ReadError, match="not a DICOM file") as info:
        read_dicom(path)
    assert str(path) in str(info.value)


def test_folder_raises_read_error(tmp_path):
    with pytest.raises(ReadError, match="folder") as info:
        read_dicom(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_file_without_pixel_data_raises_read_error(tmp_path):
    ds = factory.us_dataset(_gray8())
    del ds.PixelData
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ReadError, match="no PixelData") as info:
        read_dicom(path)
    assert str(path) in str(info.value)


def test_truncated_pixel_data_raises_read_error(tmp_path):
    ds = factory.us_dataset(_gray8())
    ds.PixelData = ds.PixelData[:100]
    path = _write(tmp_path, ds)
    with pytest.raises(ReadError) as info:
        read_dicom(path)
    assert str(path) in str(info.value) and "pixel data" in str(info.value)


def test_non_ultrasound_modality_warns_or_raises(tmp_path):
    path = _write(tmp_path, factory.us_dataset(_gray8(), modality="MR"))
    with pytest.warns(NonUltrasoundWarning, match="'MR'") as record:
        cine = read_dicom(path)
    assert str(path) in str(record[0].message)
    assert cine.metadata["modality"] == "MR"
    with pytest.raises(ReadError, match="'MR'") as info:
        read_dicom(path, allow_non_ultrasound=False)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "transfer_syntax, package",
    [(JPEGBaseline8Bit, "pylibjpeg-libjpeg"), (JPEGLSLossless, "pyjpegls"),
     (JPEG2000Lossless, "pylibjpeg-openjpeg"), (RLELossless, "pylibjpeg-rle")],
)
def test_missing_decoder_names_file_syntax_and_package(tmp_path, monkeypatch, transfer_syntax, package):
    """pydicom 3 records plugins whose imports failed as unavailable; mimic that state."""
    path = _write(tmp_path, factory.us_dataset(_smooth8(1)), transfer_syntax)
    decoder = get_decoder(transfer_syntax)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("numpy", "pylibjpeg", package)})
    with pytest.raises(MissingDecoderError) as info:
        read_dicom(path)
    message = str(info.value)
    assert str(path) in message and package in message and transfer_syntax.name in message


def test_missing_decoder_reported_while_decoding_is_mapped_too(tmp_path, monkeypatch):
    """If availability looks fine but pydicom's decode raises 'missing dependencies'."""
    path = _write(tmp_path, factory.us_dataset(_smooth8(1)), JPEGLSLossless)
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: True))
    with pytest.raises(MissingDecoderError, match="pyjpegls") as info:
        read_dicom(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------- writer


@pytest.mark.parametrize(
    "transfer_syntax, options",
    [(ExplicitVRLittleEndian, None), (ImplicitVRLittleEndian, None), (DeflatedExplicitVRLittleEndian, None),
     (ExplicitVRBigEndian, None), (RLELossless, None), (JPEGLSLossless, None), (JPEG2000Lossless, None)],
)
def test_write_dicom_round_trip_is_lossless(tmp_path, transfer_syntax, options):
    pixels = _gray8(4, 32, 40)
    path = write_dicom(tmp_path / "out.dcm", pixels, fps=25.0, spacing_mm=(0.3, 0.5),
                       transfer_syntax=transfer_syntax, encoding_options=options)
    cine = read_dicom(path)
    np.testing.assert_allclose(cine.frames, pixels / 255.0, atol=1e-6)
    assert cine.fps == pytest.approx(25.0) and cine.metadata["fps_source"] == "FrameTime"
    assert cine.spacing_mm == pytest.approx((0.3, 0.5))
    assert cine.metadata["transfer_syntax"] == str(transfer_syntax)


def test_write_dicom_writes_a_valid_us_multiframe_instance(tmp_path):
    path = write_dicom(tmp_path / "out.dcm", _gray8(4), fps=50.0, spacing_mm=(0.2, 0.2), patient_id="P123")
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "US" and ds.PatientID == "P123" and int(ds.NumberOfFrames) == 4
    assert float(ds.FrameTime) == pytest.approx(20.0) and int(ds.CineRate) == 50
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("FrameTime")
    region = ds.SequenceOfUltrasoundRegions[0]
    assert (region.RegionLocationMaxX1, region.RegionLocationMaxY1) == (47, 31)
    assert region.PhysicalDeltaX == pytest.approx(0.02) and region.PhysicalUnitsXDirection == 3
    assert ds.preamble == b"\x00" * 128
    assert len({ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}) == 3


def test_write_dicom_single_frame_is_ultrasound_image_storage(tmp_path):
    path = write_dicom(tmp_path / "one.dcm", _gray8(1), fps=30.0)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.6.1"
    assert "NumberOfFrames" not in ds and "FrameTime" not in ds
    assert read_dicom(path).frames.shape == (1, 32, 48)


def test_write_dicom_float_frames_are_rounded_to_8_bits(tmp_path):
    frames = RNG.random((3, 16, 16)).astype(np.float32)
    cine = read_dicom(write_dicom(tmp_path / "f.dcm", frames))
    np.testing.assert_allclose(cine.frames, frames, atol=0.5 / 255 + 1e-6)


def test_write_dicom_near_lossless_and_lossy_jpeg2000(tmp_path):
    pixels = _smooth8(3)
    near = write_dicom(tmp_path / "jls.dcm", pixels, transfer_syntax=JPEGLSNearLossless,
                       encoding_options={"jls_error": 2})
    assert np.abs(read_dicom(near).frames - pixels / 255.0).max() <= 2 / 255 + 1e-6
    assert pydicom.dcmread(near).LossyImageCompression == "01"
    lossy = write_dicom(tmp_path / "j2k.dcm", pixels, transfer_syntax=JPEG2000,
                        encoding_options={"j2k_psnr": [45]})
    assert np.abs(read_dicom(lossy).frames - pixels / 255.0).mean() < 3 / 255
    with pytest.raises(ValueError, match="j2k_cr"):
        write_dicom(tmp_path / "bad.dcm", pixels, transfer_syntax=JPEG2000)
    assert not (tmp_path / "bad.dcm").exists()


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, RLELossless, JPEGLSLossless])
def test_write_dicom_rgb_round_trip(tmp_path, transfer_syntax):
    rgb, luma = factory.colour_blocks(n_frames=2)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", transfer_syntax=transfer_syntax)
    cine = read_dicom(path)
    assert pydicom.dcmread(path).PhotometricInterpretation == "RGB"
    np.testing.assert_allclose(cine.frames[0], luma, atol=1e-5)


def test_write_dicom_refuses_to_overwrite(tmp_path):
    path = write_dicom(tmp_path / "out.dcm", _gray8(2))
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=str(path)):
        write_dicom(path, _gray8(2))
    assert path.read_bytes() == before
    write_dicom(path, _gray8(3), overwrite=True)
    assert read_dicom(path).n_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.dcm"]  # no temporary files left


def test_write_dicom_extra_keywords(tmp_path):
    extra = {"ImageComments": "synthetic", "BurnedInAnnotation": "NO"}
    path = write_dicom(tmp_path / "s.dcm", _gray8(2), extra=extra)
    ds = pydicom.dcmread(path)
    assert ds.ImageComments == "synthetic" and ds.BurnedInAnnotation == "NO"
    with pytest.raises(ValueError, match="NotAKeyword"):
        write_dicom(tmp_path / "t.dcm", _gray8(2), extra={"NotAKeyword": 1})
    with pytest.raises(ValueError, match="Rows"):
        write_dicom(tmp_path / "u.dcm", _gray8(2), extra={"Rows": 4})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.dcm"]


@pytest.mark.parametrize(
    "frames, photometric, match",
    [(np.zeros((2, 8, 8, 3), np.uint8), "MONOCHROME2", r"\(T, H, W\)"),
     (np.zeros((2, 8, 8), np.uint8), "RGB", r"\(T, H, W, 3\)"),
     (np.zeros((8, 8), np.uint8), "MONOCHROME2", r"\(T, H, W\)"),
     (np.full((2, 8, 8), 1.5, np.float32), "MONOCHROME2", r"\[0, 1\]"),
     (np.full((2, 8, 8), np.nan, np.float32), "MONOCHROME2", "finite"),
     (np.zeros((2, 8, 8), np.int32), "MONOCHROME2", "dtype"),
     (np.zeros((2, 8, 8), np.uint8), "YBR_FULL", "photometric")],
)
def test_write_dicom_rejects_bad_frames(tmp_path, frames, photometric, match):
    with pytest.raises(ValueError, match=match) as info:
        write_dicom(tmp_path / "x.dcm", frames, photometric=photometric)
    assert str(tmp_path / "x.dcm") in str(info.value)
    assert not list(tmp_path.iterdir())


def test_write_dicom_reports_encoder_failures_as_value_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot encode the frames as JPEG 2000") as info:
        write_dicom(tmp_path / "tiny.dcm", _gray8(2, 8, 8), transfer_syntax=JPEG2000Lossless)
    assert str(tmp_path / "tiny.dcm") in str(info.value)
    assert not list(tmp_path.iterdir())


def test_write_dicom_rejects_unwritable_syntax_and_bad_calibration(tmp_path):
    with pytest.raises(ValueError, match="cannot be written"):
        write_dicom(tmp_path / "x.dcm", _gray8(2), transfer_syntax=JPEGBaseline8Bit)
    with pytest.raises(ValueError, match="fps"):
        write_dicom(tmp_path / "x.dcm", _gray8(2), fps=-1)
    with pytest.raises(ValueError, match="spacing_mm"):
        write_dicom(tmp_path / "x.dcm", _gray8(2), spacing_mm=(0.0, 0.3))
    assert not list(tmp_path.iterdir())


def test_a_file_whose_header_says_it_is_not_of_the_heart_is_read_with_a_warning(tmp_path):
    """pydicom's lymph-node (SMALL PARTS) and obstetric (OBSTETRICAL, CURVED LINEAR) frames: the LV models would draw a
    ventricle on them, so the reader says so; its real cardiac cine (EPICARDIAL) and a fetal heart scanned with a
    curved array read silently."""
    from echokdm.errors import NonCardiacWarning

    with pytest.warns(NonCardiacWarning, match=r"Image Type says OBSTETRICAL; a CURVED LINEAR transducer"):
        obstetric = read_dicom(get_testdata_file("examples_palette.dcm"))
    assert obstetric.metadata["exam_anatomy"] == "OBSTETRICAL"
    assert obstetric.metadata["transducer_type"] == "CURVED LINEAR"
    with pytest.warns(NonCardiacWarning, match="examples_jpeg2k.dcm: its header says this is not an echocardiogram"):
        read_dicom(get_testdata_file("examples_jpeg2k.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonCardiacWarning)
        heart = read_dicom(examples.get_path("ybr_color"))
        assert heart.metadata["exam_anatomy"] == "EPICARDIAL"
        fetal = factory.us_dataset(np.zeros((2, 16, 16), np.uint8), TransducerType="CURVED LINEAR",
                                   ImageType=["ORIGINAL", "PRIMARY", "FETAL HEART"])
        assert read_dicom(factory.save(fetal, tmp_path / "fetal.dcm")).metadata["transducer_type"] == "CURVED LINEAR"
        plain = factory.save(factory.us_dataset(np.zeros((2, 16, 16), np.uint8)), tmp_path / "plain.dcm")
        assert read_dicom(plain).metadata["exam_anatomy"] is None  # a header that does not say: nothing
    linear = factory.us_dataset(np.zeros((2, 16, 16), np.uint8), TransducerType="LINEAR")
    with pytest.warns(NonCardiacWarning, match="a LINEAR transducer"):
        read_dicom(factory.save(linear, tmp_path / "linear.dcm"))
