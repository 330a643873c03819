"""Fixtures shared by the pipeline tests: a tiny random KDM pipeline and a short phantom clip."""

import sys
from pathlib import Path

import pytest

from echokdm.data.phantom import sample_patient, simulate_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(0, 0), n_frames=12, size=SIZE, fps=25.0)
