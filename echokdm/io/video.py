"""Read and write ordinary video files (AVI, MP4, GIF, anything ffmpeg decodes) with PyAV.

Reading returns a :class:`~echokdm.io.cine.Cine` with grayscale ``float32`` ``(T, H, W)`` frames
in [0, 1]; colour video becomes BT.601 luma (:func:`~echokdm.io._convert.to_gray_frames`).

Truncated files
---------------
A file cut short (a failed copy, a half-finished download) must not be read as a shorter clip.
:func:`read_video` raises :class:`~echokdm.errors.ReadError` saying "truncated or corrupt" when
any of these holds:

* the container's own size fields say the file should be longer than it is: the RIFF chunks of
  an AVI, the top-level boxes of an MP4/MOV (ISO base media file), the trailer byte of a GIF;
* fewer packets are demuxed from an AVI than its header declares (``dwLength``);
* the demuxer flags a packet as corrupt, or the decoder fails on a packet;
* no frame at all can be decoded.

An MP4 states its sample count in its ``moov`` box, but that count is not compared with the
packets read: an edit list may legitimately hide samples, and a cut file is already caught by
its box sizes (with ``moov`` at the end, a cut file has no ``moov`` and cannot be opened at
all). A fragmented MP4 cut exactly at a fragment boundary, or an MPEG-TS / Matroska stream cut
between packets, cannot be told from a shorter clip; it is read as it is.

Writing
-------
:func:`write_video` picks the codec from the extension: ``.mp4``/``.m4v``/``.mov`` → H.264
(libx264), ``.avi`` → MJPEG (as EchoNet-Dynamic's AVIs), ``.gif`` → GIF. See its docstring for
the pixel formats and quality scales.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from echokdm.errors import MissingDecoderError, ReadError
from echokdm.io._convert import to_gray_frames
from echokdm.io.atomic import atomic_output
from echokdm.io.cine import Cine

__all__ = ["read_video", "write_video"]

# A frame rate above this is taken as a time base, not a frame rate (echo tops out near 500 fps).
_MAX_PLAUSIBLE_FPS = 2000.0
_ISO_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"moof"}


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_video(
    path: str | os.PathLike,
    *,
    patient_id: str | None = None,
    clip_id: str | None = None,
    dataset: str = "video",
) -> Cine:
    """Read a video file into a grayscale :class:`~echokdm.io.cine.Cine`.

    Parameters
    ----------
    path : str or os.PathLike
        An AVI, MP4, GIF or any file with a video stream that ffmpeg decodes. The first video
        stream is read.
    patient_id : str, optional
        Pseudonymous patient identifier; defaults to ``clip_id``. A file name may carry personal
        data: pass ``patient_id=pseudonymise(...)`` (:mod:`echokdm.io.anonymise`) when it does.
    clip_id : str, optional
        Clip identifier; defaults to the file name without its extension.
    dataset : str
        Value of :attr:`Cine.dataset`.

    Returns
    -------
    Cine
        ``frames`` ``float32`` ``(T, H, W)`` in [0, 1] (colour → BT.601 luma); ``fps`` from the
        stream's average rate (else its guessed rate, base rate or time base), ``None`` when
        unknown; ``spacing_mm`` ``None`` (video files carry no calibration). ``metadata`` holds
        ``codec``, ``container`` (ffmpeg's demuxer name, e.g. ``"avi"``), ``pix_fmt`` (source
        pixel format), ``n_frames``, ``declared_n_frames`` (AVI and MP4/MOV header count, else
        ``None``) and ``fps_source`` (which stream field gave ``fps``). Container tags (titles,
        comments) are not copied: they may hold personal data.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    echokdm.errors.ReadError
        Not a video, no video stream, or truncated or corrupt (see the module docstring).
    echokdm.errors.MissingDecoderError
        The video codec has no decoder in this PyAV/ffmpeg build.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_video(folder / "clip.avi", np.full((4, 16, 16), 0.5), fps=25)
    >>> cine = read_video(folder / "clip.avi")
    >>> cine.frames.shape, cine.fps, cine.clip_id
    ((4, 16, 16), 25.0, 'clip')
    """
    path = Path(path)
    _check_readable_file(path)
    _check_container_sizes(path)
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        raise ReadError(path, f"not a video file that ffmpeg can read ({_ffmpeg_message(exc)})") from exc
    with container:
        if not container.streams.video:
            raise ReadError(path, "the file has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise MissingDecoderError(path, "this PyAV/ffmpeg build has no decoder for the video's codec")
        frames, n_packets = _decode_gray(path, container, stream)
        info = _stream_info(container, stream)
    declared = info["declared_n_frames"]
    if info["container"] == "avi" and declared and n_packets < declared:
        raise ReadError(path, f"truncated or corrupt: the AVI header declares {declared} frames "
                              f"but the file holds only {n_packets}")
    clip_id = path.stem if clip_id is None else clip_id
    fps, fps_source = info.pop("fps"), info.pop("fps_source")
    metadata = {**info, "n_frames": int(frames.shape[0]), "fps_source": fps_source}
    return Cine(frames=frames, fps=fps, spacing_mm=None, patient_id=clip_id if patient_id is None else patient_id,
                clip_id=clip_id, source=path, dataset=dataset, metadata=metadata)


def _check_readable_file(path: Path) -> None:
    """Raise ``FileNotFoundError`` / :class:`ReadError` unless ``path`` is a non-empty file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.is_dir():
        raise ReadError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise ReadError(path, "the file is empty (0 bytes)")


