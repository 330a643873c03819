"""Issue 17, item 1: a resume folder cannot run code. Parts are signed JSON, never pickles; a part that is
corrupt, foreign, edited or planted is recomputed, never trusted; nothing in the package unpickles."""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echokdm.cli.parallel import keypoints_table_parallel, map_clips, part_path
from echokdm.data.manifest import load_manifest
from echokdm.data.phantom.export import write_cohort

PACKAGE = Path(__file__).resolve().parents[2] / "echokdm"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Two short phantom patients (NIfTI with masks): the manifest path."""
    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, 2, "nifti", seed=3, fps=20.0, n_beats=1.0, progress=False)
    return out / "manifest.csv"


class _Planted:
    """Unpickling this creates ``path``: the proof that a loader ran code from a file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def _plant(parts: Path, row, sentinel: Path) -> list[Path]:
    """Pickles that would create ``sentinel`` when loaded, under the old (``.pkl``) and the new part name."""
    parts.mkdir(parents=True, exist_ok=True)
    new = part_path(parts, row)
    planted = [new.with_suffix(".pkl"), new]
    for path in planted:
        path.write_bytes(pickle.dumps({"settings": {}, "result": _Planted(sentinel)}))
    return planted


def _keypoints_cli(argv) -> int:
    from echokdm.cli import main

    return main(argv)


def test_the_planted_payload_does_run_code_when_unpickled(tmp_path):
    """The payload of the next test is armed: pickle.load (what resume used) runs it."""
    check = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Planted(check)))
    assert check.exists()


def test_planted_pickles_in_a_resume_folder_run_no_code_and_are_recomputed(cohort, tmp_path):
    from echokdm.metrics.lv_function import keypoints_table

    expected = keypoints_table(cohort, progress=False)
    sentinel = tmp_path / "code-ran"
    output = tmp_path / "out" / "kp.csv"
    output.parent.mkdir()
    rows = load_manifest(cohort)
    planted = [p for i in range(len(rows)) for p in _plant(output.with_name(f".{output.name}.parts"), rows.iloc[i],
                                                           sentinel)]
    assert len(planted) == 4 and all(p.exists() for p in planted)
    assert _keypoints_cli(["keypoints", str(cohort), "-o", str(output), "--no-progress"]) == 0  # the resume
    assert not sentinel.exists()
    got = pd.read_csv(output)
    want = expected.frames.copy()
    want.to_csv(tmp_path / "want.csv", index=False)
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "want.csv"))

    # the same through map_clips itself, both names planted, one and two workers
    for workers in (1, 2):
        parts = tmp_path / f"parts{workers}"
        for i in range(len(rows)):
            _plant(parts, rows.iloc[i], sentinel)
        done = map_clips(rows, _clip_id, parts, workers=workers, progress=False)
        assert done.reused == 0 and done.results == rows["clip_id"].tolist() and not sentinel.exists()


def _clip_id(rows):
    return str(rows.iloc[0]["clip_id"])


def _frame_result(rows):
    """A result of the kinds the commands return: tables of several dtypes, arrays, scalars, containers."""
    clip = str(rows.iloc[0]["clip_id"])
    table = pd.DataFrame({"clip_id": [clip, clip], "x": np.array([0.1, np.nan], np.float32), "n": [1, 2],
                          "ok": [True, False], "flags": ["", "a; b"], "any": [None, 1.5]})
    return {"table": table, "skipped": [(clip, "why")], "array": np.arange(6, dtype=">i4").reshape(2, 3),
            "scalar": np.float64(1 / 3), "big": 2**80, "inf": float("-inf"), "path": Path("/a/b"),
            "series": pd.Series([1.0, 2.0], index=["p", "q"], name="s")}


def _manifest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "d", "clip_id": [f"c{i}" for i in range(n)], "path": [f"/x/{i}" for i in range(n)]})


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True)
    elif isinstance(a, np.ndarray):
        assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=") and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b or (a != a and b != b)


def test_parts_give_back_exactly_what_was_computed(tmp_path):
    manifest = _manifest(2)
    first = map_clips(manifest, _frame_result, tmp_path / "parts", progress=False)
    again = map_clips(manifest, _frame_result, tmp_path / "parts", progress=False)
    assert again.reused == 2
    for a, b in zip(first.results, again.results, strict=True):
        _assert_same(a, b)
    text = part_path(tmp_path / "parts", manifest.iloc[0]).read_bytes()
    assert text.startswith(b"echokdm-part 1 ") and b"\x80" not in text[:2]  # not a pickle
    json.loads(text.partition(b"\n")[2])  # JSON


def _counting(rows):
    """Returns the clip ID and leaves a mark per call, so a test sees which clips were computed."""
    marks = Path(rows.iloc[0]["path"]).parent
    (marks / f"computed-{rows.iloc[0]['clip_id']}").touch()
    return {"clip": str(rows.iloc[0]["clip_id"]), "value": np.arange(3.0)}


def _computed(folder: Path) -> list[str]:
    found = sorted(p.name.removeprefix("computed-") for p in folder.glob("computed-*"))
    for p in folder.glob("computed-*"):
        p.unlink()
    return found


@pytest.mark.parametrize("damage", ["edited", "truncated", "foreign", "other key", "unsigned json", "empty",
                                    "symlink"])
