"""Build the notebooks (``0*.ipynb``) from their plain-text sources (``0*.py``, jupytext percent format).

    python notebooks/build.py            # rewrite notebooks/0*.ipynb from notebooks/0*.py
    python notebooks/build.py --check    # exit 1 if a stored notebook differs from its source

Beyond jupytext's conversion, a build is reproducible: fixed cell ids (``<number>-<index>``), no outputs, and
only the kernel and language in the notebook metadata (no jupytext version), so it changes nothing unless a
source changed. ``tests/test_notebooks.py`` builds and runs the notebooks with :func:`build`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
STEMS = tuple(sorted(path.stem for path in HERE.glob("[0-9][0-9]_*.py")))


def build(stem: str) -> nbformat.NotebookNode:
    """The notebook ``stem`` built from ``notebooks/<stem>.py``, validated against the nbformat schema."""
    nb = jupytext.read(HERE / f"{stem}.py")
    nb.metadata = nbformat.from_dict({"kernelspec": nb.metadata["kernelspec"], "language_info": {"name": "python"}})
    for index, cell in enumerate(nb.cells):
        cell.id = f"{stem[:2]}-{index:02d}"
    nbformat.validate(nb)
    return nb


def notebook_text(nb: nbformat.NotebookNode) -> str:
    """The ``.ipynb`` file of ``nb`` as ``jupytext.write`` stores it (JSON and a final newline)."""
    return jupytext.writes(nb, fmt="ipynb") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the stored notebooks are up to date")
    args = parser.parse_args(argv)
    stale = []
    for stem in STEMS:
        path, text = HERE / f"{stem}.ipynb", notebook_text(build(stem))
        if not args.check:
            path.write_text(text)
            print(f"wrote {path}")
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path))
    if stale:
        print(f"out of date (run python notebooks/{Path(__file__).name}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
