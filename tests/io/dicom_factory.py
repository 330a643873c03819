"""Build small DICOM ultrasound test files with pydicom (no downloads).

The API, for any test that needs a DICOM file:

* :func:`us_dataset` — an ultrasound dataset holding given pixels natively, in any
  photometric interpretation (colour pixels are given as RGB and converted).
* :func:`us_region` — one item of *Sequence of Ultrasound Regions*.
* :func:`palette_lut` — attach a PALETTE COLOR lookup table to a dataset.
* :func:`save` — write a dataset in any transfer syntax: native (little/big endian, implicit,
  deflated), pydicom's encoders (RLE, JPEG-LS, JPEG 2000), JPEG baseline/extended through
  Pillow and JPEG lossless through :func:`encode_jpeg_lossless`.
* :func:`speckle_fan_cine` — a synthetic cine with moving speckle inside a sector (the fan),
  static burned-in text around it and a sweeping ECG line below it.

Pixel arrays are ``(T, H, W)`` (or ``(T, H, W, 3)`` for colour), indexed ``[t, row, col]``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    generate_uid,
)

__all__ = [
    "US_MULTIFRAME",
    "US_SINGLE",
    "us_dataset",
    "us_region",
    "palette_lut",
    "save",
    "encode_jpeg_lossless",
    "speckle_fan_cine",
    "COLOURS",
    "colour_blocks",
]

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
US_SINGLE = "1.2.840.10008.5.1.4.1.1.6.1"

NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
PILLOW_JPEG = (JPEGBaseline8Bit, JPEGExtended12Bit)
LOSSLESS_JPEG = (JPEGLossless, JPEGLosslessSV1)

# name -> (R, G, B) 8-bit, for colour tests; luma = 0.299 R + 0.587 G + 0.114 B
COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "grey": (128, 128, 128),
    "yellow": (255, 255, 0),
    "orange": (255, 128, 0),
}


def colour_blocks(n_frames: int = 2, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames made of uniform ``block``-pixel squares of :data:`COLOURS`, and their luma.

    Returns
    -------
    rgb : numpy.ndarray
        ``uint8`` ``(T, 2 * block, 4 * block, 3)``: two rows of four colours.
    luma : numpy.ndarray
        ``float32`` ``(2 * block, 4 * block)`` in [0, 1], the BT.601 luma of each pixel.
    """
    colours = np.array(list(COLOURS.values()), dtype=np.uint8).reshape(2, 4, 3)
    image = np.kron(colours, np.ones((block, block, 1), dtype=np.uint8))  # (2b, 4b, 3)
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return np.repeat(image[None], n_frames, axis=0), luma


def us_dataset(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    bits_stored: int | None = None,
    modality: str = "US",
    **elements,
) -> Dataset:
    """An ultrasound image dataset holding ``pixels`` natively (explicit VR little endian).

    Parameters
    ----------
    pixels : numpy.ndarray
        Stored values ``(T, H, W)`` (uint8, uint16, int8 or int16; signed gives Pixel
        Representation 1) for MONOCHROME1/2 and PALETTE COLOR, or ``uint8`` RGB
        ``(T, H, W, 3)`` for RGB, YBR_FULL and YBR_FULL_422 (converted here; 422 needs an
        even width). ``T == 1`` gives a single-frame *Ultrasound Image Storage* dataset.
    photometric : str
        Photometric interpretation to store.
    bits_stored : int, optional
        Defaults to the dtype's bit count.
    modality : str
        *Modality*; anything but ``"US"`` to test non-ultrasound files.
    **elements
        Further top-level keywords, e.g. ``FrameTime=20.0`` or ``PatientID="123"``.

    The dataset carries fake personal data (*Patient Name* ``Doe^Jane``, *Patient ID*
    ``PAT-0001``, a birth date and a free-text *Series Description*) so that tests can check
    that readers leave them out.
    """
    pixels = np.asarray(pixels)
    single = pixels.shape[0] == 1
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = US_SINGLE if single else US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "PAT-0001", "19700101"
    ds.Manufacturer, ds.ManufacturerModelName = "Acme", "Sono 1"
    ds.SeriesDescription = "free text about Jane"
    bits = bits_stored or pixels.dtype.itemsize * 8
    stored = _stored_colour(pixels, photometric)
    ds.set_pixel_data(stored[0] if single else stored, _native_photometric(photometric), bits,
                      generate_instance_uid=False)
    if photometric == "YBR_FULL_422":
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = _pack_ybr_422(stored)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _native_photometric(photometric: str) -> str:
    return "YBR_FULL" if photometric == "YBR_FULL_422" else photometric


