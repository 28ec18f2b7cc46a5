"""Sample-based metrics on feature vectors: Inception Score, KID, and precision/recall.

All three follow torch-fidelity (which reproduces the original TensorFlow code of each paper):

- Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))`` per split of the samples,
  reported as the mean and the (population) standard deviation over ``splits`` splits. The original
  code, the ADM evaluator and torch-fidelity feed the softmax with the 1008 Inception logits
  *without* the final bias (``pool3 @ W``); ``FIDInceptionV3`` returns those as ``logits``.
- KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size`` from
  each side (torch-fidelity's defaults: 100 subsets of 1000), drawn with a seeded generator.
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls around
  its points with the radius of the k-th nearest neighbour (k = 3) in the same set. Precision is the
  fraction of generated points inside the real manifold; recall, of real points inside the generated one.

Everything is computed in float64 on the CPU (the inputs are at most a few 100k x 2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["inception_score", "kernel_inception_distance", "precision_recall", "MeanStd", "PrecisionRecall"]


@dataclass(frozen=True)
class MeanStd:
    """A metric's mean and standard deviation over splits or subsets."""

    mean: float
    std: float


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float
    recall: float


def _features(name: str, value: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach().cpu().double()
    if tensor.dim() != 2 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def inception_score(logits: torch.Tensor | np.ndarray, splits: int = 10) -> MeanStd:
    """Inception Score of class logits (N, C) over ``splits`` consecutive splits (N >= splits).

    Split i holds samples ``[i*N//splits, (i+1)*N//splits)``. Pass the samples in a fixed order
    (as written) for a reproducible number. Values range from 1 to C.
    """
    logits = _features("logits", logits)
    count = logits.shape[0]
    if not 1 <= splits <= count:
        raise ValueError(f"splits must be between 1 and the number of samples ({count}), got {splits}")
    log_p = logits.log_softmax(dim=1)
    scores = []
    for index in range(splits):
        chunk = log_p[index * count // splits : (index + 1) * count // splits]
        log_marginal = torch.logsumexp(chunk, dim=0) - np.log(chunk.shape[0])  # log mean_x p(y|x)
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return MeanStd(float(np.mean(scores)), float(np.std(scores)))


def kernel_inception_distance(
    first: torch.Tensor | np.ndarray,
    second: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> MeanStd:
    """KID between features (N1, D) and (N2, D): unbiased polynomial-kernel MMD^2 over random subsets.

    ``subset_size`` is clipped to the smaller set (so small sets still give a value; torch-fidelity
    refuses instead). It needs at least 2 samples on each side. Can be slightly negative.
    """
    first, second = _features("first features", first), _features("second features", second)
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"feature dimensions differ: {first.shape[1]} and {second.shape[1]}")
    size = min(subset_size, first.shape[0], second.shape[0])
    if size < 2 or subsets < 1:
        raise ValueError(f"KID needs subsets >= 1 and at least 2 samples per side, got {subsets} subsets of {size}")
    generator = torch.Generator().manual_seed(seed)
    dim = first.shape[1]
    values = []
    for _ in range(subsets):
        x = first[torch.randperm(first.shape[0], generator=generator)[:size]]
        y = second[torch.randperm(second.shape[0], generator=generator)[:size]]
        k_xx, k_yy, k_xy = [(a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (size * (size - 1))
        values.append(float(within - 2 * k_xy.sum() / (size * size)))
    return MeanStd(float(np.mean(values)), float(np.std(values)))


def precision_recall(
    generated: torch.Tensor | np.ndarray,
    real: torch.Tensor | np.ndarray,
    k: int = 3,
    batch_size: int = 1024,
) -> PrecisionRecall:
    """Improved precision and recall of ``generated`` (N1, D) against ``real`` (N2, D) with k-NN radii.

    Both sets need more than ``k`` points. Memory is bounded by ``batch_size`` rows of distances
    (1024 x 50k float64 = 400 MB).
    """
    generated, real = _features("generated features", generated), _features("real features", real)
    if generated.shape[1] != real.shape[1]:
        raise ValueError(f"feature dimensions differ: {generated.shape[1]} and {real.shape[1]}")
    if min(generated.shape[0], real.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    real_radii = _knn_radii(real, k, batch_size)
    generated_radii = _knn_radii(generated, k, batch_size)
    precision = _inside_fraction(generated, real, real_radii, batch_size)
    recall = _inside_fraction(real, generated, generated_radii, batch_size)
    return PrecisionRecall(precision, recall)


def _knn_radii(points: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point (the point itself is the 0th)."""
    return torch.cat([torch.cdist(chunk, points).kthvalue(k + 1, dim=1).values for chunk in points.split(batch_size)])


def _inside_fraction(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    """The fraction of queries within radius of at least one centre (inclusive, as the reference code)."""
    inside = [(torch.cdist(chunk, centres) <= radii).any(dim=1) for chunk in queries.split(batch_size)]
    return float(torch.cat(inside).double().mean())
