"""Lazy package exports: public names resolved from submodules on first use, so importing a
package of echokdm stays cheap (no torch, MONAI or scikit-image until something needs them);
and :func:`is_tensor`, which tells a torch tensor without importing torch."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports", "is_tensor"]


def is_tensor(x: Any) -> bool:
    """True for a torch tensor, without importing torch (a tensor implies torch is loaded).

    For functions that take numpy arrays or torch tensors and must not load torch for numpy input.
    """
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


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