def _decode_gray(path: Path, container: Any, stream: Any) -> tuple[np.ndarray, int]:
    """Decode every frame of ``stream`` to grayscale.

    Returns
    -------
    frames : numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1].
    n_packets : int
        Number of data packets demuxed (the flush packet excluded).
    """
    gray: list[np.ndarray] = []
    n_packets = 0
    reformatter = VideoReformatter()  # one per clip: it caches ffmpeg's conversion context
    try:
        for packet in container.demux(stream):
            is_flush = packet.size == 0 and packet.dts is None
            if not is_flush:
                n_packets += 1
                if packet.is_corrupt:
                    raise ReadError(path, f"truncated or corrupt: packet {n_packets} is incomplete or damaged")
            gray.extend(_frame_to_gray(frame, reformatter) for frame in packet.decode())
    except av.error.DecoderNotFoundError as exc:
        raise MissingDecoderError(path, f"this PyAV/ffmpeg build has no decoder for codec "
                                        f"{stream.codec_context.name!r}") from exc
    except av.error.FFmpegError as exc:
        raise ReadError(path, f"truncated or corrupt: decoding failed after {len(gray)} frame(s) "
                              f"({_ffmpeg_message(exc)})") from exc
    if not gray:
        raise ReadError(path, "truncated or corrupt: no frame could be decoded")
    return np.stack(gray), n_packets  # (T, H, W)