def _stored_colour(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """RGB input converted to the stored colour space (unchanged for monochrome/palette)."""
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        return convert_color_space(pixels, "RGB", "YBR_FULL")
    return pixels


def _pack_ybr_422(ybr: np.ndarray) -> bytes:
    """YBR_FULL ``(T, H, W, 3)`` to YBR_FULL_422 bytes: Y0 Y1 Cb Cr per pair of pixels."""
    if ybr.shape[2] % 2:
        raise ValueError(f"YBR_FULL_422 needs an even width, got {ybr.shape[2]}")
    pairs = ybr.reshape(ybr.shape[0], ybr.shape[1], -1, 2, 3).astype(np.uint16)  # (T, H, W/2, 2, 3)
    packed = np.empty(pairs.shape[:3] + (4,), dtype=np.uint8)
    packed[..., 0], packed[..., 1] = pairs[..., 0, 0], pairs[..., 1, 0]
    packed[..., 2] = (pairs[..., 0, 1] + pairs[..., 1, 1] + 1) // 2
    packed[..., 3] = (pairs[..., 0, 2] + pairs[..., 1, 2] + 1) // 2
    return packed.tobytes()


def us_region(
    box: tuple[int, int, int, int],
    delta_cm: tuple[float, float] = (0.03, 0.03),
    *,
    units: tuple[int, int] = (3, 3),
    spatial_format: int = 1,
    data_type: int = 1,
) -> Dataset:
    """One *Sequence of Ultrasound Regions* item.

    ``box`` is ``(MinX0, MinY0, MaxX1, MaxY1)`` with DICOM's inclusive corners; ``delta_cm``
    is ``(PhysicalDeltaX, PhysicalDeltaY)``; ``units`` 3 = cm, 4 = seconds, 0 = none.
    """
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = spatial_format, data_type, 0
    (region.RegionLocationMinX0, region.RegionLocationMinY0,
     region.RegionLocationMaxX1, region.RegionLocationMaxY1) = box
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = units
    region.PhysicalDeltaX, region.PhysicalDeltaY = delta_cm
    return region


def palette_lut(ds: Dataset, lut: np.ndarray, bits: int = 16) -> None:
    """Attach a PALETTE COLOR LUT ``(N, 3)`` (entries of ``bits`` bits, first value mapped 0)."""
    lut = np.asarray(lut, dtype=np.uint16)
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [len(lut), 0, bits])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut[:, i].astype("<u2").tobytes())


def save(ds: Dataset, path: str | Path, transfer_syntax: str = ExplicitVRLittleEndian, **options) -> Path:
    """Write ``ds`` (native little endian pixels) to ``path`` in ``transfer_syntax``.

    ``options`` go to ``Dataset.compress`` (e.g. ``jls_error``, ``j2k_cr``) or, for the JPEG
    processes encoded with Pillow, to ``Image.save`` (e.g. ``quality``).
    """
    path = Path(path)
    tsyntax = UID(str(transfer_syntax))
    if tsyntax in NATIVE:
        ds.file_meta.TransferSyntaxUID = tsyntax
    elif tsyntax == ExplicitVRBigEndian:
        _to_big_endian(ds)
    elif tsyntax in PILLOW_JPEG:
        _encapsulate(ds, tsyntax, [_pillow_jpeg(f, **options) for f in _frames_of(ds)])
    elif tsyntax in LOSSLESS_JPEG:
        _encapsulate(ds, tsyntax, [encode_jpeg_lossless(f, int(ds.BitsStored)) for f in _frames_of(ds)])
    else:
        ds.compress(tsyntax, generate_instance_uid=False, **options)
    ds.save_as(path, enforce_file_format=True)
    return path


def _frames_of(ds: Dataset) -> np.ndarray:
    """The dataset's native pixels as ``(T, H, W)``, or RGB ``(T, H, W, 3)`` for colour."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = (3,) if int(ds.SamplesPerPixel) == 3 else ()
    return ds.pixel_array.reshape((n_frames, int(ds.Rows), int(ds.Columns)) + colour)


def _encapsulate(ds: Dataset, tsyntax: UID, encoded: list[bytes]) -> None:
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.file_meta.TransferSyntaxUID = tsyntax
    if int(ds.SamplesPerPixel) == 3:  # Pillow writes YCbCr 4:2:2 from RGB input
        ds.PhotometricInterpretation, ds.PlanarConfiguration = "YBR_FULL_422", 0


def _pillow_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
    """One 8-bit frame (grayscale or RGB) as a baseline JPEG stream (colour: 4:2:2 YCbCr)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality, subsampling=1)
    return buffer.getvalue()


