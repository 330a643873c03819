"""The phantom's realistic style: determinism, exact ground truth, the A4C convention, the look."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from echokdm.data.phantom import load_npz, sample_patient, simulate_clip
from echokdm.data.phantom.anatomy import TISSUES, tissue_labels
from echokdm.data.phantom.look import LOOK_RANGES, RealisticLook, display
from echokdm.data.phantom.patient import PhantomPatient, with_style
from echokdm.data.phantom.realistic import valve_opening
from echokdm.geometry.flow import transport_keypoints, warp


def _quiet(patient: PhantomPatient, **changes) -> PhantomPatient:
    """The patient with its look's display chain (blur, persistence, JPEG) off, plus ``changes``."""
    look = dataclasses.replace(patient.look, blur_px=0.0, persistence=0.0, jpeg_quality=0, **changes)
    return dataclasses.replace(patient, look=look)


@pytest.fixture(scope="module")
def patient() -> PhantomPatient:
    p = dataclasses.replace(sample_patient(5, style="realistic"), ef_percent=65.0)
    return dataclasses.replace(p, look=dataclasses.replace(p.look, mirror=False))


@pytest.fixture(scope="module")
def clip(patient):
    return simulate_clip(patient, size=112, fps=25.0, seed=3)


@pytest.fixture(scope="module")
def mirrored(patient):
    return simulate_clip(dataclasses.replace(patient, look=dataclasses.replace(patient.look, mirror=True)),
                         size=112, fps=25.0, seed=3)


# -- API, determinism, classic untouched ---------------------------------------------------------------


def test_style_switch_and_determinism():
    classic = sample_patient(4, 2)
    real = sample_patient(4, 2, style="realistic")
    assert classic.look is None and classic.style == "classic"
    assert real.style == "realistic" and real == with_style(classic, "realistic")
    assert dataclasses.replace(real, look=None) == classic  # same anatomy and function
    a = simulate_clip(real, n_frames=6, seed=1)
    b = simulate_clip(classic, n_frames=6, seed=1, style="realistic")
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.settings.style == "realistic" and a.patient.look == real.look
    c = simulate_clip(real, n_frames=6, seed=2)
    assert not np.array_equal(a.frames, c.frames)
    assert sample_patient(4, 3, style="realistic").look != real.look
    with pytest.raises(ValueError, match="style"):
        sample_patient(4, style="pretty")
    with pytest.raises(ValueError, match="style"):
        simulate_clip(classic, n_frames=2, style="pretty")


def test_classic_style_ignores_the_look_and_keeps_its_files():
    classic = sample_patient(9, 1)
    real = with_style(classic, "realistic")
    a = simulate_clip(classic, n_frames=4, decorrelation=0.03)
    b = simulate_clip(real, n_frames=4, decorrelation=0.03, style="classic")
    np.testing.assert_array_equal(a.frames, b.frames)
    assert "look" not in json.loads(classic.to_json())
    assert "style" not in a.settings.as_dict() and a.settings.style == "classic"
    assert "style" not in a.to_cine().metadata["settings"]


def test_look_parameters_within_ranges_and_json_round_trip():
    looks = [sample_patient(1, i, style="realistic").look for i in range(30)]
    for name, (lo, hi) in LOOK_RANGES.items():
        values = np.array([getattr(look, name) for look in looks])
        if name == "zoom":
            hi = max(hi, 1.0)
        assert np.all((values >= lo) & (values <= hi)), name
    assert sum(look.mirror for look in looks) < 15  # the standard view is the rule
    p = sample_patient(1, 0, style="realistic")
    assert PhantomPatient.from_json(p.to_json()) == p
    with pytest.raises(ValueError, match="unknown RealisticLook"):
        RealisticLook.from_dict({"sparkle": 1.0})
    with pytest.raises(ValueError, match="reject"):
        RealisticLook(reject=1.5)


# -- ground truth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["plain", "mirrored"])
def test_ground_truth_is_exact(clip, mirrored, which):
    c = clip if which == "plain" else mirrored
    g = c.geometry
    grid = g.pixel_centres_mm()
    for t in (0, int(c.es_frames[0])):
        np.testing.assert_array_equal(c.masks[t].astype(bool), c.motion.cavity(grid, t))
    kp_mm = c.motion.keypoints()
    expected = g.mm_to_px(kp_mm)
    if which == "mirrored":
        expected = expected[:, ::-1]
    np.testing.assert_allclose(c.keypoints, expected, atol=1e-4)
    # the volume curve does not depend on the look
    classic = simulate_clip(dataclasses.replace(c.patient, look=None), size=112, fps=25.0, n_frames=c.n_frames)
    np.testing.assert_allclose(c.volumes_ml, classic.volumes_ml, rtol=1e-12)
    # exact flows transport keypoints
    for a, b in [(0, int(c.es_frames[0])), (3, 4)]:
        moved = transport_keypoints(c.keypoints[b], c.flow(a, b))
        assert np.abs(moved - c.keypoints[a]).max() < 0.02


