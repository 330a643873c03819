"""Flow losses on known cases: identical images, known shifts, occlusion, smoothness, EPE."""

import pytest
import torch

from echokdm.geometry.flow import warp
from echokdm.training import losses


def _texture(b=2, h=32, w=32, seed=0):
    """A smooth random texture (B, 1, H, W) in [0, 1]: bilinear-friendly, so sub-pixel warps are exact-ish."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 1, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _constant(b, dx, dy, h=32, w=32):
    flow = torch.zeros(b, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


@pytest.mark.parametrize("weights", [dict(), dict(l1_weight=0, ssim_weight=0, census_weight=1.0),
                                     dict(l1_weight=1.0, ssim_weight=0.0)])
def test_identical_images_have_zero_photometric_loss(weights):
    img = _texture()
    loss = losses.photometric_loss(img, img, torch.zeros(2, 2, 32, 32), **weights)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_true_shift_beats_zero_and_wrong_shift():
    src = _texture()
    flow = _constant(2, 1.0, -2.0)
    tgt = warp(src, flow)
    inside = torch.zeros(2, 1, 32, 32)
    inside[..., 4:-4, 4:-4] = 1  # away from the clamped border
    for kw in (dict(), dict(l1_weight=0, ssim_weight=0, census_weight=1.0)):
        at_truth = losses.photometric_loss(src, tgt, flow, inside, **kw)
        at_zero = losses.photometric_loss(src, tgt, torch.zeros_like(flow), inside, **kw)
        wrong = losses.photometric_loss(src, tgt, -flow, inside, **kw)
        assert at_truth.item() == pytest.approx(0.0, abs=1e-5)
        assert at_zero > 0.01 and wrong > at_zero * 0.5


def test_census_ignores_gain_and_offset():
    img = _texture()
    d = losses.census_loss(img, 0.8 * img + 0.1)
    assert d.shape == (2, 1, 32, 32)
    assert float(d.max()) < 0.05  # a gain change barely moves the soft census signature
    assert float(losses.census_loss(img, _texture(seed=5)).mean()) > 0.3


def test_ssim_map_identical_is_one():
    img = _texture()
    torch.testing.assert_close(losses.ssim_map(img, img), torch.ones_like(img), atol=1e-4, rtol=0)


def test_occlusion_mask_on_a_known_shift():
    """Consistent forward/backward shifts are visible everywhere; a region whose backward flow
    disagrees is flagged occluded, and only there."""
    fw = _constant(1, 2.0, 0.0)
    bw = _constant(1, -2.0, 0.0)
    assert losses.occlusion_mask(fw, bw).min().item() == 1.0
    bad = bw.clone()
    bad[..., 10:20, 10:20] = 3.0  # the round trip no longer closes where flow_fw lands here
    vis = losses.occlusion_mask(fw, bad)[0, 0]
    # target pixel q lands at q + (2, 0) in the source; it is inconsistent where x + 2 in 10..19
    occluded = vis == 0
    assert occluded[12:18, 9:17].all()  # rows inside, columns x with x + 2 in [11, 18]
    assert not occluded[:9].any() and not occluded[21:].any() and not occluded[:, :7].any()
    assert vis.dtype == torch.float32 and not vis.requires_grad


def test_occlusion_tolerance_scales_with_motion():
    fw = _constant(1, 10.0, 0.0)
    bw = _constant(1, -9.0, 0.0)  # mismatch 1 px² vs alpha * (100 + 81) + beta = 2.31
    assert losses.occlusion_mask(fw, bw).min().item() == 1.0
    assert losses.occlusion_mask(fw, bw, alpha=0.0, beta=0.5).max().item() == 0.0


def test_smoothness_affine_flow_is_free_at_second_order():
    img = _texture(1)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    affine = torch.stack([0.1 * xx + 0.05 * yy, -0.03 * xx])[None]  # (1, 2, H, W)
    assert losses.smoothness_loss(affine, img, order=2).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.smoothness_loss(affine, img, order=1).item() > 0.01
    bumpy = affine + torch.randn(1, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    assert losses.smoothness_loss(bumpy, img, order=2) > 0.1


def test_smoothness_is_relaxed_at_image_edges():
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., :, 8:] = 1.0
    flat = torch.zeros(1, 1, 16, 16)
    jump = torch.zeros(1, 2, 16, 16)
    jump[:, 0, :, 8:] = 1.0  # the flow jumps where the image has its edge
    assert losses.smoothness_loss(jump, edge, order=1) < 0.01 * losses.smoothness_loss(jump, flat, order=1)
    with pytest.raises(ValueError, match="order"):
        losses.smoothness_loss(jump, edge, order=3)


def test_endpoint_error_and_masked_mean():
    a = _constant(2, 3.0, 4.0, 8, 8)
    assert losses.endpoint_error(a, torch.zeros_like(a)).item() == pytest.approx(5.0, rel=1e-5)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., :2, :] = 1
    b = a.clone()
    b[..., 2:, :] = 0  # error only outside the mask
    assert losses.endpoint_error(a, b, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert losses.masked_mean(torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)).item() == 0.0
