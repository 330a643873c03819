"""Issue 19, "One house": rules of the package layout that a review would otherwise have to re-check.

* no function (or method) longer than :data:`MAX_FUNCTION_LINES` lines: split it into named steps;
* no module imports another module's private name (``from echokdm.x import _helper`` or
  ``x._helper`` through an imported module): a helper two modules share is public, documented and,
  where the module has ``__all__``, listed there;
* ``ruff check`` passes on the repository (the rules are in pyproject.toml's ``[tool.ruff]``).

That nothing in the package unpickles (``pickle``, ``np.load(allow_pickle=True)``, ``torch.load``
without ``weights_only=True``) is kept by ``tests/reliability/test_parallel_security.py``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "echokdm"
MAX_FUNCTION_LINES = 100


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    """``(dotted module name, path, syntax tree)`` of every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_package_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package of echokdm (not a function or class in one)."""
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads (resolves ``from . import x`` and ``from ..y import z``)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``"path:line name (N lines)"`` for each function of the package longer than ``limit`` lines."""
    found = []
    for _, path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def private_imports() -> list[str]:
    """``"path:line module <- other._name"`` for each use of another echokdm module's private name.

    Two forms: ``from echokdm.other import _name`` (absolute or relative), and ``alias._name`` where
    ``alias`` is an imported echokdm module.
    """
    found = []
    for module, path, tree in _modules():
        where = path.relative_to(ROOT)
        aliases: dict[str, str] = {}  # local name -> echokdm module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(module, path, node)
                if source.split(".")[0] != "echokdm":
                    continue
                for alias in node.names:
                    if _is_package_module(f"{source}.{alias.name}"):
                        aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                    elif _is_private(alias.name) and source != module:
                        found.append(f"{where}:{node.lineno} {module} <- {source}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "echokdm" and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _is_private(node.attr) and aliases[node.value.id] != module):
                found.append(f"{where}:{node.lineno} {module} <- {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_function_is_longer_than_the_limit():
    offenders = long_functions()
    assert not offenders, (f"{len(offenders)} function(s) over {MAX_FUNCTION_LINES} lines; split each into "
                           "named steps:\n" + "\n".join(offenders))


def test_no_module_imports_another_modules_private_names():
    offenders = private_imports()
    assert not offenders, (f"{len(offenders)} import(s) of another module's private name; make the helper public "
                           "(documented, in __all__) or move it where both belong:\n" + "\n".join(offenders))


def test_the_scans_find_what_they_look_for(tmp_path, monkeypatch):
    """The two scans are armed: a planted long function and planted private imports are reported."""
    package = tmp_path / "echokdm"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("def _helper():\n    pass\n\n\ndef own():\n    return _helper()\n")
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (package / "sub" / "b.py").write_text(
        "from echokdm.sub.a import _helper\n"
        "from .a import _helper as again\n"
        "from echokdm.sub import a\n"
        "import echokdm.sub.a as alias\n\n\n"
        f"def long():\n{body}\n\n\n"
        "def short():\n    return a._helper(), alias._helper(), a.own()\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert long_functions() == [f"{Path('echokdm/sub/b.py')}:7 long ({MAX_FUNCTION_LINES + 1} lines)"]
    found = private_imports()
    assert [line.split(" ", 1)[1] for line in found] == [
        "echokdm.sub.b <- echokdm.sub.a._helper",  # absolute
        "echokdm.sub.b <- echokdm.sub.a._helper",  # relative
        "echokdm.sub.b <- echokdm.sub.a._helper",  # attribute of `from echokdm.sub import a`
        "echokdm.sub.b <- echokdm.sub.a._helper",  # attribute of `import echokdm.sub.a as alias`
    ], found


def test_ruff_check_passes_on_the_repository():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"ruff check found problems:\n{result.stdout}{result.stderr}"
