"""One entry point for every reader: :func:`read_cine` picks the reader from the format name
or, when none is given, from the file itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from echokdm.io.cine import Cine

__all__ = ["FORMATS", "VIDEO_SUFFIXES", "read_cine", "guess_format", "guess_folder_format", "is_dicom_file"]

#: Formats understood by :func:`read_cine` and the manifest builder.
FORMATS = ("dicom", "echonet", "camus", "nifti", "video")

VIDEO_SUFFIXES = (".avi", ".mp4", ".gif", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
CAMUS_NAME = re.compile(r"^patient\d+_(2CH|4CH)_(half_sequence|sequence|ED|ES)\.nii(\.gz)?$")


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICOM preamble ("DICM" at byte 128) or a ``.dcm`` / ``.dicom`` suffix.

    Only the name and the first 132 bytes are looked at (an unreadable file is not DICOM); used by
    :func:`guess_format` and by the manifest builder to pick the DICOM files of a folder.
    """
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def guess_format(path: str | os.PathLike) -> str:
    """Guess the format of a file from its name and first bytes.

    Returns one of :data:`FORMATS`. An AVI inside a ``Videos`` folder whose parent holds a
    ``FileList.csv`` is ``"echonet"``; a NIfTI file named like CAMUS is ``"camus"``.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the format cannot be recognised; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith(VIDEO_SUFFIXES):
        if name.endswith(".avi") and path.parent.name == "Videos" and (path.parent.parent / "FileList.csv").exists():
            return "echonet"
        return "video"
    if name.endswith(NIFTI_SUFFIXES):
        stem = path.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.stem
        if stem.lower().endswith(("_gt", "_mask", "_seg")):
            raise ValueError(
                f"{path}: this looks like a label/mask volume, not an image; read the image file "
                f"and pass the mask with mask_path= (CAMUS _gt files are found automatically)"
            )
        return "camus" if CAMUS_NAME.match(path.name) else "nifti"
    if path.is_file() and is_dicom_file(path):
        return "dicom"
    raise ValueError(
        f"{path}: cannot tell the format from the file; pass one of {', '.join(FORMATS)} explicitly"
    )


def guess_folder_format(folder: str | os.PathLike, *, max_files: int = 5000) -> tuple[str, str]:
    """The one format of the clips in ``folder`` (for ``echokdm manifest`` without ``--format``), and how it
    was told.

    The EchoNet-Dynamic layout (``FileList.csv`` beside ``Videos/``) is ``"echonet"``; otherwise the files
    (at most ``max_files``, hidden ones left out) are recognised one by one with :func:`guess_format` (CAMUS
    masks and files of no known format do not count).

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a folder.
    ValueError
        No echo file was found, or files of several formats (the message counts them and asks for
        ``--format``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if (folder / "FileList.csv").is_file() and (folder / "Videos").is_dir():
        return "echonet", "FileList.csv and Videos/: the EchoNet-Dynamic layout"
    counts: dict[str, int] = {}
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or seen >= max_files:
                continue
            seen += 1
            try:
                fmt = guess_format(Path(root) / name)
            except (ValueError, OSError):
                continue
            counts[fmt] = counts.get(fmt, 0) + 1
    found = ", ".join(f"{n} {fmt}" for fmt, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    if not counts:
        raise ValueError(f"{folder}: no DICOM, EchoNet, CAMUS, NIfTI or video file found ({seen} file(s) looked at)")
    if len(counts) > 1:
        raise ValueError(f"{folder}: files of several formats ({found}); choose one with --format")
    fmt = next(iter(counts))
    return fmt, f"{found} file(s)"


def read_cine(path: str | os.PathLike, format: str | None = None, **kwargs: Any) -> Cine:
    """Read any supported echo file into a :class:`Cine`.

    Parameters
    ----------
    path : str or os.PathLike
        The file: a DICOM file, a video, a NIfTI volume, or an EchoNet ``Videos/*.avi``.
    format : str, optional
        One of :data:`FORMATS`; guessed with :func:`guess_format` when omitted.
    **kwargs
        Passed to the format's reader (e.g. ``crop_to_fan=True`` for DICOM, ``mask_path`` for NIfTI).

    Examples
    --------
    >>> import pydicom.examples
    >>> cine = read_cine(pydicom.examples.get_path("ybr_color"))  # doctest: +SKIP
    >>> cine.frames.shape  # doctest: +SKIP
    (30, 240, 320)
    """
    path = Path(path)
    fmt = format or guess_format(path)
    if fmt == "dicom":
        from echokdm.io.dicom import read_dicom

        return read_dicom(path, **kwargs)
    if fmt == "video":
        from echokdm.io.video import read_video

        return read_video(path, **kwargs)
    if fmt == "echonet":
        from echokdm.io.echonet import read_echonet_clip

        return read_echonet_clip(path.parent.parent, path.name, **kwargs)
    if fmt == "camus":
        from echokdm.io.nifti import read_camus

        return read_camus(path, **kwargs)
    if fmt == "nifti":
        from echokdm.io.nifti import read_nifti

        return read_nifti(path, **kwargs)
    raise ValueError(f"{path}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
