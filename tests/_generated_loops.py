"""Stand-in generated loops for the tests of the loop writers (a small smooth cine of a bullet-shaped LV).

Shared by ``tests/generation/test_export.py``, ``tests/generation/test_echonet_cohort.py``,
``tests/io/test_dicom_write.py`` and ``tests/geometry/test_tracings.py``; imported with
``sys.path.insert(0, <tests folder>)`` as ``_tiny_kdm`` is.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from scipy import ndimage

from echokdm.geometry.keypoints import CHORD_FRACTIONS, keypoints_to_mask
from echokdm.io.anonymise import pseudonymise
from echokdm.io.dicom import US_MULTIFRAME_IMAGE_STORAGE

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
