"""Evaluation: feature statistics and the Fréchet distance (FID), Inception Score, KID and
precision/recall on feature vectors."""

from maskgit.evaluation.metrics import (
    MeanStd,
    PrecisionRecall,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance, load_statistics

__all__ = [
    "FeatureStatistics",
    "frechet_distance",
    "load_statistics",
    "inception_score",
    "kernel_inception_distance",
    "precision_recall",
    "MeanStd",
    "PrecisionRecall",
]
