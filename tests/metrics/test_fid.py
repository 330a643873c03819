"""FID: the Fréchet distance against closed forms and scipy, the plumbing with a small random
network, and the offline weight rule (local path, hub cache, download, else a note)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from echokdm.metrics import fid


def test_frechet_distance_of_gaussians_in_closed_form():
    # diagonal covariances: |mu1 - mu2|² + sum (sqrt(s1) - sqrt(s2))²
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # same Gaussian: 0; a rotated copy of a covariance has the same spectrum, but not distance 0
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T + np.eye(5)
    assert fid.frechet_distance(mu2[:1].repeat(5), sigma, mu2[:1].repeat(5), sigma) == pytest.approx(0, abs=1e-8)
    # scaled covariance: Tr(S + c²S - 2cS) = (1 - c)² Tr S
    assert fid.frechet_distance(np.zeros(5), sigma, np.zeros(5), 4 * sigma) == pytest.approx(np.trace(sigma), rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_on_random_covariances():
    rng = np.random.default_rng(1)
    for d in (2, 7, 30):
        a, b = rng.normal(size=(d, d + 3)), rng.normal(size=(d, d + 3))
        s1, s2 = a @ a.T / d, b @ b.T / d
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        root = scipy.linalg.sqrtm(s1 @ s2).real
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * root)
        assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_frechet_distance_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shapes do not match"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        fid.feature_statistics(np.zeros((1, 4)))


def _random_extractor(dim=8):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, dim, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten()).eval()

    def extract(frames):
        with torch.no_grad():
            return net(torch.from_numpy(np.asarray(frames, np.float32))[:, None]).numpy()
    return extract


def test_fid_plumbing_with_an_injected_network():
    rng = np.random.default_rng(2)
    real = rng.random((40, 32, 32)).astype(np.float32)
    other = rng.random((40, 32, 32)).astype(np.float32)
    darker = 0.3 * rng.random((40, 32, 32)).astype(np.float32)
    extract = _random_extractor()
    with pytest.warns(fid.FewSamplesWarning, match="biased"):
        same = fid.frechet_inception_distance(real, other, extract, batch_size=7)
    far = fid.frechet_inception_distance(real, darker, extract, warn=False)
    assert 0 <= same < far
    # batching does not change the features
    assert fid.frechet_inception_distance(real, darker, extract, batch_size=3, warn=False) == pytest.approx(far)
    assert fid.frechet_inception_distance(real, real, extract, warn=False) == pytest.approx(0, abs=1e-6)


def test_weights_rule_local_path_cache_and_note(tmp_path, monkeypatch):
    monkeypatch.delenv(fid.FID_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(fid, "_hub_checkpoints", lambda: tmp_path / "hub")
    # nothing local, no download: a note naming the option and the variable
    extractor, note = fid.load_fid_extractor(download=False)
    assert extractor is None and "--fid-weights DIR" in note and fid.FID_WEIGHTS_ENV in note
    # a wrong local path is an error
    with pytest.raises(FileNotFoundError, match="no such file"):
        fid.load_fid_extractor(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pt_inception"):
        fid.resolve_feature_weights(tmp_path / "empty", fid.FID_WEIGHTS_ENV, fid.FID_FILES)
    # a folder (or the variable) holding a file, and the hub cache
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "inception_v3_google-0cc3c7bd.pth").write_bytes(b"")
    assert fid.resolve_feature_weights(folder, fid.FID_WEIGHTS_ENV, fid.FID_FILES)[1] == "torchvision_inception_v3"
    monkeypatch.setenv(fid.FID_WEIGHTS_ENV, str(folder))
    assert fid.resolve_feature_weights(None, fid.FID_WEIGHTS_ENV, fid.FID_FILES)[0].parent == folder
    monkeypatch.delenv(fid.FID_WEIGHTS_ENV)
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"")
    path, network, note = fid.resolve_feature_weights(None, fid.FID_WEIGHTS_ENV, fid.FID_FILES, download=False)
    assert network == "pt_inception" and note is None and path.parent == tmp_path / "hub"


@pytest.mark.slow
def test_inception_weights_round_trip_and_pool3_features(tmp_path):
    # a state dict saved from the architecture loads strictly (weights_only) and gives (N, 2048) features
    model = fid.fid_inception_v3("pt_inception")
    torch.save(model.state_dict(), tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    extractor, note = fid.load_fid_extractor(tmp_path)
    assert note is None and extractor.network == "pt_inception"
    features = extractor(np.random.default_rng(0).random((2, 40, 40)).astype(np.float32))
    assert features.shape == (2, 2048) and np.isfinite(features).all()
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not pt_inception"):
        fid.load_fid_extractor(tmp_path / "bad.pth")
