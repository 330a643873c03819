"""``echokdm generate`` on a tiny phantom NIfTI cohort with a tiny random pipeline."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.cli.generate import cmd_generate, register
from echokdm.data.phantom.export import write_cohort
from echokdm.generation.motion import load_keypoints_file
from echokdm.geometry.volumes import simpson_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline

FAST = ["--steps", "3", "--k", "2", "--no-progress", "--formats", "mp4", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    write_cohort(root / "cohort", n_patients=2, format="nifti", size=SIZE, fps=25.0, n_beats=1.0, progress=False)
    tiny_pipeline().save_pretrained(root / "pipe")
    return {"clip": root / "cohort" / "nifti" / "phantom0000.nii.gz",
            "other": root / "cohort" / "nifti" / "phantom0001.nii.gz", "pipe": root / "pipe"}


def run(argv):
    parser = argparse.ArgumentParser(prog="echokdm")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["generate", *argv])
    return args.func(args)


def test_ef_motion_writes_the_loop_flows_and_settings(data, tmp_path, capsys):
    out = tmp_path / "out"
    code = run([str(data["clip"]), "--frame", "0", "--pipeline", str(data["pipe"]), "--out", str(out),
                "--ef", "40", "--heart-rate", "100", "--fps", "15", *FAST])
    assert code == 0
    stem = "phantom0000_f0_synthetic"
    printed = capsys.readouterr().out
    assert "EF target 40.0 %" in printed and "not measured (no segmentation model)" in printed
    assert (out / f"{stem}.mp4").stat().st_size > 0
    keypoints = load_keypoints_file(out / f"{stem}_keypoints.csv")
    assert keypoints.shape == (9, 40, 2)  # round(60 / 100 * 15)
    v = simpson_volume(keypoints)
    assert 100 * (v.max() - v.min()) / v.max() == pytest.approx(40.0, abs=0.5)
    with np.load(out / f"{stem}_flows.npz") as saved:
        assert saved["flows"].shape == (9, 2, SIZE, SIZE) and float(saved["fps"]) == 15.0
        assert saved["gammas"].shape == (9,)
    record = json.loads((out / f"{stem}_generate.json").read_text())
    assert record["motion"] == "synthetic" and record["ef_target"] == pytest.approx(40.0, abs=0.5)
    assert record["keypoints_source"] == "mask" and record["ef_achieved"] is None
    # every sampling setting that shapes the loop is recorded, as applied (FAST's, the rest the defaults)
    assert {name: record[name] for name in ("fit_keypoints", "detail", "interpolation", "fit_region")} == {
        "fit_keypoints": True, "detail": True, "interpolation": "bilinear", "fit_region": False}
    assert "keyframes" in record and record["ef_achieved_note"] == "no segmentation model"
    # nothing is replaced without --overwrite, and the check comes before the work
    with pytest.raises(FileExistsError, match="phantom0000_f0_synthetic"):
        run([str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(out), "--ef", "40", *FAST])
    # the written keypoints are a valid target motion: generate them again
    code = run([str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(out), "--stem", "again",
                "--target-keypoints", str(out / f"{stem}_keypoints.csv"), "--fps", "15", *FAST])
    assert code == 0 and load_keypoints_file(out / "again_keypoints.csv").shape == (9, 40, 2)


def test_own_motion_with_side_by_side(data, tmp_path, capsys):
    out = tmp_path / "own"
    code = run([str(data["clip"]), "--frame", "2", "--pipeline", str(data["pipe"]), "--out", str(out), "--own",
                "--frames", "4", "--mode", "per_frame", "--side-by-side", *FAST])
    assert code == 0
    assert load_keypoints_file(out / "phantom0000_f2_own_keypoints.csv").shape == (4, 40, 2)
    assert (out / "phantom0000_f2_own_side_by_side.mp4").exists()
    assert "at 25 fps (own motion)" in capsys.readouterr().out


def test_own_motion_source_is_recorded_and_tracking_reports_the_segmented_ef(data, tmp_path, capsys):
    """A labelled clip: 'auto' keeps its labels; 'tracking' carries the source keypoints and the EF
    target stays the labels' EF over the same frames."""
    out = tmp_path / "own_motion"
    common = [str(data["clip"]), "--frame", "0", "--pipeline", str(data["pipe"]), "--own", "--frames", "6", *FAST]
    assert run([*common, "--out", str(out), "--stem", "auto"]) == 0
    auto = json.loads((out / "auto_generate.json").read_text())
    assert auto["own_motion"] == "segmentation"
    capsys.readouterr()
    assert run([*common, "--out", str(out), "--stem", "tracked", "--own-motion", "tracking"]) == 0
    assert "speckle tracking" in capsys.readouterr().out
    tracked = json.loads((out / "tracked_generate.json").read_text())
    assert tracked["own_motion"] == "tracking"
    assert tracked["ef_target"] == pytest.approx(auto["ef_target"], abs=1e-3)  # the labels' EF, not the tracked one
    kp_auto = load_keypoints_file(out / "auto_keypoints.csv")
    kp_tracked = load_keypoints_file(out / "tracked_keypoints.csv")
    np.testing.assert_allclose(kp_tracked[0], kp_auto[0], atol=1e-3)  # the same source keypoints
    assert not np.allclose(kp_tracked[1:], kp_auto[1:])  # a different motion


