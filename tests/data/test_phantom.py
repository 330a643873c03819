"""The synthetic echo phantom: determinism, parameter ranges, exact ground truth, image, files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from echokdm.data.phantom import (
    PATIENT_RANGES,
    PhantomClip,
    PhantomPatient,
    cardiac_timing,
    load_npz,
    sample_patient,
    simulate_clip,
    volume_ratio,
)
from echokdm.data.phantom.anatomy import TISSUES, tissue_labels
from echokdm.data.phantom.motion import LVMotion
from echokdm.errors import ReadError
from echokdm.geometry.flow import transport_keypoints, warp
from echokdm.io.cine import Cine


@pytest.fixture(scope="module")
def patient() -> PhantomPatient:
    return dataclasses.replace(sample_patient(5), ef_percent=65.0)  # strong motion


@pytest.fixture(scope="module")
def clip(patient) -> PhantomClip:
    """One noiseless beat at 25 fps, 112 x 112."""
    return simulate_clip(patient, size=112, fps=25.0, noise=0.0, decorrelation=0.0, seed=3)


def _cross(u, v):
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


# -- determinism and parameters ----------------------------------------------------------------------


def test_same_seed_gives_identical_arrays():
    p = sample_patient(11, patient_index=2)
    assert p == sample_patient(11, patient_index=2)
    a = simulate_clip(p, n_frames=4, size=48, noise=0.01, decorrelation=0.3, seed=9)
    b = simulate_clip(p, n_frames=4, size=48, noise=0.01, decorrelation=0.3, seed=9)
    for name in ("frames", "masks", "keypoints", "volumes_ml"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


def test_different_seeds_differ():
    assert sample_patient(1) != sample_patient(2)
    assert sample_patient(1, 0) != sample_patient(1, 1)
    p = sample_patient(1)
    a = simulate_clip(p, n_frames=2, size=48, noise=0.0, seed=0)
    b = simulate_clip(p, n_frames=2, size=48, noise=0.0, seed=1)
    assert not np.array_equal(a.frames, b.frames)  # another acquisition: other speckle
    np.testing.assert_array_equal(a.masks, b.masks)  # same heart
    c = simulate_clip(sample_patient(2), n_frames=2, size=48, noise=0.0, seed=0)
    assert not np.array_equal(a.frames, c.frames)


def test_sample_patient_from_generator():
    p1 = sample_patient(np.random.default_rng(4))
    p2 = sample_patient(np.random.default_rng(4))
    assert p1 == p2
    rng = np.random.default_rng(4)
    assert sample_patient(rng) != sample_patient(rng)
    with pytest.raises(TypeError, match="seed"):
        sample_patient(1.5)
    with pytest.raises(ValueError, match="patient_index"):
        sample_patient(1, patient_index=-1)


def test_patient_parameters_within_ranges():
    patients = [sample_patient(s, i) for s in range(40) for i in range(5)]
    for field in ("heart_rate_bpm", "ef_percent", "tilt_deg", "sector_angle_deg", "longitudinal_share"):
        values = np.array([getattr(p, field) for p in patients])
        lo, hi = PATIENT_RANGES[field]
        assert values.min() >= lo and values.max() <= hi, field
        assert values.max() - values.min() > 0.6 * (hi - lo), f"{field} barely varies"
    tilts = np.array([p.tilt_deg for p in patients])
    assert np.abs(tilts).max() <= 20.0
    efs = np.array([p.ef_percent for p in patients])
    assert 20.0 <= efs.min() and efs.max() <= 75.0
    hrs = np.array([p.heart_rate_bpm for p in patients])
    assert 50.0 <= hrs.min() and hrs.max() <= 110.0
    for p in patients:
        assert p.lv_length_mm > 1.2 * p.lv_half_width_mm
        assert 60.0 <= p.sector_angle_deg <= 90.0
        # the heart (apex to the far end of the atria) fits in the sector depth
        assert p.depth_mm >= p.apex_depth_mm + p.lv_length_mm * np.cos(np.radians(p.tilt_deg)) + p.la_length_mm
    # failing ventricles are larger
    edv = np.array([p.edv_ml for p in patients])
    assert edv[efs < 35].mean() > edv[efs > 55].mean()


def test_patient_validation_and_json():
    p = sample_patient(3)
    assert PhantomPatient.from_json(p.to_json()) == p
    with pytest.raises(ValueError, match="ef_percent"):
        dataclasses.replace(p, ef_percent=120.0)
    with pytest.raises(ValueError, match="lv_length_mm"):
        dataclasses.replace(p, lv_length_mm=20.0, lv_half_width_mm=25.0)
    with pytest.raises(ValueError, match="unknown PhantomPatient parameter.*colour"):
        PhantomPatient.from_json('{"colour": 1}')


def test_simulate_clip_rejects_bad_arguments(patient):
    for kwargs, message in [({"fps": 0}, "fps"), ({"decorrelation": 1.5}, "decorrelation"),
                            ({"noise": -1}, "noise"), ({"n_frames": 0}, "n_frames"), ({"size": 8}, "size"),
                            ({"start_phase": 1.0}, "start_phase"), ({"seed": -2}, "seed")]:
        with pytest.raises(ValueError, match=message):
            simulate_clip(patient, **kwargs)


# -- cardiac cycle and volumes ----------------------------------------------------------------------------


@pytest.mark.parametrize("heart_rate", [50.0, 75.0, 110.0])
def test_volume_curve_has_physiological_phases(heart_rate):
    timing = cardiac_timing(heart_rate)
    t = np.linspace(0, timing.period_s, 2001)
    v = volume_ratio(t, heart_rate, 60.0, atrial_fraction=0.25)
    es = timing.end_systole_s
    assert v.max() == pytest.approx(1.0) and v.min() == pytest.approx(0.4)
    assert t[np.argmin(v)] == pytest.approx(es, abs=0.002)
    assert np.all(v[t <= timing.isovolumic_contraction_s] == pytest.approx(1.0))  # isovolumic contraction
    ivr = (t >= es) & (t <= es + timing.isovolumic_relaxation_s)
    assert np.all(v[ivr] == pytest.approx(0.4))  # isovolumic relaxation
    assert np.all(np.diff(v[t <= es]) <= 1e-12)  # ejection only empties
    assert np.all(np.diff(v[t >= es]) >= -1e-12)  # filling only fills
    # rapid ejection: the first 35 % of the ejection time ejects 70 % of the stroke volume
    t_rapid = timing.isovolumic_contraction_s + 0.35 * timing.ejection_s
    assert volume_ratio(np.array([t_rapid]), heart_rate, 60.0)[0] == pytest.approx(1 - 0.7 * 0.6)
    # atrial kick: the last atrial_s of the cycle adds the atrial fraction of the filling
    before_kick = volume_ratio(np.array([timing.period_s - timing.atrial_s]), heart_rate, 60.0)[0]
    assert 1 - before_kick == pytest.approx(0.25 * 0.6, rel=1e-6)
    np.testing.assert_allclose(volume_ratio(t + timing.period_s, heart_rate, 60.0), v, atol=1e-12)  # periodic


def test_ef_and_cycle_frames(clip, patient):
    v = clip.volumes_ml
    assert clip.ef == pytest.approx((clip.edv - clip.esv) / clip.edv * 100.0)
    assert clip.edv == pytest.approx(v[clip.ed_frames].mean())
    assert abs(clip.ef - patient.ef_percent) < 1.0  # the simulated shape achieves the drawn EF
    assert clip.ed_frames.tolist() == [0]  # one beat starting at ED
    assert v[clip.ed_frames[0]] == pytest.approx(v.max()) and v[clip.es_frames[0]] == pytest.approx(v.min())
    assert clip.edv == pytest.approx(patient.edv_ml)
    es_time = clip.times_s[clip.es_frames[0]]
    assert abs(es_time - cardiac_timing(patient.heart_rate_bpm).end_systole_s) <= 1.0 / clip.fps


@pytest.mark.parametrize("fps,start_phase", [(30.0, 0.0), (50.0, 0.4)])
def test_multi_beat_cycle_frames_and_ef(fps, start_phase):
    p = dataclasses.replace(sample_patient(8), heart_rate_bpm=100.0, ef_percent=45.0)
    c = simulate_clip(p, n_beats=2.6, fps=fps, size=32, start_phase=start_phase, noise=0.0)
    period = 60.0 / p.heart_rate_bpm
    assert c.n_frames == round(2.6 * period * fps)
    assert len(c.ed_frames) >= 2 and len(c.es_frames) >= 2
    for e in c.ed_frames:  # each ED is a local maximum of the volume, each ES a local minimum
        window = c.volumes_ml[max(0, e - 3):e + 4]
        assert c.volumes_ml[e] == pytest.approx(window.max())
    for s in c.es_frames:
        window = c.volumes_ml[max(0, s - 3):s + 4]
        assert c.volumes_ml[s] == pytest.approx(window.min())
    assert np.all(np.diff(c.ed_frames) == pytest.approx(period * fps, abs=1.01))
    assert abs(c.ef - 45.0) < 1.0


# -- keypoints and masks -------------------------------------------------------------------------------------


def test_keypoints_shape_order_and_sides(clip):
    kp = clip.keypoints.astype(np.float64)
    assert clip.keypoints.shape == (clip.n_frames, 40, 2) and clip.keypoints.dtype == np.float32
    annulus = clip.geometry.mm_to_px(clip.motion.annulus())  # (T, 2, 2) left, right hinge
    base = annulus.mean(axis=1)  # (T, 2)
    apex = clip.geometry.mm_to_px(clip.motion.apex)
    axis = apex - base
    side = _cross(axis[:, None, :], kp - base[:, None, :])  # (T, 40)
    assert np.all(side[:, :20] < 0) and np.all(side[:, 20:] > 0)  # left first, then right
    assert np.all(_cross(axis, annulus[:, 0] - base) < 0)  # left hinge on the left
    length = np.linalg.norm(axis, axis=1)
    unit = axis / length[:, None]
    along = np.einsum("tkc,tc->tk", kp - base[:, None, :], unit) / length[:, None]  # fraction towards the apex
    t_j = (np.arange(20) + 0.5) / 20
    np.testing.assert_allclose(along[:, :20], np.broadcast_to(t_j, (clip.n_frames, 20)), atol=1e-4)
    np.testing.assert_allclose(along[:, 20:], np.broadcast_to(t_j[::-1], (clip.n_frames, 20)), atol=1e-4)
    # chords are perpendicular to the axis and bisected by it
    chords = kp[:, 39 - np.arange(20)] - kp[:, :20]
    assert np.abs(np.einsum("tkc,tc->tk", chords, unit)).max() < 1e-3
    mid = 0.5 * (kp[:, :20] + kp[:, 39 - np.arange(20)])
    assert np.abs(_cross(unit[:, None, :], mid - base[:, None, :])).max() < 1e-3
    # the apex is the boundary point farthest from the basal centre
    dist = np.linalg.norm(kp - base[:, None, :], axis=-1)
    assert np.all(dist.max(axis=1) < length)


def test_keypoints_lie_on_the_mask_boundary(clip):
    for t in range(clip.n_frames):
        mask = clip.masks[t].astype(bool)
        inside = np.argwhere(mask)[:, ::-1]  # (x, y) of pixel centres in the mask
        outside = np.argwhere(ndimage.binary_dilation(mask, iterations=2) & ~mask)[:, ::-1]
        kp = clip.keypoints[t]
        d_in = np.min(np.linalg.norm(kp[:, None] - inside[None], axis=-1), axis=1)
        d_out = np.min(np.linalg.norm(kp[:, None] - outside[None], axis=-1), axis=1)
        assert d_in.max() < 1.2 and d_out.max() < 1.2, f"frame {t}"
        assert d_in.mean() < 0.75 and d_out.mean() < 0.75


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_simpson_volume_matches_mask_volume(seed):
    """Keypoint (Simpson) volume vs the mask's volume of revolution about the same axis, 3 %."""
    c = simulate_clip(sample_patient(seed), size=112, n_frames=12, fps=20.0, noise=0.0)
    a, r = c.motion.to_local(c.geometry.pixel_centres_mm())
    sp = c.spacing_mm[0]
    mask_ml = np.array([np.sum(np.pi * np.abs(r[m.astype(bool)])) * sp**2 / 1000.0 for m in c.masks])
    rel = mask_ml / c.volumes_ml - 1.0
    assert np.abs(rel).max() < 0.03
    assert abs(rel.mean()) < 0.01


