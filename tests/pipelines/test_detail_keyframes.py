"""The warp-residual detail path and F2I on keyframes (issue 20), with a tiny random pipeline."""

import numpy as np
import pytest
import torch

from echokdm.geometry.flow import warp


def _warp(frame, flows):
    src = torch.from_numpy(frame)[None, None].expand(len(flows), -1, -1, -1)
    return warp(src, torch.from_numpy(flows)).clamp(0, 1)[:, 0].numpy()


def test_detail_is_the_warp_plus_f2is_edit_of_the_latent(pipe, clip):
    flows = np.stack([clip.flow(0, t) for t in (3, 6)]).astype(np.float32)
    kp = clip.keypoints[[3, 6]]
    side = clip.frames.shape[-1] // pipe.k2f.config.downsample
    noise = torch.randn((1, pipe.vae.config.latent_channels, side, side), generator=torch.Generator().manual_seed(0))
    noise = noise.expand(2, -1, -1, -1)
    plain = pipe.image_pipe(clip.frames[0], kp, flows, k=3, num_inference_steps=5, noise=noise)
    detail = pipe.image_pipe(clip.frames[0], kp, flows, k=3, num_inference_steps=5, noise=noise, detail=True)
    warped = _warp(clip.frames[0], flows)
    with torch.inference_mode():  # D(z0): the autoencoder's reconstruction of the warp
        z0 = pipe.vae.encode(torch.from_numpy(warped)[:, None] * 2 - 1).latent_dist.mean
        recon = ((pipe.vae.decode(z0).sample + 1) / 2)[:, 0].numpy()
    # unclamped: detail = warp + (plain - recon); where nothing clamps, that is exact
    expected = warped + plain - recon
    inside = (expected > 0.01) & (expected < 0.99) & (plain > 0.01) & (plain < 0.99)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(detail[inside], expected[inside], atol=2e-5)
    assert not np.allclose(detail, plain, atol=1e-3)
    # k = 0 is the warp with or without the detail path
    np.testing.assert_allclose(pipe.image_pipe(clip.frames[0], kp, flows, k=0, num_inference_steps=5, detail=True),
                               warped, atol=1e-6)


def test_keyframes_run_f2i_on_keyframes_and_interpolate_its_edit(pipe, clip):
    targets = clip.keypoints[1:10]  # 9 targets; keyframes 3 -> frames 0, 4, 8
    common = dict(mode="per_frame", k=3, num_inference_steps=5, progress=False, detail=True, batch_size=4)
    full = pipe(clip.frames[0], clip.keypoints[0], targets, generator=torch.Generator().manual_seed(1), **common)
    keyed = pipe(clip.frames[0], clip.keypoints[0], targets, generator=torch.Generator().manual_seed(1),
                 keyframes=3, **common)
    np.testing.assert_allclose(keyed.flows, full.flows, atol=1e-6)  # K2F is untouched
    np.testing.assert_allclose(keyed.frames[[0, 4, 8]], full.frames[[0, 4, 8]], atol=1e-5)
    warped = _warp(clip.frames[0], full.flows)
    edits = full.frames[[0, 4, 8]] - warped[[0, 4, 8]]
    expected_2 = np.clip(warped[2] + 0.5 * edits[0] + 0.5 * edits[1], 0, 1)  # halfway between keyframes 0 and 4
    np.testing.assert_allclose(keyed.frames[2], expected_2, atol=1e-5)
    assert not np.allclose(keyed.frames[2], full.frames[2], atol=1e-4)  # in between, it is not F2I's own frame
    # as many keyframes as frames (or more) is F2I on every frame
    every = pipe(clip.frames[0], clip.keypoints[0], targets, generator=torch.Generator().manual_seed(1),
                 keyframes=20, **common)
    np.testing.assert_allclose(every.frames, full.frames, atol=1e-6)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_keyframes_must_be_at_least_two(pipe, clip, bad):
    with pytest.raises(ValueError, match="keyframes"):
        pipe(clip.frames[0], clip.keypoints[0], clip.keypoints[1:4], num_inference_steps=2, k=1, progress=False,
             keyframes=bad)
