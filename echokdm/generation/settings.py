"""The sampling settings of every KDM generation entry point, declared once.

:class:`SamplingSettings` holds how a :class:`~echokdm.pipelines.KDMPipeline` samples: the flow
mode, the F2I start step ``k``, the DDIM steps, the seed, the batch size and whether K2F's flows are
fitted to the keypoints. :func:`~echokdm.generation.generate_loop`,
:func:`~echokdm.generation.generate_ef_loop`, :func:`~echokdm.generation.synthesize_cohort`,
:func:`~echokdm.generation.generate_keypoint_edit`, :class:`~echokdm.evaluation.EvaluateConfig`,
the demo and the ``echokdm`` commands all take one (``sampling=``), so the defaults below are the
only ones. The frame rate is not a sampling setting (it is the motion's); its default is
:data:`DEFAULT_FPS`.

Examples
--------
>>> from echokdm.generation import SamplingSettings
>>> fast = SamplingSettings()
>>> fast.num_inference_steps, fast.k, fast.keyframes, fast.detail
(25, 3, 8, True)
>>> paper = SamplingSettings.paper(seed=2)
>>> paper.num_inference_steps, paper.k, paper.keyframes, paper.detail, paper.seed
(200, 100, None, False, 2)
>>> SamplingSettings(num_inference_steps=3, k=5)
Traceback (most recent call last):
...
ValueError: k (--k) must be at most num_inference_steps (--steps) = 3, got 5
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_FPS",
    "DEPRECATED_KEYWORDS",
    "MODES",
    "INTERPOLATIONS",
    "SamplingSettings",
    "apply_deprecated_fields",
    "sampling_from_keywords",
    "with_deprecated_fields",
]

#: Frame rate (frames per second) of a generated loop when neither the caller nor the motion's clip gives one.
DEFAULT_FPS = 50.0
#: Flow modes of :class:`~echokdm.pipelines.KDMPipeline`: one K2F flow scaled by γ per frame (appendix B), or
#: one K2F flow per frame.
MODES = ("gamma", "per_frame")
#: How the shown warp samples the source frame (:attr:`SamplingSettings.interpolation`).
INTERPOLATIONS = ("bilinear", "bicubic")


def _whole(value: Any, name: str, minimum: int) -> int:
    """``int(value)``, or a ValueError naming ``name`` unless an integer ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How a KDM pipeline samples a loop; validated on construction.

    Parameters
    ----------
    mode : {"gamma", "per_frame"}
        ``"gamma"``: one K2F flow, scaled by γ per frame (the paper's appendix B; a whole beat from
        one flow); ``"per_frame"``: one K2F flow per target frame.
    k : int
        F2I start step (appendix C): F2I starts from the warped source noised to step ``k`` of
        ``num_inference_steps``; 0 returns the warp. ``0 <= k <= num_inference_steps``.
    num_inference_steps : int
        DDIM steps, >= 1.
    seed : int
        Non-negative; seeds the CPU generator of all noise: the same seed gives the same frames
        on one device.
    batch_size : int
        Frames per network call, >= 1 (memory, not the result).
    fit_keypoints : bool
        True: K2F's flow is corrected near the keypoints so that it carries each target keypoint
        onto its source keypoint (``KDMPipeline(..., fit_keypoints=True)``); echo motions larger
        than K2F saw in training come out short without it. False: the paper's KDM.
    detail : bool
        True: the warp-residual detail path (``KDMPipeline(..., detail=True)``): each frame is the
        source warped by its flow plus F2I's edit, at the source's own resolution, so the source's
        speckle survives the 112-px autoencoder. False: the paper's KDM (the decoded F2I latent).
    keyframes : int or None
        F2I on this many evenly spaced frames only, its edit interpolated in time for the others
        (``KDMPipeline(..., keyframes=...)``, >= 2); None: F2I on every frame (the paper).
    interpolation : {"bilinear", "bicubic"}
        How the shown warp samples the source frame (``KDMPipeline(..., interpolation=...)``): the
        frames at ``k = 0``, the detail path's warp, the keyframes' in-between warps, and the
        full-resolution warp of a source larger than the pipeline. ``"bilinear"`` (the paper's)
        blurs fine speckle by its sub-pixel shifts; ``"bicubic"`` keeps it sharper.
    fit_region : bool
        True: near the target keypoints K2F's flow is replaced by the thin-plate spline through them
        (``KDMPipeline(..., fit_region=True)``), so the wall around the contour moves with its
        keypoints; False (the default, the paper's and :meth:`paper`'s): K2F's flow everywhere.
        Measured by ``python benchmarks/fit_region.py``: on the held-out realistic phantom new-EF
        loops land within 5 points of their target 62 % → 94 % of the time and own beats' EF 18 → 11
        points short from exact keypoints, but on pydicom's real cine the EF control lands worse
        with it (4 new-EF loops within 5 points 75 % → 50 %) and the own beat's scores barely change,
        so it stays opt-in (README, "Generating loops").

    Raises
    ------
    ValueError
        A setting out of range; the message names it (and its ``echokdm`` option).

    Notes
    -----
    ``dataclasses.asdict(settings)`` gives the record written to ``generate.json``,
    ``settings.json`` and ``evaluate.json``; :meth:`replace` changes some settings.

    The defaults are the fast sampler measured best on the real cine and on both phantom styles
    (``python benchmarks/f2i.py``): 25 DDIM steps, F2I from k = 3 on 8 keyframes, with the detail
    path; a 32-frame 112² loop takes about 1 s on a 2-core CPU, 16× faster than the paper's sampler,
    and scores better on every set. :meth:`paper` gives the paper's sampler (200 steps, k = 100,
    every frame, no detail path, K2F's flow everywhere); ``--paper-sampler`` on the command line.
    """

    mode: str = "gamma"
    k: int = 3
    num_inference_steps: int = 25
    seed: int = 0
    batch_size: int = 16
    fit_keypoints: bool = True
    detail: bool = True
    keyframes: int | None = 8
    interpolation: str = "bilinear"
    fit_region: bool = False

    def __post_init__(self) -> None:
        steps = _whole(self.num_inference_steps, "num_inference_steps (--steps)", 1)
        k = _whole(self.k, "k (--k)", 0)
        if k > steps:
            raise ValueError(f"k (--k) must be at most num_inference_steps (--steps) = {steps}, got {k}")
        batch_size = _whole(self.batch_size, "batch_size (--batch-size)", 1)
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'gamma' or 'per_frame', got {self.mode!r}")
        if isinstance(self.seed, (bool, np.bool_)) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed (--seed) must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.fit_keypoints, (bool, np.bool_)):
            raise ValueError(f"fit_keypoints must be True or False, got {self.fit_keypoints!r}")
        if not isinstance(self.fit_region, (bool, np.bool_)):
            raise ValueError("fit_region (--fit-region/--no-fit-region) must be True or False, "
                             f"got {self.fit_region!r}")
        object.__setattr__(self, "fit_region", bool(self.fit_region))
        if not isinstance(self.detail, (bool, np.bool_)):
            raise ValueError(f"detail (--detail/--no-detail) must be True or False, got {self.detail!r}")
        if self.keyframes is not None:
            object.__setattr__(self, "keyframes", _whole(self.keyframes, "keyframes (--keyframes)", 2))
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation (--interpolation) must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        object.__setattr__(self, "detail", bool(self.detail))
        for name, value in (("num_inference_steps", steps), ("k", k), ("batch_size", batch_size),
                            ("seed", int(self.seed)), ("fit_keypoints", bool(self.fit_keypoints))):
            object.__setattr__(self, name, value)  # plain Python values (numpy integers become int)

    @classmethod
    def paper(cls, **changes: Any) -> SamplingSettings:
        """The paper's F2I sampler: 200 DDIM steps, F2I from k = 100 on every frame, the decoded
        F2I latent (no detail path), K2F's flow everywhere (no ``fit_region``); ``changes`` set the
        rest (e.g. ``mode``, ``seed``)."""
        return cls(**{"num_inference_steps": 200, "k": 100, "detail": False, "keyframes": None,
                      "interpolation": "bilinear", "fit_region": False, **changes})

    def replace(self, **changes: Any) -> SamplingSettings:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keywords of :meth:`KDMPipeline.__call__ <echokdm.pipelines.KDMPipeline.__call__>` (all but the
        seed, which seeds the ``generator``)."""
        return {"mode": self.mode, "k": self.k, "num_inference_steps": self.num_inference_steps,
                "batch_size": self.batch_size, "fit_keypoints": self.fit_keypoints, "detail": self.detail,
                "keyframes": self.keyframes, "interpolation": self.interpolation, "fit_region": self.fit_region}


#: The keyword parameters :class:`SamplingSettings` replaced (accepted, with a FutureWarning, for one release).
DEPRECATED_KEYWORDS = ("mode", "k", "num_inference_steps", "seed", "batch_size", "fit_keypoints")


def sampling_from_keywords(sampling: SamplingSettings | None, keywords: dict[str, Any], where: str,
                           default: SamplingSettings | None = None) -> SamplingSettings:
    """The settings of a call: ``sampling``, else the deprecated keywords over ``default``.

    ``keywords`` are what the caller passed beyond the function's own parameters: the old
    separate settings (``mode=``, ``k=``, ``num_inference_steps=``, ``seed=``, ``batch_size=``,
    ``fit_keypoints=``) are mapped onto the settings with a :class:`FutureWarning` (they go in the
    next release); any other name is a ``TypeError``, as Python gives for an unknown keyword.

    Raises
    ------
    TypeError
        An unknown keyword, or old keywords together with ``sampling``.
    """
    unknown = sorted(set(keywords) - set(DEPRECATED_KEYWORDS))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")
    if not keywords:
        return sampling if sampling is not None else (default or SamplingSettings())
    if sampling is not None:
        raise TypeError(f"{where}(): pass the sampling settings as sampling=SamplingSettings(...) only, not also as "
                        f"{', '.join(sorted(keywords))}=")
    _warn_deprecated(keywords, where, stacklevel=4)
    return (default or SamplingSettings()).replace(**keywords)


def _warn_deprecated(keywords: dict[str, Any], where: str, stacklevel: int,
                     base: str = "SamplingSettings") -> None:
    names = ", ".join(keywords)
    given = ", ".join(f"{name}={value!r}" for name, value in keywords.items())
    settings = f"{base}({given})" if base == "SamplingSettings" else f"{base}.replace({given})"
    warnings.warn(f"{where}: {names} as separate keyword(s) are deprecated and go in the next release; pass "
                  f"sampling={settings} (echokdm.generation.SamplingSettings)", FutureWarning, stacklevel=stacklevel)


def with_deprecated_fields(cls: type) -> type:
    """Class decorator (above ``@dataclasses.dataclass``) for a settings dataclass with a ``sampling``
    field whose old separate sampling fields are ``InitVar`` s defaulting to ``None``: reading one
    (``config.k``) gives ``config.sampling.k`` with a FutureWarning; setting one is an error."""
    for name in DEPRECATED_KEYWORDS:
        if name in cls.__dataclass_fields__:

            def read(self, name=name):
                where = type(self).__name__
                warnings.warn(f"{where}.{name} is deprecated and goes in the next release; read "
                              f"{where}.sampling.{name}", FutureWarning, stacklevel=2)
                return getattr(self.sampling, name)

            setattr(cls, name, property(read, doc=f"Deprecated: ``sampling.{name}``."))
    return cls


def apply_deprecated_fields(sampling: SamplingSettings, fields: dict[str, Any], where: str,
                            base: str = "SamplingSettings") -> SamplingSettings:
    """``sampling`` with the old separate fields that were given (not ``None``) put in, with a FutureWarning
    that suggests ``sampling=<base>.replace(...)`` (for a settings dataclass whose ``__post_init__``
    receives them as ``InitVar`` s and whose default sampling is ``base()``)."""
    given = {name: value for name, value in fields.items() if value is not None}
    if not given:
        return sampling
    _warn_deprecated(given, where, stacklevel=5, base=base)
    return sampling.replace(**given)