def test_masks_are_the_lv_blood_pool_of_the_anatomy(clip, patient):
    grid = clip.geometry.pixel_centres_mm()
    a, r = clip.motion.to_local(grid)
    labels = tissue_labels(a.ravel(), r.ravel(), np.linalg.norm(grid, axis=-1).ravel(), patient)
    lv = labels.reshape(a.shape) == TISSUES.index("lv_blood")
    np.testing.assert_array_equal(clip.masks[0].astype(bool), lv)  # frame 0 is the material frame
    assert clip.masks.dtype == np.uint8 and set(np.unique(clip.masks)) == {0, 1}
    assert clip.masks[clip.es_frames[0]].sum() < 0.8 * clip.masks[0].sum()


# -- motion and exact flow -------------------------------------------------------------------------------------


def _extreme_patients():
    base = sample_patient(2)
    return [dataclasses.replace(base, ef_percent=75.0, longitudinal_share=0.5, wall_thickness_mm=6.0),
            dataclasses.replace(base, ef_percent=20.0, longitudinal_share=0.0, tilt_deg=-20.0)]


@pytest.mark.parametrize("which", [0, 1])
def test_motion_is_invertible_with_positive_jacobian(which):
    p = _extreme_patients()[which]
    motion = LVMotion(p, np.array([1.0, 1.0 - p.ef_percent / 100.0]))
    rng = np.random.default_rng(0)
    a_min, a_max, r_max = motion.support()
    a = rng.uniform(a_min - 10, a_max + 10, 4000)
    r = rng.uniform(-r_max - 10, r_max + 10, 4000)
    pts = motion.to_image(a, r)
    moved = motion.forward(pts, 1)
    np.testing.assert_allclose(motion.inverse(moved, 1), pts, atol=1e-6)
    np.testing.assert_allclose(motion.forward(motion.inverse(pts, 1), 1), pts, atol=1e-6)
    h = 1e-4  # central differences of the map
    jx = (motion.forward(pts + [h, 0], 1) - motion.forward(pts - [h, 0], 1)) / (2 * h)
    jy = (motion.forward(pts + [0, h], 1) - motion.forward(pts - [0, h], 1)) / (2 * h)
    det = jx[:, 0] * jy[:, 1] - jx[:, 1] * jy[:, 0]
    bound = motion.long_scale[1] * motion.lat_scale[1]
    assert det.min() > 0.99 * bound
    np.testing.assert_allclose(motion.forward(pts, 0), pts, atol=1e-12)  # ED is the material frame