def test_a_damaged_or_foreign_part_is_recomputed_not_trusted(tmp_path, damage, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    manifest = pd.DataFrame({"dataset": "d", "clip_id": ["c0", "c1"], "path": [str(marks / "0"), str(marks / "1")]})
    parts = tmp_path / "parts"
    map_clips(manifest, _counting, parts, progress=False)
    assert _computed(marks) == ["c0", "c1"]
    target, other = part_path(parts, manifest.iloc[0]), part_path(parts, manifest.iloc[1])
    data = target.read_bytes()
    header, _, payload = data.partition(b"\n")
    if damage == "edited":  # the result changed, the signature kept
        target.write_bytes(header + b"\n" + payload.replace(b'"c0"', b'"cX"'))
    elif damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":  # another clip's (validly signed) part under this clip's name
        target.write_bytes(other.read_bytes())
    elif damage == "other key":  # written by another user: a valid signature with another key
        import hmac

        signature = hmac.new(b"someone else's key 0123456789abcdef", payload, hashlib.sha256).hexdigest().encode()
        target.write_bytes(b"echokdm-part 1 " + signature + b"\n" + payload)
    elif damage == "unsigned json":
        target.write_bytes(payload)
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "symlink":
        copy = tmp_path / "elsewhere.json"
        copy.write_bytes(data)
        target.unlink()
        target.symlink_to(copy)
    done = map_clips(manifest, _counting, parts, progress=False)
    assert _computed(marks) == ["c0"] and done.reused == 1
    assert [r["clip"] for r in done.results] == ["c0", "c1"]


def test_other_settings_or_a_result_that_is_not_data(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    manifest = pd.DataFrame({"dataset": "d", "clip_id": ["c0"], "path": [str(marks / "0")]})
    map_clips(manifest, _counting, tmp_path / "parts", settings={"a": 1}, progress=False)
    assert _computed(marks) == ["c0"]
    map_clips(manifest, _counting, tmp_path / "parts", settings={"a": 2}, progress=False)
    assert _computed(marks) == ["c0"]  # other settings: computed again
    map_clips(manifest, _counting, tmp_path / "parts", settings={"a": 2}, progress=False)
    assert _computed(marks) == []
    done = map_clips(manifest, _not_data, tmp_path / "other", progress=False)
    assert done.results == [None] and "cannot be kept as a part" in done.failed[0][1]
    assert not list((tmp_path / "other").iterdir())
    with pytest.raises(TypeError, match="cannot store"):
        map_clips(manifest, _counting, tmp_path / "parts", settings={"model": object()}, progress=False)


def _not_data(rows):
    return object()


def test_the_key_file_is_private(tmp_path, monkeypatch):
    import echokdm.distributed as parallel  # the parts (and their key) live in the engine since issue 23

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(parallel, "_KEY", None)
    key = parallel._parts_key()
    path = tmp_path / "cache" / "echokdm" / "parts.key"
    assert path.read_bytes() == key and len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setattr(parallel, "_KEY", None)
    assert parallel._parts_key() == key  # the same key next time
    path.chmod(0o644)  # readable by others: not trusted, a key for this process only
    monkeypatch.setattr(parallel, "_KEY", None)
    assert parallel._parts_key() != key


def test_keypoints_parts_resume_exactly(cohort, tmp_path):
    first = keypoints_table_parallel(cohort, tmp_path / "parts", progress=False)
    again = keypoints_table_parallel(cohort, tmp_path / "parts", progress=False)
    pd.testing.assert_frame_equal(first.frames, again.frames, check_exact=True)
    pd.testing.assert_frame_equal(first.clips, again.clips, check_exact=True)
    assert first.skipped == again.skipped


# --------------------------------------------------------------------------------------------
# no loader in the package can run code from a file
# --------------------------------------------------------------------------------------------


def _is(node: ast.AST, *dotted: str) -> bool:
    """Whether ``node`` is the name / attribute chain of one of ``dotted`` (e.g. ``"pickle.load"``)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts)) in dotted


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _unsafe_loads(source: str) -> list[str]:
    """Each call in ``source`` that can run code from a file: pickle / dill / joblib / cloudpickle
    loaders, ``pandas.read_pickle``, ``numpy.load(allow_pickle=True)``, ``torch.load`` without
    ``weights_only=True``; an import of ``load``/``loads``/``Unpickler`` from a pickle module."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle",
                                                                "joblib", "marshal", "shelve"):
            for alias in node.names:
                if alias.name in ("load", "loads", "Unpickler", "open"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = ast.unparse(func)
        if _is(func, *(f"{m}.{f}" for m in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib",
                                            "marshal") for f in ("load", "loads", "Unpickler")), "shelve.open",
               "pd.read_pickle", "pandas.read_pickle", "read_pickle"):
            found.append(f"line {node.lineno}: {name}")
        allow = _keyword(node, "allow_pickle")
        if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
            found.append(f"line {node.lineno}: {name}(allow_pickle={ast.unparse(allow)})")
        if _is(func, "torch.load"):
            weights = _keyword(node, "weights_only")
            if not (isinstance(weights, ast.Constant) and weights.value is True):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
    return found


def test_the_scan_finds_each_unsafe_loader():
    bad = """
import pickle, torch, numpy as np, pandas as pd
from pickle import loads
pickle.load(f)
pickle.loads(b)
np.load(p, allow_pickle=True)
torch.load(p)
torch.load(p, weights_only=False)
pd.read_pickle(p)
"""
    assert len(_unsafe_loads(bad)) == 7
    good = "import numpy as np, torch\nnp.load(p, allow_pickle=False)\nnp.load(p)\ntorch.load(p, weights_only=True)\n"
    assert _unsafe_loads(good) == []


def test_no_file_in_the_package_unpickles():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    problems = [f"{path.relative_to(PACKAGE.parent)}: {line}" for path in files
                for line in _unsafe_loads(path.read_text(encoding="utf-8"))]
    assert problems == []
    text = "\n".join(path.read_text(encoding="utf-8") for path in files)
    assert "allow_pickle=True" not in text.replace(" ", "")
