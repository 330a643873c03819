"""Atomic file output: write to a temporary name in the same folder, rename when complete.

Every writer of echokdm goes through :func:`atomic_output` (or its two shortcuts
:func:`atomic_write_text` and :func:`atomic_write_bytes`): nothing a user has written is replaced
unless ``overwrite`` is true, and a crash never leaves a half-written file under the final name.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_output(folder / "x.npz", overwrite=False) as tmp, open(tmp, "wb") as fh:
...     np.savez_compressed(fh, x=np.arange(3))
>>> atomic_write_text(folder / "note.txt", "done\\n", overwrite=False).read_text()
'done\\n'
>>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
['note.txt', 'x.npz']
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_output", "atomic_write_bytes", "atomic_write_text", "prepare_run_folder"]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    The temporary file is created empty and exclusively (:func:`tempfile.mkstemp`, then given the
    mode a new file gets under the umask), named ``.<stem>.<random>.tmp<suffix>``: it starts with
    a dot and keeps the extension, for libraries that pick the format from it (ffmpeg, nibabel,
    matplotlib). Write to it by name or open it. It is removed if the body raises; the rename
    (:func:`os.replace`) is atomic within the folder. No ``fsync``: a crash of the machine, not of
    the process, may leave the old file or an empty one.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. A missing folder is created.
    overwrite : bool
        Replace an existing ``path``; otherwise refuse (checked before and after the body, so a
        file another process wrote meanwhile is not replaced either).
    suffix : str, optional
        Extension of the temporary name; default ``path``'s last suffix (give ``".nii.gz"`` where
        a library needs a double one).

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.
    IsADirectoryError
        ``path`` is a folder.
    NotADirectoryError
        Something that is not a folder stands where the folder of ``path`` should be.
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    _check_writable(path, overwrite)
    stem = path.name[: len(path.name) - len(suffix)] if suffix and path.name.endswith(suffix) else path.stem
    handle, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: give the mode of every other output
        yield tmp
        _check_writable(path, overwrite)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_output`; return ``path`` as a :class:`~pathlib.Path`."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output`; return ``path`` as a :class:`~pathlib.Path`."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _check_writable(path: Path, overwrite: bool) -> None:
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f"{path.parent}: is not a folder (writing {path.name})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, cannot write a file there")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it")


def prepare_run_folder(out: str | os.PathLike, record_name: str, record: dict[str, Any], *, overwrite: bool,
                       kind: str, what: str, differs: str, derived: tuple[str, ...]) -> None:
    """Create a resumable run folder ``out`` or check that the run in it used the same ``record``.

    ``out/record_name`` holds the record (JSON) of the run that made the folder. The same record:
    the run resumes (its ``derived`` sub-folders are kept). Another record: a ValueError naming the
    keys that differ ("``out``: holds ``what`` with ``differs`` (keys)"), unless ``overwrite``, which
    discards the ``derived`` sub-folders. A non-empty folder without a record: a FileExistsError
    ("not an echokdm ``kind`` folder") unless ``overwrite``. Then the ``derived`` sub-folders are
    created and the record written atomically.
    """
    out = Path(out)
    saved = out / record_name
    if saved.exists():
        previous = json.loads(saved.read_text())
        changed = sorted(k for k in set(previous) | set(record) if previous.get(k) != record.get(k))
        if changed and not overwrite:
            raise ValueError(f"{out}: holds {what} with {differs} ({', '.join(changed)}); use another --out, or "
                             "--overwrite to discard it")
        if changed:
            for name in derived:
                shutil.rmtree(out / name, ignore_errors=True)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: exists and is not an echokdm {kind} folder; choose another --out")
    for name in derived:
        (out / name).mkdir(parents=True, exist_ok=True)
    with atomic_output(saved, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
