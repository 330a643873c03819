"""Output folders of the echokdm notebooks: one per notebook and kind of run, replaced on a rerun,
never a folder the user made.

A notebook calls :func:`output_folder` right after its parameters. By default it writes to
``notebook_outputs/<notebook>-quick`` (``QUICK = True``) or ``notebook_outputs/<notebook>-full``,
relative to the working directory (next to the notebook in Jupyter), so a quick run never mixes
with (or deletes) a full run's outputs. The folder is marked as the notebook's with a small JSON
file (:data:`MARKER`); running the notebook again empties its own marked folder and starts afresh.
A folder without that mark, or marked by another notebook, is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

__all__ = ["MARKER", "OUTPUTS", "output_folder"]

#: File that marks a folder as a notebook's own output folder.
MARKER = ".echokdm-notebook.json"
#: Folder (relative to the working directory) that holds the default output folders.
OUTPUTS = "notebook_outputs"


def _owner(folder: Path) -> str | None:
    """The notebook named by ``folder``'s marker, or None when the folder has no valid marker."""
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    notebook = record.get("notebook") if isinstance(record, dict) else None
    return notebook if isinstance(notebook, str) else None


def _empty(folder: Path) -> None:
    """Delete everything in ``folder`` but its marker (links are removed, never followed)."""
    for child in folder.iterdir():
        if child.name == MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def output_folder(notebook: str, *, quick: bool, out: str | os.PathLike | None = None) -> Path:
    """The empty folder notebook ``notebook`` writes into, marked as its own.

    Parameters
    ----------
    notebook : str
        The notebook's file stem, e.g. ``"01_quickstart"``.
    quick : bool
        The notebook's ``QUICK`` parameter: chooses ``<notebook>-quick`` or ``<notebook>-full``.
    out : str or os.PathLike, optional
        Another folder (the notebook's ``OUT`` parameter); None: ``notebook_outputs/<notebook>-quick``
        or ``-full`` in the working directory.

    Returns
    -------
    pathlib.Path
        The folder, existing and empty but for :data:`MARKER`: created when missing (or taken when
        empty), or emptied when an earlier run of the same notebook made it.

    Raises
    ------
    FileExistsError
        ``out`` is a file, or a non-empty folder that this notebook did not make (a folder of yours,
        or another notebook's); nothing in it is touched.

    Examples
    --------
    >>> OUT = output_folder("02_keypoints_and_ef", quick=True)  # doctest: +SKIP
    >>> OUT                                                       # doctest: +SKIP
    PosixPath('notebook_outputs/02_keypoints_and_ef-quick')
    """
    folder = Path(out) if out is not None else Path(OUTPUTS) / f"{notebook}-{'quick' if quick else 'full'}"
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder.resolve()}: is a file, not a folder; choose another OUT")
    if folder.is_dir() and any(folder.iterdir()):
        owner = _owner(folder)
        if owner is None:
            raise FileExistsError(f"{folder.resolve()}: exists and was not made by this notebook, so it is left as "
                                  "it is; choose another OUT (a new or empty folder), or OUT = None for the "
                                  "notebook's own")
        if owner != notebook:
            raise FileExistsError(f"{folder.resolve()}: holds the outputs of notebook {owner}, left as they are; "
                                  "choose another OUT, or OUT = None for this notebook's own")
        _empty(folder)  # an earlier run of this notebook: start afresh
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"notebook": notebook, "quick": bool(quick)}) + "\n")
    return folder
