"""generate_loop with a tiny random KDM pipeline, and reading sources from files."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.echo.segmentation import LVSegmentationNet
from echokdm.generation.loop import (
    READING_AGREEMENT,
    GeneratedLoop,
    clip_keypoints,
    contour_agreement,
    ef_reading,
    generate_loop,
    loop_ef,
    measure_ef,
    source_from_file,
)
from echokdm.generation.motion import (
    drag_motion,
    own_motion,
    synthetic_motion,
    transfer_motion,
)
from echokdm.generation.settings import SamplingSettings
from echokdm.geometry.flow import warp
from echokdm.geometry.keypoints import keypoints_to_mask
from echokdm.io.nifti import write_label_nifti, write_nifti
from echokdm.pipelines import KDMOutput

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline

FAST = {"sampling": SamplingSettings(k=2, num_inference_steps=3), "progress": False}


def fast(**changes):
    """:data:`FAST` with some sampling settings changed."""
    return {**FAST, "sampling": FAST["sampling"].replace(**changes)}


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(0, 0), n_frames=12, size=SIZE, fps=25.0)


@pytest.fixture(scope="module")
def other():
    return simulate_clip(sample_patient(0, 1), n_frames=10, size=SIZE, fps=25.0)


class OracleSegmentation(LVSegmentationNet):
    """A 'model' whose masks are the polygons of known keypoints (one per frame, in order)."""

    def __init__(self, keypoints):
        super().__init__(channels=(4, 8), num_res_units=0, sample_size=SIZE)
        self.known = np.asarray(keypoints)

    def predict_masks(self, frames, batch_size=32, threshold=0.5):
        shape = tuple(frames.shape[-2:])
        return torch.from_numpy(np.stack([keypoints_to_mask(k, shape) for k in self.known[: len(frames)]]))


# --------------------------------------------------------------------------------------------
# generate_loop
# --------------------------------------------------------------------------------------------


def test_own_motion_loop_shapes_source_frame_and_seed(pipe, clip):
    targets = own_motion(clip.keypoints, 0)
    loop = generate_loop(pipe, clip.frames[0], clip.keypoints[0], targets, fps=clip.fps, motion="own",
                         source_index=0, patient_id="P1", **fast(seed=1))
    assert isinstance(loop, GeneratedLoop)
    assert loop.frames.shape == (12, SIZE, SIZE) and loop.frames.dtype == np.float32
    assert loop.flows.shape == (12, 2, SIZE, SIZE) and loop.keypoints.shape == (12, 40, 2)
    assert 0 <= loop.frames.min() and loop.frames.max() <= 1
    np.testing.assert_array_equal(loop.frames[0], clip.frames[0])  # frame 0 is the real source
    assert not loop.flows[0].any() and loop.gammas[0] == 0 and loop.gammas.max() == pytest.approx(1.0)
    np.testing.assert_allclose(loop.keypoints, targets)
    assert loop.ef_target == pytest.approx(loop_ef(clip.keypoints), abs=1e-6)
    assert loop.ef_achieved is None and loop.detected_keypoints is None
    assert (loop.motion, loop.source_frame, loop.patient_id, loop.fps) == ("own", 0, "P1", 25.0)
    assert loop.metadata["source_included"] and loop.metadata["pipeline_size"] == [SIZE, SIZE]
    again = generate_loop(pipe, clip.frames[0], clip.keypoints[0], targets, fps=clip.fps, **fast(seed=1))
    np.testing.assert_array_equal(loop.frames, again.frames)
    np.testing.assert_array_equal(loop.flows, again.flows)
    other_seed = generate_loop(pipe, clip.frames[0], clip.keypoints[0], targets, fps=clip.fps, **fast(seed=2))
    assert not np.allclose(loop.frames[1:], other_seed.frames[1:])


def test_include_source_false_generates_every_frame(pipe, clip):
    targets = own_motion(clip.keypoints, 0, stop=5)
    loop = generate_loop(pipe, clip.frames[0], clip.keypoints[0], targets, fps=25, include_source=False,
                         **fast(mode="per_frame", batch_size=2))
    assert loop.frames.shape == (5, SIZE, SIZE) and loop.gammas is None
    assert not np.array_equal(loop.frames[0], clip.frames[0])  # generated, not copied
    assert not loop.metadata["source_included"]


def test_drag_edit_gets_the_source_put_in_front(pipe, clip):
    edit = drag_motion(clip.keypoints[0], {19: (0.0, -2.0)}, n_frames=1)
    loop = generate_loop(pipe, clip.frames[0], clip.keypoints[0], edit, fps=25, motion="drag", **FAST)
    assert loop.frames.shape == (2, SIZE, SIZE)
    np.testing.assert_array_equal(loop.frames[0], clip.frames[0])
    np.testing.assert_allclose(loop.keypoints[1], edit[0])
    only = generate_loop(pipe, clip.frames[0], clip.keypoints[0], edit[0], fps=25, include_source=False, **FAST)
    assert only.frames.shape == (1, SIZE, SIZE)


def test_synthetic_motion_loop_has_the_requested_ef_target(pipe, clip):
    targets = synthetic_motion(clip.keypoints[0], ef=35, heart_rate_bpm=100, fps=15, n_beats=1)
    loop = generate_loop(pipe, clip.frames[0], clip.keypoints[0], targets, fps=15, motion="synthetic", **FAST)
    assert loop.n_frames == round(60 / 100 * 15) == 9
    assert loop.ef_target == pytest.approx(35.0, abs=0.5)


def test_transfer_motion_loop(pipe, clip, other):
    targets = transfer_motion(clip.keypoints[0], other.keypoints, 0)
    loop = generate_loop(pipe, clip.frames[0], clip.keypoints[0], targets, fps=other.fps, motion="transfer", **FAST)
    assert loop.frames.shape == (10, SIZE, SIZE)
    # about the other patient's EF: displacements scale with L, so a heart of another width/length ratio
    # gets a slightly different EF
    assert loop.ef_target == pytest.approx(loop_ef(other.keypoints), abs=2.0)


def test_input_size_is_kept_and_ef_achieved_with_a_segmentation_model(pipe, clip):
    big = torch.nn.functional.interpolate(torch.from_numpy(clip.frames[:1, None]), size=(96, 80), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    scale = np.array([80 / SIZE, 96 / SIZE])
    src = (clip.keypoints[0] + 0.5) * scale - 0.5
    targets = synthetic_motion(src, ef=45, heart_rate_bpm=120, fps=16)
    oracle = OracleSegmentation(targets)
    loop = generate_loop(pipe, big, src, targets, fps=16, segmentation=oracle, **FAST)
    assert loop.frames.shape == (8, 96, 80) and loop.flows.shape == (8, 2, 96, 80)
    assert loop.metadata["input_size"] == [96, 80]
    assert loop.detected_keypoints.shape == (8, 40, 2)
    assert loop.ef_achieved == pytest.approx(loop.ef_target, abs=4.0)


class _ConstantPipe:
    """Stands in for KDMPipeline: records its inputs, returns the source and a constant flow (1, 2) px."""

    class vae:
        class config:
            sample_size = 16

    def __call__(self, source_frame, source_keypoints, target_keypoints, **kwargs):
        self.seen = (source_frame, source_keypoints, target_keypoints)
        self.kwargs = kwargs
        n = len(target_keypoints)
        flows = np.stack([np.ones((n, 16, 16)), 2 * np.ones((n, 16, 16))], axis=1).astype(np.float32)
        return KDMOutput(frames=np.repeat(source_frame[None], n, 0), flows=flows, gammas=None)


def test_resizing_maps_keypoints_and_flows_between_grids():
    fake = _ConstantPipe()
    frame = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (32, 1))  # (H, W) = (32, 48)
    src = np.zeros((40, 2), np.float32)
    src[:, 0], src[:, 1] = 47.5, 31.5  # the bottom-right corner of the image
    loop = generate_loop(fake, frame, src, src[None] + 1.0, fps=10, sampling=SamplingSettings(mode="per_frame"),
                         include_source=False, progress=False)
    seen_frame, seen_src, seen_tgt = fake.seen
    assert seen_frame.shape == (16, 16)
    np.testing.assert_allclose(seen_src[0], [15.5, 15.5])  # corner -> corner (pixel-centre convention)
    np.testing.assert_allclose(seen_tgt[0, 0], [(49.0 * 16 / 48) - 0.5, (33.0 * 16 / 32) - 0.5])
    np.testing.assert_allclose(loop.flows[0, 0], 48 / 16)  # dx in input pixels
    np.testing.assert_allclose(loop.flows[0, 1], 2 * 32 / 16)
    assert loop.frames.shape == (1, 32, 48)
    np.testing.assert_allclose(loop.frames[0].mean(axis=0), frame.mean(axis=0), atol=0.05)


def test_generate_loop_fits_flows_to_the_keypoints_unless_asked_not_to():
    fake = _ConstantPipe()
    frame = np.zeros((16, 16), np.float32)
    src = np.full((40, 2), 8.0, np.float32)
    loop = generate_loop(fake, frame, src, src[None] + 1.0, fps=10, include_source=False, progress=False)
    assert fake.kwargs["fit_keypoints"] is True and loop.metadata["fit_keypoints"] is True
    loop = generate_loop(fake, frame, src, src[None] + 1.0, fps=10, include_source=False, progress=False,
                         sampling=SamplingSettings(fit_keypoints=False))
    assert fake.kwargs["fit_keypoints"] is False and loop.metadata["fit_keypoints"] is False


def test_generate_loop_validates_its_inputs(pipe, clip):
    kp = clip.keypoints[0]
    with pytest.raises(ValueError, match=r"source_frame must be one grayscale frame"):
        generate_loop(pipe, clip.frames, kp, kp, fps=25)
    with pytest.raises(ValueError, match=r"source_keypoints must have shape \(40, 2\)"):
        generate_loop(pipe, clip.frames[0], kp[:20], kp, fps=25)
    with pytest.raises(ValueError, match=r"target_keypoints must have shape"):
        generate_loop(pipe, clip.frames[0], kp, kp[None, :, :1], fps=25)
    with pytest.raises(ValueError, match="fps must be a positive"):
        generate_loop(pipe, clip.frames[0], kp, kp, fps=0)
    with pytest.raises(ValueError, match="mode must be"):
        generate_loop(pipe, clip.frames[0], kp, kp, fps=25, sampling=SamplingSettings(mode="warp"))


def test_measure_ef_reads_the_models_masks(clip):
    targets = synthetic_motion(clip.keypoints[0], ef=40, heart_rate_bpm=120, fps=16)
    oracle = OracleSegmentation(targets)
    ef, kp = measure_ef(np.zeros((len(targets), SIZE, SIZE)), oracle, return_keypoints=True)
    assert kp.shape == targets.shape and ef == pytest.approx(loop_ef(kp))
    assert ef == pytest.approx(40.0, abs=6.0)  # polygon masks on the tiny grid read back near their EF
    assert np.isnan(measure_ef(np.zeros((3, SIZE, SIZE)), OracleSegmentation(np.full((3, 40, 2), np.nan))))


def test_contour_agreement_tells_a_short_wall_from_another_chamber(clip):
    kp = clip.keypoints[0].astype(np.float64)
    centre = kp.mean(axis=0)
    shrunk = centre + 0.7 * (kp - centre)  # the asked contour contracts; a reading that moved it short is larger
    shifted = kp + [20.0, 0.0]  # a reading of another chamber beside it
    nan = np.full_like(kp, np.nan)
    targets = np.stack([kp, shrunk, shrunk, kp, shrunk])
    detected = np.stack([kp, kp, shrunk, shifted, nan])
    shares = contour_agreement(detected, targets, (SIZE, SIZE))
    np.testing.assert_allclose(shares[0], [1.0, 1.0])
    assert shares[1, 0] == pytest.approx(1.0, abs=0.02) and shares[1, 1] == pytest.approx(1.0)  # short: agrees
    np.testing.assert_allclose(shares[2], [1.0, 1.0])
    assert shares[3, 0] < READING_AGREEMENT and shares[3, 1] < READING_AGREEMENT  # another chamber
    assert np.isnan(shares[4]).all()
    reading = ef_reading(detected, targets, (SIZE, SIZE), first_frame=1)
    assert reading == {"frames": 5, "frames_agreeing": 3, "min_covered": pytest.approx(shares[3, 0], abs=1e-3),
                       "min_inside": pytest.approx(shares[3, 1], abs=1e-3), "reliable": False, "lost_frames": "2-3"}
    assert ef_reading(detected[:3], targets[:3], (SIZE, SIZE))["reliable"] is True
    unjudged = ef_reading(detected[:2], np.stack([nan, kp]), (SIZE, SIZE))  # no complete source contour
    assert unjudged["reliable"] is None and unjudged["frames"] == 0
    with pytest.raises(ValueError, match="must both have shape"):
        contour_agreement(detected[:2], targets, (SIZE, SIZE))


def test_an_ef_read_on_another_chamber_is_not_achieved(pipe, clip):
    src = clip.keypoints[0]
    targets = synthetic_motion(src, ef=45, heart_rate_bpm=120, fps=16)
    lost = targets.copy()
    lost[3:7] = lost[3:7] + [10.0, 0.0]  # the 'model' reads another chamber on generated frames 3-6
    loop = generate_loop(pipe, clip.frames[0], src, targets, fps=16, segmentation=OracleSegmentation(lost), **FAST)
    reading = loop.metadata["ef_reading"]
    assert loop.ef_achieved is None and reading["reliable"] is False and reading["ef_read"] > 0
    frames = set()  # "3-7" -> {3, ..., 7}; the re-detection's temporal repair may take a neighbour along
    for part in reading["lost_frames"].split(", "):
        a, _, b = part.partition("-")
        frames |= set(range(int(a), int(b or a) + 1))
    assert {4, 5, 6} <= frames and not frames & {0, 1}
    assert loop.metadata["ef_achieved_note"].startswith("not a reading of the generated LV: the segmentation lost it "
                                                       f"on frame(s) {reading['lost_frames']} of the loop")
    assert loop.detected_keypoints.shape == (8, 40, 2)  # kept, for whoever wants to look
    read = generate_loop(pipe, clip.frames[0], src, targets, fps=16, segmentation=OracleSegmentation(targets), **FAST)
    assert read.metadata["ef_reading"]["reliable"] is True and read.ef_achieved is not None


def test_unmeasurable_efs_are_none(pipe, clip):
    src = clip.keypoints[0].copy()
    src[7] = np.nan  # no Simpson volume without all 40 keypoints
    empty = OracleSegmentation(np.full((3, 40, 2), np.nan))  # detects nothing
    loop = generate_loop(pipe, clip.frames[0], src, drag_motion(src, np.ones((40, 2)), n_frames=3), fps=25,
                         segmentation=empty, **FAST)
    assert loop.ef_target is None and loop.ef_achieved is None
    assert loop.metadata["ef_achieved_note"] == "fewer than 2 frames with keypoints detected"
    assert np.isnan(loop.detected_keypoints).all()


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nifti_clip(tmp_path_factory, clip):
    folder = tmp_path_factory.mktemp("nifti")
    path = write_nifti(folder / "c1.nii.gz", clip.frames, spacing_mm=clip.spacing_mm, fps=clip.fps)
    write_label_nifti(folder / "c1_gt.nii.gz", clip.masks, spacing_mm=clip.spacing_mm)
    return path


def test_source_from_nifti_uses_its_mask(nifti_clip, clip):
    src = source_from_file(nifti_clip, 4)
    frame, kp, fps, spacing, patient_id, cine, how = src
    assert frame.shape == (SIZE, SIZE) and kp.shape == (40, 2) and how == "mask"
    np.testing.assert_allclose(frame, clip.frames[4], atol=1 / 255)
    assert fps == 25.0 and spacing == pytest.approx(clip.spacing_mm, rel=1e-4)
    assert patient_id and cine.n_frames == 12
    assert np.abs(kp - clip.keypoints[4]).max() < 1.0
    seq = clip_keypoints(cine)
    assert seq.shape == (12, 40, 2) and np.isfinite(seq).all()
    with pytest.raises(ValueError, match=r"c1\.nii\.gz: frame 12 is outside"):
        source_from_file(nifti_clip, 12)


def test_source_from_png_with_keypoints_mask_or_nothing(tmp_path, clip):
    png = tmp_path / "still.png"
    Image.fromarray((clip.frames[0] * 255).round().astype(np.uint8)).save(png)
    mask_png = tmp_path / "mask.png"
    Image.fromarray(clip.masks[0] * 255).save(mask_png)
    by_mask = source_from_file(png, 0, mask=mask_png)
    assert by_mask.keypoints_source == "mask" and by_mask.fps is None and by_mask.patient_id is None
    assert np.abs(by_mask.keypoints - clip.keypoints[0]).max() < 1.0
    np.save(tmp_path / "kp.npy", clip.keypoints[0])
    given = source_from_file(png, 0, keypoints=tmp_path / "kp.npy")
    np.testing.assert_array_equal(given.keypoints, clip.keypoints[0])
    assert given.keypoints_source == "given"
    with pytest.raises(ValueError, match=r"still\.png: frame 0 has no mask or tracing"):
        source_from_file(png, 0)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        source_from_file(tmp_path / "missing.png", 0)
    with pytest.raises(ValueError, match=r"small\.npy: mask of shape \(5, 5\) does not match"):
        source_from_file(png, 0, mask=_small_mask(tmp_path))


def _small_mask(folder):
    path = folder / "small.npy"
    np.save(path, np.ones((5, 5), np.uint8))
    return path


def test_source_from_a_video_needs_labels_or_a_model(tmp_path, clip):
    from echokdm.io.video import write_video

    path = write_video(tmp_path / "c.avi", clip.frames, fps=25.0)
    seg = OracleSegmentation(clip.keypoints[3:4])
    src = source_from_file(path, 3, segmentation=seg)
    assert src.keypoints_source == "segmentation" and src.fps == pytest.approx(25.0)
    assert np.abs(src.keypoints - clip.keypoints[3]).max() < 1.5
    with pytest.raises(ValueError, match=r"c\.avi: the motion needs keypoints on every frame"):
        clip_keypoints(src.cine)


class BlobOutsideFan(OracleSegmentation):
    """The oracle's LV masks plus a large false 'LV' in the black corner outside the fan."""

    def predict_masks(self, frames, batch_size=32, threshold=0.5):
        masks = super().predict_masks(frames).numpy().copy()
        masks[:, :12, :10] = 1  # top-left corner, outside the sector; larger than the LV (78-109 px)
        return torch.from_numpy(masks)


