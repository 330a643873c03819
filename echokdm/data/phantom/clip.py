"""Simulate a phantom cine loop with exact ground truth, and save or load it as ``.npz``."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from echokdm.data.phantom.anatomy import echogenicity_db, realistic_echogenicity_db, texture_db, tissue_labels
from echokdm.data.phantom.cycle import cardiac_timing, volume_ratio
from echokdm.data.phantom.look import STYLES
from echokdm.data.phantom.motion import LVMotion
from echokdm.data.phantom.patient import PhantomPatient, with_style
from echokdm.data.phantom.scanner import ImageGeometry, Scanner
from echokdm.errors import ReadError
from echokdm.io.atomic import atomic_output

__all__ = ["SimulationSettings", "PhantomClip", "simulate_clip", "load_npz", "NPZ_FORMAT_VERSION"]

NPZ_FORMAT_VERSION = 1
_CHUNK_FRAMES = 8  # frames rendered together (memory ~ chunk x scatterers)
_FLOW_DTYPE = np.float16  # flows in .npz files: rounding <= 2**-11 relative, < 0.008 px below 16 px


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    """How a clip was simulated (everything besides the patient).

    ``start_phase`` is the cardiac phase of frame 0 as a fraction of the cycle (0 = end-diastole).
    ``style`` is ``"classic"`` or ``"realistic"`` (the patient then carries the look).
    """

    size: int
    fps: float
    n_frames: int
    start_phase: float
    decorrelation: float
    noise: float
    seed: int
    style: str = "classic"

    def as_dict(self) -> dict:
        """The settings as a dict; ``style`` only when not classic (classic files stay as they were)."""
        values = dataclasses.asdict(self)
        if values["style"] == "classic":
            del values["style"]
        return values

    def times_s(self, patient: PhantomPatient) -> np.ndarray:
        """``(T,)`` time of each frame in seconds after an end-diastole."""
        period = 60.0 / patient.heart_rate_bpm
        return self.start_phase * period + np.arange(self.n_frames) / self.fps


@functools.lru_cache(maxsize=2)
def _scanner(patient: PhantomPatient, size: int) -> Scanner:
    """The scanner of a patient and frame size (kernels and interpolation weights), cached."""
    return Scanner(patient, ImageGeometry.for_patient(patient, size))


def _motion(patient: PhantomPatient, settings: SimulationSettings) -> LVMotion:
    ratios = volume_ratio(settings.times_s(patient), patient.heart_rate_bpm, patient.ef_percent,
                          patient.atrial_fraction)
    return LVMotion(patient, ratios)


@dataclasses.dataclass(frozen=True, eq=False)
class PhantomClip:
    """A simulated apical four-chamber cine with its exact ground truth.

    Attributes
    ----------
    frames : numpy.ndarray
        ``float32`` ``(T, H, W)`` in [0, 1]; exactly 0 outside the sector.
    masks : numpy.ndarray
        ``uint8`` ``(T, H, W)``, 1 = LV blood pool (pixel centre inside the analytic cavity).
    keypoints : numpy.ndarray
        ``float32`` ``(T, 40, 2)`` ``(x, y)`` pixels, shared/DESIGN.md definition and order.
    volumes_ml : numpy.ndarray
        ``float64`` ``(T,)`` Simpson volumes (20 discs of the analytic keypoints), mL.
    ed_frames, es_frames : numpy.ndarray
        ``int64`` indices of end-diastolic (largest volume) and end-systolic (smallest volume)
        frames, one per ED or ES instant that falls within the clip.
    fan_mask : numpy.ndarray
        ``bool`` ``(H, W)``: pixels inside the imaging sector.
    patient : PhantomPatient
        The simulated patient.
    settings : SimulationSettings
        Frame size, frame rate, number of frames, phase, decorrelation, noise and seed.
    """

    frames: np.ndarray
    masks: np.ndarray
    keypoints: np.ndarray
    volumes_ml: np.ndarray
    ed_frames: np.ndarray
    es_frames: np.ndarray
    fan_mask: np.ndarray
    patient: PhantomPatient
    settings: SimulationSettings

    def __repr__(self) -> str:
        return (f"PhantomClip(patient={self.patient.patient_id!r}, frames={self.n_frames}x{self.settings.size}"
                f"x{self.settings.size}, fps={self.fps:g}, ef={self.ef:.1f}%, seed={self.settings.seed})")

    # -- derived facts -------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def fps(self) -> float:
        return float(self.settings.fps)

    @property
    def spacing_mm(self) -> tuple[float, float]:
        """``(dx, dy)`` millimetres per pixel (square pixels)."""
        sp = self.geometry.spacing_mm
        return (sp, sp)

    @property
    def times_s(self) -> np.ndarray:
        """``(T,)`` seconds since the end-diastole that starts the cardiac cycle of frame 0."""
        return self.settings.times_s(self.patient)

    @property
    def edv(self) -> float:
        """End-diastolic volume (mL): mean of ``volumes_ml`` at ``ed_frames`` (NaN if none)."""
        return float(np.mean(self.volumes_ml[self.ed_frames])) if self.ed_frames.size else math.nan

    @property
    def esv(self) -> float:
        """End-systolic volume (mL): mean of ``volumes_ml`` at ``es_frames`` (NaN if none)."""
        return float(np.mean(self.volumes_ml[self.es_frames])) if self.es_frames.size else math.nan

    @property
    def ef(self) -> float:
        """Ejection fraction in percent, ``(EDV - ESV) / EDV * 100`` of the exported volumes."""
        return 100.0 * (self.edv - self.esv) / self.edv

    @property
    def reference_frame(self) -> int:
        """The first ED frame (frame 0 when the clip holds no end-diastole): origin of :meth:`flows_from_ed`."""
        return int(self.ed_frames[0]) if self.ed_frames.size else 0

    @functools.cached_property
    def geometry(self) -> ImageGeometry:
        return ImageGeometry.for_patient(self.patient, self.settings.size)

    @functools.cached_property
    def motion(self) -> LVMotion:
        """The material -> image map of every frame (mm), see :mod:`echokdm.data.phantom.motion`."""
        return _motion(self.patient, self.settings)

    # -- flows -----------------------------------------------------------------------------------
    def flow(self, source: int, target: int) -> np.ndarray:
        """Exact dense flow from frame ``source`` to frame ``target``.

        shared/DESIGN.md convention: ``float32`` ``(2, H, W)``, channel 0 = dx, channel 1 = dy in
        pixels, on the target grid, pointing into the source, so that
        ``warp(frames[source], flow) ≈ frames[target]`` and a target keypoint ``q`` corresponds to
        the source point ``q + flow(q)``. Computed as ``phi_source(phi_target^-1(q)) - q``, with
        the inverse solved to 1e-7 mm; defined everywhere (inside and outside the sector).
        """
        for name, index in (("source", source), ("target", target)):
            if not -self.n_frames <= index < self.n_frames:
                raise IndexError(f"{name} frame {index} outside 0..{self.n_frames - 1}")
        size = self.settings.size
        if source % self.n_frames == target % self.n_frames:
            return np.zeros((2, size, size), np.float32)
        grid = self.geometry.pixel_centres_mm().reshape(-1, 2)  # (H*W, 2) mm
        a_min, a_max, r_max = self.motion.support()
        a, r = self.motion.to_local(grid)
        moving = (a > a_min) & (a < a_max) & (np.abs(r) < r_max)  # the map is the identity elsewhere
        material = self.motion.inverse(grid[moving], target % self.n_frames)
        disp = np.zeros_like(grid)
        disp[moving] = self.motion.forward(material, source % self.n_frames) - grid[moving]
        return self.geometry.mm_vectors_to_px(disp).T.reshape(2, size, size).astype(np.float32)

    def consecutive_flows(self) -> np.ndarray:
        """``float32`` ``(T-1, 2, H, W)``: ``flow(t, t + 1)`` for every t."""
        size = self.settings.size
        flows = [self.flow(t, t + 1) for t in range(self.n_frames - 1)]
        return np.stack(flows) if flows else np.zeros((0, 2, size, size), np.float32)

    def flows_from_ed(self) -> np.ndarray:
        """``float32`` ``(T, 2, H, W)``: ``flow(reference_frame, t)`` (the first ED) for every t."""
        return np.stack([self.flow(self.reference_frame, t) for t in range(self.n_frames)])

    # -- export ----------------------------------------------------------------------------------
    def tracings(self, frame: int) -> np.ndarray:
        """EchoNet-style segments of one frame: ``float32`` ``(21, 4)`` ``(x1, y1, x2, y2)`` pixels.

        Row 0 is the long axis (basal centre to apex); rows 1 … 20 the chords ``j = 0 … 19``
        from the image-left keypoint ``j`` to the image-right keypoint ``39 - j``.
        """
        kp = self.keypoints[frame].astype(np.float64)
        base = self.geometry.mm_to_px(self.motion.annulus()[frame].mean(axis=0))
        apex = self.geometry.mm_to_px(self.motion.apex)
        chords = np.concatenate([kp[:20], kp[::-1][:20]], axis=1)  # (20, 4)
        return np.concatenate([np.concatenate([base, apex])[None], chords]).astype(np.float32)

    def to_cine(self, patient_id: str | None = None, clip_id: str | None = None):
        """The clip as an :class:`echokdm.io.cine.Cine` (dataset ``"phantom"``, view ``"A4C"``).

        Every frame is labelled (``masks``); ``tracings`` holds EchoNet-style segments of the
        ED and ES frames; ``metadata`` the ground-truth EF/EDV/ESV, ED/ES frames and settings.
        """
        from echokdm.io.cine import Cine

        patient_id = self.patient.patient_id if patient_id is None else patient_id
        clip_id = f"{patient_id}_seed{self.settings.seed}" if clip_id is None else clip_id
        traced = sorted(set(self.ed_frames.tolist()) | set(self.es_frames.tolist()))
        metadata = {
            "generator": "echokdm.data.phantom", "ef_percent": self.ef, "edv_ml": self.edv, "esv_ml": self.esv,
            "ed_frames": self.ed_frames.tolist(), "es_frames": self.es_frames.tolist(),
            "heart_rate_bpm": self.patient.heart_rate_bpm, "settings": self.settings.as_dict(),
        }
        return Cine(frames=self.frames, fps=self.fps, spacing_mm=self.spacing_mm, patient_id=patient_id,
                    clip_id=clip_id, view="A4C", dataset="phantom", masks=self.masks,
                    tracings={t: self.tracings(t) for t in traced}, metadata=metadata)

    def save_npz(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the clip and all its ground truth to one compressed ``.npz`` file.

        Arrays: ``frames`` (float32), ``masks`` (uint8), ``keypoints`` (float32), ``volumes_ml``
        (float64), ``ed_frames``/``es_frames`` (int64), ``fan_mask`` (bool), ``times_s``,
        ``consecutive_flows`` (T-1, 2, H, W) and ``flows_from_ed`` (T, 2, H, W) as **float16**
        (half the size; the rounding error, at most 2**-11 of the value, stays below 0.008 px
        for displacements under 16 px and 0.016 px under 32 px, far below any flow estimator's
        error; exact flows are available from :meth:`flow`), ``reference_frame``, scalars ``fps``, ``spacing_mm``,
        ``ef``, ``edv``, ``esv``, and JSON strings ``patient_json``, ``settings_json``.

        The file is written to a temporary name in the same folder and renamed when complete.
        Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: file exists; pass overwrite=True to replace it")
        arrays = {
            "format_version": np.int64(NPZ_FORMAT_VERSION), "frames": self.frames, "masks": self.masks,
            "keypoints": self.keypoints, "volumes_ml": self.volumes_ml, "ed_frames": self.ed_frames,
            "es_frames": self.es_frames, "fan_mask": self.fan_mask, "times_s": self.times_s,
            "consecutive_flows": self.consecutive_flows().astype(_FLOW_DTYPE),
            "flows_from_ed": self.flows_from_ed().astype(_FLOW_DTYPE),
            "reference_frame": np.int64(self.reference_frame), "fps": np.float64(self.fps),
            "spacing_mm": np.asarray(self.spacing_mm), "ef": np.float64(self.ef),
            "edv": np.float64(self.edv), "esv": np.float64(self.esv),
            "patient_json": np.str_(self.patient.to_json()),
            "settings_json": np.str_(json.dumps(self.settings.as_dict())),
        }
        with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return path

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> PhantomClip:
        """Read a clip written by :meth:`save_npz` (see :func:`load_npz`)."""
        return load_npz(path)


_NPZ_KEYS = ("format_version", "frames", "masks", "keypoints", "volumes_ml", "ed_frames", "es_frames",
             "fan_mask", "patient_json", "settings_json")


def load_npz(path: str | os.PathLike) -> PhantomClip:
    """Read a phantom clip saved by :meth:`PhantomClip.save_npz`.

    The stored flows are not loaded into the clip (read them with ``numpy.load`` if needed);
    :meth:`PhantomClip.flow` recomputes exact ones from the stored patient and settings.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    echokdm.errors.ReadError
        The file is not a phantom ``.npz`` of a known format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such phantom clip file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _NPZ_KEYS if k not in data.files]
            if missing:
                raise ReadError(path, f"not a phantom clip: missing {', '.join(missing)}")
            version = int(data["format_version"])
            if version != NPZ_FORMAT_VERSION:
                raise ReadError(path, f"phantom clip format version {version}, this echokdm reads {NPZ_FORMAT_VERSION}")
            arrays = {k: data[k] for k in _NPZ_KEYS[1:8]}
            patient = PhantomPatient.from_json(str(data["patient_json"]))
            settings = SimulationSettings(**json.loads(str(data["settings_json"])))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        if isinstance(exc, ReadError):
            raise
        raise ReadError(path, f"cannot read as a phantom clip: {exc}") from exc
    return PhantomClip(patient=patient, settings=settings, **arrays)


