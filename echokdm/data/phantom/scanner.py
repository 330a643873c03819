"""Image formation of the phantom: scatterers -> polar RF-envelope image -> sector fan.

The model is the usual "convolution" simulator of B-mode images, done on a polar
(depth x angle) grid, which is how a phased-array probe samples the body:

1. Each point scatterer carries a complex amplitude ``A e^{i psi}`` (tissue echogenicity times a
   circular Gaussian draw). The phase stands for the round-trip phase ``2 k R`` of the echo; it
   is a property of the scatterer (fixed in material coordinates, "frozen speckle"), so the
   speckle moves with the tissue and changes only as the tissue deforms or as scatterers are
   redrawn (``decorrelation``).
2. Scatterers are splatted bilinearly onto the polar grid and convolved with the complex
   baseband (IQ) point-spread function: a Gaussian envelope, short axially and widening
   laterally with depth. The envelope ``|IQ|`` is what envelope detection of the modulated RF
   pulse (Hilbert transform / IQ demodulation) returns.
3. Depth gain (attenuation left after time-gain compensation), a taper at the sector edges and
   electronic noise (added before the PSF, amplified with depth by the TGC); then log
   compression with the patient's dynamic range and gain.
4. Scan conversion: bilinear interpolation of the log image at each pixel of the Cartesian
   frame inside the fan; pixels outside the fan are exactly 0.

The PSF is the patient's physical one widened by 0.8 output pixel (an anti-alias filter before
scan conversion), so the image is band-limited at the output grid and warping it with the true
motion reproduces the next frame up to interpolation error. All per-patient work (grid,
kernels, interpolation weights) is done once in :class:`Scanner`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from echokdm.data.phantom.patient import PhantomPatient

__all__ = ["ImageGeometry", "Scanner"]

_ANTI_ALIAS_PX = 0.8  # PSF widening (sigma, in output pixels) before scan conversion
_BINS_PER_SIGMA = 1.5  # polar grid sampling of the PSF
_REALISTIC_BINS_PER_SIGMA = 1.1  # the realistic style smooths its speckle after log compression anyway
_EDGE_TAPER_DEG = 6.0  # the sector darkens over its outer degrees
_NOISE_GROWTH_DB = 10.0  # electronic noise grows this much from the top to the bottom of the fan


@dataclasses.dataclass(frozen=True)
class ImageGeometry:
    """Where the sector lies in a ``size x size`` frame.

    The transducer sits at pixel ``((size - 1) / 2, origin_dy_px)`` (top centre); pixels are
    square with side ``spacing_mm``; the sector spans ``depth_mm`` (reaching the bottom row at its
    centre when ``zoom`` is 1 and ``origin_dy_px`` 0) and ``+-half_angle_deg`` around the beam
    steered ``steer_deg`` from the vertical, from ``min_radius_mm`` (a rounded top) outwards.
    ``mirror`` flips the image left-right: millimetre X (the anatomy's image-right) points to
    the image left. The classic phantom uses the defaults.
    """

    size: int
    spacing_mm: float
    depth_mm: float
    half_angle_deg: float
    steer_deg: float = 0.0
    origin_dy_px: float = 0.0
    min_radius_mm: float = 0.0
    mirror: bool = False

    @classmethod
    def for_patient(cls, patient: PhantomPatient, size: int) -> ImageGeometry:
        if not isinstance(size, (int, np.integer)) or size < 16:
            raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
        size = int(size)
        look = patient.look
        if look is None:
            return cls(size, patient.depth_mm / (size - 1), patient.depth_mm, patient.sector_angle_deg / 2.0)
        return cls(size, patient.depth_mm / (size - 1) / look.zoom, patient.depth_mm, patient.sector_angle_deg / 2.0,
                   steer_deg=look.steer_deg, origin_dy_px=look.origin_dy_px, min_radius_mm=look.min_radius_mm,
                   mirror=look.mirror)

    @property
    def origin_px(self) -> np.ndarray:
        """Transducer position ``(x, y)`` in pixels."""
        return np.array([(self.size - 1) / 2.0, self.origin_dy_px])

    @property
    def _x_sign(self) -> np.ndarray:
        return np.array([-1.0 if self.mirror else 1.0, 1.0])

    def px_to_mm(self, points_px: np.ndarray) -> np.ndarray:
        """``(..., 2)`` pixel (x, y) -> millimetres (X, Y) from the transducer."""
        mm = (np.asarray(points_px, dtype=np.float64) - self.origin_px) * self.spacing_mm
        return mm * self._x_sign if self.mirror else mm

    def mm_to_px(self, points_mm: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`px_to_mm`."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        if self.mirror:
            points_mm = points_mm * self._x_sign
        return points_mm / self.spacing_mm + self.origin_px

    def mm_vectors_to_px(self, vectors_mm: np.ndarray) -> np.ndarray:
        """``(..., 2)`` displacements in mm -> pixels (X flipped in a mirrored view)."""
        vectors = np.asarray(vectors_mm, dtype=np.float64)
        return (vectors * self._x_sign if self.mirror else vectors) / self.spacing_mm

    def pixel_centres_mm(self) -> np.ndarray:
        """``(H, W, 2)`` (X, Y) mm of every pixel centre."""
        yy, xx = np.mgrid[0:self.size, 0:self.size].astype(np.float64)
        return self.px_to_mm(np.stack([xx, yy], axis=-1))

    def fan_mask(self) -> np.ndarray:
        """``(H, W)`` bool: pixels whose centre lies inside the sector."""
        p = self.pixel_centres_mm()
        radius = np.hypot(p[..., 0], p[..., 1])
        angle = np.degrees(np.arctan2(p[..., 0], p[..., 1]))
        if self.steer_deg == 0.0 and self.min_radius_mm == 0.0:
            return (radius <= self.depth_mm) & (np.abs(angle) <= self.half_angle_deg) & (p[..., 1] >= 0)
        return ((radius <= self.depth_mm) & (radius >= self.min_radius_mm)
                & (np.abs(angle - self.steer_deg) <= self.half_angle_deg) & (p[..., 1] >= 0))


def _gaussian_rows(sigma_bins: np.ndarray, n: int) -> np.ndarray:
    """``float32`` ``(len(sigma), n, n)`` Gaussian convolution matrices, peak 1, one sigma per row."""
    offsets = (np.arange(n)[:, None] - np.arange(n)[None, :]).astype(np.float32)  # (n, n)
    s = np.asarray(sigma_bins, dtype=np.float32)[:, None, None]
    return np.exp(-0.5 * (offsets[None] / s) ** 2)


def _splat_power(kernels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean output power per unit input of a bilinear splat followed by each kernel row.

    ``kernels`` is ``(R, n)`` (a kernel centred in the row). Returns ``(splat, white)``: the power
    from one scatterer at a random sub-bin position, and from white noise of unit variance.
    """
    offsets = np.linspace(0.0, 1.0, 16, endpoint=False)
    shifted = np.roll(kernels, 1, axis=-1)
    splat = np.mean([np.sum(((1 - u) * kernels + u * shifted) ** 2, axis=-1) for u in offsets], axis=0)
    return splat, np.sum(kernels**2, axis=-1)


class Scanner:
    """Everything about image formation that is fixed for a patient and a frame size.

    Parameters
    ----------
    patient : PhantomPatient
        PSF, gains, dynamic range.
    geometry : ImageGeometry
        Output frame and sector.
    scatterers_per_cell : float
        Mean number of scatterers per PSF area (2 pi sigma_ax sigma_lat at mid-depth).
    """

    def __init__(self, patient: PhantomPatient, geometry: ImageGeometry, scatterers_per_cell: float = 8.0):
        self.patient = patient
        self.geometry = geometry
        self.optics = patient if patient.look is None else patient.look  # PSF, depth gain, display
        aa = _ANTI_ALIAS_PX * geometry.spacing_mm
        self.sigma_axial = math.hypot(self.optics.psf_axial_mm, aa)
        self._aa = aa
        depth = geometry.depth_mm
        bins_per_sigma = _BINS_PER_SIGMA if patient.look is None else _REALISTIC_BINS_PER_SIGMA
        self.dr = self.sigma_axial / bins_per_sigma
        self.n_r = int(math.ceil((depth + 3 * self.sigma_axial) / self.dr))
        self.radii = (np.arange(self.n_r) + 0.5) * self.dr  # bin centres, mm
        lateral = self.sigma_lateral(self.radii)
        deep = self.radii > 0.25 * depth  # angular sampling set by the narrowest beam in angle
        self.dtheta = float(np.min(lateral[deep] / self.radii[deep])) / bins_per_sigma
        self.theta_max = (math.radians(geometry.half_angle_deg) + 3 * float(lateral[-1] / depth) + 4 * self.dtheta
                          + math.radians(abs(geometry.steer_deg)))
        self.n_t = int(math.ceil(2 * self.theta_max / self.dtheta))
        self.theta0 = -0.5 * self.n_t * self.dtheta  # left edge of the grid
        mid = self.sigma_lateral(np.array([0.5 * depth]))[0]
        self.density = scatterers_per_cell / (2 * math.pi * self.sigma_axial * mid)  # per mm^2
        self._build_kernels(lateral)
        self._build_gains()
        self._build_scan_conversion()

    def sigma_lateral(self, radius_mm: np.ndarray) -> np.ndarray:
        """Lateral PSF sigma (mm) at depth ``radius_mm`` (physical beam plus anti-alias)."""
        p = self.optics
        return np.hypot(p.psf_lateral_mm + p.psf_lateral_growth * np.asarray(radius_mm), self._aa)

    @property
    def grid_radius_mm(self) -> float:
        """Depth covered by the polar grid (scatterers beyond it are not imaged)."""
        return self.n_r * self.dr

    # -- precomputation --------------------------------------------------------------------------
    def _build_kernels(self, lateral: np.ndarray) -> None:
        sigma_t = lateral / np.maximum(self.radii, self.dr) / self.dtheta  # (n_r,) lateral sigma in bins
        self.lateral_kernels = _gaussian_rows(sigma_t, self.n_t)  # (n_r, n_t, n_t)
        self.sigma_axial_bins = self.sigma_axial / self.dr
        half = int(math.ceil(4 * self.sigma_axial_bins))
        axial = np.exp(-0.5 * (np.arange(-half, half + 1) / self.sigma_axial_bins) ** 2)
        self.axial_kernel = axial.astype(np.float32)
        centred = self.lateral_kernels[:, self.n_t // 2, :].astype(np.float64)  # (n_r, n_t)
        self._lat_splat, self._lat_white = _splat_power(centred)
        ax_splat, ax_white = _splat_power(np.pad(axial, 1)[None])
        self._ax_splat, self._ax_white = float(ax_splat[0]), float(ax_white[0])

    def _build_gains(self) -> None:
        """Per-row gain that makes a unit-echogenicity region have unit mean power, times depth gain."""
        p = self.optics
        per_bin = self.density * self.radii * self.dr * self.dtheta  # scatterers per polar bin, (n_r,)
        unit = np.sqrt(per_bin * self._ax_splat * self._lat_splat)  # rms of a unit region before gain
        depth_gain = 10 ** (p.attenuation_residual_db_per_cm * self.radii / 10.0 / 20.0)
        self.row_gain = (depth_gain / unit).astype(np.float32)  # (n_r,)
        # white noise of variance v per bin reaches v * ax_white * lat_white after the PSF
        self._noise_scale = (10 ** (_NOISE_GROWTH_DB * self.radii / self.geometry.depth_mm / 20.0)
                             / np.sqrt(self._ax_white * self._lat_white) / self.row_gain).astype(np.float32)
        self.white_scale = (1.0 / np.sqrt(self._ax_white * self._lat_white) / self.row_gain).astype(np.float32)
        self.thetas = theta = self.theta0 + (np.arange(self.n_t) + 0.5) * self.dtheta
        off_axis = np.abs(theta - math.radians(self.geometry.steer_deg)) if self.geometry.steer_deg else np.abs(theta)
        inner = (math.radians(self.geometry.half_angle_deg) - off_axis) / math.radians(_EDGE_TAPER_DEG)
        self.col_gain = (0.55 + 0.45 * np.sin(0.5 * np.pi * np.clip(inner, 0, 1))).astype(np.float32)

    def _build_scan_conversion(self) -> None:
        g = self.geometry
        self.fan = g.fan_mask()
        p = g.pixel_centres_mm()[self.fan]  # (n_fan, 2)
        fi = np.hypot(p[:, 0], p[:, 1]) / self.dr - 0.5
        fj = (np.arctan2(p[:, 0], p[:, 1]) - self.theta0) / self.dtheta - 0.5
        fi = np.clip(fi, 0, self.n_r - 1.000001)
        fj = np.clip(fj, 0, self.n_t - 1.000001)
        i0, j0 = np.floor(fi).astype(np.int64), np.floor(fj).astype(np.int64)
        wi, wj = fi - i0, fj - j0
        base = i0 * self.n_t + j0
        self._sc_index = np.stack([base, base + 1, base + self.n_t, base + self.n_t + 1])  # (4, n_fan)
        self._sc_weight = np.stack([(1 - wi) * (1 - wj), (1 - wi) * wj, wi * (1 - wj), wi * wj]).astype(np.float32)

    # -- per frame -------------------------------------------------------------------------------
    def splat(self, positions: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
        """Accumulate scatterers on the polar grid.

        Parameters
        ----------
        positions : numpy.ndarray
            ``(F, N, 2)`` image (X, Y) mm.
        amplitudes : numpy.ndarray
            ``(F, N, 2)`` or ``(N, 2)`` real and imaginary parts of the complex amplitudes.

        Returns
        -------
        numpy.ndarray
            ``float32`` ``(F, 2, n_r, n_t)``: real and imaginary parts of the splatted field.
        """
        n_frames = positions.shape[0]
        fi = np.hypot(positions[..., 0], positions[..., 1]) / self.dr - 0.5  # (F, N)
        fj = (np.arctan2(positions[..., 0], positions[..., 1]) - self.theta0) / self.dtheta - 0.5
        i0, j0 = np.floor(fi), np.floor(fj)
        ok = (i0 >= 0) & (i0 < self.n_r - 1) & (j0 >= 0) & (j0 < self.n_t - 1)
        frame = np.broadcast_to(np.arange(n_frames)[:, None], ok.shape)[ok]
        wi, wj = (fi - i0)[ok], (fj - j0)[ok]
        base = (frame * self.n_r + i0[ok].astype(np.int64)) * self.n_t + j0[ok].astype(np.int64)
        amp = np.broadcast_to(amplitudes, positions.shape)[ok]  # (M, 2)
        index = np.concatenate([base, base + 1, base + self.n_t, base + self.n_t + 1])
        weight = np.concatenate([(1 - wi) * (1 - wj), (1 - wi) * wj, wi * (1 - wj), wi * wj])
        size = n_frames * self.n_r * self.n_t
        re = np.bincount(index, weight * np.tile(amp[:, 0], 4), minlength=size)
        im = np.bincount(index, weight * np.tile(amp[:, 1], 4), minlength=size)
        field = np.stack([re.reshape(n_frames, self.n_r, self.n_t), im.reshape(n_frames, self.n_r, self.n_t)], axis=1)
        return field.astype(np.float32)

    def add_noise(self, field: np.ndarray, level: float, rng: np.random.Generator) -> None:
        """Add complex white noise in place, ``level`` = rms relative to white at the top."""
        scale = (level / math.sqrt(2.0)) * self._noise_scale[:, None]  # (n_r, 1)
        field += rng.standard_normal(field.shape, dtype=np.float32) * scale

    def envelope(self, field: np.ndarray) -> np.ndarray:
        """Polar field ``(F, 2, n_r, n_t)`` -> envelope ``(n_r, n_t, F)`` after the PSF and the gains."""
        from scipy import ndimage

        n_frames = field.shape[0]
        iq = ndimage.convolve1d(field, self.axial_kernel, axis=2, mode="constant")  # (F, 2, n_r, n_t)
        rows = iq.reshape(-1, self.n_r, self.n_t).transpose(1, 2, 0)  # (n_r, n_t, 2F)
        iq = np.matmul(self.lateral_kernels, rows)  # (n_r, n_t, 2F): K_r @ row, per depth
        iq = iq.reshape(self.n_r, self.n_t, n_frames, 2)
        envelope = np.sqrt(iq[..., 0] ** 2 + iq[..., 1] ** 2)  # (n_r, n_t, F)
        envelope *= self.row_gain[:, None, None] * self.col_gain[None, :, None]
        return envelope

    def scan_convert(self, log_image: np.ndarray) -> np.ndarray:
        """Polar display values ``(n_r, n_t, F)`` in [0, 1] -> frames ``(F, H, W)``, 0 outside the fan."""
        n_frames = log_image.shape[-1]
        flat = log_image.reshape(self.n_r * self.n_t, n_frames).astype(np.float32)
        values = np.einsum("kp,kpf->pf", self._sc_weight, flat[self._sc_index])  # (n_fan, F)
        frames = np.zeros((n_frames, self.geometry.size, self.geometry.size), np.float32)
        frames[:, self.fan] = np.clip(values.T, 0.0, 1.0)
        return frames

    def form_image(self, field: np.ndarray, gain_map: np.ndarray | None = None) -> np.ndarray:
        """Polar field ``(F, 2, n_r, n_t)`` -> frames ``(F, H, W)`` float32 in [0, 1].

        Classic patients: log compression with the patient's dynamic range and gain. With a
        realistic look, the envelope is first multiplied by ``gain_map`` ``(n_r, n_t)`` (TGC,
        shadows), and the display applies the look's reject and gamma.
        """
        envelope = self.envelope(field)
        p = self.optics
        if gain_map is not None:
            envelope *= gain_map[:, :, None]
        level_db = 20.0 * np.log10(envelope + 1e-12)
        log_image = np.clip((level_db + (p.gain_db + p.dynamic_range_db)) / p.dynamic_range_db, 0.0, 1.0)
        if self.patient.look is not None:
            look = self.patient.look
            log_image = np.clip((log_image - look.reject) / (1.0 - look.reject), 0.0, 1.0) ** np.float32(look.gamma)
        return self.scan_convert(log_image)
