"""echokdm.io.atomic: the one atomic writer (temporary sibling, rename when complete)."""

import os
import stat

import pytest

from echokdm.io.atomic import atomic_output, atomic_write_bytes, atomic_write_text


def test_writes_through_a_hidden_sibling_that_keeps_the_extension(tmp_path):
    target = tmp_path / "sub" / "clip.nii.gz"
    with atomic_output(target, overwrite=False, suffix=".nii.gz") as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".clip.") and tmp.name.endswith(".tmp.nii.gz")
        assert tmp.exists() and not target.exists()  # created empty, exclusively
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data" and [p.name for p in target.parent.iterdir()] == ["clip.nii.gz"]
    with atomic_output(tmp_path / "a.mp4", overwrite=False) as tmp:
        assert tmp.suffix == ".mp4"
        tmp.write_bytes(b"")


def test_the_mode_is_that_of_a_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.json", "{}", overwrite=False)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_failed_body_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_overwrite_and_refusals(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"1", overwrite=False)
    with pytest.raises(FileExistsError, match="a.bin"):
        atomic_write_bytes(target, b"2", overwrite=False)
    assert atomic_write_bytes(target, b"2", overwrite=True).read_bytes() == b"2"
    with pytest.raises(FileExistsError), atomic_output(tmp_path / "b.txt", overwrite=False) as tmp:
        (tmp_path / "b.txt").write_text("written meanwhile by someone else")
        tmp.write_text("mine")
    assert (tmp_path / "b.txt").read_text() == "written meanwhile by someone else"
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path, "x", overwrite=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        atomic_write_text(tmp_path / "file" / "x.txt", "x", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "file"]


def test_prepare_run_folder_resumes_refuses_and_overwrites(tmp_path):
    import json

    from echokdm.io.atomic import prepare_run_folder

    kw = {"kind": "demo", "what": "a demo run", "differs": "different settings", "derived": ("parts",)}
    out = tmp_path / "run"
    prepare_run_folder(out, "run.json", {"k": 1}, overwrite=False, **kw)
    assert json.loads((out / "run.json").read_text()) == {"k": 1} and (out / "parts").is_dir()
    (out / "parts" / "done").write_text("x")
    prepare_run_folder(out, "run.json", {"k": 1}, overwrite=False, **kw)  # same record: resumes, keeps parts
    assert (out / "parts" / "done").exists()
    with pytest.raises(ValueError, match=r"holds a demo run with different settings \(k, m\)"):
        prepare_run_folder(out, "run.json", {"k": 2, "m": 0}, overwrite=False, **kw)
    prepare_run_folder(out, "run.json", {"k": 2}, overwrite=True, **kw)  # discards the derived parts
    assert not (out / "parts" / "done").exists() and json.loads((out / "run.json").read_text()) == {"k": 2}
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an echokdm demo folder"):
        prepare_run_folder(other, "run.json", {"k": 1}, overwrite=False, **kw)
    assert (other / "mine.txt").read_text() == "keep"