def test_keypoint_convention_and_lv_on_the_image_right(clip, mirrored):
    for c, lv_right in ((clip, True), (mirrored, False)):
        kp = c.keypoints
        assert np.all(kp[:, :20, 0] < kp[:, ::-1][:, :20, 0])  # keypoint j left of 39 - j
        # RV blood pool (from the tissue map at ED, frame 0) against the LV mask
        grid = c.geometry.pixel_centres_mm()
        a, r = c.motion.to_local(grid.reshape(-1, 2))
        labels = tissue_labels(a, r, np.hypot(grid[..., 0], grid[..., 1]).ravel(), c.patient).reshape(grid.shape[:2])
        rv_x = np.nonzero(labels == TISSUES.index("rv_blood"))[1].mean()
        lv_x = np.nonzero(c.masks[0])[1].mean()
        assert (lv_x > rv_x + 10) if lv_right else (lv_x < rv_x - 10)


def test_default_view_puts_the_lv_right_of_the_rv():
    rights = 0
    for i in range(12):
        p = sample_patient(2, i, style="realistic")
        c = simulate_clip(p, n_frames=1, size=64)
        grid = c.geometry.pixel_centres_mm()
        a, r = c.motion.to_local(grid.reshape(-1, 2))
        labels = tissue_labels(a, r, np.hypot(grid[..., 0], grid[..., 1]).ravel(), p).reshape(64, 64)
        rv = np.nonzero(labels == TISSUES.index("rv_blood"))[1]
        right = np.nonzero(c.masks[0])[1].mean() > rv.mean()
        assert right != p.look.mirror
        rights += right
    assert rights >= 9


# -- the image ------------------------------------------------------------------------------------------


def test_dark_blood_and_black_outside_the_sector():
    for i in range(4):
        c = simulate_clip(sample_patient(3, i, style="realistic"), n_frames=4, size=112)
        assert c.frames.dtype == np.float32 and c.frames.min() >= 0 and c.frames.max() <= 1
        assert np.all(c.frames[:, ~c.fan_mask] == 0)
        m = c.masks[0].astype(bool)
        wall_px = c.patient.wall_thickness_mm / c.spacing_mm[0]
        cavity = ndimage.binary_erosion(m, iterations=3)
        ring = ndimage.binary_dilation(m, iterations=int(round(wall_px))) & ~ndimage.binary_dilation(m)
        blood, wall = np.median(c.frames[0][cavity]), np.mean(c.frames[0][ring & c.fan_mask])
        assert blood < 0.05 and wall > max(blood + 0.06, 3 * blood), (i, blood, wall)
        # a dark image overall: most of the sector is dark
        assert np.median(c.frames[0][c.fan_mask]) < 0.3


def test_valves_open_in_diastole_and_close_in_systole(patient):
    p = _quiet(patient, valve_db=-3.0)
    times = np.linspace(0, 60 / p.heart_rate_bpm, 60, endpoint=False)
    opening = valve_opening(p, times)
    from echokdm.data.phantom.cycle import cardiac_timing

    es = cardiac_timing(p.heart_rate_bpm).end_systole_s
    assert opening[times < es].max() == 0.0  # shut from ED through ejection
    assert opening.max() > 0.9 and valve_opening(p, np.array([0.0, 60 / p.heart_rate_bpm])).max() == 0.0
    on = simulate_clip(p, fps=25.0, noise=0.0, decorrelation=0.0)
    off = simulate_clip(_quiet(patient, valve_db=-200.0), fps=25.0, noise=0.0, decorrelation=0.0)
    t_open = int(np.argmax(valve_opening(p, on.times_s)))
    leaflets = np.abs(on.frames - off.frames) > 0.1
    closed, opened = leaflets[0], leaflets[t_open]
    assert closed.sum() > 10 and opened.sum() > 10
    assert (closed & opened).sum() < 0.5 * min(closed.sum(), opened.sum())  # they moved
    # open leaflets hang into the LV; closed ones lie on the annulus plane, mostly outside it
    def inside(px, t):
        return (px & on.masks[t].astype(bool)).sum() / px.sum()

    assert inside(opened, t_open) > inside(closed, 0) + 0.2
    assert np.abs(on.frames[t_open] - on.frames[0])[opened | closed].mean() > 0.1


def test_persistence_and_compression_do_something(patient):
    rng = np.random.default_rng(0)
    c = simulate_clip(_quiet(patient), n_frames=6, fps=25.0)
    fan = c.fan_mask
    frames = c.frames.copy()
    look = dataclasses.replace(patient.look, blur_px=0.0, persistence=0.0, jpeg_quality=0)
    plain = display(frames, fan, look)
    np.testing.assert_allclose(plain, frames, atol=0.5 / 255 + 1e-6)  # 8-bit quantisation only
    persistent = display(frames, fan, dataclasses.replace(look, persistence=0.6))
    np.testing.assert_array_equal(persistent[0], plain[0])
    assert np.abs(persistent[1:] - plain[1:]).mean() > 0.01
    # persistence smooths in time
    assert np.abs(np.diff(persistent, axis=0)).mean() < 0.7 * np.abs(np.diff(plain, axis=0)).mean()
    jpeg = display(frames, fan, dataclasses.replace(look, jpeg_quality=15))
    assert np.all(jpeg[:, ~fan] == 0)
    assert 0.005 < np.abs(jpeg - plain)[:, fan].mean() < 0.1
    # block artefacts: jumps across the 8x8 block borders exceed those within blocks
    dx = np.abs(np.diff(jpeg[:, 24:88, 24:88], axis=2))
    border = dx[:, :, 7::8].mean()
    within = np.delete(dx, np.s_[7::8], axis=2).mean()
    assert border > within
    noise = rng.random(frames.shape).astype(np.float32)
    assert display(noise, fan, look).shape == frames.shape


