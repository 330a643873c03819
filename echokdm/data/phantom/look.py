"""The "realistic" style of the phantom: a domain-randomised look closer to real apical four-chamber echo.

The classic phantom (no look) images every tissue with the same bright, coarse speckle. Real
A4C cines, and EchoNet-Dynamic's preprocessed AVIs, look different, and a model trained on the
phantom must not rely on any one of these differences. A :class:`RealisticLook`, drawn per
patient by :func:`sample_look`, adds:

* **tissue**: near-anechoic blood (below the display floor), dim grainy myocardium whose
  brightness depends on the angle between the wall and the beam (bright where the wall faces
  the beam, e.g. the basal septum; dropout where it runs along the beam, the lateral wall), a
  brighter septum and dimmer free walls, atrial walls and lateral pericardium, a bright crux
  (septum base and annuli), bright posterior pericardium, papillary muscles and trabeculation
  inside the LV next to its wall; partially developed (Rician) speckle;
* **valves**: mitral and tricuspid leaflets hinged on the moving annuli that open with the
  inflow (the LV volume's rate of increase: E and A waves) and close in systole;
* **scanner**: wider depth-dependent PSF, attenuation with a random time-gain-compensation curve,
  rib/lung shadows, stationary near-field clutter and haze, reverberation bands, an electronic
  noise floor; speckle decorrelation that is uneven in space (faster near the valves and the
  apex) and time (faster when the heart moves fast, out-of-plane motion);
* **display**: dynamic range, low gain, reject, gamma; speckle smoothing, a fine grain bound to
  the tissue and a faint grainy haze in the cavities (what a 112-px pixel averaging many native
  speckle cells, vendor speckle reduction and side lobes show); spatial smoothing, persistence
  (temporal averaging), 8-bit quantisation and lossy JPEG compression (8x8 blocks);
* **sector**: steering, zoom, the apex cut or rounded, and rarely a mirrored (LV on the image
  left) view. The standard view, and the default, has the LV on the image right.

Ground truth is unchanged by the look: masks are the exact LV blood pool (the bullet of
:mod:`~echokdm.data.phantom.motion`), keypoints keep the shared/DESIGN.md order (re-ordered in a
mirrored view) and flows stay exact. By definition the blood pool *includes* the papillary
muscles, trabeculae and open mitral leaflets drawn inside it (as ASE and EchoNet-Dynamic tracings
do); the closed leaflets bow into the atrium, outside it.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np

__all__ = ["RealisticLook", "LOOK_RANGES", "sample_look", "STYLES"]

STYLES = ("classic", "realistic")

#: Ranges of the drawn look parameters: name -> (low, high), drawn uniformly by :func:`sample_look`.
#:
#: The ranges bracket what real apical four-chamber cines at EchoNet-Dynamic's 112 x 112 show, not
#: one clip: the only real cine available offline (pydicom's, one patient) sits inside every range,
#: never at a centre chosen for it. Measured on that cine (``benchmarks/realism.py``): blood /
#: septum intensity 0.10 (published B-mode LV-cavity / septum contrasts span ~0.05-0.2 depending
#: on gain and harmonic imaging), 60 % of the fan near black, median grey 0.03, 95th percentile 0.30.
#: Hence: blood below the display floor, surrounding tissue dim (``tissue_db``, most of the fan is
#: dark in real A4C views), electronic noise at or below the floor at the bottom of the sector (not
#: only at its top), papillary muscles dimmer than the wall. Speckle: at 112 px a pixel averages
#: several speckle cells of the scanner's native image, so real tissue looks smooth with a fine,
#: low-contrast grain, not like the coarse, fully developed speckle of the simulator's band-limited
#: PSF: ``speckle_smoothing`` removes part of the coarse speckle, ``grain`` adds a pixel-scale,
#: tissue-bound grain (see :func:`~echokdm.data.phantom.realistic.render_realistic`). Real cavities
#: are not black: a faint grainy haze (side lobes, clutter; 0.03 grey in the real LV) fills them,
#: hence ``sidelobe_share`` and ``floor_grey``. JPEG blocks are visible in EchoNet AVIs but not in
#: DICOM cines shrunk to 112 px: drawn with quality 40-95, and left out in half the patients.
LOOK_RANGES: dict[str, tuple[float, float]] = {
    "psf_axial_mm": (0.35, 0.75),
    "psf_lateral_mm": (0.6, 1.1),
    "psf_lateral_growth": (0.010, 0.022),
    "attenuation_residual_db_per_cm": (-1.2, 0.0),
    "dynamic_range_db": (50.0, 65.0),
    "gain_db": (-16.0, -7.0),
    "gamma": (0.9, 1.3),
    "reject": (0.0, 0.04),
    "blood_db": (-85.0, -68.0),
    "myocardium_db": (-33.0, -25.0),
    "specular_db": (8.0, 14.0),
    "specular_power": (2.0, 5.0),
    "crux_db": (4.0, 10.0),
    "pericardium_db": (-16.0, -8.0),
    "annulus_db": (-16.0, -8.0),
    "valve_db": (-20.0, -10.0),
    "tissue_db": (-56.0, -44.0),
    "texture_db": (2.5, 5.0),
    "papillary_db": (-40.0, -31.0),
    "haze_depth_mm": (12.0, 35.0),
    "reverb_period_mm": (9.0, 20.0),
    "shadow_db": (-14.0, -4.0),
    "decorrelation": (0.06, 0.25),
    "valve_decorrelation": (1.0, 4.0),
    "apex_decorrelation": (0.5, 2.5),
    "steer_deg": (-5.0, 5.0),
    "zoom": (1.0, 1.12),
    "origin_dy_px": (-4.0, 1.0),
    "min_radius_mm": (0.0, 5.0),
    "blur_px": (0.2, 0.8),
    "persistence": (0.0, 0.6),
    "speckle_smoothing": (0.5, 0.85),
    "speckle_smooth_px": (0.8, 1.6),
    "grain": (0.12, 0.3),
    "grain_px": (0.5, 0.9),
    "septum_db": (6.0, 12.0),
    "free_wall_db": (-9.0, -2.0),
    "atrial_wall_db": (-10.0, -3.0),
    "speckle_coherence": (0.0, 0.2),
    "sidelobe_share": (0.02, 0.08),
    "sidelobe_px": (3.0, 7.0),
    "floor_grey": (0.0, 0.02),
}
_MIRROR_PROBABILITY = 0.1
_NO_JPEG_PROBABILITY = 0.5
_JPEG_QUALITY = (40, 95)


@dataclasses.dataclass(frozen=True)
class RealisticLook:
    """Per-patient parameters of the realistic style (see the module docstring and :data:`LOOK_RANGES`).

    Attributes
    ----------
    psf_axial_mm, psf_lateral_mm, psf_lateral_growth, attenuation_residual_db_per_cm : float
        Replace the patient's classic PSF and depth gain.
    dynamic_range_db, gain_db, gamma, reject : float
        Display: log compression (``gain_db`` maps to white), then values below ``reject`` go
        black and the rest is raised to ``gamma`` (> 1 darkens the mid-greys).
    tgc_db : tuple of float
        Time-gain-compensation error (dB) at equally spaced depths, interpolated linearly.
    blood_db, myocardium_db, pericardium_db, annulus_db, valve_db, tissue_db, papillary_db : float
        Echogenicity (dB re white) of blood, myocardium, pericardium, annuli, leaflets,
        surrounding tissue and the papillary muscles and trabeculae.
    specular_db, specular_power : float
        Walls get ``specular_db * (cos**power - 0.5)`` dB, ``cos`` the cosine between the
        wall's normal and the beam.
    crux_db : float
        Extra brightness of the septum base and annuli (the cardiac crux).
    texture_db : float
        Smooth echogenicity texture (standard deviation, dB).
    haze_db, haze_depth_mm, reverb_db, reverb_period_mm : float
        Stationary clutter: haze decaying from the transducer over ``haze_depth_mm``;
        reverberation bands every ``reverb_period_mm``.
    shadow_deg, shadow_db : tuple of float, float
        Beam angles (degrees) of rib/lung shadows and their depth (dB).
    noise : float
        Electronic noise (as ``simulate_clip``'s ``noise``), used unless the call gives one.
    decorrelation, valve_decorrelation, apex_decorrelation : float
        Speckle decorrelation per frame (share of each scatterer's amplitude redrawn, unless the
        call gives one) and how much faster it is near the valves and the apex (added factors).
    steer_deg, zoom, origin_dy_px, min_radius_mm : float
        Sector steering, magnification about the transducer, vertical shift of the transducer
        (negative: above the frame), and the radius of the sector's rounded top.
    mirror : bool
        Mirrored view: LV on the image left (keypoints re-ordered to keep the convention).
    blur_px, persistence : float
        Display smoothing (Gaussian sigma, pixels) and temporal averaging ``y_t = (1-p) x_t + p y_{t-1}``.
    jpeg_quality : int
        Lossy JPEG round trip of every 8-bit frame at this quality (1-95); 0 for none.
    seed : int
        Seed of the look's own random structures (trabeculae, clutter, leaflets).
    speckle_smoothing, speckle_smooth_px : float
        Share in [0, 1) of the coarse speckle removed after log compression (the frame moves that
        far towards its Gaussian low-pass of sigma ``speckle_smooth_px`` pixels, inside the fan),
        as the averaging of many native speckle cells per 112-px pixel and vendors' speckle
        reduction do; 0 (the default of a look written before it existed) for none.
    septum_db, free_wall_db, atrial_wall_db : float
        Added to the echogenicity of the septum, of the LV lateral and RV free walls, and of the
        atrial walls (real A4C views show a bright septum and dim, often broken free walls).
    speckle_coherence : float
        Share in [0, 1) of each tissue scatterer's complex amplitude with a common phase: partially
        developed (Rician) speckle, weaker than fully developed speckle over a smooth echogenicity,
        as in fibrous, structured tissue; 0 (the default of a look written before it) for none.
    sidelobe_share, sidelobe_px, floor_grey : float
        Low-level haze added after log compression, with the grain's texture: ``sidelobe_share``
        of the frame's Gaussian low-pass of sigma ``sidelobe_px`` pixels (side lobes and clutter
        fill the cavities next to bright walls with a faint grainy grey) plus a flat floor
        ``floor_grey`` (grey level); 0 for none.
    grain, grain_px : float
        Relative standard deviation of a multiplicative, pixel-scale grain bound to the tissue
        scatterers (they move with the tissue and decorrelate with the speckle), smoothed with a
        Gaussian of ``grain_px`` pixels; 0 for none.
    """

    psf_axial_mm: float = 0.5
    psf_lateral_mm: float = 0.8
    psf_lateral_growth: float = 0.015
    attenuation_residual_db_per_cm: float = -0.6
    dynamic_range_db: float = 50.0
    gain_db: float = -8.0
    gamma: float = 1.3
    reject: float = 0.06
    tgc_db: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)
    blood_db: float = -75.0
    myocardium_db: float = -28.0
    specular_db: float = 12.0
    specular_power: float = 3.0
    crux_db: float = 10.0
    pericardium_db: float = -5.0
    annulus_db: float = -4.0
    valve_db: float = -9.0
    tissue_db: float = -40.0
    texture_db: float = 3.5
    papillary_db: float = -32.0
    haze_db: float = -35.0
    haze_depth_mm: float = 22.0
    reverb_db: float = -44.0
    reverb_period_mm: float = 14.0
    shadow_deg: tuple = ()
    shadow_db: float = -8.0
    noise: float = 0.005
    decorrelation: float = 0.12
    valve_decorrelation: float = 2.0
    apex_decorrelation: float = 1.5
    steer_deg: float = 0.0
    zoom: float = 1.0
    origin_dy_px: float = 0.0
    min_radius_mm: float = 2.0
    mirror: bool = False
    blur_px: float = 0.4
    persistence: float = 0.3
    jpeg_quality: int = 50
    seed: int = 0
    speckle_smoothing: float = 0.0
    speckle_smooth_px: float = 1.2
    grain: float = 0.0
    grain_px: float = 0.6
    septum_db: float = 0.0
    free_wall_db: float = 0.0
    atrial_wall_db: float = 0.0
    speckle_coherence: float = 0.0
    sidelobe_share: float = 0.0
    sidelobe_px: float = 5.0
    floor_grey: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not self.dynamic_range_db > 0:
            problems.append(f"dynamic_range_db must be positive, got {self.dynamic_range_db}")
        if not 0 <= self.reject < 1:
            problems.append(f"reject must be within [0, 1), got {self.reject}")
        if not self.gamma > 0:
            problems.append(f"gamma must be positive, got {self.gamma}")
        if not 0 <= self.persistence < 1:
            problems.append(f"persistence must be within [0, 1), got {self.persistence}")
        if not 0 <= self.speckle_coherence < 1:
            problems.append(f"speckle_coherence must be within [0, 1), got {self.speckle_coherence}")
        if not 0 <= self.speckle_smoothing < 1:
            problems.append(f"speckle_smoothing must be within [0, 1), got {self.speckle_smoothing}")
        if not (self.grain >= 0 and self.sidelobe_share >= 0 and self.floor_grey >= 0):
            problems.append("grain, sidelobe_share and floor_grey must be non-negative")
        if not (self.speckle_smooth_px > 0 and self.grain_px > 0 and self.sidelobe_px > 0):
            problems.append("speckle_smooth_px, grain_px and sidelobe_px must be positive")
        if not 0 <= self.decorrelation <= 1:
            problems.append(f"decorrelation must be within [0, 1], got {self.decorrelation}")
        if not (self.jpeg_quality == 0 or 1 <= self.jpeg_quality <= 95):
            problems.append(f"jpeg_quality must be 0 (none) or within 1..95, got {self.jpeg_quality}")
        if not self.zoom > 0 or self.psf_axial_mm <= 0 or self.psf_lateral_mm <= 0:
            problems.append("zoom, psf_axial_mm and psf_lateral_mm must be positive")
        if problems:
            raise ValueError("invalid RealisticLook: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> RealisticLook:
        """Inverse of ``dataclasses.asdict`` (JSON lists back to tuples); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown RealisticLook parameter(s): {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def sample_look(rng: np.random.Generator, *, max_zoom: float = math.inf) -> RealisticLook:
    """Draw a look: uniform within :data:`LOOK_RANGES`, noise and clutter relative to the display
    floor, a random TGC curve, 0-2 shadows, rarely a mirrored view, JPEG quality (or none)."""
    v = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in LOOK_RANGES.items()}
    v["zoom"] = min(v["zoom"], max(1.0, max_zoom))
    # noise and clutter are drawn relative to the display floor (black level), so that blood stays
    # near black whatever the gain and dynamic range: noise 8-16 dB below it at the top of the
    # sector (it grows by 10 dB to the bottom, and the TGC error adds up to 5 dB: real blood pools
    # keep a faint floor, not grey noise, down to the atria), haze 2-14 dB above it at the
    # transducer (decaying with depth), reverberation bands up to 8 dB above it
    floor_db = -v["gain_db"] - v["dynamic_range_db"]
    v["noise"] = float(10.0 ** ((floor_db - rng.uniform(8.0, 16.0)) / 20.0))
    v["haze_db"] = floor_db + float(rng.uniform(2.0, 14.0))
    v["reverb_db"] = floor_db + float(rng.uniform(-4.0, 8.0))
    tgc = tuple(float(x) for x in rng.uniform(-5.0, 5.0, 5))
    n_shadows = int(rng.choice(3, p=(0.5, 0.35, 0.15)))
    shadows = tuple(float(x) for x in rng.uniform(-40.0, 40.0, n_shadows))
    mirror = bool(rng.random() < _MIRROR_PROBABILITY)
    quality = 0 if rng.random() < _NO_JPEG_PROBABILITY else int(rng.integers(*_JPEG_QUALITY))
    return RealisticLook(tgc_db=tgc, shadow_deg=shadows, mirror=mirror, jpeg_quality=quality,
                         seed=int(rng.integers(2**31)), **v)