def test_transfer_and_drag_motions(data, tmp_path):
    out = tmp_path / "more"
    assert run([str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(out),
                "--transfer", str(data["other"]), "--frames", "6", "--no-fit-keypoints", *FAST]) == 0
    record = json.loads((out / "phantom0000_f0_transfer_generate.json").read_text())
    assert record["transfer_ed"] == 0 and record["n_frames"] == 6 and record["fit_keypoints"] is False
    drag = tmp_path / "drag.csv"
    pd.DataFrame({"keypoint": [19, 20], "dx": [0.0, 0.0], "dy": [-2.0, -2.0]}).to_csv(drag, index=False)
    assert run([str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(out), "--drag", str(drag),
                "--frames", "3", *FAST]) == 0
    kp = load_keypoints_file(out / "phantom0000_f0_drag_keypoints.csv")
    assert kp.shape == (3, 40, 2)
    assert json.loads((out / "phantom0000_f0_drag_generate.json").read_text())["fit_keypoints"] is True
    np.testing.assert_allclose(kp[1, 19] - kp[0, 19], [0, -2], atol=1e-3)


def test_dicom_source_with_given_keypoints(data, tmp_path, capsys):
    from echokdm.io.dicom import write_dicom

    with np.load(data["clip"].parent.parent / "ground_truth" / "phantom0000.npz") as truth:
        frames, keypoints, spacing = truth["frames"], truth["keypoints"], tuple(truth["spacing_mm"])
    dcm = write_dicom(tmp_path / "src.dcm", frames, fps=25.0, spacing_mm=spacing, patient_id="P-TEST")
    np.save(tmp_path / "kp.npy", keypoints[3])
    out = tmp_path / "dcm"
    assert run([str(dcm), "--frame", "3", "--keypoints", str(tmp_path / "kp.npy"), "--pipeline", str(data["pipe"]),
                "--out", str(out), "--ef", "50", "--heart-rate", "120", "--fps", "10", "--stem", "s",
                *FAST, "--formats", "dicom"]) == 0  # the last --formats wins
    import pydicom

    ds = pydicom.dcmread(out / "s.dcm")
    assert ds.NumberOfFrames == 5 and str(ds.SyntheticData) == "YES"
    assert json.loads((out / "s_generate.json").read_text())["keypoints_source"] == "given"
    with pytest.raises(ValueError, match="--crop-to-fan applies to DICOM files only"):
        run([str(data["clip"]), "--crop-to-fan", "--pipeline", str(data["pipe"]), "--out", str(out), "--own"])


def test_clear_errors(data, tmp_path):
    common = [str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(tmp_path / "e"), *FAST]
    with pytest.raises(SystemExit):  # argparse: the motions exclude each other, one is required
        run([*common, "--own", "--ef", "40"])
    with pytest.raises(SystemExit):
        run(common)
    args = argparse.Namespace(own=True, transfer=None, ef=40.0, drag=None, target_keypoints=None)
    with pytest.raises(ValueError, match="exactly one motion"):
        cmd_generate(args)
    with pytest.raises(ValueError, match="--side-by-side needs --own"):
        run([*common, "--ef", "40", "--side-by-side"])
    with pytest.raises(ValueError, match="--formats 'avi'"):
        run([*common, "--ef", "40", "--formats", "avi"])
    with pytest.raises(FileNotFoundError, match="nope"):
        run([str(data["clip"]), "--pipeline", str(tmp_path / "nope"), "--out", str(tmp_path), "--ef", "40"])
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        run([str(tmp_path / "missing.nii.gz"), "--pipeline", str(data["pipe"]), "--out", str(tmp_path), "--own"])
    with pytest.raises(ValueError, match="frame 99 is outside"):
        run([*common, "--frame", "99", "--own"])
    with pytest.raises(SystemExit):  # argparse: --keypoints and --mask exclude each other
        run([*common, "--own", "--keypoints", "a.csv", "--mask", "b.npy"])


