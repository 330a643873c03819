"""echokdm.demo helpers (the full demo runs in tests/test_cli.py and .ci/run)."""

import numpy as np
import pytest

from echokdm.demo import _usable_source


def test_source_frame_needs_complete_keypoints():
    volumes = np.array([np.nan, 10.0, 9.0, 5.0, 3.0, 7.0, 11.0, np.nan])  # NaN: a keypoint missing
    assert _usable_source(volumes, 2) == 2  # complete: kept
    assert _usable_source(volumes, 0) == 1  # the largest complete frame nearby
    assert _usable_source(volumes, 7) == 6
    far = np.array([np.nan] * 5 + [4.0, 6.0])
    assert _usable_source(far, 0) == 6  # nothing within 2 frames: the largest anywhere
    with pytest.raises(ValueError, match="no frame"):
        _usable_source(np.full(4, np.nan), 1)


def test_clip_ef_basis_says_which_frames_gave_the_clips_ef():
    from echokdm.demo import _clip_ef_basis
    from echokdm.geometry.volumes import cardiac_cycle

    t = np.arange(90) / 30.0
    beats = 100 - 20 * (1 - np.cos(2 * np.pi * t / 0.8)) / 2  # 75 bpm, 3 s: complete beats
    text = _clip_ef_basis(cardiac_cycle(beats, 30.0), 90, 30.0)
    assert text == "4 beats (first ED frame 0, ES frame 12)"
    filling = np.concatenate([np.linspace(60, 100, 18), np.linspace(100, 80, 12)])  # 1 s: ES, filling, part systole
    cycle = cardiac_cycle(filling, 30.0)
    text = _clip_ef_basis(cycle, 30, 30.0)
    assert "no complete beat" in text and "1.0 s" in text and "a filling" in text
    assert f"ES frame {int(cycle.es_frames[0])}" in text
    assert _clip_ef_basis(cardiac_cycle(np.full(10, 5.0), 30.0), 10, 30.0).startswith("no measurable beat")


def test_own_beat_note_only_when_the_targets_differ():
    from echokdm.demo import _own_beat_note

    row = {"loop": "own", "patient_id": "P1", "source": "real", "ef_target": 24.9, "ef_clip_keypoints": 39.7,
           "beat_frames": "17-29", "ef_clip_basis": "the largest and smallest volume"}
    note = _own_beat_note(row)
    assert "frames 17-29" in note and "24.9 %" in note and "39.7 %" in note
    assert _own_beat_note({**row, "ef_target": 38.0}) is None  # within 5 points: nothing to explain
    assert _own_beat_note({**row, "loop": "new_ef"}) is None
    assert _own_beat_note({**row, "ef_clip_keypoints": float("nan")}) is None
