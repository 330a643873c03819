"""Joint augmentations: one affine for image, mask, keypoints and flow; intensity on images only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.geometry.flow import transport_keypoints, warp
from echokdm.transforms import (
    BloodPoolKeypoints,
    EchoAffine,
    RandIntensityEcho,
    RandIntensityEchod,
    RandSpatiald,
    RandSpatialEchoD,
    RandSpatialEchod,
    adjust_intensity,
)

SIZE = 112
SRC, TGT = 0, 5


@pytest.fixture(scope="module")
def clip():
    return simulate_clip(sample_patient(3, 0), n_frames=8, size=SIZE, noise=0.0)


@pytest.fixture(scope="module")
def pair(clip):
    return {"source": clip.frames[SRC], "target": clip.frames[TGT], "mask": clip.masks[TGT],
            "keypoints": clip.keypoints[TGT], "source_keypoints": clip.keypoints[SRC],
            "flow": clip.flow(SRC, TGT), "id": "p3"}


def _spatial(**kwargs):
    args = dict(image_keys=("source", "target"), mask_keys="mask", keypoint_keys=("keypoints", "source_keypoints"),
                flow_keys="flow", rotate_range=0.3, scale_range=(0.9, 1.1), translate_range=6.0)
    args.update(kwargs)
    return RandSpatialEchod(**args)


# -- EchoAffine (deterministic) ----------------------------------------------------------------


def test_identity_changes_nothing(pair):
    aff = EchoAffine(np.eye(2))
    np.testing.assert_allclose(aff.image(pair["source"]), pair["source"], atol=1e-5)
    np.testing.assert_array_equal(aff.mask(pair["mask"]), pair["mask"])
    np.testing.assert_allclose(aff.flow(pair["flow"]), pair["flow"], atol=1e-4)
    np.testing.assert_allclose(aff.keypoints(pair["keypoints"]), pair["keypoints"])


def test_integer_shift_moves_pixels_and_flow_exactly():
    rng = np.random.default_rng(0)
    image = rng.random((2, 20, 24)).astype(np.float32)
    flow = rng.normal(size=(2, 20, 24)).astype(np.float32)
    aff = EchoAffine(np.eye(2), (3.0, -2.0))  # x + 3, y - 2
    np.testing.assert_allclose(aff.image(image)[:, :18, 3:], image[:, 2:, :21], atol=1e-5)
    np.testing.assert_allclose(aff.flow(flow)[:, :18, 3:], flow[:, 2:, :21], atol=1e-5)
    assert aff.image(image)[:, :, :3].max() < 1e-5  # zeros outside for images
    np.testing.assert_allclose(aff.keypoints(np.array([[1.0, 4.0]])), [[4.0, 2.0]])


def test_rotation_rotates_flow_vectors():
    flow = np.zeros((2, 9, 9), np.float32)
    flow[0] = 1.0  # uniform dx = 1
    aff = EchoAffine.from_parameters((9, 9), angle=np.pi / 2)  # (x, y) -> (-y, x) about the centre
    out = aff.flow(flow)
    np.testing.assert_allclose(out[:, 4, 4], [0.0, 1.0], atol=1e-6)
    flipped = EchoAffine.from_parameters((9, 9), flip=True).flow(flow)
    np.testing.assert_allclose(flipped[:, 4, 4], [-1.0, 0.0], atol=1e-6)


def test_flip_mirrors_and_relabels_keypoints(pair):
    aff = EchoAffine.from_parameters((SIZE, SIZE), flip=True)
    assert aff.flips
    kp = pair["keypoints"]
    out = aff.keypoints(kp)
    np.testing.assert_allclose(out[39 - 7], [SIZE - 1 - kp[7, 0], kp[7, 1]], atol=1e-4)
    assert (out[:20, 0] < out[::-1][:20, 0]).all()  # keypoint j still left of 39 - j
    np.testing.assert_array_equal(aff.mask(pair["mask"]), pair["mask"][:, ::-1])
    with pytest.raises(ValueError, match="flip_permutation"):
        aff.keypoints(np.zeros((5, 2)))


def test_numpy_and_torch_agree(pair):
    aff = EchoAffine.from_parameters((SIZE, SIZE), angle=0.2, scale=1.05, shift=(2.5, -1.0))
    for method, key in ((aff.image, "source"), (aff.mask, "mask"), (aff.flow, "flow"), (aff.keypoints, "keypoints")):
        a = method(pair[key])
        b = method(torch.as_tensor(pair[key]))
        assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor) and a.dtype == b.numpy().dtype
        np.testing.assert_allclose(b.numpy(), a, atol=1e-5)
    assert aff.mask(pair["mask"]).dtype == np.uint8


def test_nan_keypoints_stay_nan(pair):
    kp = pair["keypoints"].copy()
    kp[4] = np.nan
    out = EchoAffine.from_parameters((SIZE, SIZE), angle=0.1, flip=True).keypoints(kp)
    assert np.isnan(out[35]).all() and np.isfinite(np.delete(out, 35, axis=0)).all()


# -- RandSpatialEchod --------------------------------------------------------------------------


@pytest.mark.parametrize("seed, flip_prob", [(0, 0.0), (1, 1.0), (2, 0.0)])
def test_augmented_keypoints_stay_on_augmented_boundary(pair, seed, flip_prob):
    aug = _spatial(flip_prob=flip_prob).set_random_state(seed)
    out = aug(pair)
    assert aug.affine is not None and aug.affine.flips == (flip_prob == 1.0)
    found = BloodPoolKeypoints()(out["mask"])
    err = np.linalg.norm(found - out["keypoints"], axis=1)
    assert err.max() < 1.0 and np.median(err) < 0.5


@pytest.mark.parametrize("seed, flip_prob", [(0, 0.0), (1, 1.0)])
def test_augmented_flow_stays_consistent(pair, seed, flip_prob):
    out = _spatial(flip_prob=flip_prob).set_random_state(seed)(pair)
    inner = np.zeros((SIZE, SIZE), bool)
    inner[25:87, 25:87] = True  # away from regions that left the field of view
    warped = np.abs(warp(out["source"], out["flow"]) - out["target"])[inner].mean()
    unwarped = np.abs(out["source"] - out["target"])[inner].mean()
    before = np.abs(warp(pair["source"], pair["flow"]) - pair["target"])[inner].mean()
    assert warped < 0.7 * unwarped
    assert warped < 1.3 * before
    moved = transport_keypoints(out["keypoints"], out["flow"])
    assert np.abs(moved - out["source_keypoints"]).max() < 0.5


def test_same_seed_same_result_and_torch_input(pair):
    a = _spatial(flip_prob=0.5).set_random_state(7)(pair)
    b = _spatial(flip_prob=0.5).set_random_state(7)(pair)
    c = _spatial(flip_prob=0.5).set_random_state(8)(pair)
    for key in ("source", "mask", "keypoints", "flow"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["keypoints"], c["keypoints"])
    tensors = {k: (torch.as_tensor(v) if k != "id" else v) for k, v in pair.items()}
    t = _spatial(flip_prob=0.5).set_random_state(7)(tensors)
    for key in ("source", "mask", "keypoints", "flow"):
        assert isinstance(t[key], torch.Tensor)
        np.testing.assert_allclose(t[key].numpy(), a[key], atol=1e-4)


def test_dict_preserves_other_keys_and_input(pair):
    data = dict(pair)
    out = _spatial().set_random_state(0)(data)
    assert data.keys() == pair.keys() and all(data[k] is pair[k] for k in pair)  # input untouched
    assert out["id"] == "p3" and out["source"] is not pair["source"]
    assert out["mask"].dtype == np.uint8 and set(np.unique(out["mask"])) <= {0, 1}
    skipped = _spatial(prob=0.0)(data)
    assert skipped["source"] is pair["source"]
    assert RandSpatialEchoD is RandSpatialEchod
    assert RandSpatiald is RandSpatialEchod  # the domain-free name used by training/flow.py


def test_spatial_errors(pair):
    with pytest.raises(ValueError, match="share"):
        RandSpatialEchod(image_keys=("a", "b"))({"a": np.zeros((8, 8)), "b": np.zeros((9, 8))})
    with pytest.raises(ValueError, match="spatial_size"):
        RandSpatialEchod(keypoint_keys="k")({"k": np.zeros((40, 2))})
    only_kp = RandSpatialEchod(keypoint_keys="k", spatial_size=(8, 8), rotate_range=0, translate_range=0,
                               scale_range=(1, 1), flip_prob=1.0)({"k": np.zeros((40, 2))})
    assert only_kp["k"][0, 0] == pytest.approx(7.0)
    with pytest.raises(ValueError, match="both"):
        RandSpatialEchod(image_keys="a", mask_keys="a")
    with pytest.raises(KeyError):
        RandSpatialEchod(image_keys="a")({"b": 1})


# -- intensity ---------------------------------------------------------------------------------


def test_adjust_intensity_formula():
    x = np.linspace(0, 1, 11, dtype=np.float32)
    out = adjust_intensity(x, gain=1.2, gamma=2.0)
    np.testing.assert_allclose(out, np.clip(1.2 * x**2, 0, 1), rtol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="noise"):
        adjust_intensity(x, speckle=0.1)


def test_intensity_same_parameters_for_all_images(pair):
    aug = RandIntensityEchod(("source", "target"), speckle_range=(0.0, 0.0)).set_random_state(3)
    out = aug(pair)
    g, gamma = aug.intensity.gain, aug.intensity.gamma
    assert (g, gamma) != (1.0, 1.0)
    for key in ("source", "target"):
        np.testing.assert_allclose(out[key], np.clip(g * pair[key] ** gamma, 0, 1), atol=1e-6)
    for key in ("mask", "keypoints", "flow", "source_keypoints", "id"):
        assert out[key] is pair[key]


def test_intensity_speckle_seed_and_torch(pair):
    def aug():
        return RandIntensityEchod(("source", "target"), gain_range=(1, 1), gamma_range=(1, 1), speckle_range=(0.2, 0.2))

    a = aug().set_random_state(5)(pair)
    b = aug().set_random_state(5)(pair)
    np.testing.assert_array_equal(a["source"], b["source"])
    assert not np.allclose(a["source"], pair["source"])
    assert 0.0 <= a["source"].min() and a["source"].max() <= 1.0
    assert (a["source"][pair["source"] == 0] == 0).all()  # black stays black
    bright = pair["source"] > 0.05
    assert a["source"][bright].mean() == pytest.approx(pair["source"][bright].mean(), rel=0.05)
    # each image has its own noise field
    ratio_s, ratio_t = a["source"] / np.maximum(pair["source"], 1e-6), a["target"] / np.maximum(pair["target"], 1e-6)
    assert not np.allclose(ratio_s[bright & (pair["target"] > 0.05)], ratio_t[bright & (pair["target"] > 0.05)])
    t = RandIntensityEcho(speckle_range=(0.1, 0.1)).set_random_state(1)(torch.as_tensor(pair["source"]))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (SIZE, SIZE)
    assert RandIntensityEcho(prob=0.0)(pair["source"]) is pair["source"]
    with pytest.raises(ValueError, match="gamma_range"):
        RandIntensityEcho(gamma_range=(0.0, 1.0))
