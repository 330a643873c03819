"""A read-only output folder or a full disk: one line naming the path, before the work where it can be
known, and no half set of outputs (issue 17, item 10)."""

import errno
import os

import numpy as np
import pytest

from echokdm.cli import check_output_folder, main
from echokdm.io import write_video


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nobody may write to. chmod 0o555 where that holds; as root (who writes anyway) the
    permission check is simulated for that folder only."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root: simulate
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if os.path.abspath(path) == str(folder) and mode & os.W_OK:
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def clip(tmp_path):
    frames = np.random.default_rng(0).random((6, 20, 24)).astype(np.float32)
    return write_video(tmp_path / "x.mp4", frames, fps=10)


def test_a_read_only_output_folder_fails_before_any_work(read_only, clip, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the clip was read although the output folder is not writable")

    monkeypatch.setattr("echokdm.io.dispatch.read_cine", no_work)
    assert main(["preview", str(clip), "-o", str(read_only / "previews")]) == 1
    line = _error_line(capsys)
    assert line == f"echokdm preview: error: {read_only}: output folder is not writable"


def test_a_read_only_folder_is_checked_for_file_outputs_too(read_only, tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the manifest was processed although the output folder is not writable")

    monkeypatch.setattr("echokdm.cli.parallel.keypoints_table_parallel", no_work)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("x\n")
    assert main(["keypoints", str(manifest), "-o", str(read_only / "kp.csv"), "--no-progress"]) == 1
    assert f"{read_only}: output folder is not writable" in _error_line(capsys)


def test_a_file_where_the_output_folder_should_be(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match="taken"):
        check_output_folder(tmp_path / "taken" / "out")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"  # created later


def test_a_full_disk_is_one_line_and_preview_leaves_no_partial_outputs(clip, tmp_path, capsys, monkeypatch):
    """The MP4 fails after the PNGs were written: no PNG is left without its MP4."""

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("echokdm.io.video.write_video", full_disk)
    out = tmp_path / "previews"
    assert main(["preview", str(clip), "-o", str(out)]) == 1
    line = _error_line(capsys)
    assert line == f"echokdm preview: error: {out}: No space left on device"
    assert list(out.iterdir()) == [], "no PNG without its MP4, no temporary folder"


def test_preview_outputs_appear_together_and_keep_overwrite_rules(clip, tmp_path, capsys):
    out = tmp_path / "previews"
    assert main(["preview", str(clip), "-o", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["x.mp4", "x_first.png", "x_last.png", "x_middle.png"]
    before = (out / "x.mp4").stat().st_mtime_ns
    assert main(["preview", str(clip), "-o", str(out)]) == 1
    assert "pass --overwrite" in _error_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == names and (out / "x.mp4").stat().st_mtime_ns == before
    assert main(["preview", str(clip), "-o", str(out), "--overwrite"]) == 0


def test_an_os_error_with_a_file_name_names_that_file(tmp_path, capsys, monkeypatch):
    """Any OSError of a command (here a permission error on one file) is one line, not a traceback."""
    target = tmp_path / "out" / "segmentation.csv"

    def denied(args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))

    monkeypatch.setattr("echokdm.cli.segment.cmd_segment", denied)
    assert main(["segment", "M", "--checkpoint", "seg_phantom_112", "-o", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == f"echokdm segment: error: {target}: Permission denied"
