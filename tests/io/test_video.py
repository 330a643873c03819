"""Tests of echokdm.io.video: write_video / read_video round trips, truncation, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from echokdm.errors import ReadError
from echokdm.io import video as video_module
from echokdm.io._convert import rgb_to_gray
from echokdm.io.video import read_video, write_video


def smooth_frames(n_frames: int = 12, height: int = 32, width: int = 48) -> np.ndarray:
    """``float32`` ``(T, H, W)`` in [0, 1]: moving smooth stripes, easy for every codec."""
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    frames = [0.5 + 0.4 * np.sin(cols / 6 + t / 2) * np.cos(rows / 9) for t in range(n_frames)]
    return np.stack(frames).astype(np.float32)


def decoded_rgb(path: Path) -> np.ndarray:
    """All frames of ``path`` as ``uint8`` ``(T, H, W, 3)``, decoded by PyAV directly."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def cut_file(path: Path, keep_fraction: float) -> Path:
    """Copy of ``path`` keeping only the first ``keep_fraction`` of its bytes."""
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: int(len(data) * keep_fraction)])
    return cut


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "codec", "tolerance"),
    [(".avi", "mjpeg", 4 / 255), (".mp4", "h264", 12 / 255), (".gif", "gif", 0.51 / 255)],
)
def test_round_trip_keeps_count_fps_and_values(tmp_path, suffix, codec, tolerance):
    frames = smooth_frames()
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=25)

    cine = read_video(path)

    assert path == tmp_path / f"clip{suffix}"
    assert cine.frames.dtype == np.float32 and cine.frames.shape == frames.shape
    assert cine.fps == pytest.approx(25.0)
    assert np.abs(cine.frames - frames).max() <= tolerance
    assert cine.metadata["codec"] == codec
    assert cine.metadata["n_frames"] == 12
    assert cine.clip_id == "clip" and cine.patient_id == "clip"
    assert cine.dataset == "video" and cine.source == path and cine.spacing_mm is None


def test_avi_is_mjpeg_near_lossless_and_declares_its_frame_count(tmp_path):
    frames = np.random.default_rng(0).random((6, 24, 24)).astype(np.float32)  # noise: the worst case
    cine = read_video(write_video(tmp_path / "noise.avi", frames, fps=50))
    assert cine.metadata["container"] == "avi"
    assert cine.metadata["declared_n_frames"] == 6
    assert np.abs(cine.frames - frames).mean() < 2 / 255


def test_mp4_declares_its_frame_count(tmp_path):
    cine = read_video(write_video(tmp_path / "clip.mp4", smooth_frames(), fps=30))
    assert cine.metadata["declared_n_frames"] == 12
    assert "mp4" in cine.metadata["container"]


@pytest.mark.parametrize("size", [(33, 41), (32, 41), (33, 40)])
def test_mp4_odd_sizes_keep_their_size(tmp_path, size):
    frames = smooth_frames(6, *size)
    cine = read_video(write_video(tmp_path / "odd.mp4", frames, fps=25))
    assert cine.frames.shape == (6, *size)
    assert np.abs(cine.frames - frames).max() <= 12 / 255
    assert cine.metadata["pix_fmt"] == "yuv444p"


def test_mp4_even_size_is_yuv420p(tmp_path):
    cine = read_video(write_video(tmp_path / "even.mp4", smooth_frames(4), fps=25))
    assert cine.metadata["pix_fmt"] == "yuv420p"


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".gif"])
def test_gray_is_written_as_gray(tmp_path, suffix):
    path = write_video(tmp_path / f"gray{suffix}", smooth_frames(4), fps=25)
    rgb = decoded_rgb(path).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2
    assert np.abs(rgb[..., 2] - rgb[..., 1]).max() <= 2


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_colour_frames_are_read_as_luma(tmp_path, suffix):
    gray = smooth_frames(4)
    rgb = np.stack([gray, 1 - gray, 0.5 * gray], axis=-1)  # (T, H, W, 3)
    cine = read_video(write_video(tmp_path / f"colour{suffix}", rgb, fps=25))
    assert cine.frames.shape == gray.shape
    assert np.abs(cine.frames - rgb_to_gray(rgb)).max() <= 12 / 255


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".gif"])
def test_tiny_colour_frames_keep_their_shape(tmp_path, suffix):
    rgb = np.random.default_rng(0).random((6, 4, 6, 3))  # H = 4: no guessing which axis is colour
    cine = read_video(write_video(tmp_path / f"tiny{suffix}", rgb, fps=25))
    assert cine.frames.shape == (6, 4, 6)


