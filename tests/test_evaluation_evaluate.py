"""maskgit.evaluation.evaluate: accuracy, FID beside its floor and diversity of generated images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FASHION_NAMES as NAMES
from maskgit.data import FASHION_MNIST_ROOT
from maskgit.evaluation import evaluate as evaluate_module
from maskgit.evaluation.classifier import fashion_mnist_images
from maskgit.evaluation.evaluate import (
    GenerationEvaluator,
    evaluate_folder,
    evaluate_images,
    load_generated,
)
from maskgit.evaluation.statistics import FeatureStatistics, frechet_distance

ROOT = Path(__file__).parents[1]

pytestmark = pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
)



def _frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(FeatureStatistics.from_features(a), FeatureStatistics.from_features(b))


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
    original = evaluate_module.extract_features
    monkeypatch.setattr(evaluate_module, "extract_features",
                        lambda extractor, batch, *args, **kwargs: calls.append(len(batch)) or original(extractor, batch, *args, **kwargs))
    assert evaluator(images.flip(-1), labels)["fid"] != first["fid"]
    assert calls == [40]  # only the new images: the test set and the floor are reused
    sandals = labels == 5
    assert evaluator(images[sandals], labels[sandals])["fid_reference_images"] == 1000
    assert calls == [40, 4, 4]  # a new class mix draws its own floor (4 sandals), then the images


def test_per_class_fid_is_each_class_against_its_own_test_images(real_folder):
    images, labels = load_generated(real_folder, NAMES, 32)
    evaluator = GenerationEvaluator()
    real = evaluator(images, labels)
    fids = [e["fid"] for e in real["per_class"]]
    assert all(f > 0 for f in fids) and real["intra_fid"] == pytest.approx(np.mean(fids), rel=1e-12)
    assert real["intra_fid_floor"] == pytest.approx(np.mean([e["fid_floor"] for e in real["per_class"]]), rel=1e-12)
    # The sandals' FID, computed here from the classifier: the 4 sandals against the 1000 test sandals.
    test_images, test_labels = fashion_mnist_images("test")
    classifier = evaluator.features.classifier
    with torch.no_grad():
        ours = classifier.features(images[labels == 5]).double().numpy()
        theirs = classifier.features(test_images[test_labels == 5].float() / 255).double().numpy()
    assert real["per_class"][5]["fid"] == pytest.approx(_frechet_distance(ours, theirs), rel=1e-6)
    # Blur the sandals only: their FID rises, every other class's stays exactly as it was, and so
    # does every floor (the real training images don't depend on the samples).
    blurred = images.clone()
    sandals = labels == 5
    blurred[sandals] = _sensitivity_tool().gaussian_blur(1.0)(images[sandals])
    changed = evaluator(blurred, labels)
    for before, after in zip(real["per_class"], changed["per_class"]):
        assert after["fid_floor"] == before["fid_floor"]
        if before["class"] == 5:
            assert after["fid"] > 2 * before["fid"]
        else:
            assert after["fid"] == before["fid"]
    assert changed["intra_fid"] > real["intra_fid"] and changed["intra_fid_floor"] == real["intra_fid_floor"]
    # A class with one image has no covariance: no FID for it, and so no intra-FID.
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[torch.nonzero(sandals).flatten()[1:]] = False
    lone = evaluator(images[keep], labels[keep])
    assert [e["fid"] for e in lone["per_class"] if e["class"] == 5] == [None]
    assert lone["intra_fid"] is None and lone["intra_fid_floor"] is None and lone["fid"] > 0


def _sensitivity_tool():
    """tools/fid_sensitivity.py, a script, not part of the package: its stand-in tokenizers."""
    spec = importlib.util.spec_from_file_location("fid_sensitivity", ROOT / "tools" / "fid_sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reconstruction_fid_is_the_floor_for_a_lossless_tokenizer_and_above_it_for_a_lossy_one(real_folder):
    tool = _sensitivity_tool()
    images, labels = load_generated(real_folder, NAMES, 32)
    evaluator = GenerationEvaluator()
    scores = evaluator(images, labels)
    lossless = evaluator.reconstruction(tool.Degradation(lambda x: x), labels)
    # The floor's own images, unchanged: exactly the floor, and classified as well as real images.
    assert lossless["images"] == 40 and lossless["fid_floor"] == scores["fid_floor"]
    assert lossless["fid"] == pytest.approx(scores["fid_floor"], rel=1e-9) and lossless["accuracy"] >= 0.8
    assert lossless["psnr"] == float("inf")
    assert lossless["intra_fid"] == pytest.approx(lossless["intra_fid_floor"], rel=1e-9)
    assert [e["fid"] for e in lossless["per_class"]] == pytest.approx([e["fid_floor"] for e in scores["per_class"]], rel=1e-9)
    assert evaluator.reconstruction(tool.Degradation(lambda x: x), labels[labels == 5])["images"] == 4
    # Lost detail costs FID, more with more loss. (On 200 images: at 40 the floor itself is large,
    # as sampling noise dominates.)
    many = torch.arange(10).repeat_interleave(20)
    floor = evaluator.reconstruction(tool.Degradation(lambda x: x), many)["fid"]
    light, heavy = (evaluator.reconstruction(tool.Degradation(tool.gaussian_blur(s)), many) for s in (0.4, 0.8))
    assert floor < light["fid"] < heavy["fid"] and heavy["fid"] > 3 * floor
    assert 30 < light["psnr"] < 45 and 15 < heavy["psnr"] < light["psnr"]
    noisy = evaluator.reconstruction(tool.Degradation(tool.gaussian_noise(0.04)), many)
    # 20 log10(1 / 0.04) = 28 dB, and a little more: clipping at black cuts the noise on the background.
    assert noisy["fid"] > floor and 28 < noisy["psnr"] < 32
