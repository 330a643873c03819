"""Tests of echokdm.generation.export: generated loops written, read back, and checked for privacy.

Tolerances: DICOM and NIfTI store 8 bits per pixel and are lossless at that depth (read back
exactly ``round(255 * frames) / 255``); GIF stores 256 gray levels, also exact; MP4 (H.264) and
the EchoNet AVIs (MJPEG) are lossy: PSNR > 30 dB against the input frames.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from scipy import ndimage

from echokdm.errors import EchoKDMWarning
from echokdm.generation import export
from echokdm.generation.echonet_cohort import COHORT_CSV_NAME, write_echonet_cohort
from echokdm.generation.export import KEYPOINTS_CSV_COLUMNS, write_loop
from echokdm.generation.motion import load_keypoints_file as read_keypoints_csv
from echokdm.geometry.keypoints import (
    CHORD_FRACTIONS,
    keypoints_to_mask,
    mask_keypoints,
    tracing_keypoints,
)
from echokdm.geometry.tracings import keypoints_to_tracing
from echokdm.geometry.volumes import simpson_volume
from echokdm.io import dicom_write
from echokdm.io.anonymise import pseudonymise
from echokdm.io.dicom import US_MULTIFRAME_IMAGE_STORAGE, read_dicom
from echokdm.io.dicom_write import (
    SYNTHETIC_PATIENT_ID,
    SYNTHETIC_PATIENT_NAME,
    validate_dicom,
    write_synthetic_dicom,
)
from echokdm.io.echonet import read_echonet_clip, read_echonet_filelist
from echokdm.io.nifti import read_nifti
from echokdm.io.video import read_video

FPS = 50.0  # exact in every container (GIF: 2/100 s per frame; DICOM: Frame Time 20 ms)
SPACING = (0.4, 0.5)
SOURCE_PATIENT_ID = "MRN-12345"


@dataclasses.dataclass
class Loop:
    """Stand-in for GeneratedLoop (echokdm/generation/loop.py), with the same fields."""

    frames: np.ndarray
    fps: float
    spacing_mm: tuple[float, float] | None
    keypoints: np.ndarray
    flows: np.ndarray
    ef_target: float
    ef_achieved: float | None
    source_frame: int
    motion: str
    patient_id: str | None
    detected_keypoints: np.ndarray | None = None
    metadata: dict = dataclasses.field(default_factory=dict)


def lv_keypoints(n_frames: int = 8, *, right_scale: float = 1.3) -> np.ndarray:
    """``(T, 40, 2)`` keypoints of a bullet-shaped LV that contracts and relaxes once.

    Chords are horizontal at ``t_j`` of a vertical long axis (so exactly the discs of DESIGN.md);
    ``right_scale`` widens the image-right wall (an asymmetric ventricle).
    """
    t = CHORD_FRACTIONS
    out = []
    for k in range(n_frames):
        phase = np.sin(np.pi * k / (n_frames - 1))
        half_width = 10.0 * (1 - 0.25 * phase) * np.sqrt(1 - t**2) + 0.5
        y = 40.0 - t * 30.0 * (1 - 0.1 * phase)
        left = np.stack([24.0 - half_width, y], axis=1)
        right = np.stack([24.0 + right_scale * half_width, y], axis=1)
        out.append(np.concatenate([left, right[::-1]]))
    return np.array(out, dtype=np.float32)


def make_loop(n_frames: int = 8, size: int = 48, **changes) -> Loop:
    """A small smooth synthetic loop: dark blood pool inside the keypoints, gray tissue outside."""
    keypoints = lv_keypoints(n_frames)
    masks = np.stack([keypoints_to_mask(kp, (size, size)) for kp in keypoints])  # (T, H, W) uint8
    frames = ndimage.gaussian_filter(0.15 + 0.6 * (1.0 - masks), sigma=(0, 1.5, 1.5)).astype(np.float32)
    loop = Loop(frames=frames, fps=FPS, spacing_mm=SPACING, keypoints=keypoints,
                flows=np.zeros((n_frames, 2, size, size), np.float32), ef_target=55.0, ef_achieved=52.5,
                source_frame=3, motion="ef_scaled", patient_id=pseudonymise(SOURCE_PATIENT_ID, salt="test"))
    return dataclasses.replace(loop, **changes)


def source_dataset() -> Dataset:
    """A source DICOM header full of personal and site data."""
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = SOURCE_PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "056Y"
    ds.OtherPatientIDs = "OTHER-0042"
    ds.InstitutionName = "St Example Hospital"
    ds.StationName = "ECHOLAB7"
    ds.DeviceSerialNumber = "SN998877"
    ds.ReferringPhysicianName = "Smith^John"
    ds.OperatorsName = "Tech^Ann"
    ds.AccessionNumber = "ACC777"
    ds.Manufacturer = "AcmeScan"
    ds.ManufacturerModelName = "Vivid Acme 9"
    ds.Modality = "US"
    ds.BodyPartExamined = "HEART"
    ds.LossyImageCompression = "01"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (generate_uid() for _ in range(3))
    ds.SOPClassUID = US_MULTIFRAME_IMAGE_STORAGE
    return ds


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def eight_bit(frames: np.ndarray) -> np.ndarray:
    return (np.round(frames * 255.0) / 255.0).astype(np.float32)


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


# --------------------------------------------------------------------------------------------
# synthetic DICOM
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# EchoNet cohort
# --------------------------------------------------------------------------------------------


def test_echonet_cohort_round_trip(tmp_path):
    loops = {"synA": make_loop(), "synB": make_loop(spacing_mm=None, ef_achieved=None, ef_target=40.0)}
    with pytest.warns(EchoKDMWarning, match="pixel³"):
        root = write_echonet_cohort(tmp_path / "echonet", loops, split="val")
    filelist = read_echonet_filelist(root).set_index("FileName")
    assert filelist.loc["synA.avi", "EF"] == pytest.approx(52.5)  # ef_achieved
    assert filelist.loc["synB.avi", "EF"] == pytest.approx(40.0)  # ef_target when not achieved
    assert (filelist["Split"] == "VAL").all() and (filelist["FPS"] == FPS).all()
    volumes_ml = simpson_volume(loops["synA"].keypoints, SPACING)
    assert filelist.loc["synA.avi", "EDV"] == pytest.approx(volumes_ml.max(), rel=1e-5)
    assert filelist.loc["synA.avi", "ESV"] == pytest.approx(volumes_ml.min(), rel=1e-5)

    clip = read_echonet_clip(root, "synA")
    assert psnr(clip.frames, loops["synA"].frames) > 30.0 and clip.fps == pytest.approx(FPS)
    volumes = simpson_volume(loops["synA"].keypoints)
    es, ed = int(np.argmin(volumes)), int(np.argmax(volumes))
    assert list(clip.tracings) == [es, ed]  # ES listed first, as EchoNet's loader expects
    for frame, segments in clip.tracings.items():
        assert segments.shape == (21, 4)
        back = tracing_keypoints(segments).keypoints
        np.testing.assert_allclose(back, loops["synA"].keypoints[frame], atol=1e-3)

    side = pd.read_csv(root / COHORT_CSV_NAME).set_index("FileName")
    assert side.loc["synA", "volume_units"] == "mL" and side.loc["synB", "volume_units"] == "px^3"
    assert side.loc["synA", "patient_id"] == loops["synA"].patient_id
    assert (side.loc["synA", "ed_frame"], side.loc["synA", "es_frame"]) == (ed, es)


def test_echonet_cohort_traces_the_keypoints_re_detected_on_the_frames(tmp_path):
    """With re-detected keypoints behind ef_achieved, EF, EDV, ESV and the tracings all describe the
    frames (EF = (EDV - ESV) / EDV); the target keypoints' EF stays in the side table."""
    target = lv_keypoints(8)
    ed = int(np.argmax(simpson_volume(target)))
    detected = (target[ed] + 0.7 * (target - target[ed])).astype(np.float32)  # the frames move less
    detected[2] = np.nan  # one frame without keypoints
    v = simpson_volume(detected, SPACING)
    achieved = float(100 * (np.nanmax(v) - np.nanmin(v)) / np.nanmax(v))
    loop = make_loop(keypoints=target, detected_keypoints=detected, ef_achieved=achieved)
    root = write_echonet_cohort(tmp_path / "echonet", {"syn": loop})
    row = read_echonet_filelist(root).set_index("FileName").loc["syn.avi"]
    assert row["EF"] == pytest.approx(achieved, rel=1e-4)
    assert row["EDV"] == pytest.approx(np.nanmax(v), rel=1e-5) and row["ESV"] == pytest.approx(np.nanmin(v), rel=1e-5)
    assert 100 * (row["EDV"] - row["ESV"]) / row["EDV"] == pytest.approx(row["EF"], rel=1e-3)
    clip = read_echonet_clip(root, "syn")
    for frame, segments in clip.tracings.items():
        np.testing.assert_allclose(tracing_keypoints(segments).keypoints, detected[frame], atol=1e-3)
    side = pd.read_csv(root / COHORT_CSV_NAME).set_index("FileName").loc["syn"]
    vt = simpson_volume(target, SPACING)
    assert side["tracings_from"] == "frames"
    assert side["ef_keypoints"] == pytest.approx(100 * (vt.max() - vt.min()) / vt.max(), rel=1e-4)
    assert side["ef_keypoints"] > row["EF"] + 3
    # without a measured EF the target keypoints are traced
    root = write_echonet_cohort(tmp_path / "b", {"syn": make_loop(detected_keypoints=detected, ef_achieved=None)})
    assert pd.read_csv(root / COHORT_CSV_NAME)["tracings_from"].tolist() == ["keypoints"]