# -- simulation ------------------------------------------------------------------------------------


def _cycle_frames(patient: PhantomPatient, settings: SimulationSettings, volumes: np.ndarray):
    """ED and ES frame indices: the max (min) volume near each ED (ES) instant within the clip.

    An instant counts when a frame lies within half a frame interval of it (or the clip spans
    it); among frames of equal volume (the isovolumic plateaus) the one nearest the instant wins.
    """
    timing = cardiac_timing(patient.heart_rate_bpm)
    times = settings.times_s(patient)
    half_frame = 0.5 / settings.fps
    found = []
    for offset, pick in ((0.0, np.argmax), (timing.end_systole_s, np.argmin)):
        first = math.ceil((times[0] - half_frame - offset) / timing.period_s)
        last = math.floor((times[-1] + half_frame - offset) / timing.period_s)
        frames = []
        for k in range(first, last + 1):
            instant = k * timing.period_s + offset
            near = np.flatnonzero(np.abs(times - instant) <= 0.25 * timing.period_s)
            if near.size == 0:  # frame interval longer than a quarter cycle
                continue
            extreme = volumes[near[pick(volumes[near])]]
            ties = near[np.abs(volumes[near] - extreme) <= 1e-9 * abs(extreme)]  # isovolumic plateaus
            frames.append(int(ties[np.argmin(np.abs(times[ties] - instant))]))
        found.append(np.unique(np.asarray(frames, dtype=np.int64)))
    return found[0], found[1]


