"""Inference speed options give the plain pipeline's results: Ψ computed once per sample instead of
at every DDIM step, batched frames, mixed precision (within a tolerance), torch.compile (slow)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from echokdm.geometry.flow import warp
from echokdm.models.conditions import f2i_condition
from echokdm.pipelines.kdm import scheduler_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _tiny_kdm import SIZE, tiny_pipeline, tiny_unet


def test_embedded_condition_gives_the_same_prediction():
    unet = tiny_unet(4, 6)
    x, cond = torch.randn(3, 4, SIZE // 4, SIZE // 4), torch.randn(3, 6, SIZE, SIZE)
    with torch.no_grad():
        plain = unet(x, 10, cond)
        cached = unet(x, 10, embedded=unet.embed(cond))
    assert unet.embed(cond).shape == (3, unet.config.condition_embed_channels, SIZE // 4, SIZE // 4)
    torch.testing.assert_close(cached, plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match="exactly one"):
        unet(x, 10)
    with pytest.raises(ValueError, match="exactly one"):
        unet(x, 10, cond, embedded=unet.embed(cond))
    with pytest.raises(ValueError, match="does not match"):
        unet(x, 10, embedded=torch.zeros(3, unet.config.condition_embed_channels, 5, 5))


def _plain_f2i(pipe, frame, target_kp, flow, k, steps, noise):
    """The F2I loop as first written: Ψ(condition) recomputed at every step, float32."""
    f2i, vae = pipe.image_pipe.f2i, pipe.image_pipe.vae
    src = torch.from_numpy(frame)[None, None].expand(len(flow), -1, -1, -1)
    flow_t = torch.from_numpy(flow)
    warped = warp(src, flow_t).clamp(0, 1)
    cond = f2i_condition(src, target_kp, flow_t, pipe.image_pipe.renderer, f2i.config.flow_scale,
                         warped if f2i.config.warped_source else None)
    z0 = vae.encode(warped * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    scheduler = scheduler_for(pipe.scheduler, f2i)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps[steps - k:]
    z = scheduler.add_noise(z0, noise, timesteps[:1])
    for t in timesteps:
        z = scheduler.step(f2i(z, t, cond), t, z).prev_sample
    return ((vae.decode(z).sample + 1) / 2).clamp(0, 1)[:, 0].numpy()


def test_f2i_equals_the_plain_loop(pipe, clip):
    flows = np.stack([clip.flow(0, t) for t in (3, 6)])
    noise = torch.randn((1, 4, SIZE // 4, SIZE // 4), generator=torch.Generator().manual_seed(5)).expand(2, -1, -1, -1)
    with torch.inference_mode():
        expected = _plain_f2i(pipe, clip.frames[0], clip.keypoints[[3, 6]], flows, 6, 8, noise)
    out = pipe.image_pipe(clip.frames[0], clip.keypoints[[3, 6]], flows, k=6, num_inference_steps=8, noise=noise)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert np.abs(out - clip.frames[0]).max() > 0.01  # it did generate something


@pytest.mark.parametrize("mode", ["gamma", "per_frame"])
def test_batch_size_does_not_change_the_loop(pipe, clip, mode):
    kwargs = {"mode": mode, "k": 4, "num_inference_steps": 6, "progress": False}
    one = pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:8], batch_size=7,
               generator=torch.Generator().manual_seed(1), **kwargs)
    many = pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:8], batch_size=3,
                generator=torch.Generator().manual_seed(1), **kwargs)
    # float32 sums in another order (batch size, thread count): 6e-5 seen with one thread; far below 1/255
    np.testing.assert_allclose(many.frames, one.frames, rtol=0, atol=2e-4)
    np.testing.assert_allclose(many.flows, one.flows, rtol=1e-4, atol=2e-4)  # random K2F: flows of ~200 px


def test_bf16_autocast_stays_close_to_float32(pipe, clip):
    kwargs = {"mode": "gamma", "k": 4, "num_inference_steps": 6, "progress": False, "batch_size": 4}
    fp32 = pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:5], generator=torch.Generator().manual_seed(2),
                **kwargs)
    bf16 = pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:5], generator=torch.Generator().manual_seed(2),
                mixed_precision="bf16", **kwargs)
    assert bf16.frames.dtype == np.float32 and bf16.flows.dtype == np.float32
    # bf16 keeps 8 bits of mantissa: close to float32, not equal
    assert np.abs(bf16.frames - fp32.frames).mean() < 0.01
    assert np.abs(bf16.flows - fp32.flows).max() < 0.05 * max(np.abs(fp32.flows).max(), 1e-3)


def test_unknown_mixed_precision_is_an_error(pipe, clip):
    with pytest.raises(ValueError, match="mixed_precision"):
        pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:3], num_inference_steps=2, k=1,
             mixed_precision="fp8", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:3], num_inference_steps=2, k=1, batch_size=0,
             progress=False)


@pytest.mark.slow
def test_compiled_f2i_equals_eager(clip):
    pytest.importorskip("torch._inductor")
    pipe = tiny_pipeline()
    flows = clip.flow(0, 6)[None]
    kwargs = {"k": 3, "num_inference_steps": 4, "noise": torch.zeros(1, 4, SIZE // 4, SIZE // 4)}
    eager = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flows, **kwargs)
    compiled = pipe.image_pipe(clip.frames[0], clip.keypoints[6], flows, compile=True, **kwargs)
    np.testing.assert_allclose(compiled, eager, rtol=0, atol=1e-4)
