"""KDM pipelines with tiny random components: shapes, determinism, k = 0, γ = 0, save/load."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from echokdm.geometry.flow import warp
from echokdm.models.kdm import ConditionalUNet
from echokdm.pipelines import FlowToImagePipeline, KDMPipeline, KeypointToFlowPipeline
from echokdm.pipelines.kdm import gamma_from_keypoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE


def test_k2f_shapes_and_seed(pipe, clip):
    k2f = pipe.flow_pipe
    a = k2f(clip.frames[0], clip.keypoints[0], clip.keypoints[5], num_inference_steps=5,
            generator=torch.Generator().manual_seed(3))
    b = k2f(clip.frames[0], clip.keypoints[0], clip.keypoints[5], num_inference_steps=5,
            generator=torch.Generator().manual_seed(3))
    c = k2f(clip.frames[0], clip.keypoints[0], clip.keypoints[5], num_inference_steps=5,
            generator=torch.Generator().manual_seed(4))
    assert a.shape == (1, 2, SIZE, SIZE) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_f2i_k0_returns_the_warp_and_k_bounds(pipe, clip):
    flow = clip.flow(0, 6)[None]
    out = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, k=0, num_inference_steps=5)
    expected = warp(torch.from_numpy(clip.frames[0])[None, None], torch.from_numpy(flow)).clamp(0, 1)[:, 0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    img = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, k=5, num_inference_steps=5,
                          generator=torch.Generator().manual_seed(0))
    assert img.shape == (1, SIZE, SIZE) and 0 <= img.min() and img.max() <= 1
    with pytest.raises(ValueError, match="k must be"):
        pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, k=6, num_inference_steps=5)


def test_bicubic_interpolation_changes_the_shown_warp_only(pipe, clip):
    flow = clip.flow(0, 6)[None]
    src = torch.from_numpy(clip.frames[0])[None, None]
    out = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, k=0, num_inference_steps=5, interpolation="bicubic")
    expected = warp(src, torch.from_numpy(flow), mode="bicubic").clamp(0, 1)[:, 0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # with F2I and the detail path the frames differ by the two warps' difference exactly: F2I's
    # condition and starting latent are the bilinear warp either way
    kw = dict(k=3, num_inference_steps=5, detail=True, noise=torch.zeros(1, 4, SIZE // 4, SIZE // 4))
    bilinear = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, **kw)
    bicubic = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, interpolation="bicubic", **kw)
    shown = {m: warp(src, torch.from_numpy(flow), mode=m).clamp(0, 1)[:, 0].numpy() for m in ("bilinear", "bicubic")}
    inside = (bilinear > 0.02) & (bilinear < 0.98) & (bicubic > 0.02) & (bicubic < 0.98)  # away from the clip
    np.testing.assert_allclose((bicubic - bilinear)[inside], (shown["bicubic"] - shown["bilinear"])[inside], atol=1e-5)
    assert not np.allclose(bicubic, bilinear)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        pipe.image_pipe(clip.frames[0], clip.keypoints[6], flow, k=0, interpolation="nearest")
    frames = pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:5], k=2, num_inference_steps=3, keyframes=2,
                  detail=True, interpolation="bicubic", progress=False).frames
    assert frames.shape == (4, SIZE, SIZE) and np.isfinite(frames).all()
    with pytest.raises(ValueError, match="interpolation must be one of"):
        pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:3], interpolation="area", progress=False)


def test_gamma_from_keypoints():
    src = np.zeros((3, 2))
    ref = np.ones((3, 2))
    seq = np.stack([src, 0.5 * ref, ref, 2 * ref, -ref])
    np.testing.assert_allclose(gamma_from_keypoints(src, seq, ref), [0, 0.5, 1, 1, 0])
    # a frame without keypoints (segmentation missed it) leaves the others' γ alone and gets its
    # neighbours' mean; a frame missing one keypoint uses the others
    holes = seq.copy()
    holes[1] = np.nan
    holes[3, 0] = np.nan
    np.testing.assert_allclose(gamma_from_keypoints(src, holes, ref), [0, 0.5, 1, 1, 0])
    holes[2] = np.nan
    np.testing.assert_allclose(gamma_from_keypoints(src, holes, ref), [0, 1 / 3, 2 / 3, 1, 0])
    assert (gamma_from_keypoints(src, np.full_like(seq, np.nan), ref) == 0).all()


def test_kdm_loop_gamma_zero_gives_the_source_and_modes(pipe, clip):
    targets = clip.keypoints[[0, 3, 6]]  # the first target is the source itself: gamma = 0
    out = pipe(clip.frames[0], clip.keypoints[0], targets, mode="gamma", k=0, num_inference_steps=4,
               generator=torch.Generator().manual_seed(0), progress=False)
    assert out.frames.shape == (3, SIZE, SIZE) and out.flows.shape == (3, 2, SIZE, SIZE)
    assert out.gammas[0] == 0 and out.gammas.max() == 1
    np.testing.assert_allclose(out.frames[0], clip.frames[0], atol=1e-5)
    per = pipe(clip.frames[0], clip.keypoints[0], targets, mode="per_frame", k=2, num_inference_steps=4,
               generator=torch.Generator().manual_seed(0), progress=False, batch_size=2)
    assert per.frames.shape == (3, SIZE, SIZE) and per.gammas is None
    again = pipe(clip.frames[0], clip.keypoints[0], targets, mode="per_frame", k=2, num_inference_steps=4,
                 generator=torch.Generator().manual_seed(0), progress=False, batch_size=2)
    np.testing.assert_array_equal(per.frames, again.frames)


def test_save_and_load_round_trip(pipe, clip, tmp_path):
    pipe.save_pretrained(tmp_path / "kdm")
    loaded = KDMPipeline.from_pretrained(tmp_path / "kdm")
    kw = dict(mode="per_frame", k=3, num_inference_steps=3, progress=False)
    a = pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[4], generator=torch.Generator().manual_seed(1), **kw)
    b = loaded(clip.frames[0], clip.keypoints[0], clip.keypoints[4], generator=torch.Generator().manual_seed(1), **kw)
    np.testing.assert_allclose(a.frames, b.frames, atol=1e-5)
    assert isinstance(KeypointToFlowPipeline.from_pretrained(tmp_path / "kdm"), KeypointToFlowPipeline)
    assert isinstance(FlowToImagePipeline.from_pretrained(tmp_path / "kdm"), FlowToImagePipeline)
    with pytest.raises(FileNotFoundError, match="nope"):
        KDMPipeline.from_pretrained(tmp_path / "nope")


def test_scheduler_follows_the_models_prediction_type(clip):
    """A K2F that predicts x0 = 0 must give a zero flow; read as ε, the same output gives noise."""
    from echokdm.pipelines.kdm import scheduler_for

    def zero_output(kind):
        torch.manual_seed(0)
        net = ConditionalUNet(sample_channels=2, condition_channels=7, condition_embed_channels=8, downsample=4,
                              sample_size=SIZE // 4, block_out_channels=(16, 32), attention_levels=(False, True),
                              layers_per_block=1, norm_num_groups=8, flow_scale=4.0, prediction_type=kind).eval()
        with torch.no_grad():
            net.unet.conv_out.weight.zero_()
            net.unet.conv_out.bias.zero_()
        return net

    frames, kp = clip.frames, clip.keypoints
    flows = {}
    for kind in ("sample", "epsilon"):
        pipe = KeypointToFlowPipeline(zero_output(kind))
        assert scheduler_for(pipe.scheduler, pipe.k2f).config.prediction_type == kind
        flows[kind] = pipe(frames[0], kp[0], kp[5], num_inference_steps=5, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(flows["sample"], 0.0, atol=1e-6)
    assert np.abs(flows["epsilon"]).mean() > 0.1
    with pytest.raises(ValueError, match="prediction_type"):
        ConditionalUNet(prediction_type="score")


def test_keypoint_displacement_of_a_translation_is_the_translation_everywhere():
    from echokdm.models.conditions import keypoint_displacement

    rng = np.random.default_rng(0)
    target = rng.uniform(8, 24, (2, 10, 2)).astype(np.float32)
    source = target + np.array([1.5, -0.75], np.float32)  # flow convention: target → source
    field = keypoint_displacement(source, target, (32, 32), sigma=3.0, scale=0.5).numpy()
    assert field.shape == (2, 3, 32, 32)
    assert np.allclose(field[:, 0], 3.0, atol=1e-4) and np.allclose(field[:, 1], -1.5, atol=1e-4)
    conf = field[:, 2]
    x, y = np.round(target[0, 0]).astype(int)
    assert conf[0, y, x] > 0.6 and conf[0, 0, 31] < conf[0, y, x] and conf.max() <= 1


def test_keypoint_displacement_is_local_and_skips_missing_keypoints():
    from echokdm.models.conditions import keypoint_displacement

    target = np.array([[8.0, 8.0], [24.0, 24.0], [16.0, 4.0]], np.float32)
    source = target.copy()
    source[0] += [2.0, 0.0]   # only the first keypoint moves
    source[2] = np.nan        # a missing keypoint (e.g. an undetected joint)
    field = keypoint_displacement(source, target, (32, 32), sigma=2.0).numpy()[0]
    assert np.isclose(field[0, 8, 8], 2.0, atol=1e-3) and abs(field[0, 24, 24]) < 1e-3
    assert np.isfinite(field).all() and field[2, 4, 16] < 0.05  # no weight where the missing keypoint was


def test_k2f_with_the_displacement_condition_runs_and_depends_on_it(clip):
    from _tiny_kdm import tiny_unet

    k2f = tiny_unet(2, 10, displacement_sigma=3.0)
    pipe = KeypointToFlowPipeline(k2f)
    src_kp = clip.keypoints[0]
    def run(tgt):
        return pipe(clip.frames[0], src_kp, tgt, num_inference_steps=3, generator=torch.Generator().manual_seed(0))

    still, moved = run(src_kp), run(src_kp + 2.0)
    assert still.shape == (1, 2, SIZE, SIZE) and np.isfinite(moved).all()
    assert not np.allclose(still, moved)


@pytest.mark.parametrize("warped_source", [False, True])
def test_f2i_conditions_on_the_warped_source_when_the_model_asks(clip, warped_source):
    from _tiny_kdm import tiny_unet

    from echokdm.models.kdm import make_autoencoder

    torch.manual_seed(0)
    vae = make_autoencoder(block_out_channels=(8, 16, 16), latent_channels=4, sample_size=SIZE, norm_num_groups=8)
    f2i = tiny_unet(4, 6 + int(warped_source), warped_source=warped_source)
    seen = []
    embed = f2i.embed
    f2i.embed = lambda cond: seen.append(cond) or embed(cond)
    pipe = FlowToImagePipeline(f2i, vae.eval())
    flow = clip.flow(0, 6)[None]
    out = pipe(clip.frames[0], clip.keypoints[6], flow, k=2, num_inference_steps=4,
               generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, SIZE, SIZE) and np.isfinite(out).all()
    (cond,) = seen
    assert cond.shape[1] == 6 + int(warped_source)
    warped = warp(torch.from_numpy(clip.frames[0])[None, None], torch.from_numpy(flow)).clamp(0, 1)
    np.testing.assert_allclose(cond[:, 4:6].numpy(), flow / f2i.config.flow_scale, atol=1e-6)
    if warped_source:
        np.testing.assert_allclose(cond[:, 6:].numpy(), (warped * 2 - 1).numpy(), atol=1e-6)


@pytest.mark.parametrize("mode", ["gamma", "per_frame"])
def test_fit_keypoints_makes_the_flows_carry_the_keypoints(pipe, clip, mode, monkeypatch):
    import functools

    import echokdm.pipelines.kdm as kdm_module
    from echokdm.geometry.flow import fit_flow_to_keypoints, jacobian_determinant, transport_keypoints

    # the random tiny K2F's flows are wild and its 40 keypoints 0.75 px apart at 32 px: only the exact fit,
    # folds allowed, carries them (the default fold-free fit is tested in tests/geometry/test_flow.py)
    default = kdm_module.fit_flow_to_keypoints
    monkeypatch.setattr(kdm_module, "fit_flow_to_keypoints",
                        functools.partial(fit_flow_to_keypoints, min_jacobian=None))

    src_kp = clip.keypoints[0]
    targets = clip.keypoints[[3, 6]]
    def run(fit):
        return pipe(clip.frames[0], src_kp, targets, mode=mode, k=1, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), progress=False, fit_keypoints=fit)

    def carried(out):
        return transport_keypoints(targets, out.flows)

    plain, fitted = run(False), run(True)
    ok = np.isfinite(src_kp).all(1)
    # the random tiny K2F does not follow the keypoints; the fitted flows do (γ mode: the reference frame;
    # at 32 px the 40 keypoints are 0.75 px apart, finer than the flow's pixels, hence 0.25 px)
    check = [int(np.argmax(fitted.gammas))] if mode == "gamma" else [0, 1]
    assert np.abs(carried(plain)[check][:, ok] - src_kp[ok]).max() > 1.0
    assert np.abs(carried(fitted)[check][:, ok] - src_kp[ok]).max() < 0.25
    if mode == "per_frame":  # the default fit adds no fold where K2F's flow had none (γ mode scales it after)
        monkeypatch.setattr(kdm_module, "fit_flow_to_keypoints", default)
        sound = jacobian_determinant(plain.flows) >= 0.2
        assert (jacobian_determinant(run(True).flows)[sound] >= 0.2 - 1e-4).all()


def test_fit_region_puts_the_thin_plate_spline_around_the_keypoints(pipe, clip, monkeypatch):
    import echokdm.pipelines.kdm as kdm_module
    from echokdm.baselines.tps import tps_flow

    calls = []
    region = kdm_module.keypoint_region_flow
    monkeypatch.setattr(kdm_module, "keypoint_region_flow", lambda *a, **kw: calls.append(1) or region(*a, **kw))
    src_kp, targets = clip.keypoints[0], clip.keypoints[[3, 6]]

    def run(fit_region):
        return pipe(clip.frames[0], src_kp, targets, mode="per_frame", k=0, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), progress=False, fit_region=fit_region)

    plain = run(False)
    assert not calls
    with_region = run(True)
    assert calls
    # at the keypoints the flow is the spline through them (the random tiny K2F's is not)
    ok = np.isfinite(src_kp).all(1) & np.isfinite(targets[0]).all(1)
    tps = tps_flow(src_kp, targets[0], clip.frames.shape[1:])
    x, y = np.round(targets[0][ok][0]).astype(int)
    np.testing.assert_allclose(with_region.flows[0][:, y, x], tps[:, y, x], atol=1e-4)
    assert not np.allclose(plain.flows[0][:, y, x], tps[:, y, x], atol=1e-2)
