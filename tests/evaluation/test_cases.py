"""Choosing the evaluated beat, and reading a phantom clip into an evaluation case."""

import numpy as np
import pytest

from echokdm.data.manifest import load_manifest
from echokdm.data.phantom import load_npz
from echokdm.data.phantom.export import write_cohort
from echokdm.evaluation.cases import choose_frames, load_case
from echokdm.geometry.flow import warp


def _volumes(n=60, period=30, phase=5):
    t = np.arange(n)
    return 100 + 40 * np.cos(2 * np.pi * (t - phase) / period)  # ED at 5, 35; ES at 20, 50


def test_source_is_ed_targets_span_the_beat_and_include_es():
    source, targets = choose_frames(_volumes(), max_targets=6, fps=30.0)
    assert source == 5
    assert targets[0] > source and targets[-1] == 35 and len(targets) == 6
    assert 20 in targets and (np.diff(targets) > 0).all()


def test_short_beat_keeps_every_frame_and_no_beat_falls_back():
    source, targets = choose_frames(_volumes(), max_targets=100, fps=30.0)
    assert list(targets) == list(range(6, 36))
    rising = np.linspace(50, 100, 12)[::-1]  # volumes only fall: no complete beat
    source, targets = choose_frames(rising, max_targets=4)
    assert source == 0 and 11 in targets and len(targets) == 4
    with pytest.raises(ValueError, match="max_targets"):
        choose_frames(_volumes(), max_targets=1)


def test_a_clip_read_as_a_filling_is_evaluated_from_ed_to_its_end():
    """pydicom's real cine: end-systole at frame 0, filling to end-diastole at 18, then ejecting to frame 29. The
    own beat starts at ED and runs to the clip's end (the targets had been the two frames after ED)."""
    t = np.arange(30)
    v = np.where(t <= 18, 10 + 5 * t / 18, 15 - 2.5 * (t - 18) / 11)  # ES 0, ED 18, falling to the end
    source, targets = choose_frames(v, max_targets=8, fps=30.0)
    assert source == 18 and len(targets) == 8 and targets[0] == 19 and targets[-1] == 29


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_cohort")
    write_cohort(out, n_patients=3, format="nifti", seed=5, size=48, fps=20.0, n_beats=1.3, progress=False)
    return out / "manifest.csv"


def test_phantom_case_has_exact_keypoints_and_flows(cohort):
    row = load_manifest(cohort).iloc[0]
    case = load_case(row, cohort, 32, max_targets=5)
    assert case.frames.shape[1:] == (32, 32) and case.frames.dtype == np.float32
    assert case.keypoints.shape == (len(case.frames), 40, 2)
    assert case.reference_flows.shape == (len(case.targets), 2, 32, 32)
    assert case.step_flows.shape == (len(case.targets) - 1, 2, 32, 32)
    # the exact flow warps the source onto the target far better than no motion
    src = case.frames[case.source][None, None].repeat(len(case.targets), 0)
    warped = warp(src, case.reference_flows)[:, 0]
    real = case.frames[case.targets]
    assert np.mean((warped - real) ** 2) < 0.8 * np.mean((src[:, 0] - real) ** 2)  # speckle decorrelates: not 0
    # keypoints follow the resize from the cohort's 48 px to 32 px
    truth = load_npz(next((cohort.parent / "ground_truth").glob(f"{row['clip_id']}*.npz")))
    np.testing.assert_allclose(case.keypoints, (truth.keypoints + 0.5) * 32 / 48 - 0.5, atol=1e-4)


def test_lv_function_of_a_known_volume_curve():
    from echokdm.evaluation.runner import _lv_function

    ef, edv, esv = _lv_function(np.array([120.0, 100.0, np.nan, 60.0, 90.0]))
    assert (ef, edv, esv) == (50.0, 120.0, 60.0)
    assert np.isnan(_lv_function(np.array([np.nan, 5.0]))[0])


def test_own_motion_of_a_segmented_clip_is_tracked_with_the_segmentation_ef(cohort, tmp_path):
    """Keypoints from a segmentation's masks (echokdm segment output): --own-motion tracking carries
    the source frame's keypoints through the beat, and the EF target stays the segmentation's."""
    from echokdm.data.manifest import clip_file_stem

    row = load_manifest(cohort).iloc[0]
    truth = load_npz(next((cohort.parent / "ground_truth").glob(f"{row['clip_id']}*.npz")))
    (tmp_path / "masks").mkdir()
    np.savez(tmp_path / "masks" / f"{clip_file_stem(str(row['clip_id']))}.npz", masks=truth.masks)
    segmented = load_case(row, cohort, 32, max_targets=5, keypoints="masks", segmentation=str(tmp_path),
                          own_motion="segmentation")
    assert segmented.keypoint_source == "masks" and segmented.ef_keypoints is None
    tracked = load_case(row, cohort, 32, max_targets=5, keypoints="masks", segmentation=str(tmp_path),
                        own_motion="tracking")
    assert tracked.keypoint_source == "tracking"
    np.testing.assert_allclose(tracked.ef_keypoints, segmented.keypoints)
    s, end = tracked.source, int(tracked.targets[-1]) + 1
    np.testing.assert_allclose(tracked.keypoints[s], segmented.keypoints[s], atol=1e-4)
    np.testing.assert_allclose(tracked.keypoints[:s], segmented.keypoints[:s])  # outside the beat: untouched
    assert not np.allclose(tracked.keypoints[s + 1:end], segmented.keypoints[s + 1:end])
    auto = load_case(row, cohort, 32, max_targets=5, keypoints="masks", segmentation=str(tmp_path))
    assert auto.keypoint_source in ("tracking", "masks")
    assert (auto.ef_keypoints is not None) == (auto.keypoint_source == "tracking")
    phantom = load_case(row, cohort, 32, max_targets=5)  # exact keypoints are never tracked
    assert phantom.keypoint_source == "phantom" and phantom.ef_keypoints is None
    with pytest.raises(ValueError, match="own_motion must be"):
        load_case(row, cohort, 32, keypoints="masks", segmentation=str(tmp_path), own_motion="flow")


def test_a_clip_without_masks_is_segmented_by_the_model_inside_its_fan(tmp_path):
    """pydicom's real scanner cine (no masks): with a segmentation model and no ``echokdm segment`` folder the
    case is segmented here (inside the fan, as ``generate`` does) instead of being refused."""
    import shutil
    import warnings

    import pydicom.examples

    from echokdm.data.manifest import scan_folder, write_manifest
    from echokdm.pretrained import pretrained_path

    (tmp_path / "dicom").mkdir()
    shutil.copy(pydicom.examples.get_path("ybr_color"), tmp_path / "dicom" / "cine.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its calibration region belongs to another image size
        write_manifest(scan_folder(tmp_path / "dicom", "dicom", progress=False).manifest, tmp_path / "real.csv")
        row = load_manifest(tmp_path / "real.csv").iloc[0]
        with pytest.raises(ValueError, match="needs a mask on every frame"):
            load_case(row, tmp_path / "real.csv", 112, max_targets=4, keypoints="masks")
        case = load_case(row, tmp_path / "real.csv", 112, max_targets=4, keypoints="masks",
                         segmentation_model=pretrained_path("seg_phantom_112"), own_motion="segmentation")
    assert case.frames.shape == (30, 112, 112) and case.keypoint_source == "masks"
    assert np.isfinite(case.keypoints[case.source]).all()
    base, apex = case.keypoints[case.source][[0, 39]].mean(0), case.keypoints[case.source][19:21].mean(0)
    assert apex[1] < base[1] - 20  # the apex up, towards the transducer
