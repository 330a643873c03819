import numpy as np
import pytest
import torch

from echokdm.echo.augment import LookAugmentation, dct_blocks, random_ultrasound_look

OFF = LookAugmentation(p_blood=0, p_blur=0, p_speckle=0, p_tgc=0, p_haze=0, p_noise=0, p_gamma=0, p_jpeg=0)


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
    a = random_ultrasound_look(x, mask, torch.Generator().manual_seed(3))
    b = random_ultrasound_look(x, mask, torch.Generator().manual_seed(3))
    c = random_ultrasound_look(x, mask, torch.Generator().manual_seed(4))
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
