"""The evaluator's shipped Fashion-MNIST classifier: its weights, its input contract, the images it
is measured on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from maskgit.data import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, build_dataset
from maskgit.evaluation.classifier import fashion_mnist_images, load_classifier
from maskgit.evaluation.features import build_feature_extractor, extract_features

needs_fashion_mnist = pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
)


@needs_fashion_mnist
def test_images_match_the_datasets_evaluation_transform_exactly():
    images, labels = fashion_mnist_images("test")
    assert images.shape == (10_000, 3, 32, 32) and images.dtype == torch.uint8
    dataset = build_dataset("fashion-mnist", split="test", image_size=32, train=False)
    for index in (0, 17, 9999):
        image, label = dataset[index]
        assert torch.equal(images[index], (image * 255).round().to(torch.uint8)) and labels[index] == label
    with pytest.raises(ValueError, match="within 4 px"):
        fashion_mnist_images("test", image_size=64)


@needs_fashion_mnist
def test_the_shipped_classifier_recognises_real_test_images():
    classifier = load_classifier()
    assert classifier.config.class_names == FASHION_MNIST_CLASSES and not classifier.training
    images, labels = fashion_mnist_images("test")
    # A spread-out sample of 1000 (the test set is not sorted by class), through the feature network.
    extractor = build_feature_extractor("fashion-mnist")
    assert extractor.name == "fashion-mnist-classifier" and extractor.class_names == FASHION_MNIST_CLASSES
    result = extract_features(extractor, images[::10], batch_size=250, progress=False)
    assert (result.logits.argmax(1) == labels[::10]).double().mean() >= 0.9
    batch = images[:6].float() / 255
    features = classifier.features(batch)
    assert features.shape == (6, classifier.config.feature_size) and features.dtype == torch.float32
    assert features.min() >= 0  # after the ReLU
    torch.testing.assert_close(result.features[:1], classifier.features(batch[:1]))
    torch.testing.assert_close(classifier.logits(batch), classifier.head(features))
    # The channels are averaged: a colour cast that keeps the grey level changes nothing.
    tinted = batch.clone()
    tinted[:, 0] += 0.02
    tinted[:, 2] -= 0.02
    torch.testing.assert_close(classifier.logits(tinted), classifier.logits(batch), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        classifier.logits(torch.zeros(2, 1, 32, 32))
