"""The condition contract: the channel counts are those of the tensors the builders return, and the
builders from renders give the builders from keypoints' tensors."""

import numpy as np
import pytest
import torch

from echokdm.adapters import get_adapter
from echokdm.models.conditions import (
    f2i_condition,
    f2i_condition_channels,
    f2i_condition_from_render,
    k2f_condition,
    k2f_condition_channels,
    k2f_condition_from_renders,
    render_batch,
)

SIZE = 32


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    source = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    source_kp = rng.uniform(4, 28, (2, 40, 2)).astype(np.float32)
    target_kp = source_kp + rng.normal(0, 1, source_kp.shape).astype(np.float32)
    flow = torch.randn(2, 2, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return source, source_kp, target_kp, flow


@pytest.mark.parametrize("sigma", [None, 3.0])
def test_k2f_channel_count_and_renders_path(inputs, sigma):
    source, source_kp, target_kp, _ = inputs
    render = get_adapter("echo").render
    cond = k2f_condition(source, source_kp, target_kp, render, sigma, flow_scale=2.0)
    channels = render_batch(source_kp, (SIZE, SIZE), render).shape[1]
    assert cond.shape == (2, k2f_condition_channels(channels, bool(sigma)), SIZE, SIZE)
    again = k2f_condition_from_renders(source, render_batch(source_kp, (SIZE, SIZE), render),
                                       render_batch(target_kp, (SIZE, SIZE), render),
                                       torch.from_numpy(source_kp), torch.from_numpy(target_kp), sigma, 2.0)
    torch.testing.assert_close(again, cond, rtol=0, atol=0)


@pytest.mark.parametrize(("flow", "warped"), [(True, False), (True, True), (False, False)])
def test_f2i_channel_count_and_render_path(inputs, flow, warped):
    source, _, target_kp, flow_t = inputs
    render = get_adapter("echo").render
    warped_t = source.flip(-1) if warped else None
    cond = f2i_condition(source, target_kp, flow_t if flow else None, render, 4.0, warped_t)
    channels = render_batch(target_kp, (SIZE, SIZE), render).shape[1]
    assert cond.shape == (2, f2i_condition_channels(channels, flow, warped), SIZE, SIZE)
    again = f2i_condition_from_render(source, render_batch(target_kp, (SIZE, SIZE), render),
                                      flow_t if flow else None, 4.0, warped_t)
    torch.testing.assert_close(again, cond, rtol=0, atol=0)


def test_paper_channel_counts():
    assert k2f_condition_channels(3) == 7 and k2f_condition_channels(3, displacement=True) == 10
    assert f2i_condition_channels(3) == 6 and f2i_condition_channels(3, flow=False) == 4
    assert f2i_condition_channels(3, warped_source=True) == 7
