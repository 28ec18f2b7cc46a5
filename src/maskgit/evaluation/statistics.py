"""Feature statistics (mean and covariance) and the Fréchet distance between them: the FID.

A set of features (N, D) is summarised by its mean ``mu`` (D,) and its covariance ``sigma`` (D, D)
with the unbiased ``N - 1`` normaliser, both float64, as pytorch-fid, clean-fid, torch-fidelity and
the ADM evaluator compute them. They are saved as ``.npz`` files with the keys ``mu`` and ``sigma``,
the layout those tools read and write (ADM's reference batches hold them too, beside ``arr_0``), so
reference statistics travel between tools. Our files add ``count`` and ``features`` (the feature
network and protocol that produced them) so that statistics of different feature spaces are never
compared by mistake; files without them are accepted.

The Fréchet distance between N(mu1, S1) and N(mu2, S2) is

    |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

``Tr((S1 S2)^(1/2))`` is computed without a general matrix square root: S1 S2 is similar to a
symmetric positive semi-definite matrix (``L^T S2 L`` with S1 = L L^T), whose eigenvalues ``eigvalsh``
finds stably in float64; the trace is the sum of their square roots. This equals scipy's
``sqrtm``-based value (tested to 1e-6 relative) without its complex round-off or its dependency.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskgit.io import atomic_path

__all__ = ["FeatureStatistics", "frechet_distance", "load_statistics", "is_statistics_file"]

MAX_FEATURE_DIM = 16384  # a covariance of this size is 2 GiB in float64: anything larger is a mistake


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean ``mu`` (D,) and covariance ``sigma`` (D, D), float64, of ``count`` feature vectors.

    ``features`` names the feature network and protocol (e.g. ``"inception-2015-12-05/clean"``), or
    is None when unknown (statistics written by another tool).
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int | None = None
    features: str | None = None

    def __post_init__(self) -> None:
        mu, sigma = np.asarray(self.mu), np.asarray(self.sigma)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"statistics need mu (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError("statistics contain NaN or infinite values")
        object.__setattr__(self, "mu", mu.astype(np.float64))
        object.__setattr__(self, "sigma", sigma.astype(np.float64))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray, name: str | None = None) -> FeatureStatistics:
        """Statistics of features (N, D), N >= 2; computed in float64."""
        array = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
        if array.ndim != 2 or array.shape[0] < 2:
            raise ValueError(f"need features of shape (N, D) with N >= 2, got {array.shape}")
        return cls(array.mean(axis=0), np.cov(array, rowvar=False), count=int(array.shape[0]), features=name)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``mu``, ``sigma`` (and ``count``, ``features`` when known) to an ``.npz``, atomically."""
        extra: dict[str, np.ndarray] = {}
        if self.count is not None:
            extra["count"] = np.asarray(self.count, dtype=np.int64)
        if self.features is not None:
            extra["features"] = np.asarray(self.features)
        with atomic_path(path) as temp, open(temp, "wb") as handle:
            np.savez(handle, mu=self.mu, sigma=self.sigma, **extra)


def is_statistics_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ``.npz`` that holds ``mu`` and ``sigma``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return "mu" in data.files and "sigma" in data.files
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def load_statistics(path: str | os.PathLike[str]) -> FeatureStatistics:
    """Read statistics written by this package, pytorch-fid, clean-fid or ADM (``mu``, ``sigma`` keys)."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: cannot read statistics ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz with 'mu' and 'sigma'")
    try:
        with archive as data:
            if "mu" not in data.files or "sigma" not in data.files:
                raise ValueError(f"{path}: not a statistics file (it has {sorted(data.files)}, need 'mu' and 'sigma')")
            mu = data["mu"]
            if mu.ndim != 1 or mu.shape[0] > MAX_FEATURE_DIM:
                raise ValueError(f"{path}: mu must be (D,) with D <= {MAX_FEATURE_DIM}, got {mu.shape}")
            sigma = data["sigma"]
            count = int(data["count"]) if "count" in data.files else None
            features = str(data["features"]) if "features" in data.files else None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: cannot read statistics ({error})") from None
    try:
        return FeatureStatistics(mu, sigma, count=count, features=features)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def frechet_distance(first: FeatureStatistics, second: FeatureStatistics) -> float:
    """The Fréchet distance between two Gaussians given by their statistics (float64); >= 0 up to round-off.

    Raises ValueError when the dimensions differ, or when both name their feature networks and the
    names differ (statistics from different feature spaces are not comparable).
    """
    if first.dim != second.dim:
        raise ValueError(f"cannot compare {first.dim}-d statistics with {second.dim}-d statistics "
                         "(were they made with different --features?)")
    if first.features and second.features and first.features != second.features:
        raise ValueError(f"statistics come from different feature networks: {first.features!r} and {second.features!r}")
    difference = first.mu - second.mu
    trace_sqrt = np.sqrt(np.clip(_product_eigenvalues(first.sigma, second.sigma), 0, None)).sum()
    return float(difference @ difference + np.trace(first.sigma) + np.trace(second.sigma) - 2 * trace_sqrt)


def _product_eigenvalues(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The eigenvalues of ``first @ second`` for symmetric PSD matrices, via a similar symmetric matrix.

    With ``first = L L^T`` (Cholesky), ``L^T second L`` is similar to ``first @ second``; one
    Cholesky and one ``eigvalsh`` cost a third of two eigendecompositions. A singular ``first``
    (fewer samples than dimensions) has no Cholesky factor: then its symmetric square root R
    (``eigh``) gives the similar matrix ``R second R``.
    """
    try:
        factor = np.linalg.cholesky(first)
    except np.linalg.LinAlgError:
        factor = _psd_sqrt(first)
    inner = factor.T @ second @ factor
    return np.linalg.eigvalsh((inner + inner.T) / 2)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (round-off negatives clipped to 0)."""
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T
