"""Hostile inputs to the readers (issue 17, item 6): truncated DICOM files, mislabelled byte order
and pixel data whose length does not match its header are named for what they are, not reported
as "has no PixelData element"; the real ultrasound files pydicom ships still read."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from echokdm.errors import EchoKDMWarning, ReadError
from echokdm.io.dicom import read_dicom

sys.path.insert(0, str(Path(__file__).parents[1] / "io"))
import dicom_factory as factory

RNG = np.random.default_rng(17)


def _clip(tmp_path, transfer_syntax=ExplicitVRLittleEndian, dtype=np.uint8, name="clip.dcm", **elements):
    high = 256 if dtype == np.uint8 else 4096
    pixels = RNG.integers(0, high, size=(4, 32, 48)).astype(dtype)
    ds = factory.us_dataset(pixels, FrameTime=20.0, **elements)
    return factory.save(ds, tmp_path / name, transfer_syntax)


def _cut(path: Path, n_bytes: int) -> Path:
    out = path.with_name(f"cut{n_bytes}_{path.name}")
    out.write_bytes(path.read_bytes()[:n_bytes])
    return out


def _error(path) -> str:
    with pytest.raises(ReadError) as info:
        read_dicom(path)
    message = str(info.value)
    assert str(path) in message
    assert "no PixelData" not in message
    return message


@pytest.mark.parametrize("transfer_syntax, dtype", [
    (ExplicitVRLittleEndian, np.uint8), (ImplicitVRLittleEndian, np.uint8),
    (ExplicitVRBigEndian, np.uint8), (ExplicitVRBigEndian, np.uint16),
])
def test_file_cut_inside_the_pixel_data_is_reported_as_truncated(tmp_path, transfer_syntax, dtype):
    full = _clip(tmp_path, transfer_syntax, dtype)
    size = full.stat().st_size
    for cut in (size - 10, size // 2):
        message = _error(_cut(full, cut))
        assert "truncated file" in message and "PixelData" in message
        assert f"({cut} bytes)" in message


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_file_cut_inside_the_header_is_truncated_not_a_report(tmp_path, transfer_syntax):
    full = _clip(tmp_path, transfer_syntax)
    message = _error(_cut(full, 400))  # inside SOPInstanceUID
    assert "truncated file" in message and "SOPInstanceUID" in message


def test_file_cut_right_after_the_file_meta_is_truncated(tmp_path):
    full = _clip(tmp_path)
    message = _error(_cut(full, 200))  # the meta group ends at about 190 bytes
    assert "truncated file" in message and "before the data set" in message


def test_file_cut_between_elements_before_the_pixels_is_reported_as_cut_short(tmp_path):
    import pydicom

    full = _clip(tmp_path)
    ds = pydicom.dcmread(full)
    del ds.PixelData  # as if the file ended exactly before the PixelData element
    path = tmp_path / "no_pixels.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ReadError, match="cut short before its pixels") as info:
        read_dicom(path)
    assert str(path) in str(info.value) and "Rows, Columns" in str(info.value)


def test_little_endian_data_labelled_big_endian_names_the_mismatch(tmp_path):
    full = _clip(tmp_path)
    data = full.read_bytes()
    le, be = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.2\x00"  # same length: a relabel only
    assert data.count(le) == 1
    path = tmp_path / "claims_big_endian.dcm"
    path.write_bytes(data.replace(le, be))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom complains about every garbled element
        message = _error(path)
    assert "says Explicit VR Big Endian" in message and "encoded as Explicit VR Little Endian" in message


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_pixel_data_shorter_than_the_header_says_names_both_lengths(tmp_path, transfer_syntax):
    path = _clip(tmp_path, transfer_syntax, NumberOfFrames=8)  # 4 frames stored, 8 claimed
    message = _error(path)
    assert "pixel data length mismatch: expected 12288 bytes" in message
    assert "32 rows × 48 columns × 8 frame(s) × 1 sample(s) × 8 bits, got 6144" in message


def test_truncated_compressed_file_is_an_error_naming_the_file(tmp_path):
    full = _clip(tmp_path, RLELossless)
    path = _cut(full, full.stat().st_size - 40)
    with pytest.raises(ReadError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_dicom(path)
    assert str(path) in str(info.value) and "no PixelData" not in str(info.value)


def test_intact_files_in_every_native_syntax_still_read(tmp_path):
    for i, ts in enumerate((ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)):
        for dtype in (np.uint8, np.uint16):
            cine = read_dicom(_clip(tmp_path, ts, dtype, name=f"ok{i}{dtype.__name__}.dcm"), crop_to_fan=False)
            assert cine.frames.shape == (4, 32, 48)


@pytest.mark.parametrize("name", [
    "US1_UNCR.dcm", "US1_J2KR.dcm", "ExplVR_BigEnd.dcm", "examples_ybr_color.dcm",
    "examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm",
])
def test_real_pydicom_ultrasound_files_still_read(name):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom installation (pydicom-data needs a download)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EchoKDMWarning)
        cine = read_dicom(path)
    assert cine.frames.ndim == 3 and cine.frames.size > 0
    assert np.isfinite(cine.frames).all() and 0 <= cine.frames.min() and cine.frames.max() <= 1