def test_clip_keypoints_keep_segmentation_inside_the_fan(clip):
    import dataclasses

    cine = dataclasses.replace(clip.to_cine(), masks=None, labelled_frames=None)
    assert not clip.fan_mask[:12, :10].any() and clip.masks.sum((1, 2)).max() < 120
    truth = clip_keypoints(cine, OracleSegmentation(clip.keypoints), smooth_sigma_frames=0.0)
    fooled = clip_keypoints(cine, BlobOutsideFan(clip.keypoints), smooth_sigma_frames=0.0)
    assert np.isfinite(fooled).all()
    np.testing.assert_allclose(fooled, truth, atol=1e-4)  # the corner blob never reaches the keypoints


def test_clip_keypoints_take_the_apex_side_from_the_sector(clip):
    """A clip flipped top to bottom (transducer at the bottom) keeps the keypoint convention: the
    sector's apex tells where the LV apex points, whatever the masks' shape suggests."""
    import dataclasses

    from echokdm.geometry.volumes import simpson_volume
    from echokdm.io.fan import fan_apex_direction

    flipped = dataclasses.replace(clip.to_cine(), frames=clip.frames[:, ::-1].copy(), masks=None, labelled_frames=None)
    flipped_truth = clip.keypoints.copy()
    flipped_truth[..., 1] = SIZE - 1 - flipped_truth[..., 1]
    assert fan_apex_direction(clip.fan_mask[::-1]) == "down"
    upright = dataclasses.replace(clip.to_cine(), masks=None, labelled_frames=None)
    reference = simpson_volume(clip_keypoints(upright, OracleSegmentation(clip.keypoints), smooth_sigma_frames=0.0))
    kp = clip_keypoints(flipped, OracleSegmentation(flipped_truth), smooth_sigma_frames=0.0)
    assert np.isfinite(kp).all()
    np.testing.assert_allclose(simpson_volume(kp), reference, rtol=0.03)
    wrong = clip_keypoints(flipped, OracleSegmentation(flipped_truth), smooth_sigma_frames=0.0, apex_direction="up")
    assert np.nanmean(wrong[:, 0, 1]) > np.nanmean(wrong[:, 19, 1])  # forced "up": base and apex swapped
    assert kp[:, 0, 1].mean() < kp[:, 19, 1].mean()  # keypoint 0 at the base, now at the top; 19 at the apex


