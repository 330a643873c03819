"""Tests of the ``echokdm keypoints`` and ``echokdm ef`` commands, through register()."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from echokdm.cli.keypoints import register
from echokdm.data.manifest import load_manifest, write_manifest
from echokdm.data.phantom.export import write_cohort


def _run(argv):
    parser = argparse.ArgumentParser(prog="echokdm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two phantom CAMUS clips plus a manifest that adds one clip without masks."""
    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, 2, "camus", seed=4, fps=30.0, n_beats=1.2, progress=False)
    manifest = load_manifest(out / "manifest.csv")
    extra = manifest.iloc[[0]].copy()
    extra["clip_id"], extra["mask_path"], extra["format"] = "nomask", "", "nifti"
    write_manifest(pd.concat([manifest, extra]), out / "with_unlabelled.csv")
    return out


def test_keypoints_command_writes_parquet_and_refuses_to_overwrite(cohort, tmp_path, capsys):
    out = tmp_path / "kp.parquet"
    assert _run(["keypoints", str(cohort / "with_unlabelled.csv"), "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_parquet(out)
    assert f"wrote {out}" in printed and f"{len(table)} frame(s) of 2 clip(s)" in printed
    assert "1 item(s) skipped" in printed and "nomask" in printed and "no masks or tracings" in printed
    skipped = pd.read_csv(tmp_path / "kp_skipped.csv")
    assert skipped["item"].str.contains("nomask").any()
    assert {"x0", "y39", "volume", "volume_units", "flags", "mask_source"} <= set(table.columns)
    with pytest.raises(FileExistsError, match="kp.parquet"):
        _run(["keypoints", str(cohort / "manifest.csv"), "-o", str(out), "--no-progress"])
    assert _run(["keypoints", str(cohort / "manifest.csv"), "-o", str(out), "--overwrite", "--no-progress",
                 "--smooth-sigma", "0"]) == 0


def test_keypoints_command_writes_csv_and_rejects_other_suffixes(cohort, tmp_path):
    out = tmp_path / "kp.csv"
    assert _run(["keypoints", str(cohort / "manifest.csv"), "-o", str(out), "--no-progress"]) == 0
    assert len(pd.read_csv(out)) > 0
    with pytest.raises(ValueError, match="parquet or .csv"):
        _run(["keypoints", str(cohort / "manifest.csv"), "-o", str(tmp_path / "kp.json"), "--no-progress"])


def test_ef_command_writes_per_clip_csv_summary_and_bland_altman(cohort, tmp_path, capsys):
    out = tmp_path / "ef"
    assert _run(["ef", str(cohort / "with_unlabelled.csv"), "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    clips = pd.read_csv(out / "ef_per_clip.csv")
    assert len(clips) == 2 and clips["ef_error"].abs().max() < 3.0
    summary = pd.read_csv(out / "ef_summary.csv")
    assert summary["dataset"].tolist() == ["phantom-camus", "all"]
    assert (out / "ef_bland_altman.png").stat().st_size > 1000 and (out / "ef_scatter.png").exists()
    assert "MAE" in printed and "bias" in printed and "Pearson r" in printed
    assert "nomask" in printed and (out / "ef_skipped.csv").exists()
    # a picture per measured clip (both: fewer than --clip-plots), the worst agreement named first
    pictures = sorted(p.name for p in (out / "ef_clips").iterdir())
    assert pictures == sorted(f"phantom-camus_{c}.png" for c in clips["clip_id"])
    assert "clip pictures" in printed and "2 of 2" in printed
    with pytest.raises(FileExistsError, match="ef_per_clip.csv"):
        _run(["ef", str(cohort / "manifest.csv"), "-o", str(out), "--no-progress"])
    assert _run(["ef", str(cohort / "manifest.csv"), "-o", str(out), "--overwrite", "--no-progress"]) == 0
    assert _run(["ef", str(cohort / "manifest.csv"), "-o", str(out), "--overwrite", "--clip-plots", "1",
                 "--no-progress"]) == 0
    assert len(list((out / "ef_clips").iterdir())) == 1  # the earlier run's other picture is not left behind
    out2 = tmp_path / "ef_no_pictures"
    assert _run(["ef", str(cohort / "manifest.csv"), "-o", str(out2), "--clip-plots", "0", "--no-progress"]) == 0
    assert not (out2 / "ef_clips").exists()
    assert _run(["ef", str(cohort / "manifest.csv"), "-o", str(out2 / "one"), "--clip-plots", "1",
                 "--no-progress"]) == 0
    assert len(list((out2 / "one" / "ef_clips").iterdir())) == 1


def test_missing_manifest_is_a_file_not_found_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        _run(["ef", str(tmp_path / "absent.csv"), "-o", str(tmp_path), "--no-progress"])


def test_ef_with_a_segmentation_model_segments_each_clip_as_echokdm_segment_would(tmp_path, capsys):
    """``--segmentation`` takes a model (a packaged name) as well as an ``echokdm segment`` folder: on pydicom's
    real scanner cine both give the same keypoints and EF, the apex on the transducer's side; a value that is
    neither is refused before anything is written."""
    import shutil
    import warnings

    import pydicom.examples

    from echokdm.cli.segment import register as register_segment
    from echokdm.data.manifest import scan_folder

    (tmp_path / "dicom").mkdir()
    shutil.copy(pydicom.examples.get_path("ybr_color"), tmp_path / "dicom" / "cine.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its calibration region belongs to another image size
        write_manifest(scan_folder(tmp_path / "dicom", "dicom", progress=False).manifest, tmp_path / "real.csv")
        parser = argparse.ArgumentParser(prog="echokdm")
        register_segment(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["segment", str(tmp_path / "real.csv"), "-o", str(tmp_path / "seg"), "--no-progress"])
        assert args.func(args) == 0  # the packaged model by default, said so
        assert _run(["ef", str(tmp_path / "real.csv"), "--segmentation", str(tmp_path / "seg"),
                     "-o", str(tmp_path / "from_folder"), "--no-progress"]) == 0
        assert _run(["ef", str(tmp_path / "real.csv"), "--segmentation", "seg_phantom_112",
                     "-o", str(tmp_path / "from_model"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "model: seg_phantom_112 (packaged; trained on the realistic phantom only" in printed
    # segment's preview: the frames inside the fan (the burned-in labels around it blanked), masks and keypoints
    import imageio.v3 as iio

    clip_id = pd.read_csv(tmp_path / "real.csv")["clip_id"].iloc[0]
    video = iio.imread(tmp_path / "seg" / "previews" / f"{clip_id}.mp4")
    assert video.shape[0] == 30 and "previews (frames inside the fan" in printed
    scale = video.shape[2] // 320
    assert video[:, : 20 * scale, : 40 * scale].max() < 40  # the top-left corner's burned-in text is gone
    tint = (video[..., 2].astype(int) - video[..., 0].astype(int)) > 40  # the cyan mask tint
    assert tint.mean() > 0.01
    folder = pd.read_csv(tmp_path / "from_folder" / "ef_per_clip.csv")
    model = pd.read_csv(tmp_path / "from_model" / "ef_per_clip.csv")
    assert model["apex_direction"].tolist() == ["up"] and 20 < model["ef"].iloc[0] < 60
    assert model["ef"].iloc[0] == pytest.approx(folder["ef"].iloc[0], abs=1e-6)
    # the network runs on through the open mitral valve on diastolic frames: the clip's flags say which
    assert "ran on through the open mitral valve" in model["flags"].iloc[0]
    assert (tmp_path / "from_model" / "ef_clips" / f"dicom_{model['clip_id'].iloc[0]}.png").stat().st_size > 20000
    with pytest.raises(FileNotFoundError, match="neither an 'echokdm segment' output folder"):
        _run(["ef", str(tmp_path / "real.csv"), "--segmentation", str(tmp_path / "nothing"),
              "-o", str(tmp_path / "bad"), "--no-progress"])
    assert not (tmp_path / "bad").exists()


def test_segment_overwrite_removes_the_earlier_runs_previews(tmp_path):
    """``segment --overwrite`` replaces a run: an earlier preview shows masks that no longer exist, of a clip this
    run may not preview, so it goes; without --overwrite nothing of the earlier run is touched."""
    from echokdm.cli.segment import _write_previews

    folder = tmp_path / "previews"
    folder.mkdir()
    (folder / "old_clip.mp4").write_bytes(b"earlier run")
    (folder / "notes.txt").write_text("the user's own file")
    table = pd.DataFrame({"clip_id": ["a"], "masks": ["masks/a.npz"], "dice": [0.9]})
    _write_previews(argparse.Namespace(out=str(tmp_path), overwrite=False, previews=0, manifest=""), table)
    assert (folder / "old_clip.mp4").exists()
    _write_previews(argparse.Namespace(out=str(tmp_path), overwrite=True, previews=0, manifest=""), table)
    assert not (folder / "old_clip.mp4").exists() and (folder / "notes.txt").exists()
