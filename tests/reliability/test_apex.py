"""Issue 17 item 3: a clip whose apex points down (or sideways) gives the right EF by default.

The apex direction is detected per clip from the masks' shape (``apex_direction="auto"``, the
default everywhere), recorded in the outputs, and flagged when the masks cannot tell.
"""

from __future__ import annotations

import numpy as np
import pytest

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.keypoints import detect_apex_direction, mask_keypoints
from echokdm.geometry.temporal import sequence_keypoints
from echokdm.geometry.volumes import cardiac_cycle, simpson_volume


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(0, 0), n_beats=1.2, fps=30, size=112)


def _ef(masks, clip, **kwargs):
    seq = sequence_keypoints(np.ascontiguousarray(masks), **kwargs)
    return cardiac_cycle(simpson_volume(seq.keypoints, clip.spacing_mm), clip.fps).ef_mean, seq


def test_flipped_clips_give_the_same_ef_by_default(clip):
    ef, seq = _ef(clip.masks, clip)
    assert seq.apex_direction == "up" and abs(ef - clip.ef) < 2.0
    for flip, name in ((clip.masks[:, ::-1], "down"), (clip.masks[:, :, ::-1], "up"),
                       (clip.masks[:, ::-1, ::-1], "down"), (clip.masks.transpose(0, 2, 1), "left")):
        ef_flip, seq_flip = _ef(flip, clip)
        assert seq_flip.apex_direction == name
        assert abs(ef_flip - ef) < 0.5, (name, ef_flip, ef)
        assert not seq_flip.apex_note


def test_the_old_fixed_direction_was_wrong_on_a_flipped_clip(clip):
    """What the issue saw: 'up' on an apex-down clip measures another EF, silently."""
    ef, _ = _ef(clip.masks, clip)
    ef_wrong, _ = _ef(clip.masks[:, ::-1], clip, apex_direction="up")
    assert abs(ef_wrong - ef) > 5.0


def test_a_round_mask_is_flagged_as_unsure():
    yy, xx = np.mgrid[0:112, 0:112]
    circle = (((xx - 56) ** 2 + (yy - 56) ** 2) < 25**2).astype(np.uint8)
    found = detect_apex_direction(circle)
    assert found.unsure and found.name == "up" and "round or symmetric" in found.reason
    geo = mask_keypoints(circle)
    assert any(f.startswith("apex direction unsure") for f in geo.flags)
    seq = sequence_keypoints(np.stack([circle] * 4))
    assert seq.apex_note.startswith("apex direction unsure") and all("apex direction unsure" in f for f in seq.flags)


def test_the_keypoints_and_ef_tables_record_the_direction(clip, tmp_path):
    from echokdm.metrics.lv_function import ef_table, keypoints_table

    cine = clip.to_cine()
    flipped = cine.__class__(**{**cine.__dict__, "frames": cine.frames[:, ::-1].copy(),
                                "masks": cine.masks[:, ::-1].copy(), "tracings": None, "labelled_frames": None})
    row = {"clip_id": "c1", "patient_id": "p1", "dataset": "phantom", "path": "x", "ef_reference": clip.ef,
           "edv_reference": np.nan, "esv_reference": np.nan}
    import pandas as pd

    table = keypoints_table(pd.DataFrame([row]), read_clip=lambda r: flipped, progress=False)
    assert set(table.frames["apex_direction"]) == {"down"}
    assert table.clips["apex_direction"].tolist() == ["down"]
    ef = ef_table(table).clips
    assert ef["apex_direction"].tolist() == ["down"]
    assert abs(float(ef["ef"].iloc[0]) - clip.ef) < 2.0


def test_cli_default_is_auto():
    import argparse

    from echokdm.cli.keypoints import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["keypoints", "m.csv"]).apex_direction == "auto"
    assert parser.parse_args(["ef", "m.csv", "--apex-direction", "down"]).apex_direction == "down"