def _to_big_endian(ds: Dataset) -> None:
    """Byte-swap multi-byte pixel data and mark the dataset explicit VR big endian."""
    if int(ds.BitsAllocated) > 8:
        words = np.frombuffer(ds.PixelData, dtype=f"<u{int(ds.BitsAllocated) // 8}")
        ds.PixelData = words.astype(words.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian


# JPEG lossless (ITU T.81 process 14, predictor 1) -------------------------------------------

# A canonical Huffman table for difference categories 0 … 16 (no all-ones code).
_HUFF_BITS = [0, 0, 6, 2, 2, 2, 2, 2, 1, 0, 0, 0, 0, 0, 0, 0]  # codes of length 1 … 16
_HUFF_VALUES = list(range(17))


def _huffman_codes() -> dict[int, tuple[int, int]]:
    """symbol -> (code, length) of the canonical table above."""
    codes, code, symbols = {}, 0, iter(_HUFF_VALUES)
    for length, count in enumerate(_HUFF_BITS, start=1):
        for _ in range(count):
            codes[next(symbols)] = (code, length)
            code += 1
        code <<= 1
    return codes


def encode_jpeg_lossless(frame: np.ndarray, precision: int = 8) -> bytes:
    """A grayscale frame ``(H, W)`` as a lossless JPEG (SOF3) stream with predictor 1.

    Predictor 1 (left neighbour; first row of each line from above) is valid for both
    *JPEG Lossless, Non-Hierarchical (Process 14)* and its *Selection Value 1* variant.
    """
    frame = np.asarray(frame, dtype=np.int64)
    height, width = frame.shape
    pred = np.empty_like(frame)
    pred[:, 1:] = frame[:, :-1]
    pred[1:, 0] = frame[:-1, 0]
    pred[0, 0] = 2 ** (precision - 1)
    diffs = ((frame - pred + 32768) % 65536) - 32768  # modulo 2**16, as T.81 H.1.2.1
    bits = _BitWriter()
    codes = _huffman_codes()
    for diff in diffs.ravel().tolist():
        category = abs(diff).bit_length()
        bits.write(*codes[category])
        if 0 < category < 16:
            bits.write(diff if diff > 0 else diff - 1 + (1 << category), category)
    header = (b"\xff\xd8"
              + _segment(0xC3, bytes([precision]) + height.to_bytes(2, "big") + width.to_bytes(2, "big")
                         + bytes([1, 1, 0x11, 0]))
              + _segment(0xC4, bytes([0x00]) + bytes(_HUFF_BITS) + bytes(_HUFF_VALUES))
              + _segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0])))
    return header + bits.flush() + b"\xff\xd9"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


class _BitWriter:
    """MSB-first bit packing with JPEG byte stuffing (0xFF -> 0xFF 0x00), padded with ones."""

    def __init__(self) -> None:
        self._out, self._acc, self._n = bytearray(), 0, 0

    def write(self, value: int, length: int) -> None:
        self._acc = (self._acc << length) | (value & ((1 << length) - 1))
        self._n += length
        while self._n >= 8:
            self._n -= 8
            byte = (self._acc >> self._n) & 0xFF
            self._out.append(byte)
            if byte == 0xFF:
                self._out.append(0x00)
        self._acc &= (1 << self._n) - 1

    def flush(self) -> bytes:
        if self._n:
            self.write((1 << (8 - self._n)) - 1, 8 - self._n)
        return bytes(self._out)


# Synthetic fan cine ---------------------------------------------------------------------------


def speckle_fan_cine(
    n_frames: int = 8, height: int = 100, width: int = 160, seed: int = 0
) -> dict[str, np.ndarray | tuple[int, int, int, int]]:
    """A cine with moving speckle in a sector, static text around it and an ECG line below.

    Speckle values lie in [26, 178] (about 0.1 … 0.7); text and the ECG line are 255, so any
    value above 0.75 after cropping is left-over text.

    Returns
    -------
    dict
        ``"frames"`` ``uint8`` ``(T, H, W)``; ``"fan"`` ``bool`` ``(H, W)`` sector mask;
        ``"fan_box"`` half-open ``(x0, y0, x1, y1)`` of the sector; ``"text_in_box"`` ``bool``
        ``(H, W)``, static text inside that box but outside the sector.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    apex_x, apex_y, radius, half_angle = width / 2, 4.0, height - 12.0, np.deg2rad(40)
    r = np.hypot(xx - apex_x, yy - apex_y)
    angle = np.arctan2(xx - apex_x, yy - apex_y)  # 0 = straight down
    fan = (r <= radius) & (np.abs(angle) <= half_angle)
    frames = np.zeros((n_frames, height, width), np.uint8)
    frames[:, fan] = rng.integers(26, 179, size=(n_frames, int(fan.sum())), dtype=np.uint8)
    rows, cols = np.nonzero(fan)
    fan_box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    text_in_box = np.zeros_like(fan)
    text_in_box[fan_box[1] + 4:fan_box[1] + 12, fan_box[0] + 2:fan_box[0] + 14] = True  # depth label
    text_in_box &= ~fan
    frames[:, text_in_box] = 255
    frames[:, 2:10, 2:fan_box[0] - 2] = 255  # patient name, left of the fan
    frames[:, height - 8:height - 2, width - 20:width - 2] = 255  # frame counter, bottom right
    for t in range(n_frames):  # ECG trace below the fan, sweeping to the right
        x_end = int((t + 1) * (width - 30) / n_frames)
        frames[t, height - 5, 4:4 + x_end] = 255
    return {"frames": frames, "fan": fan, "fan_box": fan_box, "text_in_box": text_in_box}
