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


def test_an_unreliable_ef_reading_is_named_in_the_report_and_summary(capsys, tmp_path):
    import pandas as pd

    from echokdm.demo import _print_summary, _reading_text
    from echokdm.generation.loop import UNREAD_NOTE

    good = {"frames": 13, "frames_agreeing": 13, "reliable": True, "lost_frames": "", "ef_read": 30.6}
    lost = {"frames": 13, "frames_agreeing": 4, "reliable": False, "lost_frames": "4-12", "ef_read": 91.3}
    assert _reading_text(good) == "13/13 frames" and _reading_text(None) is None
    assert _reading_text(lost) == "4/13 frames, LV lost on 4-12 (read 91.3 %)"
    rows = [{"patient_id": "P1", "source": "real", "loop": loop, "frames": 13, "motion": "tracking",
             "ef_target": target, "ef_achieved": achieved, "ef_error": None if achieved is None else achieved - target,
             "ef_reading": _reading_text(reading), "mp4": str(tmp_path / f"P1_{loop}.mp4"),
             "ef_achieved_note": "measured" if achieved is not None else f"{UNREAD_NOTE}: lost on 4-12"}
            for loop, target, achieved, reading in (("own", 24.9, 30.6, good), ("new_ef", 64.7, None, lost))]
    _print_summary(pd.DataFrame(rows), 1.0, tmp_path)
    out = capsys.readouterr().out
    assert "P1 (real) new_ef: no EF achieved" in out and "LV lost on 4-12 (read 91.3 %)" in out
    assert "P1_new_ef.mp4" in out
    assert "mean |error| 5.7 EF points over 1 loops (1 without a reliable reading)" in out