def test_uint8_frames_are_written_unscaled(tmp_path):
    frames = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (3, 8, 1))  # (3, 8, 64) ramp
    cine = read_video(write_video(tmp_path / "ramp.gif", frames, fps=10))
    np.testing.assert_allclose(cine.frames, frames / 255.0, atol=0.51 / 255)


def test_fractional_fps_survives(tmp_path):
    cine = read_video(write_video(tmp_path / "ntsc.avi", smooth_frames(4), fps=30000 / 1001))
    assert cine.fps == pytest.approx(29.97, abs=0.01)


def test_ids_can_be_given(tmp_path):
    path = write_video(tmp_path / "clip.avi", smooth_frames(2), fps=25)
    cine = read_video(path, patient_id="P123", clip_id="c1", dataset="mine")
    assert (cine.patient_id, cine.clip_id, cine.dataset) == ("P123", "c1", "mine")


def test_explicit_codec_overrides_extension(tmp_path):
    cine = read_video(write_video(tmp_path / "lossless.avi", smooth_frames(3), fps=25, codec="ffv1"))
    assert cine.metadata["codec"] == "ffv1"
    assert np.abs(cine.frames - smooth_frames(3)).max() <= 1 / 255


def test_quality_changes_mjpeg_size(tmp_path):
    frames = np.random.default_rng(1).random((4, 32, 32)).astype(np.float32)
    best = write_video(tmp_path / "best.avi", frames, fps=25)
    worst = write_video(tmp_path / "worst.avi", frames, fps=25, quality=31)
    assert worst.stat().st_size < 0.8 * best.stat().st_size
    error = {p.stem: np.abs(read_video(p).frames - frames).mean() for p in (best, worst)}
    assert error["worst"] > 2 * error["best"]


# --------------------------------------------------------------------------------------------
# Writing: refusals and atomicity
# --------------------------------------------------------------------------------------------


def test_refuses_to_overwrite(tmp_path):
    path = write_video(tmp_path / "clip.avi", smooth_frames(3), fps=25)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="clip.avi"):
        write_video(path, smooth_frames(5), fps=25)
    assert path.read_bytes() == before
    write_video(path, smooth_frames(5), fps=25, overwrite=True)
    assert read_video(path).n_frames == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]  # no temporary file left


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_encode(tmp, *args, **kwargs):
        Path(tmp).write_bytes(b"half a video")
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(video_module, "_encode", broken_encode)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_video(tmp_path / "clip.mp4", smooth_frames(2), fps=25)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.full((2, 8, 8), 1.5, dtype=np.float32), r"\[0, 1\]"),
        (np.full((2, 8, 8), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((8, 8), dtype=np.float32), "shape"),
        (np.zeros((0, 8, 8), dtype=np.float32), "shape"),
        (np.zeros((2, 8, 8), dtype=np.int32), "dtype"),
    ],
)
def test_bad_frames_are_refused(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "clip.avi", frames, fps=25)
    assert not (tmp_path / "clip.avi").exists()


