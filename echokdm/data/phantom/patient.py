"""Per-patient parameters of the phantom and the random draw of a patient.

All lengths are in millimetres, angles in degrees, echogenicities in dB relative to the
display's white level. Image coordinates in millimetres have their origin at the transducer
(the top of the sector), X to the image right and Y downwards (depth).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from echokdm.data.phantom.look import STYLES, RealisticLook, sample_look

__all__ = ["PhantomPatient", "sample_patient", "PATIENT_RANGES", "with_style"]

#: Ranges of the randomly drawn parameters: name -> (low, high). Names are
#: :class:`PhantomPatient` fields, plus ``lv_width_ratio`` (``lv_half_width_mm / lv_length_mm``).
#: ``sample_patient`` draws uniformly within them; then the LV length, width ratio and wall
#: thickness are adjusted as the EF falls below 50 % (larger, thinner-walled failing ventricles),
#: ``apex_lateral_mm`` is shifted against the tilt by a quarter of the base's sideways offset
#: (``-0.25 L sin(tilt)``, keeping the heart near the middle of the sector), and ``depth_mm`` is
#: raised where the heart would not fit.
PATIENT_RANGES: dict[str, tuple[float, float]] = {
    "heart_rate_bpm": (50.0, 110.0),
    "ef_percent": (20.0, 75.0),
    "longitudinal_share": (0.12, 0.22),
    "atrial_fraction": (0.15, 0.35),
    "lv_length_mm": (72.0, 95.0),
    "lv_width_ratio": (0.26, 0.32),
    "wall_thickness_mm": (8.0, 12.0),
    "tilt_deg": (-20.0, 20.0),
    "apex_depth_mm": (28.0, 42.0),
    "apex_lateral_mm": (0.0, 10.0),
    "rv_length_fraction": (0.70, 0.85),
    "rv_half_width_mm": (13.0, 19.0),
    "tricuspid_offset_mm": (4.0, 9.0),
    "la_length_mm": (40.0, 55.0),
    "la_half_width_mm": (17.0, 23.0),
    "ra_length_mm": (38.0, 52.0),
    "ra_half_width_mm": (16.0, 22.0),
    "sector_angle_deg": (60.0, 90.0),
    "depth_mm": (140.0, 170.0),
    "psf_axial_mm": (0.35, 0.6),
    "psf_lateral_mm": (0.5, 0.8),
    "psf_lateral_growth": (0.008, 0.014),
    "attenuation_residual_db_per_cm": (-1.0, 0.3),
    "dynamic_range_db": (48.0, 60.0),
    "gain_db": (-3.0, 3.0),
    "blood_db": (-55.0, -45.0),
    "myocardium_db": (-20.0, -14.0),
    "pericardium_db": (-7.0, -3.0),
    "tissue_db": (-32.0, -24.0),
    "texture_db": (2.0, 4.0),
}


@dataclasses.dataclass(frozen=True)
class PhantomPatient:
    """Anatomy, cardiac function and scanner settings of one synthetic patient.

    Attributes
    ----------
    patient_id : str
        Synthetic identifier (``sample_patient`` makes one from the seed).
    heart_rate_bpm, ef_percent : float
        Heart rate (beats/min) and ejection fraction (percent) of the LV volume curve.
    longitudinal_share : float
        Share of the volume change due to long-axis shortening: the long axis scales as
        ``(V/EDV) ** longitudinal_share`` and the width as ``(V/EDV) ** ((1 - share) / 2)``.
    atrial_fraction : float
        Share of diastolic filling from atrial contraction.
    lv_length_mm, lv_half_width_mm : float
        End-diastolic LV blood pool: long axis ``L`` (basal centre to apex) and half-width ``W``
        at the base of the bullet (a half ellipse closed by the mitral annulus plane).
    wall_thickness_mm : float
        LV wall (and septum) thickness at end-diastole.
    tilt_deg : float
        Long-axis tilt from vertical; positive moves the base to the image right.
    apex_depth_mm, apex_lateral_mm : float
        Position of the endocardial apex below and right of the transducer.
    rv_length_fraction, rv_half_width_mm, tricuspid_offset_mm : float
        Right ventricle (image left of the septum): length as a fraction of ``L``, half-width,
        and how much closer to the apex the tricuspid annulus is than the mitral one.
    la_length_mm, la_half_width_mm, ra_length_mm, ra_half_width_mm : float
        Atria below the annulus planes (ellipses).
    sector_angle_deg, depth_mm : float
        Opening angle and depth of the imaging sector.
    psf_axial_mm, psf_lateral_mm, psf_lateral_growth : float
        Gaussian point-spread function: axial sigma, lateral sigma at the transducer and its
        growth per millimetre of depth.
    attenuation_residual_db_per_cm : float
        Depth gain left after time-gain compensation (negative: darker with depth).
    dynamic_range_db, gain_db : float
        Log compression: ``gain_db`` maps to white, ``gain_db - dynamic_range_db`` to black.
    blood_db, myocardium_db, pericardium_db, tissue_db : float
        Echogenicity of blood, myocardium, pericardium and surrounding tissue.
    texture_db : float
        Standard deviation of the smooth echogenicity texture laid over all tissues.
    scatter_seed : int
        Seed of the scatterer field (positions, amplitudes, texture).
    look : RealisticLook or None
        The realistic style's look (:mod:`echokdm.data.phantom.look`); ``None`` for the classic
        phantom. With a look, its PSF, depth gain, dynamic range, gain and tissue levels replace
        the classic ones above, which stay as drawn (the anatomy and function are the same).
    """

    patient_id: str = "phantom"
    heart_rate_bpm: float = 70.0
    ef_percent: float = 60.0
    longitudinal_share: float = 0.17
    atrial_fraction: float = 0.25
    lv_length_mm: float = 85.0
    lv_half_width_mm: float = 24.0
    wall_thickness_mm: float = 10.0
    tilt_deg: float = 8.0
    apex_depth_mm: float = 34.0
    apex_lateral_mm: float = 3.0
    rv_length_fraction: float = 0.78
    rv_half_width_mm: float = 16.0
    tricuspid_offset_mm: float = 6.0
    la_length_mm: float = 48.0
    la_half_width_mm: float = 20.0
    ra_length_mm: float = 45.0
    ra_half_width_mm: float = 19.0
    sector_angle_deg: float = 75.0
    depth_mm: float = 160.0
    psf_axial_mm: float = 0.45
    psf_lateral_mm: float = 0.6
    psf_lateral_growth: float = 0.011
    attenuation_residual_db_per_cm: float = -0.4
    dynamic_range_db: float = 54.0
    gain_db: float = 0.0
    blood_db: float = -50.0
    myocardium_db: float = -17.0
    pericardium_db: float = -5.0
    tissue_db: float = -26.0
    texture_db: float = 3.0
    scatter_seed: int = 0
    look: RealisticLook | None = None

    @property
    def style(self) -> str:
        """``"realistic"`` with a look, else ``"classic"``."""
        return "classic" if self.look is None else "realistic"

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid PhantomPatient {self.patient_id!r}: " + "; ".join(problems))

    #: parameter -> (low, high) bounds checked on construction (inclusive)
    _BOUNDS = {
        "heart_rate_bpm": (30.0, 200.0), "ef_percent": (1.0, 90.0), "longitudinal_share": (0.0, 0.5),
        "atrial_fraction": (0.0, 0.6), "tilt_deg": (-45.0, 45.0), "sector_angle_deg": (20.0, 120.0),
        "rv_length_fraction": (0.05, 1.0), "psf_lateral_growth": (0.0, 0.1),
    }
    _POSITIVE = ("lv_length_mm", "lv_half_width_mm", "wall_thickness_mm", "apex_depth_mm", "rv_half_width_mm",
                 "la_length_mm", "la_half_width_mm", "ra_length_mm", "ra_half_width_mm", "depth_mm",
                 "psf_axial_mm", "psf_lateral_mm", "dynamic_range_db")

    def _problems(self) -> list[str]:
        """Every invalid parameter, one message each."""
        out = [f"{n} must be a positive number, got {getattr(self, n)}" for n in self._POSITIVE
               if not (math.isfinite(getattr(self, n)) and getattr(self, n) > 0)]
        out += [f"{n} must be within {lo:g}..{hi:g}, got {getattr(self, n)}" for n, (lo, hi) in self._BOUNDS.items()
                if not lo <= getattr(self, n) <= hi]
        if not self.lv_length_mm > 1.2 * self.lv_half_width_mm:
            out.append(f"lv_length_mm ({self.lv_length_mm}) must exceed 1.2 x lv_half_width_mm "
                       f"({self.lv_half_width_mm}) so that the apex is the point farthest from the basal centre")
        return out

    @property
    def edv_ml(self) -> float:
        """End-diastolic volume (mL) by Simpson's 20 discs of the ED bullet."""
        t = (np.arange(20) + 0.5) / 20
        discs = np.pi * self.lv_half_width_mm**2 * (1 - t**2) * self.lv_length_mm / 20
        return float(discs.sum() / 1000.0)

    def to_json(self) -> str:
        """The parameters as a JSON object (keys = attribute names)."""
        values = dataclasses.asdict(self)
        if values["look"] is None:
            del values["look"]  # classic patients keep the JSON they always had
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PhantomPatient:
        """Inverse of :meth:`to_json`; unknown keys are an error that names them."""
        values = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown PhantomPatient parameter(s): {', '.join(unknown)}")
        if values.get("look") is not None:
            values["look"] = RealisticLook.from_dict(values["look"])
        return cls(**values)