def test_myocardium_thickens_and_apex_stays(clip):
    m = clip.motion
    es = clip.es_frames[0]
    a = np.array([0.5 * m.length0, 0.5 * m.length0])
    q = np.sqrt(0.75)  # q(0.5) of the bullet at mid-cavity
    endo = m.to_image(a, np.array([m.width0 * q, -m.width0 * q]))
    epi = m.to_image(a, np.array([m.width0 * q + m.wall, -m.width0 * q - m.wall]))
    thick_ed = np.linalg.norm(epi - endo, axis=1)
    thick_es = np.linalg.norm(m.forward(epi, es) - m.forward(endo, es), axis=1)
    assert np.all(thick_es > 1.25 * thick_ed)
    np.testing.assert_allclose(m.forward(m.apex[None], es)[0], m.apex, atol=1e-9)
    far = np.array([[-60.0, 150.0], [70.0, 20.0]])  # outside the moving region
    np.testing.assert_allclose(m.forward(far, es), far)


@pytest.mark.parametrize("pair", [(0, "es"), ("es", 0), (2, 3), ("es", -1)])
def test_exact_flow_transports_keypoints(clip, pair):
    a, b = (clip.es_frames[0] if f == "es" else f % clip.n_frames for f in pair)
    flow = clip.flow(a, b)
    assert flow.shape == (2, 112, 112) and flow.dtype == np.float32
    source = transport_keypoints(clip.keypoints[b], flow)
    assert np.abs(source - clip.keypoints[a]).max() < 0.1


