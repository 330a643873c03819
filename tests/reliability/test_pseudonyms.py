"""One pseudonym per patient through a run, and one file mode for every output (issue 17, item 15).

The demo wrote a patient's loops into a folder named by the manifest's pseudonym, gave the generated
DICOM the pseudonym the reader made from the source DICOM, and ``read_cine`` of that DICOM hashed it
once more: three names for one patient. Generated DICOMs were 0600 (``mkstemp``) among 0644 files.
"""

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from echokdm.data.manifest import load_manifest
from echokdm.data.phantom import load_npz
from echokdm.data.phantom.export import write_cohort
from echokdm.demo import DemoSettings, _patient_loops
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.generation.settings import SamplingSettings
from echokdm.geometry.keypoints import keypoints_to_mask
from echokdm.io.dicom import read_dicom, write_dicom
from echokdm.io.dispatch import read_cine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


class TruthSegmentation(LVSegmentationNet):
    """A 'model' whose masks are the polygons of the clip's true keypoints (frame by frame, in order)."""

    def __init__(self, keypoints):
        super().__init__(channels=(4, 8), num_res_units=0, sample_size=SIZE)
        self.known = np.asarray(keypoints)

    def predict_masks(self, frames, batch_size=32, threshold=0.5):
        n = len(frames)
        index = np.arange(n) % len(self.known)
        return torch.from_numpy(np.stack([keypoints_to_mask(self.known[i], tuple(frames.shape[-2:])) for i in index]))


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o644
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_demo_patient_keeps_one_pseudonym_and_every_file_one_mode(tmp_path, umask_022):
    out = tmp_path / "demo"
    write_cohort(out / "phantom", n_patients=1, format="dicom", size=SIZE, fps=20.0, n_beats=1.3, seed=1000,
                 progress=False)
    manifest = load_manifest(out / "phantom" / "manifest.csv")
    row = manifest.iloc[0]
    pid = str(row["patient_id"])
    truth = load_npz(out / "phantom" / "ground_truth" / "phantom0000.npz")
    settings = DemoSettings(n_patients=1, sampling=SamplingSettings(num_inference_steps=3, k=2), ef_attempts=1)
    rows, _ = _patient_loops(row, out / "phantom" / "manifest.csv", tiny_pipeline(),
                             TruthSegmentation(truth.keypoints), settings, out, False, False)
    folder = out / "loops" / pid
    assert folder.is_dir() and {r["patient_id"] for r in rows} == {pid}
    for r in rows:
        dicom = Path(r["dicom"])
        assert dicom.parent == folder
        ds = pydicom.dcmread(dicom)
        assert ds.PatientID == pid  # the DICOM says the folder's pseudonym
        assert read_cine(dicom, "dicom").patient_id == pid  # and reading it back does not re-hash it
        assert ds.BurnedInAnnotation == "NO"  # masked to the phantom's fan
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".dcm" for p in written) and any(p.suffix == ".mp4" for p in written)
    odd = {p.relative_to(out).as_posix(): oct(mode(p)) for p in written if mode(p) != umask_022}
    assert not odd, odd


def test_written_dicoms_respect_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        private = write_dicom(tmp_path / "private.dcm", np.zeros((2, 8, 8), np.float32), fps=10.0)
    finally:
        os.umask(old)
    assert mode(private) == 0o600
    old = os.umask(0o002)
    try:
        shared = write_dicom(tmp_path / "shared.dcm", np.zeros((2, 8, 8), np.float32), fps=10.0)
    finally:
        os.umask(old)
    assert mode(shared) == 0o664


def test_only_an_echokdm_pseudonym_in_a_deidentified_file_is_kept(tmp_path):
    pseudonym = "P0123456789ab"
    kept = write_dicom(tmp_path / "kept.dcm", np.zeros((2, 8, 8), np.float32), patient_id=pseudonym,
                       extra={"PatientIdentityRemoved": "YES"})
    assert read_dicom(kept).patient_id == pseudonym
    # not marked de-identified, or not of the pseudonym's form: hashed as any hospital ID is
    plain = write_dicom(tmp_path / "plain.dcm", np.zeros((2, 8, 8), np.float32), patient_id=pseudonym)
    assert read_dicom(plain).patient_id != pseudonym
    mrn = write_dicom(tmp_path / "mrn.dcm", np.zeros((2, 8, 8), np.float32), patient_id="MRN-12345",
                      extra={"PatientIdentityRemoved": "YES"})
    assert read_dicom(mrn).patient_id not in ("MRN-12345", pseudonym)