def _scatterers(patient: PhantomPatient, motion: LVMotion, scanner: Scanner, rng: np.random.Generator):
    """Material positions ``(N, 2)`` mm, moving flags ``(N,)``, amplitudes ``(N,)`` and draws ``(N, 2)``.

    A scatterer's complex amplitude is ``amplitude * (draw[0] + 1j * draw[1])``.

    Uniform over the union of the polar grid's sector and the box where the heart moves (the
    box maps into itself, so no scatterer can enter the image from elsewhere).
    """
    a_min, a_max, r_max = motion.support()
    corners = motion.to_image(np.array([a_min, a_min, a_max, a_max]), np.array([-r_max, r_max, -r_max, r_max]))
    radius, half = scanner.grid_radius_mm, min(scanner.theta_max, 0.5 * math.pi)
    lo = np.minimum(corners.min(axis=0), [-radius * math.sin(half), 0.0])
    hi = np.maximum(corners.max(axis=0), [radius * math.sin(half), radius])
    count = int(round(scanner.density * float(np.prod(hi - lo))))
    points = lo + rng.random((count, 2)) * (hi - lo)
    a, r = motion.to_local(points)
    moving = (a > a_min) & (a < a_max) & (np.abs(r) < r_max)
    depth = np.hypot(points[:, 0], points[:, 1])
    in_sector = (depth < radius) & (np.abs(np.arctan2(points[:, 0], points[:, 1])) < scanner.theta_max)
    keep = moving | in_sector
    points, moving, a, r, depth = points[keep], moving[keep], a[keep], r[keep], depth[keep]
    labels = tissue_labels(a, r, depth, patient)
    if patient.look is None:
        level_db = echogenicity_db(labels, a, r, points, patient) + texture_db(points, patient)
    else:
        textured = dataclasses.replace(patient, texture_db=patient.look.texture_db)
        level_db = realistic_echogenicity_db(labels, a, r, points, patient) + texture_db(points, textured)
    amplitude = (10.0 ** (level_db / 20.0) / math.sqrt(2.0)).astype(np.float32)
    return points, moving, amplitude, rng.standard_normal((points.shape[0], 2)).astype(np.float32)


