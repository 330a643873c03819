"""Burned-in text around the ultrasound fan never reaches a synthetic output (issue 17, item 2).

A phantom cine (exactly 0 outside its sector) gets bright static "text" burned into two corners
outside the sector and is written as a DICOM marked ``BurnedInAnnotation YES``. ``echokdm generate``
and ``echokdm synthesize`` (tiny random pipeline) must write every output frame (DICOM, MP4 and GIF
as decoded, NIfTI, the PNG preview, the EchoNet AVIs) about 0 where the text was; the DICOM must
say ``BurnedInAnnotation NO`` only when it is masked; a source marked YES whose fan cannot be found
is refused with the reason.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from echokdm.cli import main
from echokdm.cli.generate import register
from echokdm.data.phantom.export import write_cohort
from echokdm.generation.settings import SamplingSettings
from echokdm.generation.synthesize import synthesize_cohort
from echokdm.io.dicom import write_dicom
from echokdm.io.echonet import read_echonet_clip
from echokdm.io.nifti import read_nifti
from echokdm.io.video import read_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline

FAST = ["--steps", "3", "--k", "2", "--no-progress", "--device", "cpu"]
TEXT = 0.9  # brightness of the burned-in pixels


def burned_box() -> np.ndarray:
    """``bool`` ``(SIZE, SIZE)``: a name box top-left and a line of 'text' top-right."""
    box = np.zeros((SIZE, SIZE), bool)
    box[1:8, 1:9] = True
    box[1:4, 24:31] = True
    return box


def burn(frames: np.ndarray) -> np.ndarray:
    """The same static text on every frame."""
    out = np.array(frames, dtype=np.float32)
    text = np.zeros((SIZE, SIZE), np.float32)
    text[1:8, 1:9] = TEXT
    text[1:4, 24:31:2] = TEXT  # letters: every other column
    return np.where(text > 0, text, out)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("burned")
    write_cohort(root / "cohort", n_patients=1, format="nifti", size=SIZE, fps=25.0, n_beats=1.0, progress=False)
    with np.load(root / "cohort" / "ground_truth" / "phantom0000.npz") as truth:
        frames, keypoints, fan = truth["frames"], truth["keypoints"], truth["fan_mask"]
        spacing = tuple(float(v) for v in truth["spacing_mm"])
    assert not (fan & burned_box()).any()  # the text is outside the sector
    dcm = write_dicom(root / "src.dcm", burn(frames), fps=25.0, spacing_mm=spacing, patient_id="P-TEST",
                      extra={"BurnedInAnnotation": "YES"})
    np.save(root / "kp.npy", keypoints[3])
    tiny_pipeline().save_pretrained(root / "pipe")
    return {"root": root, "dicom": dcm, "kp": root / "kp.npy", "pipe": root / "pipe", "frames": frames,
            "spacing": spacing}


def run(argv):
    parser = argparse.ArgumentParser(prog="echokdm")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", *argv])
    return args.func(args)


def assert_no_text(frames: np.ndarray, what: str, tolerance: float = 0.0, lossy: bool = False) -> None:
    """Every frame ``(T, H, W)`` is about 0 where the text was burned in (for lossy codecs, which blur
    edges, the box interior)."""
    frames = np.asarray(frames, dtype=np.float32)
    assert frames.shape[1:] == (SIZE, SIZE), what
    where = ndimage.binary_erosion(burned_box()) if lossy else burned_box()
    values = frames[:, where]
    assert values.max() <= tolerance, f"{what}: burned-in text reached the output (max {values.max():.3f})"


def preview_panels(path: Path) -> list[np.ndarray]:
    """The three frame panels of a preview PNG, as gray images (matplotlib draws each frame as a
    rectangle of non-white pixels)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
    ink = rgb.min(axis=2) < 0.97
    labels, n = ndimage.label(ink)
    sizes = ndimage.sum(ink, labels, range(1, n + 1))
    biggest = 1 + np.argsort(sizes)[::-1][:3]
    boxes = sorted((ndimage.find_objects(labels)[i - 1] for i in biggest), key=lambda b: b[1].start)
    return [rgb[b].mean(axis=2) for b in boxes]


