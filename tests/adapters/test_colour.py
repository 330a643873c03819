"""Colour (RGB) frames through every stage of the generic KDM core, and grayscale unchanged.

Frames are ``(T, H, W)`` for one channel and ``(T, H, W, C)`` for colour at the I/O boundary,
``(B, C, H, W)`` inside torch (docs/adapters.md, design notes).
"""

import numpy as np
import pytest
import torch
from PIL import Image

from echokdm.adapters import get_adapter
from echokdm.baselines.tps import tps_warp
from echokdm.geometry.flow import warp
from echokdm.metrics.image import mse, psnr, ssim
from echokdm.metrics.temporal import temporal_warping_error
from echokdm.models.conditions import (
    batch_to_frames,
    f2i_condition_channels,
    frames_to_batch,
    k2f_condition,
    k2f_condition_channels,
)
from echokdm.models.kdm import ConditionalUNet, make_autoencoder
from echokdm.pipelines import KDMPipeline
from echokdm.pipelines.kdm import FlowToImagePipeline

SIZE = 32


def _unet(sample, condition, frame_channels):
    torch.manual_seed(0)
    return ConditionalUNet(sample_channels=sample, condition_channels=condition, condition_embed_channels=8,
                           downsample=4, sample_size=SIZE // 4, block_out_channels=(16, 32),
                           attention_levels=(False, True), layers_per_block=1, norm_num_groups=8, flow_scale=4.0,
                           frame_channels=frame_channels).eval()


def _pipeline(channels: int, adapter: str = "face") -> KDMPipeline:
    torch.manual_seed(0)
    vae = make_autoencoder((8, 16, 16), 4, SIZE, norm_num_groups=8, channels=channels).eval()
    return KDMPipeline(_unet(2, k2f_condition_channels(3, False, channels), channels),
                       _unet(4, f2i_condition_channels(3, True, False, channels), channels), vae, adapter=adapter)


def _rgb(n=1, seed=0):
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3)).astype(np.float32)


def test_frames_to_batch_layouts_and_round_trip():
    gray = np.random.default_rng(0).random((2, SIZE, SIZE)).astype(np.float32)
    assert frames_to_batch(gray).shape == (2, 1, SIZE, SIZE) and frames_to_batch(gray[0]).shape == (1, 1, SIZE, SIZE)
    np.testing.assert_array_equal(batch_to_frames(frames_to_batch(gray)), gray)
    rgb = _rgb(2)
    batch = frames_to_batch(rgb, 3)
    assert batch.shape == (2, 3, SIZE, SIZE)
    np.testing.assert_array_equal(batch[:, 1].numpy(), rgb[..., 1])
    np.testing.assert_array_equal(batch_to_frames(batch), rgb)
    assert frames_to_batch(rgb[0], 3).shape == (1, 3, SIZE, SIZE)
    assert torch.equal(frames_to_batch(batch, 3), batch)  # (B, C, H, W) passes through
    with pytest.raises(ValueError, match="1-channel"):
        frames_to_batch(rgb, 1)
    with pytest.raises(ValueError, match="3-channel"):
        frames_to_batch(gray, 3)


def test_condition_channels_count_the_frame_channels():
    assert k2f_condition_channels(3) == 7 and f2i_condition_channels(3) == 6  # grayscale: as before
    assert k2f_condition_channels(3, True, 3) == 12 and f2i_condition_channels(3, True, True, 3) == 11
    src = frames_to_batch(_rgb(2), 3)
    kp = np.full((2, 68, 2), 10.0, np.float32)
    cond = k2f_condition(src, kp, kp, get_adapter("face").render)
    assert cond.shape == (2, k2f_condition_channels(3, False, 3), SIZE, SIZE)


def test_autoencoder_channels():
    vae = make_autoencoder((8, 16), 4, SIZE, norm_num_groups=8, channels=3)
    assert vae.config.in_channels == vae.config.out_channels == 3
    assert vae(torch.zeros(1, 3, SIZE, SIZE)).sample.shape == (1, 3, SIZE, SIZE)
    assert make_autoencoder((8, 16), 4, SIZE, norm_num_groups=8).config.in_channels == 1
    with pytest.raises(ValueError, match="channels"):
        make_autoencoder(channels=0)