def _render(patient, motion, scanner, settings: SimulationSettings) -> np.ndarray:
    """Frames ``(T, H, W)`` float32: scatterers moved by ``motion``, imaged by ``scanner``."""
    rng = np.random.default_rng([patient.scatter_seed, settings.seed])
    scatterers = _scatterers(patient, motion, scanner, rng)
    if patient.look is not None:
        from echokdm.data.phantom.realistic import render_realistic

        return render_realistic(patient, motion, scanner, settings, scatterers)
    points, moving, amplitude, draws = scatterers
    frames = np.empty((settings.n_frames, scanner.geometry.size, scanner.geometry.size), np.float32)
    for start in range(0, settings.n_frames, _CHUNK_FRAMES):
        idx = np.arange(start, min(start + _CHUNK_FRAMES, settings.n_frames))
        positions = np.broadcast_to(points, (idx.size, *points.shape)).copy()  # (F, N, 2)
        positions[:, moving] = motion.forward(points[moving], idx)
        if settings.decorrelation > 0:
            amps = np.empty((idx.size, *draws.shape), np.float32)  # (F, N, 2)
            for k, t in enumerate(idx):
                if t > 0:  # redraw a fraction of the complex amplitudes, positions kept
                    redraw = rng.random(draws.shape[0]) < settings.decorrelation
                    draws[redraw] = rng.standard_normal((int(redraw.sum()), 2))
                amps[k] = draws * amplitude[:, None]
        else:
            amps = draws * amplitude[:, None]  # (N, 2), the same for every frame
        field = scanner.splat(positions, amps)
        if settings.noise > 0:
            scanner.add_noise(field, settings.noise, rng)
        frames[idx] = scanner.form_image(field)
    return frames