def test_detail_path_keeps_the_sources_own_pixels_at_its_size(pipe, clip):
    rng = np.random.default_rng(0)
    big = rng.uniform(0.2, 0.8, (96, 80)).astype(np.float32)  # speckle finer than the pipeline's grid
    scale = np.array([80 / SIZE, 96 / SIZE])
    src = (clip.keypoints[0] + 0.5) * scale - 0.5
    targets = (clip.keypoints[1:4] + 0.5) * scale - 0.5
    warp_only = SamplingSettings(k=0, num_inference_steps=3)
    kept = generate_loop(pipe, big, src, targets, fps=16, sampling=warp_only, progress=False, include_source=False)
    source = torch.from_numpy(big)[None, None].expand(3, -1, -1, -1)
    expected = warp(source, torch.from_numpy(kept.flows)).clamp(0, 1)[:, 0].numpy()
    np.testing.assert_allclose(kept.frames, expected, atol=1e-5)  # k = 0: the warp at the source's size
    blurred = generate_loop(pipe, big, src, targets, fps=16, sampling=warp_only.replace(detail=False),
                            progress=False, include_source=False)
    assert np.std(blurred.frames - expected) > 2 * np.std(kept.frames - expected) + 0.02  # resized from 32x32
    generated = generate_loop(pipe, big, src, targets, fps=16, sampling=SamplingSettings(k=2, num_inference_steps=3),
                              progress=False, include_source=False)
    high = lambda x: x - torch.nn.functional.avg_pool2d(torch.from_numpy(x)[:, None], 5, 1, 2)[:, 0].numpy()  # noqa: E731
    # F2I's edit comes from the 32x32 grid: the fine texture is the warp's
    assert np.corrcoef(high(generated.frames).ravel(), high(expected).ravel())[0, 1] > 0.8


