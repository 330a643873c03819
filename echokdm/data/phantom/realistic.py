"""Image formation of the realistic style (see :mod:`echokdm.data.phantom.look`).

The same convolution simulator as the classic phantom (:mod:`~echokdm.data.phantom.scanner`),
with the look's tissue levels, plus valve leaflets, uneven speckle decorrelation, stationary
clutter, TGC and shadows before log compression, and the display chain after scan conversion.
"""

from __future__ import annotations

import math

import numpy as np

from echokdm.data.phantom.anatomy import tricuspid_hinges_mm
from echokdm.data.phantom.cycle import volume_ratio
from echokdm.data.phantom.look import display

__all__ = ["valve_opening", "render_realistic"]

_LEAFLET_DENSITY = 6.0  # leaflet scatterers per mm^2
_LEAFLET_THICKNESS_MM = 1.4
_CLUTTER_DECORRELATION = 0.02  # clutter is nearly stationary


def valve_opening(patient, times_s: np.ndarray) -> np.ndarray:
    """``(T,)`` opening of the atrioventricular valves in [0, 1]: 0 closed (systole), 1 wide open.

    The leaflets follow the inflow: the opening is the LV volume's rate of increase (E and A
    waves) relative to 60 % of its peak, so they open after isovolumic relaxation, half close in
    diastasis, reopen with the atrial kick and are shut at end-diastole and through systole.
    """
    dt = 0.004
    times = np.asarray(times_s, dtype=np.float64)
    args = (patient.heart_rate_bpm, patient.ef_percent, patient.atrial_fraction)
    rate = (volume_ratio(times + dt, *args) - volume_ratio(times, *args)) / dt  # forward: shut at ED
    period = 60.0 / patient.heart_rate_bpm
    grid = np.linspace(0.0, period, 400, endpoint=False)
    peak = np.max((volume_ratio(grid + dt, *args) - volume_ratio(grid, *args)) / dt)
    return np.clip(rate / (0.6 * max(peak, 1e-9)), 0.0, 1.0) ** 0.7


def _motion_speed(patient, times_s: np.ndarray) -> np.ndarray:
    """``(T,)`` |dV/dt| relative to its peak over the cycle (0 still .. 1 fastest)."""
    dt = 0.004
    args = (patient.heart_rate_bpm, patient.ef_percent, patient.atrial_fraction)

    def rate(t):
        return np.abs(volume_ratio(t + dt, *args) - volume_ratio(t - dt, *args)) / (2 * dt)

    grid = np.linspace(0.0, 60.0 / patient.heart_rate_bpm, 400, endpoint=False)
    return np.clip(rate(np.asarray(times_s, dtype=np.float64)) / max(float(rate(grid).max()), 1e-9), 0.0, 1.0)


