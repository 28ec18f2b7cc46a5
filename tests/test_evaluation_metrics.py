"""Inception Score, KID and precision/recall against the reference formulas (and torchmetrics' KID)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.evaluation.metrics import inception_score, kernel_inception_distance, precision_recall


def test_inception_score_matches_the_reference_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(103, 12)) * 3
    expected = []
    for index in range(4):
        chunk = logits[index * 103 // 4 : (index + 1) * 103 // 4]
        p = np.exp(chunk - chunk.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        marginal = p.mean(0)
        expected.append(np.exp(np.mean([np.sum(row * (np.log(row) - np.log(marginal))) for row in p])))
    score = inception_score(torch.from_numpy(logits).float(), splits=4)
    assert score.mean == pytest.approx(np.mean(expected), rel=1e-5)
    assert score.std == pytest.approx(np.std(expected), rel=1e-4)


def test_inception_score_bounds():
    # Confident and uniformly spread over C classes: IS = C. One class for everything: IS = 1.
    confident = torch.eye(10).repeat(5, 1) * 50
    assert inception_score(confident, splits=1).mean == pytest.approx(10, rel=1e-6)
    assert inception_score(torch.zeros(20, 10), splits=2).mean == pytest.approx(1.0)
    with pytest.raises(ValueError, match="splits must be between 1 and the number of samples"):
        inception_score(torch.zeros(3, 10), splits=4)


def _reference_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out term by term."""
    m, d = len(x), x.shape[1]
    kernel = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_reference_formula_and_torchmetrics():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 6)) * 1.5 + 0.3
    # Subsets as large as the sets are permutations of everything: the MMD does not depend on order.
    kid = kernel_inception_distance(x, y, subsets=3, subset_size=40)
    assert kid.mean == pytest.approx(_reference_mmd(x, y), rel=1e-9)
    assert kid.std == pytest.approx(0.0, abs=1e-9)

    kid_module = pytest.importorskip("torchmetrics.image.kid")

    class Passthrough(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.zeros(images.shape[0], 6) if images.dim() == 4 else images

    metric = kid_module.KernelInceptionDistance(feature=Passthrough(), subsets=2, subset_size=40)
    metric.update(torch.from_numpy(y), real=True)
    metric.update(torch.from_numpy(x), real=False)
    assert float(metric.compute()[0]) == pytest.approx(kid.mean, rel=1e-6)


def test_kid_subsets_are_seeded_and_near_zero_for_one_distribution():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    first = kernel_inception_distance(x, y, subsets=20, subset_size=50, seed=3)
    assert first == kernel_inception_distance(x, y, subsets=20, subset_size=50, seed=3)
    assert first != kernel_inception_distance(x, y, subsets=20, subset_size=50, seed=4)
    assert abs(first.mean) < 3 * first.std + 1e-3
    shifted = kernel_inception_distance(x, y + 2.0, subsets=20, subset_size=50)
    assert shifted.mean > 10 * abs(first.mean)


def _reference_precision_recall(generated: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    def radii(points):
        return [np.sort([np.linalg.norm(p - q) for q in points])[k] for p in points]

    def inside(queries, centres, centre_radii):
        return np.mean([any(np.linalg.norm(q - c) <= r for c, r in zip(centres, centre_radii)) for q in queries])

    return inside(generated, real, radii(real)), inside(real, generated, radii(generated))


def test_precision_recall_matches_the_reference_formula():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(60, 5))
    generated = np.concatenate([rng.normal(size=(30, 5)) * 0.5, rng.normal(size=(20, 5)) + 4.0])
    expected = _reference_precision_recall(generated, real, k=3)
    result = precision_recall(generated, real, k=3, batch_size=7)  # several distance blocks
    assert (result.precision, result.recall) == pytest.approx(expected)
    # The off-manifold cluster lowers precision; the narrow cluster lowers recall.
    assert result.precision < 0.7 and result.recall < 0.9


def test_precision_recall_of_a_set_against_itself_is_one():
    points = np.random.default_rng(6).normal(size=(30, 4))
    result = precision_recall(points, points)
    assert (result.precision, result.recall) == (1.0, 1.0)
    with pytest.raises(ValueError, match="needs more than 3 samples"):
        precision_recall(points[:3], points)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        precision_recall(points, points[:, :2])
