"""Readers and writers of echo files: numpy in, numpy out, no torch.

Every reader returns :class:`~echokdm.io.cine.Cine` records (shared/DESIGN.md conventions).
Submodules are imported on first use so that ``import echokdm.io`` stays cheap.
"""

from __future__ import annotations

from echokdm._lazy import lazy_exports
from echokdm.io.anonymise import pseudonymise
from echokdm.io.cine import Cine

# public name -> submodule that defines it
_LAZY = {
    "read_dicom": "dicom",
    "write_dicom": "dicom",
    "write_synthetic_dicom": "dicom_write",
    "validate_dicom": "dicom_write",
    "LoopRecord": "loop_record",
    "read_loop_record": "loop_record",
    "read_video": "video",
    "write_video": "video",
    "read_echonet_filelist": "echonet",
    "read_echonet_tracings": "echonet",
    "read_echonet_clip": "echonet",
    "tracing_to_polygon": "echonet",
    "tracing_to_mask": "echonet",
    "write_echonet_dataset": "echonet",
    "read_camus": "nifti",
    "read_nifti": "nifti",
    "read_camus_cfg": "nifti",
    "write_nifti": "nifti",
    "write_label_nifti": "nifti",
    "write_camus_patient": "nifti",
    "read_cine": "dispatch",
    "FORMATS": "dispatch",
}

__all__ = ["Cine", "pseudonymise", *_LAZY]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