def test_speckle_smoothing_grain_and_cavity_haze(patient):
    off = {"speckle_smoothing": 0.0, "grain": 0.0, "sidelobe_share": 0.0, "floor_grey": 0.0, "speckle_coherence": 0.0}
    plain = simulate_clip(_quiet(patient, **off), n_frames=4, fps=25.0, seed=1)
    fan = plain.fan_mask
    interior = ndimage.binary_erosion(plain.masks[0].astype(bool), iterations=3)

    def roughness(frames):  # mean |horizontal difference| inside the fan, relative to the mean grey
        inside = fan[:, 1:] & fan[:, :-1]
        return np.abs(np.diff(frames, axis=2))[:, inside].mean() / frames[:, fan].mean()

    smooth = simulate_clip(_quiet(patient, **(off | {"speckle_smoothing": 0.8})), n_frames=4, fps=25.0, seed=1)
    assert roughness(smooth.frames) < 0.8 * roughness(plain.frames)
    grainy = simulate_clip(_quiet(patient, **(off | {"grain": 0.4})), n_frames=4, fps=25.0, seed=1)
    assert roughness(grainy.frames) > 1.1 * roughness(plain.frames)
    hazy = simulate_clip(_quiet(patient, **(off | {"sidelobe_share": 0.1, "floor_grey": 0.02})), n_frames=4,
                         fps=25.0, seed=1)
    blood, hazy_blood = plain.frames[0][interior].mean(), hazy.frames[0][interior].mean()
    assert hazy_blood > blood + 0.01 and hazy_blood < 0.1  # a faint grey fill, not tissue
    for clip in (smooth, grainy, hazy):
        assert np.all(clip.frames[:, ~fan] == 0) and clip.frames.max() <= 1.0
    np.testing.assert_array_equal(hazy.masks, plain.masks)  # ground truth untouched
    # a look written before these parameters existed renders without them
    old = {k: v for k, v in dataclasses.asdict(patient.look).items() if k not in off}
    assert RealisticLook.from_dict(old).grain == 0.0 and RealisticLook.from_dict(old).sidelobe_share == 0.0


def test_decorrelation_is_strong_and_can_be_turned_off(patient):
    p = _quiet(patient)
    frozen = simulate_clip(p, n_frames=5, fps=25.0, noise=0.0, decorrelation=0.0)
    live = simulate_clip(p, n_frames=5, fps=25.0, noise=0.0, decorrelation=0.3)
    fan = frozen.fan_mask
    flow = frozen.flow(0, 4)
    exact = np.mean((warp(frozen.frames[0], flow) - frozen.frames[4])[fan] ** 2)
    unwarped = np.mean((frozen.frames[0] - frozen.frames[4])[fan] ** 2)
    decorrelated = np.mean((warp(live.frames[0], flow) - live.frames[4])[fan] ** 2)
    assert exact < 0.5 * unwarped  # the exact flow explains the frozen images (leaflets aside)
    assert decorrelated > 3 * exact


def test_npz_round_trip_keeps_the_look(tmp_path, clip):
    path = clip.save_npz(tmp_path / "c.npz")
    back = load_npz(path)
    assert back.patient == clip.patient and back.settings == clip.settings
    np.testing.assert_array_equal(back.keypoints, clip.keypoints)
    assert back.to_cine().metadata["settings"]["style"] == "realistic"


def test_speed_sanity():
    p = sample_patient(8, style="realistic")
    c = simulate_clip(p, n_frames=50, size=112)
    assert c.frames.shape == (50, 112, 112)


def test_cli_style_option(tmp_path):
    from echokdm.cli import build_parser

    args = build_parser().parse_args(["phantom", "--out", str(tmp_path), "--style", "realistic"])
    assert args.style == "realistic" and args.decorrelation is None and args.noise is None
    assert build_parser().parse_args(["phantom", "--out", str(tmp_path)]).style == "classic"


@pytest.mark.slow
def test_realistic_cohort_records_its_style(tmp_path):
    from echokdm.data.phantom.export import write_cohort

    result = write_cohort(tmp_path, 2, "nifti", style="realistic", n_beats=0.5, progress=False)
    assert set(result.manifest["dataset"]) == {"phantom-realistic-nifti"}
    assert set(result.ground_truth["style"]) == {"realistic"}
    clip = load_npz(tmp_path / result.ground_truth["npz"][0])
    assert clip.settings.style == "realistic" and clip.patient.look is not None
