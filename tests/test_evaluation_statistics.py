"""Feature statistics files and the Fréchet distance, against scipy's sqrtm formula and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance, is_statistics_file, load_statistics


def _features(seed: int, count: int, dim: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)  # correlated features, like real ones
    return rng.normal(size=(count, dim)) @ mixing * scale + shift


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    # The pytorch-fid / clean-fid formula.
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("count,dim", [(300, 32), (120, 64), (40, 64)])  # the last is rank-deficient
def test_frechet_distance_matches_scipy_sqrtm(count, dim):
    pytest.importorskip("scipy")
    a, b = _features(0, count, dim), _features(1, count + 17, dim, scale=1.3, shift=0.2)
    expected = _scipy_frechet(a, b)
    actual = frechet_distance(FeatureStatistics.from_features(a), FeatureStatistics.from_features(b))
    assert actual == pytest.approx(expected, rel=1e-6)
    assert expected > 1.0  # a real distance, not round-off


def test_frechet_distance_agrees_with_torchmetrics_on_the_same_features():
    pytest.importorskip("scipy")
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    dim = 24

    class Passthrough(torch.nn.Module):
        # torchmetrics calls its feature network on a dummy (1, 3, 299, 299) image to learn the
        # dimension, then on whatever update() is given: here, the features themselves.
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], dim) if x.dim() == 4 else x

    a = torch.from_numpy(_features(2, 250, dim))
    b = torch.from_numpy(_features(3, 180, dim, scale=0.8, shift=-0.1))
    metric = fid_module.FrechetInceptionDistance(feature=Passthrough())
    metric.update(a, real=True)
    metric.update(b, real=False)
    ours = frechet_distance(FeatureStatistics.from_features(a), FeatureStatistics.from_features(b))
    assert ours == pytest.approx(float(metric.compute()), rel=1e-6)


def test_identical_statistics_are_at_distance_zero_and_the_distance_is_symmetric():
    stats = FeatureStatistics.from_features(_features(4, 100, 16))
    other = FeatureStatistics.from_features(_features(5, 100, 16, shift=1.0))
    assert abs(frechet_distance(stats, stats)) < 1e-9
    assert frechet_distance(stats, other) == pytest.approx(frechet_distance(other, stats), rel=1e-9)
    # Means differ by 1 in each of 16 coordinates, plus the covariance term.
    assert frechet_distance(stats, other) > 16 * 0.8


def test_statistics_round_trip_in_the_pytorch_fid_layout(tmp_path):
    features = torch.from_numpy(_features(6, 50, 8)).float()
    stats = FeatureStatistics.from_features(features, name="test-net")
    path = tmp_path / "ref.npz"
    stats.save(path)
    with np.load(path) as data:  # the keys pytorch-fid and clean-fid read
        assert data["mu"].dtype == np.float64 and data["sigma"].shape == (8, 8)
    loaded = load_statistics(path)
    assert np.array_equal(loaded.mu, stats.mu) and np.array_equal(loaded.sigma, stats.sigma)
    assert (loaded.count, loaded.features) == (50, "test-net")
    assert is_statistics_file(path)
    np.testing.assert_allclose(stats.sigma, np.cov(features.double().numpy(), rowvar=False))

    # A foreign file with only mu and sigma (pytorch-fid's layout) loads too.
    np.savez(tmp_path / "foreign.npz", mu=stats.mu, sigma=stats.sigma)
    foreign = load_statistics(tmp_path / "foreign.npz")
    assert foreign.features is None and foreign.count is None


def test_bad_statistics_are_clear_errors(tmp_path):
    np.savez(tmp_path / "images.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"images\.npz: not a statistics file .*'mu' and 'sigma'"):
        load_statistics(tmp_path / "images.npz")
    assert not is_statistics_file(tmp_path / "images.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: cannot read statistics"):
        load_statistics(tmp_path / "junk.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"shape\.npz: statistics need mu \(D,\) and sigma \(D, D\)"):
        load_statistics(tmp_path / "shape.npz")
    small, large = FeatureStatistics(np.zeros(3), np.eye(3)), FeatureStatistics(np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="3-d statistics with 4-d"):
        frechet_distance(small, large)
    with pytest.raises(ValueError, match="different feature networks"):
        frechet_distance(FeatureStatistics(np.zeros(3), np.eye(3), features="a"),
                         FeatureStatistics(np.zeros(3), np.eye(3), features="b"))
    with pytest.raises(ValueError, match="N >= 2"):
        FeatureStatistics.from_features(np.zeros((1, 3)))
