"""data.appearance_augment: the adapter's random look, one per training pair."""

import torch

from echokdm.adapters import get_adapter
from echokdm.training.kdm import KDMDataConfig, _appearance, _frames_batch, _pairs_batch


class _Bank:
    """Two pairs whose source and target are the same frame, so a shared look keeps them equal."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.frames_t = 0.1 + 0.5 * torch.rand(2, 1, 24, 24, generator=g)
        self.frames = self.frames_t[:, 0].numpy()

    def __len__(self):
        return 2

    def batch(self, index):
        return {"source": self.frames_t[index].clone(), "target": self.frames_t[index].clone()}


def test_off_by_default_and_identity_for_adapters_without_a_look():
    assert _appearance(KDMDataConfig()) is None
    x = torch.rand(2, 1, 8, 8)
    assert get_adapter("face").augment_appearance(x, torch.Generator()) is x


def test_a_pair_shares_one_look_and_frames_get_changed():
    bank = _Bank()
    look = _appearance(KDMDataConfig(appearance_augment=True))
    batch = _pairs_batch(bank, 6, look)(torch.Generator().manual_seed(3))
    assert torch.equal(batch["source"], batch["target"])  # the same look on both frames of every pair
    plain = _pairs_batch(bank, 6)(torch.Generator().manual_seed(3))
    assert not torch.allclose(batch["source"], plain["source"])
    again = _pairs_batch(bank, 6, look)(torch.Generator().manual_seed(3))
    assert torch.equal(batch["source"], again["source"])  # seeded
    images = _frames_batch(bank, 6, look)(torch.Generator().manual_seed(3))["image"]
    assert images.shape == (6, 1, 24, 24) and 0 <= float(images.min()) and float(images.max()) <= 1