def test_bad_arguments_are_refused(tmp_path):
    frames = smooth_frames(2)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "a.avi", frames, fps=0)
    with pytest.raises(ValueError, match=r"\.xyz"):
        write_video(tmp_path / "a.xyz", frames, fps=25)
    with pytest.raises(ValueError, match="no-such-codec"):
        write_video(tmp_path / "a.avi", frames, fps=25, codec="no-such-codec")
    with pytest.raises(ValueError, match="quality"):
        write_video(tmp_path / "a.mp4", frames, fps=25, quality=99)
    with pytest.raises(ValueError, match="quality"):
        write_video(tmp_path / "a.gif", frames, fps=25, quality=3)
    # a missing output folder is created; a file where the folder should be is refused
    assert write_video(tmp_path / "new" / "a.avi", frames, fps=25).exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError, match="afile"):
        write_video(tmp_path / "afile" / "a.avi", frames, fps=25)


# --------------------------------------------------------------------------------------------
# Reading: truncated, corrupt and missing files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".gif"])
@pytest.mark.parametrize("keep", [2 / 3, 0.5, 0.999])
def test_truncated_file_is_a_read_error(tmp_path, suffix, keep):
    path = write_video(tmp_path / f"clip{suffix}", smooth_frames(20), fps=25)
    cut = cut_file(path, keep)
    with pytest.raises(ReadError, match="truncated or corrupt") as info:
        read_video(cut)
    assert str(cut) in str(info.value)


def avi_cut_before_frame(path: Path, frame: int) -> Path:
    """Copy of the AVI ``path`` cut exactly before the chunk of ``frame`` (a clean packet boundary)."""
    data = path.read_bytes()
    offset = data.index(b"movi") + 4  # first chunk of the 'movi' list
    for _ in range(frame):
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        offset += 8 + length + (length & 1)
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[:offset])
    return cut


def test_truncated_avi_is_caught_by_its_frame_count_too(tmp_path, monkeypatch):
    """Without the RIFF size check, the header's frame count still exposes a clean cut."""
    monkeypatch.setattr(video_module, "_check_container_sizes", lambda path: None)
    path = write_video(tmp_path / "clip.avi", np.random.default_rng(0).random((20, 32, 32)), fps=25)
    cut = avi_cut_before_frame(path, 13)
    with pytest.raises(ReadError, match=r"truncated or corrupt.*declares 20 frames") as info:
        read_video(cut)
    assert str(cut) in str(info.value)


def test_truncated_avi_mid_frame_is_caught_by_the_damaged_packet(tmp_path, monkeypatch):
    """Without the RIFF size check, a cut through a frame leaves an incomplete packet."""
    monkeypatch.setattr(video_module, "_check_container_sizes", lambda path: None)
    path = write_video(tmp_path / "clip.avi", np.random.default_rng(0).random((20, 32, 32)), fps=25)
    cut = cut_file(path, 2 / 3)
    with pytest.raises(ReadError, match="truncated or corrupt") as info:
        read_video(cut)
    assert str(cut) in str(info.value)


def test_truncated_mp4_with_moov_at_the_end(tmp_path):
    """An MP4 written without faststart keeps its sample table at the end: a cut loses it."""
    path = tmp_path / "plain.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for image in (smooth_frames(10, 32, 32) * 255).astype(np.uint8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="gray")))
        container.mux(stream.encode(None))
    assert read_video(path).n_frames == 10
    cut = cut_file(path, 2 / 3)
    with pytest.raises(ReadError, match="truncated or corrupt") as info:
        read_video(cut)
    assert str(cut) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    path = tmp_path / "nowhere.avi"
    with pytest.raises(FileNotFoundError, match="nowhere.avi"):
        read_video(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"FileName,EF\nabc,50\n" * 20, "not a video"), (b"", "empty")],
)
def test_non_video_is_a_read_error(tmp_path, content, message):
    path = tmp_path / "notes.avi"
    path.write_bytes(content)
    with pytest.raises(ReadError, match=message) as info:
        read_video(path)
    assert str(path) in str(info.value)


def test_folder_is_a_read_error(tmp_path):
    with pytest.raises(ReadError, match="folder"):
        read_video(tmp_path)


def test_file_without_video_stream_is_a_read_error(tmp_path):
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ReadError, match="no video stream"):
        read_video(path)