def test_echonet_cohort_names_unnamed_loops_and_refuses_existing_files(tmp_path):
    root = write_echonet_cohort(tmp_path, [make_loop(n_frames=6), make_loop(n_frames=6)])
    assert sorted(p.name for p in (root / "Videos").iterdir()) == ["synthetic_00000.avi", "synthetic_00001.avi"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Videos").mkdir()
    (tmp_path / "other" / "Videos" / "x.avi").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="x.avi"):
        write_echonet_cohort(tmp_path / "other", {"y": make_loop(n_frames=6), "x": make_loop(n_frames=6)})
    assert sorted(p.name for p in (tmp_path / "other").rglob("*")) == ["Videos", "x.avi"]


def test_echonet_cohort_takes_nan_ef_as_unknown(tmp_path):
    root = write_echonet_cohort(tmp_path / "a", {"c": make_loop(ef_achieved=float("nan"), ef_target=47.0)})
    assert read_echonet_filelist(root)["EF"].tolist() == [47.0]
    with pytest.raises(ValueError, match="'c'.*EF"):
        write_echonet_cohort(tmp_path / "b", {"c": make_loop(ef_achieved=None, ef_target=float("nan"))})


def test_echonet_cohort_names_a_loop_without_keypoints(tmp_path):
    keypoints = np.full((8, 40, 2), np.nan, np.float32)
    with pytest.raises(ValueError, match="'bad'.*40 keypoints"):
        write_echonet_cohort(tmp_path, {"bad": make_loop(keypoints=keypoints)})


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_tracing_of_asymmetric_mask_keypoints_gives_them_back(angle):
    yy, xx = np.mgrid[0:112, 0:112]
    across = np.where(xx > 50, (xx - 50) / 24, (xx - 50) / 16)  # right wall wider than the left
    mask = ((across**2 + ((yy - 80) / 50) ** 2) < 1) & (yy <= 80)
    mask = ndimage.rotate(mask.astype(np.float32), angle, reshape=False, order=1) > 0.5  # tilted axis
    keypoints = mask_keypoints(mask).keypoints
    segments = keypoints_to_tracing(keypoints)
    assert segments.shape == (21, 4) and segments.dtype == np.float32
    np.testing.assert_allclose(tracing_keypoints(segments).keypoints, keypoints, atol=1e-3)


def test_tracing_needs_every_keypoint():
    keypoints = lv_keypoints()[0]
    keypoints[4] = np.nan
    with pytest.raises(ValueError, match="finite"):
        keypoints_to_tracing(keypoints)
