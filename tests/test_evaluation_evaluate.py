"""maskgit.evaluation.evaluate: accuracy, FID beside its floor and diversity of generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_NAMES as NAMES
from maskgit.data import FASHION_MNIST_ROOT
from maskgit.evaluation import evaluate as evaluate_module
from maskgit.evaluation.evaluate import (
    GenerationEvaluator,
    _frechet_distance,
    evaluate_folder,
    evaluate_images,
    load_generated,
)

pytestmark = pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
)



def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    # b = 2a + 3: C_b = 4 C_a, so tr((C_a C_b)^½) = 2 tr(C_a), and the distance is
    # |mu_a + 3|² + tr(C_a) + 4 tr(C_a) - 4 tr(C_a).
    expected = ((a.mean(0) + 3) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert _frechet_distance(a, 2 * a + 3) == pytest.approx(expected, rel=1e-9)
    assert _frechet_distance(2 * a + 3, a) == pytest.approx(expected, rel=1e-9)
    assert abs(_frechet_distance(a, a)) < 1e-8


def test_real_test_images_score_like_real_images(real_folder):
    images, labels = load_generated(real_folder, NAMES, 32)
    assert images.shape == (40, 3, 32, 32) and sorted(labels.tolist()) == [c for c in range(10) for _ in range(4)]
    results = evaluate_folder(real_folder)
    assert results["images"] == 40 and [e["class"] for e in results["per_class"]] == list(range(10))
    assert results["accuracy"] >= 0.8 and results["real_accuracy"] >= 0.9
    assert results["fid_reference_images"] == 10_000
    # Real images sit at the floor (both are 40 real images against the test set), not far above.
    assert 0 < results["fid"] < 1.5 * results["fid_floor"]
    assert 0.6 < results["diversity"] < 1.4


def test_an_evaluator_scores_many_sets_with_the_real_features_computed_once(real_folder, monkeypatch):
    images, labels = load_generated(real_folder, NAMES, 32)
    evaluator = GenerationEvaluator()
    first = evaluator(images, labels)
    assert first == evaluate_images(images, labels)
    calls = []
    original = evaluate_module._features_and_predictions
    monkeypatch.setattr(evaluate_module, "_features_and_predictions",
                        lambda classifier, batch: calls.append(len(batch)) or original(classifier, batch))
    assert evaluator(images.flip(-1), labels)["fid"] != first["fid"]
    assert calls == [40]  # only the new images: the test set and the floor are reused
    sandals = labels == 5
    assert evaluator(images[sandals], labels[sandals])["fid_reference_images"] == 1000
    assert calls == [40, 4, 4]  # a new class mix draws its own floor (4 sandals), then the images
