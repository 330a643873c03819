"""The one-step F2I refiner: returns the warp untrained, shapes, sizes, save/load, and it learns."""

import pytest
import torch
import torch.nn.functional as F

from echokdm.models.refiner import WarpRefiner

TINY = dict(channels=(8, 8, 16))


def test_untrained_refiner_returns_the_warp():
    torch.manual_seed(0)
    net = WarpRefiner(**TINY)
    warped, source, flow = torch.rand(3, 1, 64, 48), torch.rand(3, 1, 64, 48), torch.randn(3, 2, 64, 48) * 4
    assert torch.equal(net(warped, source, flow), warped)


def test_one_source_serves_a_batch_and_output_stays_in_range():
    torch.manual_seed(0)
    net = WarpRefiner(**TINY)
    torch.nn.init.normal_(net.out.weight, std=1.0)  # a large edit: the output must still be a frame
    out = net(torch.rand(4, 1, 32, 32), torch.rand(1, 1, 32, 32), torch.zeros(4, 2, 32, 32))
    assert out.shape == (4, 1, 32, 32)
    assert out.min() >= 0 and out.max() <= 1 and out.std() > 0.05


def test_size_and_config_errors():
    net = WarpRefiner(**TINY)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 1, 30, 32), torch.rand(1, 1, 30, 32), torch.zeros(1, 2, 30, 32))
    with pytest.raises(ValueError, match="3 levels"):
        WarpRefiner(channels=(8, 16))


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(1)
    net = WarpRefiner(**TINY, flow_scale=4.0)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    net.save_pretrained(tmp_path)
    back = WarpRefiner.from_pretrained(tmp_path)
    assert back.config.flow_scale == 4.0 and tuple(back.config.channels) == (8, 8, 16)
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(back(x, x, torch.ones(2, 2, 32, 32)), net(x, x, torch.ones(2, 2, 32, 32)))


def test_it_learns_what_the_warp_misses():
    """A target that is the warp with its contrast raised: a few steps of L1 beat the warp."""
    torch.manual_seed(0)
    net = WarpRefiner(**TINY)
    warped = torch.rand(8, 1, 32, 32) * 0.5 + 0.25
    target = ((warped - 0.5) * 1.6 + 0.5).clamp(0, 1)
    flow = torch.zeros(8, 2, 32, 32)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    before = F.l1_loss(warped, target).item()
    for _ in range(60):
        loss = F.l1_loss(net(warped, warped, flow), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * before
