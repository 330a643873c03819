import numpy as np
import pytest
import torch

from echokdm.echo.augment import LookAugmentation, contract_lv, dct_blocks, random_ultrasound_look

OFF = LookAugmentation(p_blood=0, p_blur=0, p_speckle=0, p_tgc=0, p_haze=0, p_noise=0, p_gamma=0, p_jpeg=0,
                       p_noisy_outside=0)


def _frames(b=4, size=32):
    g = torch.Generator().manual_seed(1)
    x = 0.2 + 0.6 * torch.rand(b, 1, size, size, generator=g)
    x[..., :, :4] = 0  # "outside the sector"
    mask = torch.zeros(b, 1, size, size)
    mask[..., 10:22, 10:22] = 1
    return x, mask


def test_all_effects_off_is_identity():
    x, mask = _frames()
    out = random_ultrasound_look(x, mask, torch.Generator().manual_seed(0), OFF)
    assert torch.allclose(out, x)


def test_deterministic_for_a_seed_and_keeps_range_shape_and_outside():
    x, mask = _frames()
    black = LookAugmentation(p_noisy_outside=0.0)
    a = random_ultrasound_look(x, mask, torch.Generator().manual_seed(3), black)
    b = random_ultrasound_look(x, mask, torch.Generator().manual_seed(3), black)
    c = random_ultrasound_look(x, mask, torch.Generator().manual_seed(4), black)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.all(a[..., :, :4] == 0)


def test_blood_rescale_darkens_only_inside_the_mask():
    x, mask = _frames(b=2)
    s = LookAugmentation(**{**OFF.__dict__, "p_blood": 1.0, "blood_range": (0.1, 0.1)})
    out = random_ultrasound_look(x, mask, torch.Generator().manual_seed(0), s)
    inside = (out / x.clamp(min=1e-6))[..., 13:19, 13:19]
    assert torch.allclose(inside, torch.full_like(inside, 0.1), atol=0.03)
    assert torch.allclose(out[..., 26:, 26:], x[..., 26:, 26:])


def test_dct_blocks_small_step_is_near_identity_large_step_makes_flat_blocks():
    x = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dct_blocks(x, torch.tensor([1e-4])), x, atol=1e-3)
    coarse = dct_blocks(x, torch.tensor([100.0]))
    assert coarse.shape == x.shape
    block = coarse[0, 0, :8, :8]
    assert float(block.std()) < 1e-5  # only DC survives (and it rounds to 0 at this step)


def test_speckle_changes_texture_statistics():
    x = torch.full((2, 1, 32, 32), 0.5)
    s = LookAugmentation(**{**OFF.__dict__, "p_speckle": 1.0, "speckle_strength": (0.5, 0.5)})
    out = random_ultrasound_look(x, None, torch.Generator().manual_seed(0), s)
    assert 0.1 < float(out.std()) < 0.4
    assert abs(float(out.mean()) - 0.5) < 0.1


def test_outside_stays_black_unless_asked_for_noise_there():
    x, mask = _frames()
    quiet = LookAugmentation(**{**OFF.__dict__, "p_noise": 1.0, "noise_std": (0.05, 0.05)})
    noisy = LookAugmentation(**{**quiet.__dict__, "p_noisy_outside": 1.0})
    a = random_ultrasound_look(x, mask, torch.Generator().manual_seed(0), quiet)
    b = random_ultrasound_look(x, mask, torch.Generator().manual_seed(0), noisy)
    assert torch.all(a[..., :, :4] == 0)
    assert float(b[..., :, :4].max()) > 0.05


def test_zoom_and_aspect_augmentation_move_frame_and_mask_together():
    from echokdm.echo.segmentation_training import SegDataConfig, _augment

    x = torch.zeros(8, 1, 48, 48)
    x[..., 12:36, 18:30] = 1.0
    y = x.clone()
    gen = torch.Generator().manual_seed(0)
    xa, ya = _augment(x, y, gen, 0.0, (0.6, 0.6), (1.0, 1.0))
    assert float(ya.mean()) < 0.5 * float(y.mean())  # content shrunk to 60 %: area ~36 %
    assert torch.equal((xa > 0.5).float(), ya) or float(((xa > 0.5).float() - ya).abs().mean()) < 0.01
    xw, yw = _augment(x, y, torch.Generator().manual_seed(0), 0.0, (1.0, 1.0), (1.3, 1.3))
    cols = yw[0, 0].sum(0).gt(0).sum()
    rows = yw[0, 0].sum(1).gt(0).sum()
    assert cols > 12 * 1.15 and rows < 24 * 1.15  # wider, not taller (up to the random rotation)
    with pytest.raises(ValueError, match="zoom_range"):
        SegDataConfig(zoom_range=(1.2, 0.8))


def _ellipse_batch(n=3, size=64):
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (((xx - 30) / 10.0) ** 2 + ((yy - 34) / 22.0) ** 2 < 1).astype(np.float32)  # long axis vertical
    ring = (((xx - 30) / 15.0) ** 2 + ((yy - 34) / 27.0) ** 2 < 1).astype(np.float32) - mask
    frame = 0.05 + 0.8 * ring  # dark pool, bright wall
    x = torch.from_numpy(np.repeat(frame[None, None], n, 0))
    y = torch.from_numpy(np.repeat(mask[None, None], n, 0))
    return x, y


def test_contract_lv_narrows_the_pool_across_its_axis_frame_and_mask_together():
    x, y = _ellipse_batch()
    gen = torch.Generator().manual_seed(0)
    xo, yo = contract_lv(x, y, gen, p=1.0, max_strength=0.7)
    assert xo.shape == x.shape and yo.shape == y.shape and yo.dtype == y.dtype
    for i in range(len(x)):
        before, after = y[i, 0].numpy() > 0, yo[i, 0].numpy() > 0
        assert after.sum() < 0.95 * before.sum() and not (after & ~before).any()  # narrower, inside the old pool
        rows_b, cols_b = np.nonzero(before)
        rows_a, cols_a = np.nonzero(after)
        assert np.ptp(cols_a) < np.ptp(cols_b) and np.ptp(rows_a) >= np.ptp(rows_b) - 2  # across, not along
        assert xo[i, 0].numpy()[after].mean() < 0.2  # the frame's dark pool moved with the mask
        wall = (xo[i, 0].numpy() > 0.4) & ~after
        assert wall.sum() > (x[i, 0].numpy() > 0.4).sum()  # the wall thickened into the old pool
    again = contract_lv(x, y, torch.Generator().manual_seed(0), p=1.0, max_strength=0.7)
    assert torch.equal(again[0], xo) and torch.equal(again[1], yo)


def test_contract_lv_leaves_undrawn_and_empty_samples():
    x, y = _ellipse_batch(2)
    y[1] = 0
    xo, yo = contract_lv(x, y, torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(xo, x) and torch.equal(yo, y)
    xo, yo = contract_lv(x, y, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(xo[1], x[1]) and torch.equal(yo[1], y[1]) and not torch.equal(yo[0], y[0])
