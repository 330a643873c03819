"""Reading speed: frames per second for a 112×112 AVI (EchoNet-Dynamic's format) and for a
multi-frame JPEG DICOM (the real ultrasound cine that ships with pydicom, 240×320, and a
112×112 JPEG baseline cine written here), through the public readers.

    python benchmarks/io_read.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_time, save


def _cine(n_frames: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = []
    for t in range(n_frames):
        blob = np.exp(-(((xx - size / 2 - 10 * np.sin(t / 5)) ** 2 + (yy - size / 2) ** 2) / (2 * (size / 6) ** 2)))
        frames.append(np.clip(0.6 * blob + 0.3 * rng.random((size, size)), 0, 1))
    return np.stack(frames).astype(np.float32)


def _jpeg_dicom(path: Path, frames: np.ndarray, fps: float) -> None:
    """A multi-frame JPEG baseline US DICOM, frames encoded with Pillow."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from echokdm.io.dicom import write_dicom

    write_dicom(path, frames, fps=fps, spacing_mm=(0.3, 0.3))
    import pydicom

    ds = pydicom.dcmread(path)
    chunks = []
    for f in np.round(frames * 255).astype(np.uint8):
        buf = io.BytesIO()
        Image.fromarray(f, mode="L").save(buf, format="JPEG", quality=95)
        chunks.append(buf.getvalue())
    ds.PixelData = encapsulate(chunks)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and repeats (CI)")
    args = parser.parse_args()
    n_frames, repeats = (32, 2) if args.quick else (128, 5)

    import warnings

    import pydicom.examples

    warnings.simplefilter("ignore")  # the example's calibration warning is covered by the tests

    from echokdm.io import read_dicom, read_video, write_video

    figures: dict[str, float | int | str] = {"frames_per_clip": n_frames}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames = _cine(n_frames, 112)
        avi = write_video(tmp / "clip.avi", frames, fps=50.0)
        t = best_time(lambda: read_video(avi), repeats)
        figures["avi_112_mjpeg_frames_per_s"] = round(n_frames / t, 1)

        dcm = tmp / "clip.dcm"
        _jpeg_dicom(dcm, frames, 50.0)
        t = best_time(lambda: read_dicom(dcm), repeats)
        figures["dicom_112_jpeg_baseline_frames_per_s"] = round(n_frames / t, 1)

        example = pydicom.examples.get_path("ybr_color")
        n_example = read_dicom(example).n_frames
        t = best_time(lambda: read_dicom(example), repeats)
        figures["dicom_pydicom_example_240x320_ybr_jpeg_frames_per_s"] = round(n_example / t, 1)
        t = best_time(lambda: read_dicom(example, crop_to_fan=True), repeats)
        figures["dicom_pydicom_example_cropped_frames_per_s"] = round(n_example / t, 1)
    save("io_read" + ("_quick" if args.quick else ""), figures)


if __name__ == "__main__":
    main()
