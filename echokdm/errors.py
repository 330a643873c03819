"""Exceptions and warnings shared by the whole package.

Every error about user input names the file, clip or key it concerns and what is wrong with it,
so a researcher reading a batch report can act on each line without opening a debugger.
"""

from __future__ import annotations

import os

__all__ = [
    "EchoKDMError",
    "ReadError",
    "MissingDecoderError",
    "ManifestError",
    "MissingDependencyError",
    "CheckpointError",
    "NothingProducedError",
    "EchoKDMWarning",
    "NonUltrasoundWarning",
    "TracingWarning",
]


class EchoKDMError(Exception):
    """Base class of every error raised on purpose by echokdm."""


class ReadError(EchoKDMError, ValueError):
    """A file exists but cannot be read as what it should be.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or folder) that could not be read.
    problem : str
        What is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingDecoderError(ReadError):
    """The file needs a decoder plugin that is not installed; the message says which package."""


class ManifestError(EchoKDMError, ValueError):
    """A manifest CSV is invalid; ``problems`` lists every problem, one line each."""

    def __init__(self, path: str | os.PathLike, problems: list[str]):
        self.path = os.fspath(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s) in manifest:\n{lines}")


class MissingDependencyError(EchoKDMError, ImportError):
    """An optional package that a feature needs is not installed; the message says what to install."""


class CheckpointError(EchoKDMError, FileNotFoundError):
    """A checkpoint argument is neither a folder of the right kind nor a packaged checkpoint name.

    Parameters
    ----------
    value : str or os.PathLike
        What the user gave (a folder or a packaged name).
    problem : str
        What is wrong with it, and what would work instead.
    """

    def __init__(self, value: str | os.PathLike, problem: str):
        self.value = os.fspath(value)
        self.problem = problem
        super().__init__(f"{self.value}: {problem}")

    def __str__(self) -> str:  # OSError would otherwise show its errno/filename form
        return f"{self.value}: {self.problem}"

    def __reduce__(self):  # picklable across worker processes despite the two-argument __init__
        return (type(self), (self.value, self.problem))


class NothingProducedError(EchoKDMError, RuntimeError):
    """A command finished but produced nothing useful (every item failed); the message says why.

    The command line exits non-zero with this one line instead of reporting an empty result.
    """


class EchoKDMWarning(UserWarning):
    """Base class of echokdm's warnings."""


class NonUltrasoundWarning(EchoKDMWarning):
    """A DICOM file whose modality is not US was read anyway."""


class NonCardiacWarning(EchoKDMWarning):
    """An ultrasound DICOM file whose header says it is not of the heart (another exam, or a linear
    or curved-array probe) was read: the LV models would draw a ventricle where there is none."""


class TracingWarning(EchoKDMWarning):
    """EchoNet tracings of a frame were odd (duplicated or unexpected row counts) and left out."""
