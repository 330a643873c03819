"""Tests of echokdm.io.dicom_write: the synthetic DICOM cine of a generated loop, and its validator.

The pixels are stored at 8 bits and read back exactly ``round(255 * frames) / 255``.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import pydicom
import pytest

from echokdm.io import dicom_write
from echokdm.io.anonymise import pseudonymise
from echokdm.io.dicom import US_MULTIFRAME_IMAGE_STORAGE
from echokdm.io.dicom_write import (
    SYNTHETIC_PATIENT_ID,
    SYNTHETIC_PATIENT_NAME,
    validate_dicom,
    write_synthetic_dicom,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _generated_loops import FPS, SOURCE_PATIENT_ID, make_loop, source_dataset


def test_synthetic_dicom_is_a_marked_us_cine(tmp_path):
    loop = make_loop()
    path = write_synthetic_dicom(tmp_path / "loop.dcm", loop)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == US_MULTIFRAME_IMAGE_STORAGE
    assert int(ds.NumberOfFrames) == 8 and float(ds.FrameTime) == pytest.approx(20.0)
    assert int(ds.CineRate) == 50 and ds.FrameIncrementPointer == 0x00181063
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.SyntheticData == "YES"
    assert ds.BurnedInAnnotation == "YES"  # not masked to a fan: the pixels around it are the source's
    assert ds.SeriesDescription.startswith("SYNTHETIC echokdm")
    assert "motion: ef_scaled" in ds.DerivationDescription and "55.0 %" in ds.DerivationDescription
    assert ds.DerivationCodeSequence[0].CodingSchemeDesignator == "99ECHOKDM"
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99ECHOKDM"
    purpose = ds.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("109100", "DCM")
    assert ds.PatientName == SYNTHETIC_PATIENT_NAME and ds.PatientID == loop.patient_id
    assert ds.ContentDate and ds.ContentTime
    assert validate_dicom(path, expected_shape=loop.frames.shape, expected_fps=FPS) == []


def test_burned_in_annotation_is_no_only_for_a_loop_masked_to_the_fan(tmp_path):
    masked = write_synthetic_dicom(tmp_path / "masked.dcm", make_loop(metadata={"fan_masked": True}))
    ds = pydicom.dcmread(masked)
    assert ds.BurnedInAnnotation == "NO" and "set to 0" in ds.DerivationDescription
    for metadata in ({}, {"fan_masked": False}, {"fan_masked": "yes"}):
        path = write_synthetic_dicom(tmp_path / f"m{len(metadata)}{metadata}.dcm".replace(" ", ""),
                                     make_loop(metadata=metadata), overwrite=True)
        assert pydicom.dcmread(path).BurnedInAnnotation == "YES"
    assert validate_dicom(masked, external=False) == []


def test_synthetic_dicom_carries_no_personal_data_of_the_source(tmp_path):
    source = source_dataset()
    path = write_synthetic_dicom(tmp_path / "loop.dcm", make_loop(), source_dataset=source)
    raw = path.read_bytes()
    for secret in ("Doe", "Jane", "19700101", "056Y", "OTHER-0042", "St Example", "ECHOLAB7", "SN998877",
                   "Smith", "Tech^Ann", "ACC777", "AcmeScan", "Vivid", SOURCE_PATIENT_ID,
                   source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID):
        assert secret.encode() not in raw, secret
    ds = pydicom.dcmread(path)
    assert ds.BodyPartExamined == "HEART" and ds.LossyImageCompression == "01"  # allow-listed
    assert ds.PatientBirthDate == "" and ds.PatientSex == "" and "OtherPatientIDs" not in ds
    assert ds.PatientID == pseudonymise(SOURCE_PATIENT_ID, salt="test")
    assert validate_dicom(path, source_dataset=source) == []


def test_synthetic_dicom_from_a_source_file_and_without_pseudonym(tmp_path):
    source = source_dataset()
    source.file_meta = pydicom.dataset.FileMetaDataset()
    source.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    source.save_as(tmp_path / "source.dcm", enforce_file_format=True)
    path = write_synthetic_dicom(tmp_path / "loop.dcm", make_loop(patient_id=None),
                                 source_dataset=tmp_path / "source.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PatientID == SYNTHETIC_PATIENT_ID and ds.BodyPartExamined == "HEART"


def test_synthetic_dicom_describes_an_unknown_ef_as_na(tmp_path):
    path = write_synthetic_dicom(tmp_path / "loop.dcm", make_loop(ef_target=float("nan"), ef_achieved=None))
    assert "EF target n/a; EF achieved n/a" in pydicom.dcmread(path).DerivationDescription


def test_synthetic_dicom_refuses_a_real_patient_id(tmp_path):
    with pytest.raises(ValueError, match="pseudonym"):
        write_synthetic_dicom(tmp_path / "loop.dcm", make_loop(patient_id=SOURCE_PATIENT_ID),
                              source_dataset=source_dataset())
    assert not (tmp_path / "loop.dcm").exists()


def test_synthetic_dicom_refuses_overwrite_and_single_frames(tmp_path):
    path = write_synthetic_dicom(tmp_path / "loop.dcm", make_loop())
    uid = pydicom.dcmread(path).SOPInstanceUID
    with pytest.raises(FileExistsError, match="loop.dcm"):
        write_synthetic_dicom(path, make_loop())
    write_synthetic_dicom(path, make_loop(), overwrite=True)
    assert pydicom.dcmread(path).SOPInstanceUID != uid  # new UIDs on every write
    one = make_loop()
    one = dataclasses.replace(one, frames=one.frames[:1], keypoints=one.keypoints[:1])
    with pytest.raises(ValueError, match="at least 2 frames"):
        write_synthetic_dicom(tmp_path / "one.dcm", one)


def test_validate_dicom_names_the_problems_of_a_doctored_file(tmp_path):
    path = write_synthetic_dicom(tmp_path / "loop.dcm", make_loop())
    ds = pydicom.dcmread(path)
    ds.PatientBirthDate = "19800101"
    ds.OtherPatientIDs = "X123"
    ds.ReferringPhysicianName = "Smith^John"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    del ds.SyntheticData
    ds.SeriesDescription = "Echo"
    ds.FrameIncrementPointer = 0x00181065  # Frame Time Vector, which the file lacks
    ds.add_new(0x00091010, "LO", "private note")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UID we set on purpose
        ds.SeriesInstanceUID = "1.2.3.abc"
        ds.save_as(tmp_path / "doctored.dcm")
    problems = validate_dicom(tmp_path / "doctored.dcm")
    text = "\n".join(problems)
    for expected in ("PatientBirthDate", "OtherPatientIDs", "ReferringPhysicianName", "ImageType",
                     "SyntheticData", "SeriesDescription", "FrameIncrementPointer", "private element",
                     "SeriesInstanceUID is not a valid UID"):
        assert expected in text, expected
    assert len(problems) == 9


def test_validate_dicom_checks_frames_rate_and_source(tmp_path):
    loop = make_loop()
    source = source_dataset()
    path = write_synthetic_dicom(tmp_path / "loop.dcm", loop)
    problems = validate_dicom(path, expected_shape=(9, 48, 48), expected_fps=30.0)
    assert any("NumberOfFrames is 8, expected 9" in p for p in problems)
    assert any("pixel data has shape (8, 48, 48)" in p for p in problems)
    assert any("gives 50 fps, expected 30" in p for p in problems)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = source.StudyInstanceUID
    ds.ImageComments = "from Doe^Jane"
    ds.save_as(path)
    problems = validate_dicom(path, source_dataset=source)
    assert any("StudyInstanceUID repeats a UID of the source" in p for p in problems)
    assert any("ImageComments contains personal data" in p for p in problems)


def test_validate_dicom_on_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.dcm"):
        validate_dicom(tmp_path / "nothing.dcm")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom at all")
    problems = validate_dicom(tmp_path / "junk.dcm")
    assert len(problems) == 1 and "cannot be read as DICOM" in problems[0]


def test_external_validator_output_is_parsed():
    output = 'Processing DICOM file "x.dcm"\nSOP class is "1.2"\nTag (0008,2124) is missing\n'
    assert dicom_write._parse_validator_output(None, "dicom-validator", 1, output) == [
        "dicom-validator: Tag (0008,2124) is missing"]
    assert dicom_write._parse_validator_output(None, "dicom-validator", 0, output) == []
    output = "Warning - odd\nError - Missing attribute Type 2 Required Element=<StudyID>\n"
    assert dicom_write._parse_validator_output(None, "dciodvfy", 0, output) == [
        "dciodvfy: Error - Missing attribute Type 2 Required Element=<StudyID>"]
