"""The app's functions without a browser: opening clips, pictures, drag table, results folders, bad files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from echokdm.app.clip import clip_summary, open_clip, problem_line
from echokdm.app.generate import LoopRequest
from echokdm.app.render import display_scale, display_to_frame, frame_picture, nearest_keypoint, overlay_frames
from echokdm.app.results import open_results, row_videos


def _clip_path(manifest):
    return manifest.parent / "dicom" / "phantom0000.dcm"


def test_open_clip_measures_as_the_commands(phantom_dicoms):
    from echokdm.metrics.lv_function import ef_table, keypoints_table

    view = open_clip(_clip_path(phantom_dicoms), segmentation="echokdm/checkpoints/seg_phantom_112")
    assert view.mask_source == "segmentation" and view.masks.shape == view.cine.frames.shape
    assert view.keypoints.shape == (view.n_frames, 40, 2) and np.isfinite(view.volumes).sum() >= view.n_frames - 1
    assert 10 < view.ef < 80 and view.ed_frames and view.es_frames
    text = clip_summary(view)
    assert f"EF {view.ef:.1f} %" in text and "ED frame(s)" in text and "Flags:" in text
    # the phantom DICOM with its own masks? no: none; without a model nothing is measured, and the page says why
    bare = open_clip(_clip_path(phantom_dicoms))
    assert bare.mask_source == "" and math.isnan(bare.ef) and "segmentation model" in clip_summary(bare)
    # the same numbers as the keypoints and ef commands on the model's masks
    manifest = pd.DataFrame([{"clip_id": "c", "patient_id": "p", "dataset": "d", "path": "x"}])
    import dataclasses

    cine = dataclasses.replace(view.cine, masks=view.masks, labelled_frames=None)
    ef = ef_table(keypoints_table(manifest, read_clip=lambda row: cine, progress=False)).clips["ef"].iloc[0]
    assert ef == pytest.approx(view.ef)


def test_open_real_cine_reads_the_apex_side_and_ef_as_the_ef_command(tmp_path):
    """pydicom's real cine through the packaged model: the app's keypoints have their base at the bottom (the apex
    towards the transducer, from the fan, as `echokdm ef` reads it; from the masks alone it was guessed "down"
    and the app showed the annulus at the apex and another EF), and the same EF and ED frame as the command."""
    import warnings

    import pydicom.examples

    from echokdm.metrics.lv_function import ef_table, keypoints_table
    from echokdm.pretrained import pretrained_path

    path = pydicom.examples.get_path("ybr_color")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        view = open_clip(path, segmentation=pretrained_path("seg_phantom_112"))
        manifest = pd.DataFrame([{"clip_id": "c", "patient_id": "p", "dataset": "d", "path": str(path),
                                  "format": "dicom"}])
        command = ef_table(keypoints_table(manifest, segmentation="seg_phantom_112", progress=False)).clips.iloc[0]
    assert view.ef == pytest.approx(float(command["ef"]), abs=1e-6)
    assert view.ed_frames == [int(v) for v in str(command["ed_frames"]).split()]
    ed = view.keypoints[view.ed_frames[0]]
    base_y = (ed[0, 1] + ed[39, 1]) / 2
    assert base_y > ed[15:25, 1].mean() + 30  # the base is below the apical chords
    # the app's source-frame slider names that end-diastole (the clip starts at end-systole)
    from echokdm.app.ui import ed_frame_of

    assert ed_frame_of(view) == view.ed_frames[0] == 18
    assert ed_frame_of(open_clip(path)) == 0  # nothing measured without a model


def test_open_manifest_picks_a_clip(phantom_dicoms):
    rows = pd.read_csv(phantom_dicoms)
    second = str(rows["clip_id"].iloc[1])
    view = open_clip(phantom_dicoms, clip_id=second)
    assert view.cine.clip_id == second and view.path.name == "phantom0001.dcm"
    with pytest.raises(ValueError, match="no clip 'nope'"):
        open_clip(phantom_dicoms, clip_id="nope")


def test_bad_files_give_one_line(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not a DICOM file\n")
    for path in (bad, tmp_path / "missing.avi"):
        with pytest.raises(Exception) as info:  # the readers' own errors
            open_clip(path)
        line = problem_line(path, info.value)
        assert "\n" not in line and path.name in line


def test_overlay_draws_mask_and_keypoints():
    frames = np.zeros((2, 40, 40), np.float32)
    masks = np.zeros((2, 40, 40), np.uint8)
    masks[:, 10:20, 10:20] = 1
    t = (np.arange(20) + 0.5) / 20
    left = np.stack([np.full(20, 8.0), 30 - 20 * t], axis=1)
    kp = np.concatenate([left, (left + [20, 0])[::-1]]).astype(np.float32)
    rgb = overlay_frames(frames, masks, np.stack([kp, kp]))
    s = display_scale((40, 40))
    assert rgb.shape == (2, 40 * s, 40 * s, 3) and s == 9
    assert rgb[0, 15 * s, 15 * s, 2] > 0.2  # tinted inside the mask
    assert rgb[0, int(20 * s), int(8 * s + s // 2), 0] > 0.5  # the left wall is red
    assert rgb[0, 2, 2].max() == 0  # black elsewhere
    picture = frame_picture(frames[0], kp, moved=kp + 2, picked=5)
    assert picture.dtype == np.uint8 and picture.shape == (40 * s, 40 * s, 3)
    x, y = (kp[7] + 0.5) * s - 0.5
    assert nearest_keypoint(kp, (x + 1, y), (40, 40)) == 7
    assert display_to_frame((x, y), (40, 40)) == pytest.approx(tuple(kp[7]), abs=1e-4)


def test_drag_table_and_requests():
    from echokdm.app.ui import drag_table, sampling_from

    rows = pd.DataFrame([[3, 1.5, -2], [None, None, None]], columns=["keypoint", "dx", "dy"])
    assert drag_table(rows) == {3: (1.5, -2.0)}
    with pytest.raises(ValueError, match="keypoint 40"):
        drag_table([[40, 1, 1]])
    with pytest.raises(ValueError, match="move at least one keypoint"):
        LoopRequest(motion="drag")
    with pytest.raises(ValueError, match="choose the other clip"):
        LoopRequest(motion="transfer")
    with pytest.raises(ValueError, match="EF must be"):
        LoopRequest(motion="synthetic", ef=120)
    quick = sampling_from(200, 100, 0, quick=True)
    assert (quick.num_inference_steps, quick.k) == (10, 1)
    assert (quick.keyframes, quick.detail) == (8, True)  # the defaults' fast sampler
    assert sampling_from(4, 9, 1, quick=False).k == 4


def test_results_folder_worst_first_and_playable(synthesize_folder, tmp_path):
    results = open_results(synthesize_folder)
    assert results.kind == "synthesize" and results.worst_by == "ef_miss"
    assert results.table["loop"].tolist() == ["synthetic_00001", "synthetic_00000", "synthetic_00002"]
    videos = row_videos(results, 0, tmp_path)
    assert set(videos) == {"generated"} and videos["generated"].stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="neither per_patient.csv"):
        open_results(tmp_path)


def test_evaluate_folder(tmp_path):
    folder = tmp_path / "eval"
    (folder / "generated").mkdir(parents=True)
    pd.DataFrame({"dataset": ["d", "d"], "method": ["kdm", "kdm"], "patient_id": ["P1", "P2"], "n_frames": [3, 3],
                  "mse": [0.01, 0.05]}).to_csv(folder / "per_patient.csv", index=False)
    pd.DataFrame({"dataset": ["d", "d"], "patient_id": ["P1", "P2"], "clip_id": ["c1", "c2"],
                  "method": ["kdm", "kdm"]}).to_csv(folder / "per_clip.csv", index=False)
    frames = np.full((3, 16, 16), 128, np.uint8)
    for clip in ("c1", "c2"):
        np.savez(folder / "generated" / f"{clip}.npz", real=frames, kdm_frames=frames, source=frames[0],
                 targets=np.arange(1, 4))
    results = open_results(folder)
    assert results.table["patient_id"].tolist() == ["P2", "P1"]  # worst (largest MSE) first
    assert set(row_videos(results, 0, tmp_path / "v")) == {"real", "generated"}


def test_cli_registers_app():
    from echokdm.cli import build_parser

    args = build_parser().parse_args(["app", "clip.dcm", "--port", "7999"])
    assert (args.command, args.source, args.port, args.host) == ("app", "clip.dcm", 7999, "127.0.0.1")
    assert args.pipeline == "kdm_phantom_112" and args.segmentation == "seg_phantom_112"


def test_the_app_says_when_a_files_header_says_it_is_not_of_the_heart(tmp_path):
    """pydicom's obstetric frame (OBSTETRICAL, CURVED LINEAR): the page says the LV it draws is not there; the real
    cardiac cine's page does not."""
    import warnings

    import pydicom.data
    import pydicom.examples

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obstetric = open_clip(pydicom.data.get_testdata_file("examples_palette.dcm"))
        heart = open_clip(pydicom.examples.get_path("ybr_color"))
    said = "Not an echocardiogram by its header** (Image Type says OBSTETRICAL; a CURVED LINEAR"
    assert said in clip_summary(obstetric)
    assert "echocardiogram" not in clip_summary(heart)
