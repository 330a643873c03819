"""Notebook reruns just work (issue 17, item 14).

Each notebook writes to its own folder, ``notebook_outputs/<notebook>-quick`` or ``-full``, marked as
its own (:func:`echokdm.notebook.output_folder`); a rerun empties that folder and starts afresh, while
a folder the user made (or another notebook's) is never touched.
"""

import json
import os
from pathlib import Path

import nbformat
import pytest

from echokdm.notebook import MARKER, output_folder

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_quick_and_full_runs_have_their_own_folders(in_tmp):
    quick = output_folder("02_keypoints_and_ef", quick=True)
    full = output_folder("02_keypoints_and_ef", quick=False)
    assert quick == Path("notebook_outputs/02_keypoints_and_ef-quick")
    assert full == Path("notebook_outputs/02_keypoints_and_ef-full")
    (full / "result.csv").write_text("full run")
    output_folder("02_keypoints_and_ef", quick=True)  # a quick rerun leaves the full run's outputs alone
    assert (full / "result.csv").read_text() == "full run"
    record = json.loads((quick / MARKER).read_text())
    assert record == {"notebook": "02_keypoints_and_ef", "quick": True}


def test_rerun_replaces_the_notebooks_own_outputs(in_tmp):
    out = output_folder("01_quickstart", quick=True)
    (out / "figures").mkdir()
    (out / "figures" / "old.png").write_bytes(b"png")
    (out / "loops").mkdir()
    (out / "loops" / "own_beat.mp4").write_bytes(b"mp4")
    (out / "old.csv").write_text("x")
    outside = in_tmp / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("user data")
    os.symlink(outside, out / "link")  # a link in the folder is removed, its target kept
    again = output_folder("01_quickstart", quick=True)
    assert again == out and sorted(p.name for p in out.iterdir()) == [MARKER]
    assert (outside / "keep.txt").read_text() == "user data"


def test_a_folder_the_user_made_is_never_touched(in_tmp):
    mine = in_tmp / "my_results"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not made by this notebook"):
        output_folder("02_keypoints_and_ef", quick=True, out=mine)
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    # also under notebook_outputs/: no mark, no deletion (e.g. outputs of an older echokdm)
    old = in_tmp / "notebook_outputs" / "02_keypoints_and_ef-quick"
    old.mkdir(parents=True)
    (old / "ef_clips.csv").write_text("old")
    with pytest.raises(FileExistsError, match="OUT"):
        output_folder("02_keypoints_and_ef", quick=True)
    assert (old / "ef_clips.csv").read_text() == "old"
    # a damaged or foreign marker does not count
    (old / MARKER).write_text("not json")
    with pytest.raises(FileExistsError):
        output_folder("02_keypoints_and_ef", quick=True)
    assert (old / "ef_clips.csv").exists()


def test_another_notebooks_folder_and_a_file_are_refused(in_tmp):
    theirs = output_folder("04_synthetic_cohort", quick=True)
    (theirs / "cohort.csv").write_text("04")
    with pytest.raises(FileExistsError, match="04_synthetic_cohort"):
        output_folder("01_quickstart", quick=True, out=theirs)
    assert (theirs / "cohort.csv").read_text() == "04"
    (in_tmp / "a_file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        output_folder("01_quickstart", quick=True, out=in_tmp / "a_file")


def test_an_empty_folder_of_yours_is_used_and_marked(in_tmp):
    empty = in_tmp / "new_results"
    empty.mkdir()
    assert output_folder("03_train_and_evaluate", quick=False, out=empty) == empty
    (empty / "table3.md").write_text("old")
    output_folder("03_train_and_evaluate", quick=False, out=empty)  # now the notebook's own: a rerun replaces it
    assert not (empty / "table3.md").exists()


@pytest.mark.slow
def test_notebook_02_runs_twice_in_a_row(tmp_path):
    """The fastest notebook, executed twice in quick mode in the same folder: the second run succeeds and
    replaces the first run's outputs."""
    from nbclient import NotebookClient

    def run():
        nb = nbformat.read(NOTEBOOKS / "02_keypoints_and_ef.ipynb", as_version=4)
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        params.source += "\nQUICK = True"
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]

    out = tmp_path / "notebook_outputs" / "02_keypoints_and_ef-quick"
    assert run() == []
    first = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / "stale_from_first_run.txt").write_text("x")
    assert run() == []  # used to fail: FileExistsError ... set OVERWRITE = True
    assert not (out / "stale_from_first_run.txt").exists()
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == first
    assert (out / "ef_clips.csv").stat().st_size > 0