def test_a_loop_is_re_measured_with_its_sources_apex_side(clip):
    """Masks that lost the LV cannot tell the apex side; the loop's source keypoints can."""
    from echokdm.generation.loop import apex_side

    kp = clip.keypoints[0].astype(np.float64)
    assert apex_side(kp) == "up"  # the phantom's apical view
    flipped = kp.copy()
    flipped[:, 1] = SIZE - 1 - flipped[:, 1]
    assert apex_side(flipped) == "down" and apex_side(np.full_like(kp, np.nan)) == "auto"
    targets = synthetic_motion(clip.keypoints[0], ef=40, heart_rate_bpm=120, fps=16)
    oracle = OracleSegmentation(targets)
    frames = np.zeros((len(targets), SIZE, SIZE))
    auto = measure_ef(frames, oracle, return_keypoints=True)[1]
    np.testing.assert_allclose(measure_ef(frames, oracle, return_keypoints=True, apex_direction="up")[1], auto)
    wrong = measure_ef(frames, oracle, return_keypoints=True, apex_direction="down")[1]
    assert not np.allclose(np.nan_to_num(wrong, nan=-1.0), np.nan_to_num(auto, nan=-1.0))  # the side is used


def test_real_scanner_cine_is_segmented_inside_its_fan_whatever_the_layout():
    """pydicom's real apical four-chamber cine as the scanner wrote it (320 x 240, text and an ECG around a
    small fan) and cropped to the fan: the packaged segmentation gives the same source keypoints (shifted by
    the crop; before it was segmented inside the fan, the uncropped frame's keypoints lay on the caption at the
    top), the apex on the transducer's side, and all 40 keypoints on every frame of the uncropped clip."""
    import warnings

    import pydicom.examples

    from echokdm.generation.loop import clip_keypoints, source_from_file
    from echokdm.geometry.volumes import long_axis_from_keypoints
    from echokdm.pretrained import pretrained_path

    path, seg = pydicom.examples.get_path("ybr_color"), pretrained_path("seg_phantom_112")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its calibration region belongs to another image size
        whole = source_from_file(path, 0, segmentation=seg)
        cropped = source_from_file(path, 0, segmentation=seg, crop_to_fan=True)
    c0, r0 = cropped.cine.metadata["crop_box"][:2]
    np.testing.assert_allclose(whole.keypoints - [c0, r0], cropped.keypoints, atol=1e-3)
    base, apex, _ = long_axis_from_keypoints(whole.keypoints.astype(np.float64))
    assert apex[1] < base[1] - 40  # the apex is up, towards the transducer
    kp = clip_keypoints(whole.cine, seg)
    assert np.isfinite(kp).all(axis=(1, 2)).sum() == whole.cine.n_frames
    np.testing.assert_allclose(kp - [c0, r0], clip_keypoints(cropped.cine, seg), atol=1e-3)
