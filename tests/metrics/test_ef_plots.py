"""Tests of the per-clip EF pictures (:mod:`echokdm.metrics.ef_plots`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echokdm.metrics.ef_plots import clip_ef_figure, pick_clips, shown_frames, write_clip_ef_plots
from echokdm.metrics.lv_function import ef_table, keypoints_table


@pytest.fixture(scope="module")
def measured():
    """A phantom clip measured on every frame: (keypoints table, EF table, the clip)."""
    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(3), n_beats=1.3, fps=30.0, size=64, seed=3)
    cine = clip.to_cine(patient_id="P1", clip_id="C1")
    manifest = pd.DataFrame([{"clip_id": "C1", "patient_id": "P1", "dataset": "phantom", "path": "x"}])
    table = keypoints_table(manifest, read_clip=lambda row: cine, progress=False)
    return table, ef_table(table), cine


def _clips(errors, flags=None, ef=None):
    n = len(errors)
    return pd.DataFrame({"dataset": ["d"] * n, "clip_id": [f"c{i}" for i in range(n)], "patient_id": ["p"] * n,
                         "ef_error": errors, "flags": flags or [""] * n,
                         "ef": ef if ef is not None else [50.0] * n})


def test_pick_clips_puts_the_worst_agreement_first_then_the_unmeasured():
    picked, why = pick_clips(_clips([1.0, -9.0, np.nan, 4.0]), 3)
    assert picked["clip_id"].tolist() == ["c2", "c1", "c3"]  # no error (not measured) counts as the worst
    assert "furthest from ef_reference" in why
    assert pick_clips(_clips([1.0, 2.0]), 5)[1] == "all clips"
    assert pick_clips(_clips([1.0]), 0)[0].empty


def test_pick_clips_without_references_puts_flagged_and_unmeasured_clips_first():
    clips = _clips([np.nan] * 4, flags=["", "leak", "", ""], ef=[50.0, 40.0, np.nan, 60.0])
    picked, why = pick_clips(clips, 2)
    assert picked["clip_id"].tolist() == ["c1", "c2"] and "flags" in why


def test_figure_shows_ed_and_es_frames_with_their_volumes_and_marks_leaking_frames(measured):
    table, ef, cine = measured
    clip = ef.clips.iloc[0].to_dict()
    group = table.frames.copy()
    leak = group["frame"] == 5
    group.loc[leak, "flags"] = "outlier landmarks (the pool runs on through the open mitral valve)"
    fig = clip_ef_figure(group, clip, cine.frames, fps=cine.fps)
    titles = [ax.get_title() for ax in fig.axes]
    ed, es = int(str(clip["ed_frames"]).split()[0]), int(str(clip["es_frames"]).split()[0])
    assert titles[0].startswith(f"ED, frame {ed}:") and titles[1].startswith(f"ES, frame {es}:")
    assert len(fig.axes[0].images) == 1 and len(fig.axes[1].images) == 1
    labels = fig.axes[2].get_legend_handles_labels()[1]
    assert "mask ran into the atrium" in labels and "ED" in labels and "ES" in labels
    assert fig.axes[2].get_xlabel() == "time (s)"
    assert f"EF {clip['ef']:.1f} %" in fig._suptitle.get_text()


def test_figure_without_frames_says_why_and_draws_the_curve(measured):
    table, ef, _ = measured
    fig = clip_ef_figure(table.frames, ef.clips.iloc[0].to_dict(), None, frames_note="frames not shown: reason")
    assert not fig.axes[0].images
    assert any("reason" in t.get_text() for t in fig.axes[0].texts)
    assert fig.axes[2].get_xlabel() == "frame"  # no frame rate without the clip


def test_frames_with_burned_in_text_and_no_fan_are_not_shown(monkeypatch, measured):
    from echokdm.io import fan as fan_module

    _, _, cine = measured
    monkeypatch.setattr(fan_module, "source_fan",
                        lambda c: fan_module.Fan(mask=None, method=None, note="none", burned_in_annotation="YES"))
    frames, note = shown_frames(cine)
    assert frames is None and "burned-in annotation" in note


def test_real_cine_frames_are_shown_inside_the_fan_only():
    import warnings

    import pydicom.examples

    from echokdm.io import read_cine
    from echokdm.io.fan import source_fan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_cine(pydicom.examples.get_path("ybr_color"))
    frames, note = shown_frames(cine)
    fan = source_fan(cine).mask
    assert note == "" and fan is not None
    assert frames[:, ~fan].max() == 0.0  # burned-in text and labels around the fan are blanked
    assert cine.frames[:, ~fan].max() > 0.3  # ... and there was some
    assert np.array_equal(frames[:, fan], cine.frames[:, fan])


def test_write_refuses_existing_pictures_and_draws_an_unreadable_clip_without_frames(measured, tmp_path):
    table, ef, _ = measured

    def broken(clip):
        raise OSError("disk gone")

    written, _ = write_clip_ef_plots(table.frames, ef.clips, tmp_path, limit=3, read_clip=broken)
    assert [p.name for p in written] == ["phantom_C1.png"] and written[0].stat().st_size > 5000
    with pytest.raises(FileExistsError, match="phantom_C1.png"):
        write_clip_ef_plots(table.frames, ef.clips, tmp_path, limit=3)
    assert write_clip_ef_plots(table.frames, ef.clips, tmp_path, limit=0)[0] == []


def test_two_traced_frames_are_drawn_as_points_not_a_curve(measured):
    table, ef, _ = measured
    clip = ef.clips.iloc[0].to_dict()
    ed, es = int(str(clip["ed_frames"]).split()[0]), int(str(clip["es_frames"]).split()[0])
    group = table.frames[table.frames["frame"].isin([ed, es])]
    fig = clip_ef_figure(group, {**clip, "method": "labelled frames max/min"})
    line = fig.axes[2].get_lines()[0]
    assert line.get_linestyle() == "None" and len(line.get_xdata()) == 2
    assert fig.axes[2].get_legend_handles_labels()[1][0] == "volume of a labelled frame"
    assert clip_ef_figure(table.frames, clip).axes[2].get_lines()[0].get_linestyle() == "-"


def test_a_single_measured_frame_is_shown_with_its_keypoints(measured):
    """A still image (one frame, so no beat and no EF): the picture still shows the frame the keypoints were found on,
    said to be no ED, rather than two empty panels."""
    table, ef, cine = measured
    clip = {**ef.clips.iloc[0].to_dict(), "ef": np.nan, "ed_frames": "", "es_frames": "", "method": "",
            "flags": "fewer than 2 labelled frames with a volume (1)"}
    group = table.frames[table.frames["frame"] == 4]
    fig = clip_ef_figure(group, clip, cine.frames[:5])
    assert fig.axes[0].get_title().startswith("no ED, frame 4:") and len(fig.axes[0].images) == 1
    assert len(fig.axes[0].get_lines()) == 2  # the outline and its keypoints
    assert fig.axes[1].get_title() == "ES: none"