def test_colour_pipeline_returns_colour_frames_and_warps_every_channel_alike():
    pipe = _pipeline(3)
    src = _rgb()[0]
    kp = np.random.default_rng(1).uniform(8, 24, (68, 2)).astype(np.float32)
    out = pipe(src, kp, np.stack([kp, kp + 1.0]), num_inference_steps=3, k=2, progress=False,
               generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (2, SIZE, SIZE, 3) and out.flows.shape == (2, 2, SIZE, SIZE)
    assert np.isfinite(out.frames).all() and out.frames.min() >= 0 and out.frames.max() <= 1
    flow = np.random.default_rng(2).normal(0, 1.5, (2, 2, SIZE, SIZE)).astype(np.float32)
    image_pipe = FlowToImagePipeline(pipe.f2i, pipe.vae, adapter="face")
    warped = image_pipe(src, np.stack([kp, kp]), flow, k=0)  # k = 0: the warp itself ("w/o F2I")
    assert warped.shape == (2, SIZE, SIZE, 3)
    for c in range(3):
        expected = warp(np.repeat(src[None, None, :, :, c], 2, 0), flow)[:, 0]
        np.testing.assert_allclose(warped[..., c], np.clip(expected, 0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="3-channel"):
        pipe(src[..., 0], kp, kp, num_inference_steps=2, k=1, progress=False)


def test_grayscale_pipeline_keeps_its_layout():
    pipe = _pipeline(1)
    out = pipe(np.full((SIZE, SIZE), 0.5, np.float32), np.full((68, 2), 16.0, np.float32),
               np.full((2, 68, 2), 16.0, np.float32), num_inference_steps=2, k=1, progress=False,
               generator=torch.Generator().manual_seed(0))
    assert out.frames.shape == (2, SIZE, SIZE)


def test_colour_pipeline_saves_and_loads(tmp_path):
    pipe = _pipeline(3)
    pipe.save_pretrained(tmp_path / "p")
    again = KDMPipeline.from_pretrained(tmp_path / "p")
    assert again.vae.config.in_channels == 3 and again.k2f.config.frame_channels == 3


def test_tps_warp_colour_is_the_per_channel_warp():
    image = _rgb()[0]
    src = np.array([[8.0, 8.0], [24.0, 8.0], [16.0, 24.0], [16.0, 14.0]])
    out = tps_warp(image, src, src + [1.0, -2.0], channel_axis=-1)
    assert out.shape == image.shape
    for c in range(3):
        np.testing.assert_allclose(out[..., c], tps_warp(image[..., c], src, src + [1.0, -2.0]), atol=1e-6)
    with pytest.raises(ValueError, match="channel_axis"):
        tps_warp(image[..., 0], src, src, channel_axis=-1)


def test_image_metrics_on_colour_frames():
    a, b = _rgb(3, 0), _rgb(3, 1)
    np.testing.assert_allclose(mse(a, b, channel_axis=-1), ((a - b) ** 2).mean(axis=(1, 2, 3)))
    assert mse(a, b, channel_axis=-1).shape == (3,) and np.ndim(mse(a[0], b[0], channel_axis=-1)) == 0
    assert np.isinf(psnr(a, a, channel_axis=-1)).all()
    np.testing.assert_allclose(ssim(a, a, channel_axis=-1), 1.0)
    gray_a, gray_b = a[..., 0], b[..., 0]
    grey3 = lambda x: np.repeat(x[..., None], 3, -1)  # noqa: E731 - R = G = B gives the grayscale values
    np.testing.assert_allclose(ssim(grey3(gray_a), grey3(gray_b), channel_axis=-1), ssim(gray_a, gray_b))
    np.testing.assert_allclose(mse(grey3(gray_a), grey3(gray_b), channel_axis=-1), mse(gray_a, gray_b))
    mask = np.zeros((SIZE, SIZE))
    mask[4:20, 4:20] = 1
    np.testing.assert_allclose(mse(a, b, mask, channel_axis=-1),
                               ((a - b) ** 2)[:, 4:20, 4:20].mean(axis=(1, 2, 3)))
    with pytest.raises(ValueError, match="channel_axis=-1"):
        mse(a, b)


def test_temporal_error_on_colour_frames():
    frames = _rgb(4)
    flows = np.random.default_rng(3).normal(0, 1, (3, 2, SIZE, SIZE)).astype(np.float32)
    colour = temporal_warping_error(frames, flows, channel_axis=-1).per_pair
    per_channel = [temporal_warping_error(frames[..., c], flows).per_pair for c in range(3)]
    np.testing.assert_allclose(colour, np.mean(per_channel, axis=0))
    with pytest.raises(ValueError, match="colour cine"):
        temporal_warping_error(frames[..., 0], flows, channel_axis=-1)


def test_writers_keep_colour(tmp_path):
    from echokdm.io.preview import write_png
    from echokdm.io.video import read_video, write_video

    frames = np.zeros((3, SIZE, SIZE, 3), np.float32)
    frames[..., 0] = 1.0  # pure red
    write_png(tmp_path / "f.png", frames[0])
    pixels = np.asarray(Image.open(tmp_path / "f.png"))
    assert pixels.shape == (SIZE, SIZE, 3) and pixels[..., 0].min() == 255 and pixels[..., 1:].max() == 0
    for suffix in (".mp4", ".gif"):
        write_video(tmp_path / f"v{suffix}", frames, 10)
        assert (tmp_path / f"v{suffix}").stat().st_size > 0
    assert read_video(tmp_path / "v.gif").frames.shape == (3, SIZE, SIZE)  # read back as gray (luma)


def test_echo_adapter_refuses_colour_and_face_allows_it():
    from echokdm.training.kdm import KDMDataConfig

    assert KDMDataConfig(adapter="face", channels=3).channels == 3
    with pytest.raises(ValueError, match="data.channels"):
        KDMDataConfig(adapter="echo", channels=3)
    with pytest.raises(ValueError, match="data.channels"):
        KDMDataConfig(adapter="pose", channels=2)


def test_sequence_frames_read_in_colour(tmp_path):
    from echokdm.data.sequences import read_image

    rgb = (np.arange(SIZE * SIZE * 3) % 256).reshape(SIZE, SIZE, 3).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png", 3), rgb / 255.0, atol=1e-6)
    assert read_image(tmp_path / "a.png").shape == (SIZE, SIZE)  # grayscale default unchanged
