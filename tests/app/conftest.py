"""Fixtures of the app tests: a small phantom DICOM cohort and an ``evaluate``-like / ``synthesize``-like folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def phantom_dicoms(tmp_path_factory):
    """Two realistic phantom patients as DICOM, 112×112, about 16 frames each; returns the manifest path."""
    from echokdm.cli import main

    out = tmp_path_factory.mktemp("app_phantom")
    code = main(["phantom", "--patients", "2", "--out", str(out), "--format", "dicom", "--fps", "25", "--beats", "1.2",
                 "--style", "realistic"])
    assert code == 0
    return out / "manifest.csv"


@pytest.fixture(scope="session")
def synthesize_folder(tmp_path_factory):
    """A folder laid out as ``echokdm synthesize`` writes it: cohort.csv and Videos/<loop>.avi."""
    from echokdm.io.video import write_video

    out = tmp_path_factory.mktemp("app_synth")
    (out / "Videos").mkdir()
    rows = []
    for i, (target, achieved) in enumerate([(40.0, 41.0), (55.0, 45.0), (30.0, np.nan)]):
        name = f"synthetic_{i:05d}"
        frames = np.linspace(0, 1, 8 * 32 * 32, dtype=np.float32).reshape(8, 32, 32) * (i + 1) / 3
        write_video(out / "Videos" / f"{name}.avi", frames, fps=20.0)
        rows.append({"loop": name, "source_clip_id": f"c{i}", "source_patient_id": f"P{i}", "ef_target": target,
                     "ef_achieved": achieved, "fps": 20.0, "n_frames": 8})
    pd.DataFrame(rows).to_csv(out / "cohort.csv", index=False)
    return out
