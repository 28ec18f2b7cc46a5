"""Comparing two inputs in one feature space: FID, and optionally IS, KID and precision/recall.

The first input is the one being judged (generated samples, reconstructions), the second the
reference. FID uses a side's saved statistics when it has them (an ADM reference batch, a file from
``--save-stats``), else statistics of its features. Inception Score is computed on the first input
only, KID and precision/recall need the images (features) of both sides. Everything that can be
checked is checked before any feature is extracted, so a bad combination fails in a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskgit.evaluation.features import FeatureExtractor, Features, extract_features
from maskgit.evaluation.metrics import (
    MeanStd,
    PrecisionRecall,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from maskgit.evaluation.sources import EvaluationInput
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance

__all__ = ["Comparison", "MetricOptions", "compare", "input_statistics"]


@dataclass(frozen=True)
class MetricOptions:
    """Which metrics beyond FID, and their settings (torch-fidelity's defaults)."""

    inception_score: bool = False
    kid: bool = False
    precision_recall: bool = False
    is_splits: int = 10
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    nearest_k: int = 3


@dataclass(frozen=True)
class Comparison:
    fid: float
    first: FeatureStatistics
    second: FeatureStatistics
    inception_score: MeanStd | None = None
    kid: MeanStd | None = None
    precision_recall: PrecisionRecall | None = None


def _check_statistics_name(side: EvaluationInput, extractor: FeatureExtractor) -> None:
    stats = side.statistics
    if stats is not None and stats.features is not None and stats.features != extractor.name:
        raise ValueError(f"{side.path}: statistics were made with {stats.features!r}, not {extractor.name!r} "
                         "(choose the matching --features/--resize, or recompute them)")


def input_statistics(side: EvaluationInput, extractor: FeatureExtractor, features: Features | None) -> FeatureStatistics:
    """The side's saved statistics, else those of its features."""
    if side.statistics is not None:
        return side.statistics
    if features is None:
        raise ValueError(f"{side.path}: no statistics and no features")
    return FeatureStatistics.from_features(features.features, name=extractor.name)


def compare(
    first: EvaluationInput,
    second: EvaluationInput,
    extractor: FeatureExtractor,
    options: MetricOptions = MetricOptions(),
    batch_size: int = 50,
    progress: bool = True,
) -> Comparison:
    """FID of ``first`` against ``second`` in ``extractor``'s feature space, plus the chosen metrics."""
    for side in (first, second):
        _check_statistics_name(side, extractor)
    needs_both = [name for name, wanted in (("KID", options.kid), ("precision/recall", options.precision_recall)) if wanted]
    for side in (first, second):
        if needs_both and side.images is None:
            raise ValueError(f"{side.path}: {' and '.join(needs_both)} need images, and this input only has statistics")
    if options.inception_score:
        if first.images is None:
            raise ValueError(f"{first.path}: the Inception Score needs images, and this input only has statistics")
        if not extractor.has_logits:
            raise ValueError(f"the Inception Score needs class logits, which {extractor.name} does not give")

    def features_of(side: EvaluationInput, wanted: bool) -> Features | None:
        if side.images is None or not (wanted or side.statistics is None):
            return None
        return extract_features(extractor, side.images, batch_size, progress)

    first_features = features_of(first, bool(needs_both) or options.inception_score)
    second_features = features_of(second, bool(needs_both))
    first_stats = input_statistics(first, extractor, first_features)
    second_stats = input_statistics(second, extractor, second_features)
    result = {"fid": frechet_distance(first_stats, second_stats), "first": first_stats, "second": second_stats}
    if options.inception_score:
        result["inception_score"] = inception_score(first_features.logits, splits=min(options.is_splits, len(first_features.logits)))
    if options.kid:
        result["kid"] = kernel_inception_distance(first_features.features, second_features.features,
                                                  options.kid_subsets, options.kid_subset_size)
    if options.precision_recall:
        result["precision_recall"] = precision_recall(first_features.features, second_features.features, k=options.nearest_k)
    return Comparison(**result)