class _Leaflets:
    """Scatterers of the mitral and tricuspid leaflets, hinged on the moving annuli."""

    def __init__(self, patient, motion, density, rng):
        w0 = motion.width0
        # (hinge index, side, length): side -1 for the image-left hinge of a valve (leaflet points right)
        self.mitral = [(0, -1.0, 1.15 * w0), (1, 1.0, 0.95 * w0)]
        tri_half = patient.rv_half_width_mm
        tri_left, tri_right = tricuspid_hinges_mm(patient)
        self.tricuspid_material = motion.to_image(np.array([tri_left[0], tri_right[0]]),
                                                  np.array([tri_left[1], tri_right[1]]))
        self.tricuspid = [(0, -1.0, 1.05 * tri_half), (1, 1.0, 1.0 * tri_half)]
        self.motion = motion
        self.params = []  # per leaflet: (s, n) arrays
        for _, _, length in self.mitral + self.tricuspid:
            count = max(8, int(round(_LEAFLET_DENSITY * length * _LEAFLET_THICKNESS_MM)))
            s = rng.random(count)
            n = (rng.random(count) - 0.5) * _LEAFLET_THICKNESS_MM * (1.0 + 0.6 * s)  # thicker tips
            self.params.append((s, n))
        self.count = sum(p[0].size for p in self.params)
        look = patient.look
        amp = 10.0 ** (look.valve_db / 20.0) / math.sqrt(2.0) * math.sqrt(density / _LEAFLET_DENSITY)
        self.amplitude = np.full(self.count, amp, np.float32)

    def positions(self, frames: np.ndarray, opening: np.ndarray) -> np.ndarray:
        """``(F, K, 2)`` image mm of the leaflet scatterers at ``frames``."""
        m = self.motion
        mitral_hinges = m.annulus()[frames]  # (F, 2, 2)
        tri_hinges = m.forward(self.tricuspid_material, frames)  # (F, 2, 2)
        out = []
        for (hinges, leaflets) in ((mitral_hinges, self.mitral), (tri_hinges, self.tricuspid)):
            for index, side, length in leaflets:
                out.append((hinges[:, index], side, length))
        positions = []
        for (hinge, side, length), (s, n) in zip(out, self.params, strict=True):
            o = opening[frames][:, None]  # (F, 1)
            # angle in the LV frame from the "towards the apex" direction (-down), measured towards the axis
            closed, opened = math.radians(100.0), math.radians(12.0)
            angle = closed + (opened - closed) * o  # (F, 1)
            along = -np.cos(angle)[..., None] * m.down - side * np.sin(angle)[..., None] * m.right  # (F, 1, 2)
            across = side * np.sin(angle)[..., None] * m.down - np.cos(angle)[..., None] * m.right
            bow = 0.12 * length * np.sin(np.pi * s)[None, :, None] * m.down * (1 - o)[..., None]  # into the atrium
            positions.append(hinge[:, None, :] + (s * length)[None, :, None] * along
                             + n[None, :, None] * across + bow)
        return np.concatenate(positions, axis=1)

    def near(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` weight in [0, 1] of material points near the valves (ED hinges)."""
        centres = np.concatenate([self.motion.annulus()[0], self.tricuspid_material])
        d2 = np.min(np.sum((points[:, None, :] - centres[None]) ** 2, axis=-1), axis=1)
        return np.exp(-d2 / (2 * 12.0**2))


def _gain_map(patient, scanner, rng_look) -> np.ndarray:
    """``(n_r, n_t)`` float32 TGC error and shadows (linear gain on the envelope)."""
    look = patient.look
    radii, thetas = scanner.radii, scanner.thetas
    knots = np.linspace(0.0, scanner.geometry.depth_mm, len(look.tgc_db))
    tgc_db = np.interp(radii, knots, look.tgc_db)
    gain_db = np.repeat(tgc_db[:, None], thetas.size, axis=1)
    for angle_deg in look.shadow_deg:
        width = math.radians(rng_look.uniform(3.0, 8.0))
        start = rng_look.uniform(15.0, 60.0)
        lateral = np.exp(-0.5 * ((thetas - math.radians(angle_deg)) / width) ** 2)
        onset = np.clip((radii - start) / 10.0, 0.0, 1.0)
        gain_db += look.shadow_db * onset[:, None] * lateral[None, :]
    return (10.0 ** (gain_db / 20.0)).astype(np.float32)


def _clutter_profile(patient, scanner, rng_look) -> np.ndarray:
    """``(n_r, n_t)`` float32 rms of the clutter (relative to white) before the PSF."""
    look = patient.look
    radii, thetas = scanner.radii, scanner.thetas
    haze = 10.0 ** (look.haze_db / 20.0) * np.exp(-radii / look.haze_depth_mm)
    reverb = np.zeros_like(radii)
    for k in range(1, 6):
        centre = k * look.reverb_period_mm
        reverb += 0.75 ** (k - 1) * np.exp(-0.5 * ((radii - centre) / 1.5) ** 2)
    reverb *= 10.0 ** (look.reverb_db / 20.0)
    # smooth lateral modulation: clutter is patchy across the beams
    phases = rng_look.uniform(0, 2 * np.pi, 3)
    lateral = 1.0 + 0.5 * sum(np.sin((k + 1) * 3.0 * thetas + ph) for k, ph in enumerate(phases)) / 1.5
    profile = (haze + reverb)[:, None] * np.clip(lateral, 0.2, None)[None, :]
    return (profile * scanner.white_scale[:, None]).astype(np.float32)


def render_realistic(patient, motion, scanner, settings, scatterers) -> np.ndarray:
    """Frames ``(T, H, W)`` float32 of the realistic style.

    ``scatterers`` is ``(points, moving, amplitude, draws)`` of the tissue (realistic levels).
    ``settings.decorrelation`` is the base rate (0: frozen speckle, leaflets and clutter too) and
    ``settings.noise`` the electronic noise.
    """
    look = patient.look
    points, moving, amplitude, draws = scatterers
    rng = np.random.default_rng([patient.scatter_seed, settings.seed, 2])
    rng_look = np.random.default_rng([look.seed, 4])
    times = settings.times_s(patient)
    opening = valve_opening(patient, times)
    speed = _motion_speed(patient, times)
    leaflets = _Leaflets(patient, motion, scanner.density, rng_look)
    leaf_draws = rng_look.standard_normal((leaflets.count, 2)).astype(np.float32)
    # per-scatterer decorrelation: base x (1 + valve boost near the valves + apex boost near the apex)
    a, r = motion.to_local(points)
    apex_w = np.exp(-(a**2 + r**2) / (2 * 18.0**2))
    spatial = 1.0 + look.valve_decorrelation * leaflets.near(points) + look.apex_decorrelation * apex_w
    spatial = spatial.astype(np.float32)
    gain_map = _gain_map(patient, scanner, rng_look)
    profile = _clutter_profile(patient, scanner, rng_look)
    clutter = rng_look.standard_normal((2, scanner.n_r, scanner.n_t)).astype(np.float32)
    base = settings.decorrelation
    size = scanner.geometry.size
    frames = np.empty((settings.n_frames, size, size), np.float32)
    chunk = 8
    for start in range(0, settings.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, settings.n_frames))
        positions = np.broadcast_to(points, (idx.size, *points.shape)).copy()
        positions[:, moving] = motion.forward(points[moving], idx)
        positions = np.concatenate([positions, leaflets.positions(idx, opening)], axis=1)
        amps = np.empty((idx.size, points.shape[0] + leaflets.count, 2), np.float32)
        clutter_frames = np.empty((idx.size, 2, scanner.n_r, scanner.n_t), np.float32)
        for k, t in enumerate(idx):
            if t > 0 and base > 0:
                # out-of-plane motion: faster decorrelation when the heart moves fast
                rate = np.clip(base * (0.5 + speed[t]) * spatial, 0.0, 1.0)[:, None]
                draws = np.sqrt(1.0 - rate) * draws + np.sqrt(rate) * rng.standard_normal(draws.shape, np.float32)
                leaf_rate = min(1.0, base * (1.0 + look.valve_decorrelation))
                leaf_draws = (math.sqrt(1.0 - leaf_rate) * leaf_draws
                              + math.sqrt(leaf_rate) * rng.standard_normal(leaf_draws.shape, np.float32))
                c = min(1.0, _CLUTTER_DECORRELATION * base / 0.1)
                clutter = math.sqrt(1.0 - c) * clutter + math.sqrt(c) * rng.standard_normal(clutter.shape, np.float32)
            amps[k, :points.shape[0]] = draws * amplitude[:, None]
            amps[k, points.shape[0]:] = leaf_draws * leaflets.amplitude[:, None]
            clutter_frames[k] = clutter * profile
        field = scanner.splat(positions, amps)
        field += clutter_frames
        if settings.noise > 0:
            scanner.add_noise(field, settings.noise, rng)
        frames[idx] = scanner.form_image(field, gain_map=gain_map)
    return display(frames, scanner.fan, look)
