"""Atomic file output: write to a temporary name in the same folder, rename when complete.

Nothing a user has written is replaced unless ``overwrite`` is true, and a crash never leaves a
half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary name keeps the extension (ffmpeg picks the container from it) and starts
    with a dot. It is removed if the body raises. Used by the video, EchoNet, manifest and
    preview writers.

    Raises
    ------
    FileExistsError
        ``path`` exists (checked before and after the body) and ``overwrite`` is false.
    NotADirectoryError
        Something that is not a folder stands where the folder of ``path`` should be (a
        missing folder is created).
    """
    path = Path(path)
    _check_writable(path, overwrite)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        _check_writable(path, overwrite)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_writable(path: Path, overwrite: bool) -> None:
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"{path.parent}: is not a folder (writing {path.name})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, cannot write a file there")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it")
