"""Pseudonymous patient identifiers: a salted hash, never the original ID.

Readers call :func:`pseudonymise` on whatever identifies a patient in the source (DICOM
PatientID, a CAMUS folder name, an EchoNet file name). The salt comes from the ``salt``
argument, else the ``ECHOKDM_ID_SALT`` environment variable, else a fixed public default.
With the default salt, anyone holding the original ID can recompute the pseudonym: set a secret
salt for data that leaves the hospital, and keep it to link results back.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["pseudonymise", "DEFAULT_SALT", "SALT_ENV"]

DEFAULT_SALT = "echokdm"
SALT_ENV = "ECHOKDM_ID_SALT"


def pseudonymise(identifier: str, salt: str | None = None, prefix: str = "P") -> str:
    """Return ``prefix`` + the first 12 hex digits of SHA-256(salt + ":" + identifier).

    Examples
    --------
    >>> pseudonymise("12345", salt="s") == pseudonymise("12345", salt="s")
    True
    >>> pseudonymise("12345", salt="s") != pseudonymise("12345", salt="t")
    True
    """
    if salt is None:
        salt = os.environ.get(SALT_ENV, DEFAULT_SALT)
    digest = hashlib.sha256(f"{salt}:{identifier}".encode()).hexdigest()
    return f"{prefix}{digest[:12]}"
