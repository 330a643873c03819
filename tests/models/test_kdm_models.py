import numpy as np
import pytest
import torch

from echokdm.models.kdm import ConditionalUNet, decode_flow, encode_flow, flow_round_trip_epe, make_autoencoder


def test_conditional_unet_shapes_and_round_trip(tmp_path):
    torch.manual_seed(0)
    m = ConditionalUNet(sample_channels=2, condition_channels=7, condition_embed_channels=8, sample_size=8,
                        block_out_channels=(16, 32), attention_levels=(False, True), layers_per_block=1,
                        norm_num_groups=8)
    x, cond = torch.randn(2, 2, 8, 8), torch.randn(2, 7, 32, 32)
    out = m(x, torch.tensor([3, 7]), cond)
    assert out.shape == (2, 2, 8, 8)
    m.save_pretrained(tmp_path / "m")
    again = ConditionalUNet.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(again(x, torch.tensor([3, 7]), cond), out)
    with pytest.raises(ValueError, match="downsample"):
        m(x, torch.tensor([3, 7]), torch.randn(2, 7, 64, 64))


def test_autoencoder_downsamples_by_four():
    vae = make_autoencoder(block_out_channels=(8, 16, 16), sample_size=32, norm_num_groups=8)
    z = vae.encode(torch.rand(1, 1, 32, 32)).latent_dist.mean
    assert z.shape == (1, 4, 8, 8) and vae.decode(z).sample.shape == (1, 1, 32, 32)


def test_flow_representation_round_trip_is_exact_for_smooth_flows():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    constant = torch.stack([torch.full_like(xx, 2.5), torch.full_like(xx, -1.0)])[None]
    code = encode_flow(constant, 4, 8.0)
    assert code.shape == (1, 2, 8, 8)
    torch.testing.assert_close(decode_flow(code, 4, 8.0), constant)
    assert float(flow_round_trip_epe(constant, 4)) < 1e-6
    ramp = torch.stack([0.05 * xx, 0.02 * yy])[None]  # affine: exact away from the border
    assert float(flow_round_trip_epe(ramp, 4)) < 0.05


def test_flow_representation_on_phantom_motion_costs_little():
    from echokdm.data.phantom import sample_patient, simulate_clip

    clip = simulate_clip(sample_patient(0, 0), n_frames=30, size=112)
    ed, es = int(clip.ed_frames[0]), int(clip.es_frames[0])
    flow = torch.from_numpy(np.stack([clip.flow(ed, es)]))
    fan = torch.from_numpy(clip.fan_mask)[None]
    assert float(flow_round_trip_epe(flow, 4, fan)) < 0.15