def test_exact_flow_transports_material_points(clip):
    """Any tissue point, not only keypoints: target q -> q + flow(q) is the point's source position."""
    m, g = clip.motion, clip.geometry
    rng = np.random.default_rng(0)
    a_min, a_max, r_max = m.support()
    material = m.to_image(rng.uniform(a_min, a_max, 3000), rng.uniform(-r_max, r_max, 3000))
    es = clip.es_frames[0]
    for a, b, p99, worst in [(2, 3, 0.03, 0.1), (5, 8, 0.05, 0.1), (0, es, 0.15, 0.3), (es, 0, 0.15, 0.3)]:
        q_a, q_b = g.mm_to_px(m.forward(material, a)), g.mm_to_px(m.forward(material, b))
        inside = (q_b.min(axis=1) > 1) & (q_b.max(axis=1) < 110)
        err = np.linalg.norm(transport_keypoints(q_b[inside], clip.flow(a, b)) - q_a[inside], axis=1)
        # bilinear sampling of a curved flow is the only error left
        assert np.median(err) < 0.01 and np.percentile(err, 99) < p99 and err.max() < worst, (a, b)


def test_flow_conventions(clip):
    np.testing.assert_array_equal(clip.flow(4, 4), 0.0)
    es = clip.es_frames[0]
    flow = clip.flow(0, es)
    assert np.abs(flow).max() > 3.0  # the heart does move (pixels)
    assert np.all(flow[:, -1, :] == 0) and np.all(flow[:, :, 0] == 0)  # far from the heart: still
    # the apex barely moves, the mitral annulus moves towards the apex in systole
    apex = clip.geometry.mm_to_px(clip.motion.apex)
    assert np.abs(transport_keypoints(apex[None], flow) - apex).max() < 0.05
    hinge_es = clip.geometry.mm_to_px(clip.motion.annulus()[es])
    hinge_ed = transport_keypoints(hinge_es, flow)  # where the ES hinge points were at ED
    assert np.all(np.linalg.norm(hinge_ed - apex, axis=1) > np.linalg.norm(hinge_es - apex, axis=1) + 2)
    consecutive = clip.consecutive_flows()
    assert consecutive.shape == (clip.n_frames - 1, 2, 112, 112)
    np.testing.assert_array_equal(consecutive[5], clip.flow(5, 6))
    from_ed = clip.flows_from_ed()
    assert from_ed.shape == (clip.n_frames, 2, 112, 112)
    np.testing.assert_array_equal(from_ed[es], flow)
    with pytest.raises(IndexError, match="target frame 99"):
        clip.flow(0, 99)


