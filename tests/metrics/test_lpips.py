import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from echokdm.metrics import lpips as lpips_metric
from echokdm.metrics.lpips import LPIPSMetric, lpips_distance

WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "lpips"
needs_weights = pytest.mark.skipif(not (WEIGHTS / "alexnet_features.pth").is_file()
                                   or not (WEIGHTS / "vgg16_features.pth").is_file(),
                                   reason=f"LPIPS backbone weights not found in {WEIGHTS} "
                                          "(../shared beside the checkout)")
# torchvision features index after which each LPIPS layer is read (the ReLU outputs)
LAYER_ENDS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30)}


def _frames(n=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    smooth = np.stack([gaussian_filter(rng.random((size, size)), 2) for _ in range(n)])
    return ((smooth - smooth.min()) / np.ptp(smooth)).astype(np.float32)  # (n, H, W) in [0, 1]


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_identical_zero_symmetric_per_frame(net):
    metric = LPIPSMetric(net, backbone=WEIGHTS)
    a, b = _frames(seed=1), _frames(seed=2)
    np.testing.assert_allclose(metric(a, a), 0.0, atol=1e-6)
    ab, ba = metric(a, b), metric(b, a)
    assert ab.shape == (3,) and np.all(ab > 0.01)
    np.testing.assert_allclose(ab, ba, rtol=1e-5)
    np.testing.assert_allclose(metric(a[0], b[0]), ab[0], rtol=1e-5)  # one frame -> one value
    np.testing.assert_allclose(metric(a, b, batch_size=2), ab, rtol=1e-5)
    np.testing.assert_allclose(metric(torch.from_numpy(a), torch.from_numpy(b)), ab, rtol=1e-5)


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_monotone_in_distortion(net):
    metric = LPIPSMetric(net, backbone=WEIGHTS)
    ref = _frames(1, seed=3)[0] * 0.8 + 0.1
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(ref.shape)
    noisy = np.stack([np.clip(ref + s * noise, 0, 1) for s in (0.02, 0.05, 0.1, 0.2)])
    blurred = np.stack([gaussian_filter(ref, s) for s in (0.5, 1.0, 2.0, 4.0)])
    for distorted in (noisy, blurred):
        values = metric(np.broadcast_to(ref, distorted.shape), distorted)
        assert np.all(np.diff(values) > 0), values


@needs_weights
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_backbone_equals_file_and_mapping_is_right(net):
    from torchvision import models

    name, arch = lpips_metric.BACKBONE_FILES[net]
    state = torch.load(WEIGHTS / name, weights_only=True)
    model = LPIPSMetric(net, backbone=WEIGHTS).model
    # "slice2.3.weight" -> "3.weight"
    loaded = {key.split(".", 1)[1]: value for key, value in model.net.state_dict().items()}
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor), key
    # the slices produce torchvision's features at the right depths
    features = getattr(models, arch)(weights=None).features.eval()
    features.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        outs = model.net(x)
        for out, end in zip(outs, LAYER_ENDS[net], strict=True):
            torch.testing.assert_close(out, features[:end](x))


@needs_weights
def test_features_give_lpips_as_squared_distance():
    metric = LPIPSMetric("alex", backbone=WEIGHTS)
    a, b = _frames(seed=4), _frames(seed=5)
    fa, fb = metric.features(a), metric.features(b)
    dist = sum(((x - y) ** 2).sum(1).mean((1, 2)) for x, y in zip(fa, fb, strict=True)).double().numpy()
    np.testing.assert_allclose(dist, metric(a, b), rtol=1e-4)


@needs_weights
def test_file_path_env_variable_and_cache(monkeypatch):
    by_file = LPIPSMetric("alex", backbone=WEIGHTS / "alexnet_features.pth")
    assert by_file.backbone == WEIGHTS / "alexnet_features.pth"
    monkeypatch.setenv("ECHOKDM_LPIPS_WEIGHTS", str(WEIGHTS))
    by_env = LPIPSMetric("alex")
    assert by_env.backbone == WEIGHTS / "alexnet_features.pth"
    assert by_env.model is by_file.model  # cached per (net, backbone, device)
    a, b = _frames(2, seed=6), _frames(2, seed=7)
    np.testing.assert_allclose(lpips_distance(a, b, "alex", WEIGHTS), by_env(a, b))


def test_wrong_path_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "weights"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        LPIPSMetric("alex", backbone=missing)


def test_folder_without_backbone_names_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="vgg16_features.pth"):
        LPIPSMetric("vgg", backbone=tmp_path)
    with pytest.raises(FileNotFoundError, match="alexnet_features.pth"):
        LPIPSMetric("alex", backbone=tmp_path)


def test_wrong_file_content_names_file(tmp_path):
    bad = tmp_path / "alexnet_features.pth"
    torch.save({"0.weight": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="alexnet_features.pth"):
        _ = LPIPSMetric("alex", backbone=tmp_path).model


def test_bad_net_and_small_frames():
    with pytest.raises(ValueError, match="net"):
        LPIPSMetric("squeeze")
    with pytest.raises(ValueError, match="32"):
        LPIPSMetric("alex", backbone=WEIGHTS if WEIGHTS.is_dir() else None)(np.zeros((8, 8)), np.zeros((8, 8)))


def test_offline_download_failure_explains_local_backbone(monkeypatch):
    import lpips.pretrained_networks as pn

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.delenv("ECHOKDM_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(pn.tv, "alexnet", offline)
    metric = LPIPSMetric("alex", device="meta-test")  # a device key no other test uses: not cached
    with pytest.raises(lpips_metric.LPIPSUnavailableError, match="backbone=") as info:
        _ = metric.model
    assert isinstance(info.value, RuntimeError)
    for part in ("alexnet_features.pth", "ECHOKDM_LPIPS_WEIGHTS=DIR", "--lpips-backbone DIR", "URLError"):
        assert part in str(info.value), part


def test_unreadable_file_names_file(tmp_path):
    bad = tmp_path / "vgg16_features.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="vgg16_features.pth"):
        _ = LPIPSMetric("vgg", backbone=bad).model
