"""Lazy package exports: public names resolved from submodules on first use, so importing a
package of echokdm stays cheap (no torch, MONAI or scikit-image until something needs them)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, names: Mapping[str, str], namespace: dict) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``names`` map to submodules.

    Use in a package's ``__init__``: ``__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())``.
    """

    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