def _fan_mse(x, y, fan):
    return float(np.mean((x - y)[fan] ** 2))


def test_warping_with_exact_flow_reproduces_the_target_frame(clip):
    fan = clip.fan_mask
    for a, b in [(0, clip.es_frames[0]), (clip.es_frames[0], clip.n_frames - 1), (2, 4)]:
        flow = clip.flow(a, b)
        warped = _fan_mse(warp(clip.frames[a], flow), clip.frames[b], fan)
        unwarped = _fan_mse(clip.frames[a], clip.frames[b], fan)
        assert warped < 0.25 * unwarped, (a, b, warped, unwarped)


def test_decorrelation_raises_the_warp_error(patient, clip):
    noisy = simulate_clip(patient, size=112, fps=25.0, n_frames=6, noise=0.0, decorrelation=0.5, seed=3)
    np.testing.assert_allclose(noisy.frames[0], clip.frames[0], atol=1e-5)  # same scatterers at the start
    fan = clip.fan_mask
    flow = clip.flow(0, 5)
    exact = _fan_mse(warp(clip.frames[0], flow), clip.frames[5], fan)
    decorrelated = _fan_mse(warp(noisy.frames[0], flow), noisy.frames[5], fan)
    assert decorrelated > 3 * exact


# -- image -------------------------------------------------------------------------------------------