def test_generate_masks_every_output_to_the_fan(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert run([str(data["dicom"]), "--frame", "3", "--keypoints", str(data["kp"]), "--pipeline", str(data["pipe"]),
                "--out", str(out), "--ef", "50", "--heart-rate", "120", "--fps", "10", "--stem", "s", *FAST,
                "--formats", "mp4,gif,dicom,nifti"]) == 0
    printed = capsys.readouterr().out
    assert "masked to the ultrasound fan" in printed
    ds = pydicom.dcmread(out / "s.dcm")
    assert ds.BurnedInAnnotation == "NO"
    assert_no_text(ds.pixel_array / 255.0, "DICOM")
    assert_no_text(read_nifti(out / "s.nii.gz").frames, "NIfTI")
    assert_no_text(read_video(out / "s.gif").frames, "GIF", tolerance=1 / 255)
    assert_no_text(read_video(out / "s.mp4").frames, "MP4", tolerance=0.06, lossy=True)
    for panel in preview_panels(out / "s_preview.png"):  # the panels are frames drawn at another scale
        h, w = panel.shape
        top_left = panel[int(2.5 * h / SIZE):int(6.5 * h / SIZE), int(2.5 * w / SIZE):int(7.5 * w / SIZE)]
        assert top_left.size and top_left.max() < 0.06, "preview: burned-in box drawn"
    record = json.loads((out / "s_generate.json").read_text())
    assert record["source"] == "src.dcm"  # the file name, not the absolute path
    assert str(data["dicom"].parent) not in json.dumps({k: v for k, v in record.items() if k != "pipeline"})
    assert record["fan_mask"].startswith("motion")


def test_the_preview_check_sees_an_unmasked_box(data, tmp_path):
    """The PNG check above is not vacuous: with --no-fan-mask on a source that allows it, the box shows."""
    src = write_dicom(tmp_path / "clean.dcm", burn(data["frames"]), fps=25.0, spacing_mm=data["spacing"],
                      extra={"BurnedInAnnotation": "NO"})
    out = tmp_path / "out"
    assert run([str(src), "--frame", "3", "--keypoints", str(data["kp"]), "--pipeline", str(data["pipe"]),
                "--out", str(out), "--ef", "50", "--heart-rate", "120", "--fps", "10", "--stem", "s", *FAST,
                "--formats", "dicom", "--no-fan-mask"]) == 0
    ds = pydicom.dcmread(out / "s.dcm")
    assert ds.BurnedInAnnotation == "YES"  # true to its pixels
    assert (ds.pixel_array[0][burned_box()] / 255.0).max() == pytest.approx(TEXT, abs=0.01)
    panel = preview_panels(out / "s_preview.png")[0]
    h, w = panel.shape
    assert panel[int(2.5 * h / SIZE):int(6.5 * h / SIZE), int(2.5 * w / SIZE):int(7.5 * w / SIZE)].min() > 0.8


def test_a_source_marked_burned_in_without_a_fan_is_refused(data, tmp_path, capsys):
    """Nothing moves and the frame is bright everywhere: no fan can be found."""
    still = burn(np.full((4, SIZE, SIZE), 0.5, np.float32))
    src = write_dicom(tmp_path / "still.dcm", still, fps=25.0, extra={"BurnedInAnnotation": "YES"})
    args = [str(src), "--keypoints", str(data["kp"]), "--pipeline", str(data["pipe"]), "--out",
            str(tmp_path / "o"), "--ef", "50", "--heart-rate", "120", "--fps", "10", *FAST]
    assert main(["generate", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "BurnedInAnnotation is YES and the ultrasound fan could not be found" in err[0]
    assert main(["generate", *args, "--no-fan-mask"]) == 1
    assert "--no-fan-mask would copy its burned-in text" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_unmasked_output_says_burned_in_yes(data, tmp_path, capsys):
    still = burn(np.full((4, SIZE, SIZE), 0.5, np.float32))
    src = write_dicom(tmp_path / "still.dcm", still, fps=25.0)  # no BurnedInAnnotation: it does not say
    out = tmp_path / "o"
    assert run([str(src), "--keypoints", str(data["kp"]), "--pipeline", str(data["pipe"]), "--out", str(out),
                "--ef", "50", "--heart-rate", "120", "--fps", "10", "--stem", "s", *FAST, "--formats", "dicom"]) == 0
    assert "outputs are not masked" in capsys.readouterr().out
    assert pydicom.dcmread(out / "s.dcm").BurnedInAnnotation == "YES"
    assert json.loads((out / "s_generate.json").read_text())["fan_mask"] is None


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory):
    """A phantom DICOM cohort with text burned into every clip, marked BurnedInAnnotation YES."""
    root = tmp_path_factory.mktemp("burned_cohort")
    write_cohort(root / "cohort", n_patients=3, format="dicom", size=SIZE, fps=20.0, n_beats=1.3, progress=False)
    paths = sorted((root / "cohort" / "dicom").glob("*.dcm"))
    assert paths
    for path in paths:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float32) / 255.0
        ds.PixelData = np.round(burn(pixels) * 255).astype(np.uint8).tobytes()
        ds.BurnedInAnnotation = "YES"
        ds.save_as(path)
    tiny_pipeline().save_pretrained(root / "pipe")
    return root


def test_synthesize_masks_every_loop_to_the_fan(dicom_cohort, tmp_path):
    out = tmp_path / "cohort"
    result = synthesize_cohort(dicom_cohort / "cohort" / "manifest.csv", dicom_cohort / "pipe", out, n_loops=3,
                               split="all", sampling=SamplingSettings(k=2, num_inference_steps=3), fps=10.0,
                               progress=False)
    assert len(result.cohort) == 3
    assert (result.cohort["fan_mask"].str.startswith("motion")).all()
    for name in result.cohort["loop"]:
        assert_no_text(read_echonet_clip(out, f"{name}.avi").frames, f"EchoNet {name}.avi", tolerance=0.06,
                       lossy=True)
    assert pd.read_csv(out / "cohort.csv")["fan_mask"].notna().all()
    assert json.loads((out / "settings.json").read_text())["fan_mask"] is True
    assert any("masked to their source's ultrasound fan" in line for line in result.summary_lines())


def test_synthesize_refuses_burned_in_sources_unmasked(dicom_cohort, tmp_path):
    with pytest.raises(ValueError, match="BurnedInAnnotation is YES and fan masking is off"):
        synthesize_cohort(dicom_cohort / "cohort" / "manifest.csv", dicom_cohort / "pipe", tmp_path / "c",
                          n_loops=1, split="all", sampling=SamplingSettings(k=2, num_inference_steps=3), fps=10.0,
                          progress=False,
                          fan_mask=False)