def _frame_to_gray(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """One decoded frame to grayscale ``float32`` ``(H, W)`` in [0, 1].

    Gray sources are read as they are (8 or 16 bit); everything else is converted to RGB by
    ffmpeg and then to BT.601 luma.
    """
    fmt = frame.format
    if fmt.name.startswith("gray"):
        deep = any(component.bits > 8 for component in fmt.components)
        target = "gray16le" if deep else "gray"  # (H, W)
    else:
        target = "rgb24"  # (H, W, 3)
    pixels = reformatter.reformat(frame, format=target).to_ndarray()
    return to_gray_frames(pixels[None])[0]  # explicit frame axis: no guessing on tiny frames


def _stream_info(container: Any, stream: Any) -> dict[str, Any]:
    """Technical facts about a video stream: codec, container, pixel format, counts, fps."""
    container_name = container.format.name  # ffmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    states_count = container_name == "avi" or container_name.startswith("mov,")
    declared = int(stream.frames or 0) if states_count else 0
    fps, fps_source = _stream_fps(stream)
    return {
        "codec": stream.codec_context.name,
        "container": container_name,
        "pix_fmt": stream.codec_context.pix_fmt,
        "declared_n_frames": declared or None,
        "fps": fps,
        "fps_source": fps_source,
    }


def _stream_fps(stream: Any) -> tuple[float | None, str | None]:
    """Frame rate of ``stream`` and the field it came from (``None, None`` when unknown)."""
    candidates = [
        ("average_rate", stream.average_rate),
        ("guessed_rate", stream.guessed_rate),
        ("base_rate", stream.base_rate),
        ("time_base", 1 / stream.time_base if stream.time_base else None),
    ]
    for name, rate in candidates:
        if rate is not None and 0 < float(rate) <= _MAX_PLAUSIBLE_FPS:
            return float(rate), name
    return None, None


def _ffmpeg_message(exc: Exception) -> str:
    """ffmpeg's own words for an error, without the repeated file name."""
    return getattr(exc, "strerror", None) or str(exc)


# --------------------------------------------------------------------------------------------
# Container structure checks (detect files cut short)
# --------------------------------------------------------------------------------------------


def _check_container_sizes(path: Path) -> None:
    """Raise :class:`ReadError` when the container's size fields say the file was cut short.

    Recognised by content, not extension: RIFF (AVI), ISO base media (MP4/MOV) and GIF. Other
    formats pass unchecked.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF":
            problem = _riff_problem(f, size)
        elif head[4:8] in _ISO_BOX_TYPES:
            problem = _iso_box_problem(f, size)
        elif head[:6] in (b"GIF87a", b"GIF89a"):
            f.seek(size - 1)
            problem = None if f.read(1) == b"\x3b" else "the GIF trailer (last byte 0x3B) is missing"
        else:
            problem = None
    if problem:
        raise ReadError(path, f"truncated or corrupt: {problem}")


def _riff_problem(f: Any, size: int) -> str | None:
    """Check the top-level ``RIFF`` chunks (the AVI and any OpenDML ``AVIX`` parts) of a file.

    A chunk is a 4-byte id then a little-endian 32-bit payload length. The walk stops at the
    first chunk that is not ``RIFF`` (trailing bytes are not ours to judge).
    """
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(8)
        if header[:4] != b"RIFF":
            return None
        length = int.from_bytes(header[4:8], "little")
        if offset + 8 + length > size:
            return (f"the RIFF chunk at byte {offset} declares {length} bytes, "
                    f"but the file ends after {size} bytes")
        offset += 8 + length + (length & 1)
    return None


def _iso_box_problem(f: Any, size: int) -> str | None:
    """Check the sizes of the top-level boxes of an ISO base media file (MP4, MOV).

    A box starts with a big-endian 32-bit length of the whole box (1: a 64-bit length follows
    the type; 0: the box runs to the end of the file) and a 4-character type. The walk stops at
    the first header whose type is not printable (trailing bytes are not ours to judge).
    """
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        header = f.read(8)
        length, box_type = int.from_bytes(header[:4], "big"), header[4:8]
        if not all(32 <= byte < 127 for byte in box_type):
            return None
        if length == 1:
            length = int.from_bytes(f.read(8), "big")
        elif length == 0:
            return None
        name = box_type.decode("ascii")
        if length < 8:
            return f"the {name!r} box at byte {offset} has an invalid size {length}"
        if offset + length > size:
            return (f"the {name!r} box at byte {offset} declares {length} bytes, "
                    f"but the file ends after {size} bytes")
        offset += length
    return None


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

# extension -> default encoder
_CODEC_BY_SUFFIX = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".avi": "mjpeg", ".gif": "gif"}
# encoder -> (option names set to the quality value, default quality, allowed range)
_QUALITY = {
    "libx264": (("crf",), 17, (0, 51)),
    "mjpeg": (("qmin", "qmax"), 1, (1, 31)),
    "mpeg4": (("qmin", "qmax"), 2, (1, 31)),
}


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    *,
    codec: str | None = None,
    overwrite: bool = False,
    quality: int | None = None,
) -> Path:
    """Write frames to a video file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; its folder must exist. The extension picks the container and, when
        ``codec`` is ``None``, the codec:

        * ``.mp4`` / ``.m4v`` / ``.mov``: H.264 (libx264), ``yuv420p`` so that every player
          reads it; a frame with an odd width or height is written ``yuv444p`` instead (4:2:0
          needs even sizes), which keeps the exact size but which some browsers do not play.
          ``moov`` is put first (``faststart``).
        * ``.avi``: MJPEG, as EchoNet-Dynamic's AVIs, near-lossless by default; ``yuvj420p``
          for gray frames, ``yuvj444p`` for colour.
        * ``.gif``: GIF, 256 gray levels for gray frames (lossless), a fixed 3-3-2 bit palette
          for colour. GIF stores frame delays in 1/100 s, so ``fps`` is rounded to
          100 / round(100 / fps) (25 and 50 fps are exact, 30 fps becomes 33.3).
    frames : numpy.ndarray
        ``(T, H, W)`` grayscale or ``(T, H, W, 3)`` RGB, either ``uint8`` or float in [0, 1]
        (rounded to 8 bits). Gray frames are stored as gray (R = G = B on decoding).
    fps : float
        Frames per second, > 0.
    codec : str, optional
        An ffmpeg encoder name (``"libx264"``, ``"mjpeg"``, ``"gif"``, ``"mpeg4"``,
        ``"ffv1"`` …) that overrides the default for the extension.
    overwrite : bool
        Replace an existing file. Otherwise an existing ``path`` raises ``FileExistsError``.
    quality : int, optional
        The encoder's own scale, lower is better: libx264 CRF 0 (lossless) … 51, default 17
        (visually lossless); MJPEG and MPEG-4 qscale 1 (best) … 31, default 1 for MJPEG and 2
        for MPEG-4. Other encoders take no quality setting.

    Returns
    -------
    pathlib.Path
        The video written (``path``).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    FileNotFoundError
        The folder of ``path`` does not exist.
    ValueError
        Bad frames, fps, extension, codec or quality.
    """
    path = Path(path)
    pixels, is_colour = _frames_to_uint8(frames)
    rate = _fps_fraction(fps)
    codec = _choose_codec(path, codec)
    options = _quality_options(codec, quality)
    pix_fmt = _choose_pix_fmt(codec, is_colour, pixels.shape[1:3])
    with atomic_output(path, overwrite=overwrite) as tmp:
        _encode(tmp, pixels, rate, codec, pix_fmt, options, is_colour)
    return path


def _frames_to_uint8(frames: np.ndarray) -> tuple[np.ndarray, bool]:
    """Validate frames and convert them to ``uint8`` ``(T, H, W)`` or ``(T, H, W, 3)``.

    Returns the pixels and whether they are colour.
    """
    frames = np.asarray(frames)
    is_colour = frames.ndim == 4 and frames.shape[-1] == 3
    if not (frames.ndim == 3 or is_colour) or frames.shape[0] == 0 or 0 in frames.shape:
        raise ValueError(f"frames must have shape (T, H, W) or (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames), is_colour
    if not (np.issubdtype(frames.dtype, np.floating) or frames.dtype == np.bool_):
        raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    values = frames.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("frames contain NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"float frames must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; rescale them first")
    return np.round(values * 255.0).astype(np.uint8), is_colour


def _fps_fraction(fps: float) -> Fraction:
    """``fps`` as a fraction with a small denominator (29.97 → 2997/100, 30000/1001 kept)."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"fps must be a positive number, got {fps!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(value).limit_denominator(1001)


def _choose_codec(path: Path, codec: str | None) -> str:
    """The encoder for ``path``: ``codec`` if given (checked), else the extension's default."""
    if codec is None:
        suffix = path.suffix.lower()
        if suffix not in _CODEC_BY_SUFFIX:
            raise ValueError(f"{path}: cannot choose a codec for extension {suffix!r}; use one of "
                             f"{sorted(_CODEC_BY_SUFFIX)} or pass codec=")
        return _CODEC_BY_SUFFIX[suffix]
    try:
        found = av.Codec(codec, "w")
    except Exception as exc:  # UnknownCodecError and friends
        raise ValueError(f"codec {codec!r} is not an encoder of this PyAV/ffmpeg build") from exc
    if found.type != "video":
        raise ValueError(f"codec {codec!r} is not a video encoder (it is {found.type})")
    return codec


def _quality_options(codec: str, quality: int | None) -> dict[str, str]:
    """Encoder options for ``quality`` on the encoder's own scale (see :func:`write_video`)."""
    if codec not in _QUALITY:
        if quality is not None:
            raise ValueError(f"quality is not supported for codec {codec!r}; "
                             f"it applies to {sorted(_QUALITY)}")
        return {}
    names, default, (low, high) = _QUALITY[codec]
    value = default if quality is None else quality
    if not (isinstance(value, (int, np.integer)) and low <= value <= high):
        raise ValueError(f"quality for {codec} must be an integer in [{low}, {high}], got {quality!r}")
    return {name: str(int(value)) for name in names}


def _choose_pix_fmt(codec: str, is_colour: bool, size: tuple[int, int]) -> str:
    """Pixel format to encode in, for ``size`` = ``(H, W)``."""
    even = size[0] % 2 == 0 and size[1] % 2 == 0
    if codec == "libx264":
        return "yuv420p" if even else "yuv444p"
    if codec == "mjpeg":
        return "yuvj444p" if is_colour else "yuvj420p"
    if codec == "gif":
        return "rgb8" if is_colour else "gray"
    supported = [f.name for f in av.Codec(codec, "w").video_formats or []]
    preferences = (["yuv444p"] if is_colour else ["gray", "gray8"]) + (["yuv420p"] if even else []) + ["yuv444p"]
    for name in preferences:
        if name in supported:
            return name
    if not supported:
        raise ValueError(f"codec {codec!r} does not list its pixel formats; cannot choose one")
    return supported[0]


def _encode(tmp: Path, pixels: np.ndarray, rate: Fraction, codec: str, pix_fmt: str,
            options: dict[str, str], is_colour: bool) -> None:
    """Encode ``uint8`` frames ``(T, H, W[, 3])`` into the file ``tmp``."""
    container_options = {"movflags": "+faststart"} if tmp.suffix.lower() in (".mp4", ".m4v", ".mov") else {}
    height, width = pixels.shape[1:3]
    with av.open(str(tmp), mode="w", options=container_options) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for image in pixels:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24" if is_colour else "gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