def _generator(seed: int | np.random.Generator, patient_index: int) -> tuple[np.random.Generator, str]:
    """The patient's own random stream and identifier, from an int seed or a Generator."""
    if isinstance(seed, np.random.Generator):
        entropy = int(seed.integers(2**62))
        label = f"phantom-r{entropy % 10**8:08d}-p{patient_index:04d}"
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        entropy = int(seed)
        label = f"phantom-s{entropy}-p{patient_index:04d}"
    else:
        raise TypeError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
    if not isinstance(patient_index, (int, np.integer)) or patient_index < 0:
        raise ValueError(f"patient_index must be a non-negative int, got {patient_index!r}")
    stream = np.random.SeedSequence(entropy, spawn_key=(int(patient_index),))
    return np.random.default_rng(stream), label


def with_style(patient: PhantomPatient, style: str) -> PhantomPatient:
    """The patient rendered in ``style``: ``"classic"`` drops the look, ``"realistic"`` adds one.

    A realistic patient keeps its look; a classic one gets the look drawn from its
    ``scatter_seed`` (deterministic: the same patient always gets the same look).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    if style == "classic":
        return patient if patient.look is None else dataclasses.replace(patient, look=None)
    if patient.look is not None:
        return patient
    tilt = math.radians(patient.tilt_deg)
    base_depth = (patient.apex_depth_mm + patient.lv_length_mm * math.cos(tilt)
                  + patient.lv_half_width_mm * abs(math.sin(tilt)) + 6.0)
    look = sample_look(np.random.default_rng([patient.scatter_seed, 2]), max_zoom=patient.depth_mm / base_depth)
    return dataclasses.replace(patient, look=look)


def sample_patient(seed: int | np.random.Generator, patient_index: int = 0, style: str = "classic") -> PhantomPatient:
    """Draw one synthetic patient.

    Parameters
    ----------
    seed : int or numpy.random.Generator
        An int gives a reproducible patient (with ``patient_index``); a Generator is advanced by
        one draw and seeds the patient from it.
    patient_index : int
        Index of the patient within a cohort drawn from the same seed: ``(seed, i)`` pairs give
        independent patients.
    style : {"classic", "realistic"}
        ``"realistic"`` adds a domain-randomised :class:`~echokdm.data.phantom.look.RealisticLook`
        (see :func:`with_style`); the anatomy and function are those of the classic draw.

    Returns
    -------
    PhantomPatient
        Parameters uniformly within :data:`PATIENT_RANGES`; lower EFs come with larger, thinner
        walled ventricles.

    Examples
    --------
    >>> p = sample_patient(7, patient_index=3)
    >>> 50 <= p.heart_rate_bpm <= 110 and 20 <= p.ef_percent <= 75
    True
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    rng, label = _generator(seed, patient_index)
    v = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in PATIENT_RANGES.items()}
    dilation = float(np.clip((50.0 - v["ef_percent"]) / 30.0, 0.0, 1.0))  # 0 normal .. 1 EF 20
    length = v["lv_length_mm"] * (1.0 + 0.15 * dilation)
    half_width = length * (v.pop("lv_width_ratio") + 0.03 * dilation)
    needed_depth = v["apex_depth_mm"] + length * math.cos(math.radians(v["tilt_deg"])) + v["la_length_mm"] + 12.0
    v.update(
        lv_length_mm=length,
        lv_half_width_mm=half_width,
        wall_thickness_mm=v["wall_thickness_mm"] - 2.0 * dilation,
        apex_lateral_mm=v["apex_lateral_mm"] - 0.25 * length * math.sin(math.radians(v["tilt_deg"])),
        depth_mm=max(v["depth_mm"], needed_depth),
    )
    return with_style(PhantomPatient(patient_id=label, scatter_seed=int(rng.integers(2**31)), **v), style)