def test_image_looks_like_ultrasound(clip):
    frames, masks, fan = clip.frames, clip.masks.astype(bool), clip.fan_mask
    assert frames.dtype == np.float32 and frames.min() >= 0 and frames.max() <= 1
    assert np.all(frames[:, ~fan] == 0)  # black outside the sector
    assert 0.2 < fan.mean() < 0.8
    wall_px = clip.patient.wall_thickness_mm / clip.spacing_mm[0]
    for t in (0, clip.es_frames[0]):
        cavity = ndimage.binary_erosion(masks[t], iterations=2)
        ring = ndimage.binary_dilation(masks[t], iterations=int(round(wall_px))) & ~ndimage.binary_dilation(masks[t])
        assert frames[t][ring].mean() > frames[t][cavity].mean() + 0.25  # dark blood, bright walls
    # speckle: grainy texture inside tissue, not flat regions
    tissue = fan & ~ndimage.binary_dilation(masks[0], iterations=int(3 * wall_px))
    mean = ndimage.uniform_filter(frames[0], 5)
    local_std = np.sqrt(np.maximum(ndimage.uniform_filter(frames[0] ** 2, 5) - mean**2, 0))
    assert np.median(local_std[ndimage.binary_erosion(tissue, iterations=3)]) > 0.05
    # the near field is imaged: the fan apex is at the top centre
    assert fan[2, 55] and fan[2, 56] and not fan[2, 40]
    assert fan[:, 0].sum() < fan[:, 56].sum()


def test_noise_brightens_the_blood_pool(patient, clip):
    noisy = simulate_clip(patient, size=112, fps=25.0, n_frames=1, noise=0.01, seed=3)
    cavity = ndimage.binary_erosion(clip.masks[0].astype(bool), iterations=2)
    assert noisy.frames[0][cavity].mean() > clip.frames[0][cavity].mean() + 0.02


# -- export ------------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path):
    c = simulate_clip(sample_patient(6), size=48, n_frames=9, fps=15.0, noise=0.002, decorrelation=0.1, seed=2)
    path = c.save_npz(tmp_path / "clip.npz")
    assert path == tmp_path / "clip.npz" and [p.name for p in tmp_path.iterdir()] == ["clip.npz"]
    back = load_npz(path)
    for name in ("frames", "masks", "keypoints", "volumes_ml", "ed_frames", "es_frames", "fan_mask"):
        np.testing.assert_array_equal(getattr(back, name), getattr(c, name), err_msg=name)
    assert back.patient == c.patient and back.settings == c.settings
    assert back.ef == pytest.approx(c.ef) and back.spacing_mm == c.spacing_mm
    np.testing.assert_array_equal(back.flow(0, 3), c.flow(0, 3))  # exact flows rebuilt from the file
    with np.load(path) as data:
        assert data["consecutive_flows"].shape == (8, 2, 48, 48)
        assert data["consecutive_flows"].dtype == np.float16
        np.testing.assert_allclose(data["flows_from_ed"][3].astype(np.float32), c.flow(0, 3), atol=0.01)
        assert float(data["ef"]) == pytest.approx(c.ef)
    assert PhantomClip.load_npz(path).patient == c.patient
    with pytest.raises(FileExistsError, match="clip.npz"):
        c.save_npz(path)
    c.save_npz(path, overwrite=True)


def test_load_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", frames=np.zeros((1, 4, 4)))
    with pytest.raises(ReadError, match="other.npz.*missing"):
        load_npz(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ReadError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")


def test_to_cine(clip):
    cine = clip.to_cine("P001", "P001_a4c")
    assert isinstance(cine, Cine)
    assert cine.dataset == "phantom" and cine.view == "A4C"
    assert cine.patient_id == "P001" and cine.clip_id == "P001_a4c"
    assert cine.fps == 25.0 and cine.spacing_mm == clip.spacing_mm
    np.testing.assert_array_equal(cine.masks, clip.masks)
    assert cine.labelled_frames is None
    assert set(cine.tracings) == {*clip.ed_frames.tolist(), *clip.es_frames.tolist()}
    seg = cine.tracings[0]
    assert seg.shape == (21, 4)
    np.testing.assert_allclose(seg[1:, :2], clip.keypoints[0, :20])  # chord left ends
    np.testing.assert_allclose(seg[1:, 2:], clip.keypoints[0, ::-1][:20])  # chord right ends
    assert cine.metadata["ef_percent"] == pytest.approx(clip.ef)
    default = clip.to_cine()
    assert default.patient_id == clip.patient.patient_id
