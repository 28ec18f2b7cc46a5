"""evaluation/compare.py: FID and the optional metrics of two inputs in one feature space, saved
statistics used in place of images, and every impossible combination refused before extraction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from maskgit.evaluation.compare import MetricOptions, compare, input_statistics
from maskgit.evaluation.features import FeatureExtractor
from maskgit.evaluation.metrics import inception_score, kernel_inception_distance, precision_recall
from maskgit.evaluation.sources import EvaluationInput, ImageSource
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance


class ColourFeatures(FeatureExtractor):
    """Per-channel mean and spread of an image (D = 6), and logits from the mean colour; counts
    the images it sees, so that a test can tell when statistics replaced extraction."""

    name = "colour-test"
    device = torch.device("cpu")

    def __init__(self, has_logits: bool = True) -> None:
        self.has_logits = has_logits
        self.seen = 0

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image.float() / 255

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.seen += len(batch)
        flat = batch.flatten(2)
        features = torch.cat([flat.mean(-1), flat.std(-1)], dim=1)
        return features, (4 * flat.mean(-1) if self.has_logits else None)


class RandomImages(ImageSource):
    def __init__(self, count: int, seed: int, brightness: int = 256) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = [torch.randint(0, brightness, (3, 8, 8), generator=generator, dtype=torch.uint8)
                       for _ in range(count)]
        self.description = f"random images (seed {seed})"

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int) -> Iterator[list[torch.Tensor]]:
        for start in range(0, len(self.images), batch_size):
            yield self.images[start : start + batch_size]


def _features(source: ImageSource) -> tuple[torch.Tensor, torch.Tensor]:
    features, logits = ColourFeatures()(torch.stack(source.images).float() / 255)
    return features, logits


def _side(name: str, images: ImageSource | None = None, statistics: FeatureStatistics | None = None) -> EvaluationInput:
    return EvaluationInput(Path(name), images, statistics)


def test_fid_is_the_frechet_distance_of_each_sides_features():
    first, second = RandomImages(20, seed=1), RandomImages(24, seed=2, brightness=128)
    extractor = ColourFeatures()
    result = compare(_side("a", first), _side("b", second), extractor, batch_size=7, progress=False)
    a, b = FeatureStatistics.from_features(_features(first)[0]), FeatureStatistics.from_features(_features(second)[0])
    np.testing.assert_allclose(result.first.mu, a.mu, rtol=1e-6)
    np.testing.assert_allclose(result.second.sigma, b.sigma, rtol=1e-5, atol=1e-9)
    assert result.first.features == result.second.features == "colour-test"
    assert result.fid == pytest.approx(frechet_distance(a, b), rel=1e-5) and result.fid > 0.01
    assert result.inception_score is result.kid is result.precision_recall is None
    assert extractor.seen == 44
    same = compare(_side("a", first), _side("a2", first), ColourFeatures(), progress=False)
    assert abs(same.fid) < 1e-6


def test_saved_statistics_replace_extraction():
    images = RandomImages(20, seed=1)
    reference = FeatureStatistics.from_features(_features(RandomImages(30, seed=3))[0], name="colour-test")
    extractor = ColourFeatures()
    result = compare(_side("a", images), _side("ref.npz", statistics=reference), extractor, progress=False)
    assert extractor.seen == 20  # only the side without statistics went through the network
    assert result.second is reference
    # A side with both images and statistics (an ADM reference batch) uses its statistics for FID.
    extractor = ColourFeatures()
    both = compare(_side("a", images), _side("ref.npz", images, reference), extractor, progress=False)
    assert extractor.seen == 20 and both.fid == pytest.approx(result.fid)
    assert input_statistics(_side("ref.npz", statistics=reference), extractor, None) is reference
    with pytest.raises(ValueError, match="a: no statistics and no features"):
        input_statistics(_side("a", images), extractor, None)


def test_the_optional_metrics_use_the_same_features():
    first, second = RandomImages(20, seed=1), RandomImages(24, seed=2, brightness=200)
    options = MetricOptions(inception_score=True, kid=True, precision_recall=True, is_splits=4, kid_subsets=5,
                            kid_subset_size=10, nearest_k=2)
    result = compare(_side("a", first), _side("b", second), ColourFeatures(), options, progress=False)
    (first_features, first_logits), (second_features, _) = _features(first), _features(second)
    assert result.inception_score == inception_score(first_logits, splits=4)
    assert result.kid == kernel_inception_distance(first_features, second_features, 5, 10)
    assert result.precision_recall == precision_recall(first_features, second_features, k=2)
    # More splits than images: as many splits as images.
    few = compare(_side("a", RandomImages(3, seed=4)), _side("b", second), ColourFeatures(),
                  MetricOptions(inception_score=True), progress=False)
    assert few.inception_score == inception_score(_features(RandomImages(3, seed=4))[1], splits=3)


@pytest.mark.parametrize("first_images, second_images, options, extractor, message", [
    (True, False, MetricOptions(kid=True), ColourFeatures(), "b: KID need images, and this input only has statistics"),
    (True, False, MetricOptions(kid=True, precision_recall=True), ColourFeatures(), "KID and precision/recall need images"),
    (False, True, MetricOptions(inception_score=True), ColourFeatures(), "a: the Inception Score needs images"),
    (True, True, MetricOptions(inception_score=True), ColourFeatures(has_logits=False),
     "the Inception Score needs class logits, which colour-test does not give"),
])
def test_impossible_combinations_fail_before_any_extraction(first_images, second_images, options, extractor, message):
    statistics = FeatureStatistics.from_features(torch.randn(10, 6), name="colour-test")
    first = _side("a", RandomImages(5, seed=0) if first_images else None, None if first_images else statistics)
    second = _side("b", RandomImages(5, seed=1) if second_images else None, None if second_images else statistics)
    with pytest.raises(ValueError, match=message):
        compare(first, second, extractor, options, progress=False)
    assert extractor.seen == 0


def test_statistics_of_another_feature_network_are_refused():
    other = FeatureStatistics.from_features(torch.randn(10, 6), name="inception-2015-12-05/clean")
    with pytest.raises(ValueError, match="ref.npz: statistics were made with 'inception-2015-12-05/clean', not 'colour-test'"):
        compare(_side("a", RandomImages(5, seed=0)), _side("ref.npz", statistics=other), ColourFeatures(), progress=False)
    unnamed = FeatureStatistics.from_features(torch.randn(10, 6))  # another tool's file: trusted as it is
    assert compare(_side("a", RandomImages(5, seed=0)), _side("ref.npz", statistics=unnamed), ColourFeatures(),
                   progress=False).second is unnamed
