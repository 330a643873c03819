"""Training-clip helpers and the echo clip loader (moved out of the KDM training module)."""

import dataclasses

import numpy as np
import pytest

from echokdm.data.echo_pairs import echo_clip_loader
from echokdm.data.ground_truth import ground_truth_files
from echokdm.data.pairs import (
    TrainingClip,
    flows_at_size,
    random_pairs,
    scale_keypoints,
)
from echokdm.geometry.resize import resize_flow


def test_flows_at_size_resizes_each_flow():
    # the resize itself (one for data, training, generation and evaluation) is tested against each
    # helper it replaced in tests/geometry/test_resize.py
    flows = np.random.default_rng(0).normal(size=(3, 2, 40, 56)).astype(np.float32)
    out = flows_at_size(flows, 32)
    assert out.shape == (3, 2, 32, 32) and out.dtype == np.float16
    np.testing.assert_array_equal(out[1], resize_flow(flows[1], 32).astype(np.float16))
    assert out[:, 0].std() < flows[:, 0].std()  # dx scaled by 32 / 56
    np.testing.assert_array_equal(flows_at_size(out, 32), out)  # already at size: unchanged


def test_scale_keypoints_per_axis_and_pairs():
    kp = np.array([[0.0, 0.0], [55.0, 39.0]])  # the first and last pixel centres of a 56 x 40 frame
    out = scale_keypoints(kp, (40, 56), 32)
    np.testing.assert_allclose(out, [[0.5 * 32 / 56 - 0.5, 0.5 * 32 / 40 - 0.5],
                                     [55.5 * 32 / 56 - 0.5, 39.5 * 32 / 40 - 0.5]], atol=1e-6)
    pairs = random_pairs(5, 50, np.random.default_rng(1))
    assert pairs.shape == (50, 2) and (pairs[:, 0] != pairs[:, 1]).all() and pairs.max() < 5
    with pytest.raises(ValueError, match="at least two frames"):
        random_pairs(1, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="outside the clip"):
        TrainingClip(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 3, 2), np.float32), np.array([[0, 2]]),
                     np.zeros((1, 2, 4, 4), np.float16))


@dataclasses.dataclass
class EchoData:
    size: int = 32
    keypoints: str = "phantom"
    flows: str = "phantom"
    flow_cache: str | None = None
    segmentation: str | None = None
    pairs_per_clip: int = 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from echokdm.data.phantom.export import write_cohort

    out = tmp_path_factory.mktemp("echo_pairs")
    write_cohort(out, n_patients=2, format="nifti", seed=4, size=32, fps=20.0, n_beats=0.5, progress=False)
    return out / "manifest.csv"


def test_echo_loader_phantom_and_tps_flows(cohort):
    from echokdm.data.manifest import load_manifest

    truth = ground_truth_files(cohort)
    assert sorted(truth) == sorted(load_manifest(cohort)["clip_id"]) and all(p.is_file() for p in truth.values())
    row = load_manifest(cohort).iloc[0]
    exact = echo_clip_loader(cohort, EchoData())(row, np.random.default_rng(0))
    assert exact.frames.dtype == np.uint8 and exact.keypoints.shape[1:] == (40, 2)
    assert exact.flows.shape[1:] == (2, 32, 32)
    tps = echo_clip_loader(cohort, EchoData(flows="tps"))(row, np.random.default_rng(0))
    np.testing.assert_array_equal(tps.pairs, exact.pairs)  # the same random pairs from the same generator
    # the TPS through the 40 keypoints agrees with the exact motion inside the LV roughly
    b = exact.pairs[0, 1]
    q = np.round(exact.keypoints[b, 10]).astype(int)
    assert np.linalg.norm(tps.flows[0, :, q[1], q[0]].astype(float) - exact.flows[0, :, q[1], q[0]].astype(float)) < 1.0


def test_keypoints_from_segment_output_read_the_network_masks_with_the_fan_apex(tmp_path):
    """Training/evaluating on a real scanner cine from `echokdm segment` output: the keypoints are the ones `echokdm
    ef` measures (the network's masks, the apex on the sector's side), not the repaired masks read upside down."""
    import warnings

    import pandas as pd
    import pydicom.examples

    from echokdm.data.echo_pairs import echo_clip_keypoints
    from echokdm.data.manifest import clip_file_stem
    from echokdm.echo.segmentation import LVSegmentationNet
    from echokdm.generation.loop import segment_clip
    from echokdm.geometry.temporal import sequence_keypoints
    from echokdm.io import read_cine
    from echokdm.io.fan import fan_mask_or_none
    from echokdm.pretrained import pretrained_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cine = read_cine(pydicom.examples.get_path("ybr_color"))
    model = LVSegmentationNet.from_pretrained(pretrained_path("seg_phantom_112"))
    repaired, network, _ = segment_clip(model, cine.frames, fan_mask_or_none(cine), apex_direction="up")
    (tmp_path / "masks").mkdir()
    np.savez_compressed(tmp_path / "masks" / f"{clip_file_stem('c')}.npz", masks=repaired, network=network)
    row = pd.Series({"clip_id": "c"})
    kp, _ = echo_clip_keypoints(cine, row, "masks", {}, 112, segmentation=str(tmp_path))
    expected = sequence_keypoints(network, apex_direction="up").keypoints
    from echokdm.data.pairs import scale_keypoints

    np.testing.assert_allclose(kp, scale_keypoints(expected, cine.frames.shape[-2:], 112), equal_nan=True)
    base_y = (kp[:, 0, 1] + kp[:, 39, 1]) / 2
    assert np.nanmedian(base_y - np.nanmean(kp[:, 15:25, 1], axis=1)) > 10  # the base below the apex