# -- display ------------------------------------------------------------------------------------------


def jpeg_round_trip(frame_u8: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode one ``uint8`` ``(H, W)`` frame as JPEG (PIL) at ``quality``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame_u8, mode="L").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def display(frames: np.ndarray, fan: np.ndarray, look: RealisticLook, *, blur: bool = True,
            persistence: bool = True, compression: bool = True) -> np.ndarray:
    """The scanner's display chain on ``(T, H, W)`` frames in [0, 1] (in place where possible).

    Smoothing inside the fan (normalised, so the sector edge does not darken), persistence,
    8-bit quantisation and a JPEG round trip; exactly 0 outside the fan. The switches turn
    single steps off (tests and ablations).
    """
    from scipy import ndimage

    out = frames
    if blur and look.blur_px > 0.05:
        weight = ndimage.gaussian_filter(fan.astype(np.float32), look.blur_px)
        out = ndimage.gaussian_filter(out, (0, look.blur_px, look.blur_px)) / np.maximum(weight, 1e-3)
    if persistence and look.persistence > 0:
        out = out.copy()
        for t in range(1, out.shape[0]):
            out[t] = (1.0 - look.persistence) * out[t] + look.persistence * out[t - 1]
    out = np.clip(np.round(np.clip(out, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    out[:, ~fan] = 0
    if compression and look.jpeg_quality > 0:
        out = np.stack([jpeg_round_trip(f, look.jpeg_quality) for f in out])
    result = out.astype(np.float32) / np.float32(255.0)
    result[:, ~fan] = 0.0
    return result
