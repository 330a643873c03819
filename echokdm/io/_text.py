"""Text files from users (manifests, FileList.csv, clinical tables) must be UTF-8; say where they are not.

pandas reports a bad byte as "can't decode byte 0xe9 in position 4" (a position inside its read
buffer), which names neither the file nor the line. :func:`check_utf8` finds the first bad byte
and raises a :class:`~echokdm.errors.ReadError` naming the file, line and column, the byte and
what it would be in Windows-1252 (the usual culprit: a table saved by a spreadsheet program),
and how to fix it.
"""

from __future__ import annotations

import os
from pathlib import Path

from echokdm.errors import ReadError

__all__ = ["check_utf8"]


def check_utf8(path: str | os.PathLike) -> None:
    """Raise :class:`~echokdm.errors.ReadError` when ``path`` is not valid UTF-8 text.

    A UTF-8 byte-order mark is accepted. Files that do not exist are left to the caller.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_bytes(b"a,b\\nJos\\xe9,1\\n")
    >>> try:
    ...     check_utf8(p)
    ... except Exception as e:
    ...     print(str(e).split(": ", 1)[1][:44])
    line 2, column 4: byte 0xe9 is not UTF-8 tex
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        byte = data[start]
        guess = bytes([byte]).decode("cp1252", errors="replace")
        hint = f" (in Windows-1252/latin-1 it would be {guess!r})" if guess != "\ufffd" and guess.isprintable() else ""
        raise ReadError(
            path,
            f"line {line}, column {column}: byte 0x{byte:02x} is not UTF-8 text{hint}; "
            "re-save the file as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet program, or "
            f"iconv -f latin1 -t utf-8 {path.name} > fixed.csv)",
        ) from None