def simulate_clip(patient: PhantomPatient, *, n_frames: int | None = None, n_beats: float = 1.0,
                  fps: float = 50.0, size: int = 112, start_phase: float = 0.0, decorrelation: float | None = None,
                  noise: float | None = None, seed: int = 0, style: str | None = None) -> PhantomClip:
    """Simulate an apical four-chamber echo cine of ``patient`` with exact ground truth.

    Parameters
    ----------
    patient : PhantomPatient
        Anatomy, function and scanner settings (see :func:`sample_patient`).
    n_frames : int, optional
        Number of frames; default ``round(n_beats * 60 / heart_rate * fps)``.
    n_beats : float
        Clip length in heart beats when ``n_frames`` is not given.
    fps : float
        Frame rate (frames per second).
    size : int
        Frames are ``size x size`` pixels (112 as EchoNet-Dynamic, 224 as the KDM paper).
    start_phase : float
        Cardiac phase of frame 0 in [0, 1), as a fraction of the cycle; 0 = end-diastole.
    decorrelation : float, optional
        Fraction in [0, 1] of scatterers redrawn at each frame (speckle decorrelation). With 0
        and ``noise=0`` each frame is a pure function of the tissue positions. Default: 0 for the
        classic style; the look's for the realistic one, where it is the base rate of an uneven
        decorrelation (each scatterer's amplitude is partly redrawn, faster near the valves, the
        apex and when the heart moves fast); 0 freezes speckle, leaflets and clutter.
    noise : float, optional
        Electronic noise, rms relative to the white level at the top of the sector (it grows by
        10 dB to the bottom, as amplified by time-gain compensation); 0 for none. Default: 0.002
        (classic) or the look's (realistic).
    seed : int
        Seed of this acquisition: scatterer phases, decorrelation and noise. The same patient
        and seed give byte-identical arrays.
    style : {"classic", "realistic"}, optional
        Default: ``patient.style`` (realistic when the patient carries a look). ``"realistic"``
        gives a classic patient the look drawn from its ``scatter_seed``; ``"classic"`` renders a
        realistic patient without its look (see :mod:`echokdm.data.phantom.look`). The returned
        clip's ``patient`` carries the look that was used.

    Returns
    -------
    PhantomClip
        Frames, masks, keypoints, volumes, ED/ES frames, and exact flows on demand.

    Examples
    --------
    >>> from echokdm.data.phantom import sample_patient, simulate_clip
    >>> clip = simulate_clip(sample_patient(0), n_frames=4, size=64)
    >>> clip.frames.shape, clip.keypoints.shape
    ((4, 64, 64), (4, 40, 2))
    """
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if style is not None and style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    patient = with_style(patient, patient.style if style is None else style)
    if decorrelation is None:
        decorrelation = 0.0 if patient.look is None else patient.look.decorrelation
    if noise is None:
        noise = 0.002 if patient.look is None else patient.look.noise
    if not 0.0 <= decorrelation <= 1.0:
        raise ValueError(f"decorrelation must be within [0, 1], got {decorrelation}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {noise}")
    if not 0.0 <= start_phase < 1.0:
        raise ValueError(f"start_phase must be within [0, 1), got {start_phase}")
    if n_frames is None:
        if not n_beats > 0:
            raise ValueError(f"n_beats must be positive, got {n_beats}")
        n_frames = max(1, int(round(n_beats * 60.0 / patient.heart_rate_bpm * fps)))
    if not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    scanner = _scanner(patient, int(size) if isinstance(size, (int, np.integer)) else size)
    settings = SimulationSettings(int(size), float(fps), int(n_frames), float(start_phase), float(decorrelation),
                                  float(noise), int(seed), patient.style)
    motion = _motion(patient, settings)
    frames = _render(patient, motion, scanner, settings)
    geometry = scanner.geometry
    grid = geometry.pixel_centres_mm()
    masks = np.stack([motion.cavity(grid, t) for t in range(settings.n_frames)]).astype(np.uint8)
    keypoints = geometry.mm_to_px(motion.keypoints()).astype(np.float32)
    if geometry.mirror:  # the anatomy's left side is now the image right: keep keypoint j on the image left
        keypoints = np.ascontiguousarray(keypoints[:, ::-1])
    volumes = motion.volumes_ml()
    ed, es = _cycle_frames(patient, settings, volumes)
    return PhantomClip(frames=frames, masks=masks, keypoints=keypoints, volumes_ml=volumes, ed_frames=ed,
                       es_frames=es, fan_mask=scanner.fan.copy(), patient=patient, settings=settings)