@pytest.mark.parametrize(("flags", "message"), [
    (["--steps", "0"], "--steps) must be an integer >= 1, got 0"),
    (["--steps", "-3"], "--steps) must be an integer >= 1, got -3"),
    (["--steps", "3", "--k", "5"], "k (--k) must be at most num_inference_steps (--steps) = 3, got 5"),
    (["--k", "-1"], "k (--k) must be an integer >= 0, got -1"),
    (["--batch-size", "0"], "--batch-size) must be an integer >= 1, got 0"),
    (["--fps", "0"], "--fps must be a positive number, got 0"),
    (["--fps", "nan"], "--fps must be a positive number"),
    (["--heart-rate", "-60"], "--heart-rate must be a positive number"),
    (["--beats", "0"], "--beats must be a positive number"),
    (["--ef-attempts", "0"], "--ef-attempts must be >= 1"),
    (["--ef-tolerance", "0"], "--ef-tolerance must be a positive number"),
    (["--frame", "-1"], "--frame must be >= 0"),
    (["--frames", "0"], "--frames must be >= 1"),
])
def test_invalid_numbers_fail_with_one_line_before_any_work(data, tmp_path, capsys, flags, message):
    """``generate --steps 0`` died with ZeroDivisionError deep in the scheduler (issue 17, item 11)."""
    from echokdm.cli import main

    out = tmp_path / "o"
    code = main(["generate", str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(out), "--ef", "40",
                 "--no-progress", "--device", "cpu", "--formats", "mp4", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_ef_outside_percent_and_library_checks(data, tmp_path, capsys):
    from echokdm.cli import main
    from echokdm.generation.loop import generate_loop
    from echokdm.generation.settings import SamplingSettings

    assert main(["generate", str(data["clip"]), "--pipeline", str(data["pipe"]), "--out", str(tmp_path / "o"),
                 "--ef", "120"]) == 1
    assert "--ef must be a percentage within (0, 100), got 120" in capsys.readouterr().err
    kp = np.zeros((40, 2), np.float32)
    with pytest.raises(ValueError, match="num_inference_steps"):
        generate_loop(tiny_pipeline(), np.zeros((SIZE, SIZE), np.float32), kp, kp[None], fps=10.0,
                      sampling=SamplingSettings(num_inference_steps=0), progress=False)


def test_a_beat_starts_from_the_clips_end_diastolic_frame_by_default(tmp_path, capsys):
    """A phantom clip that starts mid-systole: ``--ef`` without ``--frame`` starts from its end-diastolic frame
    (found from the volume curve of its masks), which the file name and the settings record; ``--frame 0`` still
    starts from frame 0, and ``--frame ed`` with one frame's keypoints is refused."""
    from echokdm.data.phantom import sample_patient, simulate_clip
    from echokdm.generation.loop import ed_frame
    from echokdm.io.nifti import write_label_nifti, write_nifti

    clip = simulate_clip(sample_patient(3, 0), n_frames=24, fps=25.0, size=SIZE, start_phase=0.2)
    truth = int(np.argmax(simpson_volume(clip.keypoints)))
    assert truth > 3  # the clip does not start at end-diastole
    cine = clip.to_cine()
    index, how = ed_frame(cine)
    assert abs(index - truth) <= 1 and "end-diastole" in how
    assert ed_frame(cine.__class__(frames=cine.frames[:1], fps=25.0)) == (0, "a single frame")
    unlabelled = cine.__class__(frames=cine.frames, fps=25.0)
    assert ed_frame(unlabelled)[0] == 0 and "no labels" in ed_frame(unlabelled)[1]

    source = tmp_path / "mid.nii.gz"
    write_nifti(source, clip.frames, spacing_mm=clip.spacing_mm, fps=clip.fps)
    write_label_nifti(tmp_path / "mid_gt.nii.gz", clip.masks, spacing_mm=clip.spacing_mm)
    pipe = tmp_path / "pipe"
    tiny_pipeline().save_pretrained(pipe)
    assert run([str(source), "--pipeline", str(pipe), "--out", str(tmp_path / "a"), "--ef", "40", *FAST]) == 0
    printed = capsys.readouterr().out
    assert f"source frame {index}: end-diastole" in printed
    record = json.loads((tmp_path / "a" / f"mid_f{index}_synthetic_generate.json").read_text())
    assert record["frame"] == index
    assert run([str(source), "--frame", "0", "--pipeline", str(pipe), "--out", str(tmp_path / "b"), "--ef", "40",
                *FAST]) == 0
    assert (tmp_path / "b" / "mid_f0_synthetic_generate.json").exists()
    keypoints = tmp_path / "kp.csv"
    np.savetxt(keypoints, clip.keypoints[0].reshape(1, -1), delimiter=",")
    with pytest.raises(ValueError, match="belong to one frame"):
        run([str(source), "--frame", "ed", "--keypoints", str(keypoints), "--pipeline", str(pipe), "--out",
             str(tmp_path / "c"), "--ef", "40", *FAST])


def test_a_scanner_dicom_needs_no_model_options(tmp_path, capsys):
    """`echokdm generate scan.dcm --own -o out/`: the packaged pipeline, and for a clip with no masks or tracings
    the packaged segmentation, each said in one line; --no-segmentation refuses the unlabelled clip with the
    reason; a labelled clip gets no segmentation it did not ask for."""
    import shutil
    import warnings

    import pydicom.examples

    scan = tmp_path / "scan.dcm"
    shutil.copy(pydicom.examples.get_path("ybr_color"), scan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = run([str(scan), "--own", "--frames", "3", "--out", str(tmp_path / "own"), *FAST])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "pipeline: kdm_phantom_112 (packaged" in printed and "segmentation: seg_phantom_112 (packaged" in printed
    record = json.loads(next((tmp_path / "own").glob("*_generate.json")).read_text())
    assert record["keypoints_source"] == "segmentation" and Path(record["pipeline"]).name == "kdm_phantom_112"
    with warnings.catch_warnings(), pytest.raises(ValueError, match="no mask or tracing of its own"):
        warnings.simplefilter("ignore")
        run([str(scan), "--own", "--frames", "3", "--no-segmentation", "--out", str(tmp_path / "none"), *FAST])
    capsys.readouterr()


def test_a_labelled_clip_gets_no_default_segmentation(data, tmp_path, capsys):
    assert run([str(data["clip"]), "--own", "--frames", "3", "--pipeline", str(data["pipe"]),
                "--out", str(tmp_path / "o"), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "segmentation: seg_phantom_112" not in printed and "pipeline: kdm_phantom_112" not in printed


def test_a_source_whose_header_says_it_is_not_of_the_heart_is_refused(data, tmp_path, capsys):
    """pydicom's lymph-node frame (Image Type SMALL PARTS): the packaged models would find a "ventricle" in it and make
    it beat; generate refuses with the reason and writes nothing, unless --allow-non-cardiac."""
    import shutil
    import warnings

    import pydicom.data

    from echokdm.cli.generate import _refuse_non_cardiac
    from echokdm.io.dicom import read_dicom

    scan = tmp_path / "node.dcm"
    shutil.copy(pydicom.data.get_testdata_file("examples_jpeg2k.dcm"), scan)
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"not an echocardiogram by its header \(Image "
                                                                    r"Type says SMALL PARTS\).*--allow-non-cardiac"):
        warnings.simplefilter("ignore")
        run([str(scan), "--ef", "60", "--pipeline", str(data["pipe"]), "--out", str(tmp_path / "out"), *FAST])
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_dicom(scan)
    _refuse_non_cardiac(argparse.Namespace(source=str(scan), allow_non_cardiac=True), cine)  # the user's call
    with pytest.raises(ValueError, match="SMALL PARTS"):
        _refuse_non_cardiac(argparse.Namespace(source=str(scan), allow_non_cardiac=False), cine)
