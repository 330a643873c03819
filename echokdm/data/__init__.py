"""Cine records, manifests and datasets built on :mod:`echokdm.io`."""

from echokdm.io.cine import Cine

__all__ = ["Cine"]
