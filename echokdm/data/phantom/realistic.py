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
_HAZE_CONTRAST = 0.7  # relative SD of the haze's grain
_TRUNCATE = 2.0  # Gaussian kernels of the texture step end at 2 sigma (speed; it is texture)


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


def _grain_factor(size: int) -> int:
    """The grain is made on a grid ``factor`` times coarser than the frame: 1 up to 112 px, then
    ``size // 112`` when it divides ``size`` (the grain of a 112-px frame, upsampled as the KDM
    paper upsamples EchoNet's 112-px frames to 224)."""
    k = size // 112
    return k if k > 1 and size % k == 0 else 1


def _grain_splat(scanner, positions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(F, 2, h, w)`` float32: scatterer ``weights`` ``(F, N)`` and their number summed per pixel of
    the grain grid (nearest pixel; :func:`_grain_factor`). The texture step smooths both; the grain
    is their ratio, so that tissue compression does not brighten it."""
    geometry = scanner.geometry
    n_frames, k = positions.shape[0], _grain_factor(geometry.size)
    size = geometry.size // k
    scale = np.array([-1.0 if geometry.mirror else 1.0, 1.0]) / (geometry.spacing_mm * k)
    origin = (geometry.origin_px + 0.5) / k - 0.5
    px = np.rint(positions * scale + origin).astype(np.int64)  # (F, N, 2) nearest (x, y)
    ok = (px[..., 0] >= 0) & (px[..., 0] < size) & (px[..., 1] >= 0) & (px[..., 1] < size)
    frame = np.broadcast_to(np.arange(n_frames)[:, None], ok.shape)[ok]
    index = (frame * size + px[..., 1][ok]) * size + px[..., 0][ok]
    total = np.bincount(index, weights[ok], minlength=n_frames * size * size)
    count = np.bincount(index, minlength=n_frames * size * size)
    shape = (n_frames, size, size)
    return np.stack([total.reshape(shape), count.reshape(shape)], axis=1).astype(np.float32)


def _wide_lowpass(frames: np.ndarray, fan_f: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of sigma ``sigma`` pixels of ``(T, H, W)`` frames inside the fan (normalised),
    computed on blocks of ``f`` x ``f`` pixels (``f`` about sigma / 2) and held over each block:
    the result is smooth to well below one grey level of 8 bits, at a fraction of the cost."""
    from scipy import ndimage

    t, h, w = frames.shape
    f = max(1, int(sigma // 2))
    hb, wb = -(-h // f), -(-w // f)

    def blocks(x):
        padded = np.zeros((x.shape[0], hb * f, wb * f), np.float32)
        padded[:, :h, :w] = x
        return padded.reshape(x.shape[0], hb, f, wb, f).mean(axis=(2, 4))

    small = ndimage.gaussian_filter(blocks(frames), (0, sigma / f, sigma / f), truncate=2.5)
    weight = ndimage.gaussian_filter(blocks(fan_f[None])[0], sigma / f, truncate=2.5)
    small /= np.maximum(weight, np.float32(1e-3))
    return np.repeat(np.repeat(small, f, axis=1), f, axis=2)[:, :h, :w]


def _texture(frames: np.ndarray, grain: np.ndarray | None, fan: np.ndarray, look) -> np.ndarray:
    """Speckle smoothing, the tissue-bound grain and the low-level haze on display values ``(T, H, W)``
    (in place).

    The frame moves ``look.speckle_smoothing`` of the way to its low-pass inside the fan
    (normalised convolution: the black outside the fan does not leak in). ``z``, the smoothed
    scatterer splat ``grain`` standardised inside the fan, makes a pixel-scale texture ``h =
    max(1 + 0.7 z, 0)`` that moves with the tissue (and the blood). The frame is multiplied by
    ``1 + look.grain * z`` (black stays black, the grain is as bright as the tissue under it),
    then ``h`` times the haze is added: ``look.sidelobe_share`` of the frame's wide low-pass
    (:func:`_wide_lowpass`; side lobes and clutter spread the echoes of the walls into the cavities, as the
    faint grainy fill of real cavities shows) plus the flat floor ``look.floor_grey``. Lengths in
    pixels are those of a 112-pixel frame (scaled with the frame size).
    """
    from scipy import ndimage

    scale = fan.shape[-1] / 112.0
    fan_f = fan.astype(np.float32)
    if look.speckle_smoothing > 0:
        # speckle is longer across the beams than along them
        sigma = (scale * look.speckle_smooth_px, 1.5 * scale * look.speckle_smooth_px)
        weight = np.maximum(ndimage.gaussian_filter(fan_f, sigma, truncate=_TRUNCATE), np.float32(1e-3))
        low = ndimage.gaussian_filter(frames, (0, *sigma), truncate=_TRUNCATE)
        low /= weight
        low -= frames
        low *= np.float32(look.speckle_smoothing)
        frames += low
        del low
    if grain is not None:
        k = _grain_factor(fan.shape[-1])
        sigma = scale / k * look.grain_px
        smooth = ndimage.gaussian_filter(grain, (0, 0, sigma, sigma), truncate=_TRUNCATE)
        z, count = smooth[:, 0], smooth[:, 1]
        np.maximum(count, np.float32(0.25 * float(count[::4].mean())), out=count)
        z /= count
        if k > 1:
            z = np.repeat(np.repeat(z, k, axis=1), k, axis=2)
        sample = z[::4, fan]  # every fourth frame is plenty for the mean and SD
        mean, sd = float(sample.mean()), float(sample.std()) + 1e-12
        z -= np.float32(mean)
        z *= np.float32(1.0 / sd)
        haze = None
        if look.sidelobe_share > 0:
            haze = _wide_lowpass(frames, fan_f, scale * look.sidelobe_px)
            haze *= np.float32(look.sidelobe_share)
        if look.grain > 0:
            factor = z * np.float32(look.grain)
            factor += np.float32(1.0)
            np.maximum(factor, np.float32(0.0), out=factor)
            frames *= factor
            del factor
        if haze is not None or look.floor_grey > 0:
            texture = z * np.float32(_HAZE_CONTRAST)
            texture += np.float32(1.0)
            np.maximum(texture, np.float32(0.0), out=texture)
            if haze is None:
                texture *= np.float32(look.floor_grey)
            else:
                haze += np.float32(look.floor_grey)
                texture *= haze
            frames += texture
    frames[:, ~fan] = 0.0
    return np.clip(frames, 0.0, 1.0, out=frames)


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
    # clutter: a slow random walk on the circle between two fixed fields, cos(phi) A + sin(phi) B
    # (unit variance in every bin, correlation cos(step) between frames, no new draws per frame)
    clutter_a, clutter_b = rng_look.standard_normal((2, 2, scanner.n_r, scanner.n_t)).astype(np.float32) * profile
    phi = 0.0
    base = settings.decorrelation
    # partially developed (Rician) speckle: a share of every tissue scatterer's amplitude has a common
    # phase, so the image keeps a smooth, tissue-bound echogenicity under a weaker speckle. The
    # coherent power is ~16 k^2 / (1 - k^2) of the random one (8 scatterers per PSF cell); the
    # amplitudes are scaled so that the mean power is unchanged
    coherence = np.float32(look.speckle_coherence)
    rician = np.float32(1.0 / math.sqrt(1.0 + 15.0 * float(coherence) ** 2))
    random_share = np.float32(math.sqrt(1.0 - float(coherence) ** 2))
    clutter_step = math.acos(math.sqrt(1.0 - min(1.0, _CLUTTER_DECORRELATION * base / 0.1)))
    size = scanner.geometry.size
    frames = np.empty((settings.n_frames, size, size), np.float32)
    textured = look.grain > 0 or look.sidelobe_share > 0 or look.floor_grey > 0
    grain_size = size // _grain_factor(size)
    grain = np.empty((settings.n_frames, 2, grain_size, grain_size), np.float32) if textured else None
    chunk = 8
    for start in range(0, settings.n_frames, chunk):
        idx = np.arange(start, min(start + chunk, settings.n_frames))
        positions = np.broadcast_to(points, (idx.size, *points.shape)).copy()
        positions[:, moving] = motion.forward(points[moving], idx)
        positions = np.concatenate([positions, leaflets.positions(idx, opening)], axis=1)
        amps = np.empty((idx.size, points.shape[0] + leaflets.count, 2), np.float32)
        weights = np.empty((idx.size, draws.shape[0]), np.float32) if grain is not None else None
        clutter_frames = np.empty((idx.size, 2, scanner.n_r, scanner.n_t), np.float32)
        for k, t in enumerate(idx):
            if t > 0 and base > 0:
                # out-of-plane motion: faster decorrelation when the heart moves fast
                rate = np.clip(base * (0.5 + speed[t]) * spatial, 0.0, 1.0)[:, None]
                draws = np.sqrt(1.0 - rate) * draws + np.sqrt(rate) * rng.standard_normal(draws.shape, np.float32)
                leaf_rate = min(1.0, base * (1.0 + look.valve_decorrelation))
                leaf_draws = (math.sqrt(1.0 - leaf_rate) * leaf_draws
                              + math.sqrt(leaf_rate) * rng.standard_normal(leaf_draws.shape, np.float32))
                phi += clutter_step if rng.random() < 0.5 else -clutter_step
            if coherence > 0:
                tissue_amps = amps[k, :points.shape[0]]
                np.multiply(draws, random_share, out=tissue_amps)
                tissue_amps[:, 0] += coherence
                tissue_amps *= (rician * amplitude)[:, None]
            else:
                amps[k, :points.shape[0]] = draws * amplitude[:, None]
            if weights is not None:  # |draw| (Rayleigh): moves with the tissue, decorrelates with its speckle
                np.sqrt(np.einsum("nc,nc->n", draws, draws), out=weights[k])
            amps[k, points.shape[0]:] = leaf_draws * leaflets.amplitude[:, None]
            np.multiply(clutter_a, np.float32(math.cos(phi)), out=clutter_frames[k])
            clutter_frames[k] += np.float32(math.sin(phi)) * clutter_b
        if grain is not None:
            grain[idx] = _grain_splat(scanner, positions[:, :points.shape[0]], weights)
        field = scanner.splat(positions, amps)
        field += clutter_frames
        if settings.noise > 0:
            scanner.add_noise(field, settings.noise, rng)
        frames[idx] = scanner.form_image(field, gain_map=gain_map)
    return display(_texture(frames, grain, scanner.fan, look), scanner.fan, look)
