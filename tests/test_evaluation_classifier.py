"""The evaluator's Fashion-MNIST classifier: the shipped weights, its input contract, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskgit.data import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, build_dataset
from maskgit.evaluation.classifier import (
    ClassifierConfig,
    ClassifierTrainConfig,
    ImageClassifier,
    classifier_accuracy,
    fashion_mnist_images,
    load_classifier,
    train_classifier,
)

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
    # A spread-out sample of 1000 (the test set is not sorted by class).
    assert classifier_accuracy(classifier, images[::10], labels[::10]) >= 0.9
    batch = images[:6].float() / 255
    features = classifier.features(batch)
    assert features.shape == (6, classifier.config.feature_size) and features.dtype == torch.float32
    assert features.min() >= 0  # after the ReLU
    torch.testing.assert_close(classifier.logits(batch), classifier.head(features))
    # The channels are averaged: a colour cast that keeps the grey level changes nothing.
    tinted = batch.clone()
    tinted[:, 0] += 0.02
    tinted[:, 2] -= 0.02
    torch.testing.assert_close(classifier.logits(tinted), classifier.logits(batch), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        classifier.logits(torch.zeros(2, 1, 32, 32))
    config = json.loads((Path(__file__).parents[1] / "src/maskgit/pretrained/fashion-mnist-classifier/config.json").read_text())
    assert config["format"] == "maskgit-classifier"


def test_save_and_load_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(ClassifierConfig(channels=(4, 8, 8), feature_size=16)).eval()
    model.save_pretrained(tmp_path / "clf")
    loaded = load_classifier(tmp_path / "clf")
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded.logits(images), model.logits(images))
    with pytest.raises(FileNotFoundError, match="not a classifier folder"):
        load_classifier(tmp_path)
    (tmp_path / "clf" / "config.json").write_text(json.dumps({"format": "maskgit-classifier", "feature_size": 32}))
    with pytest.raises(ValueError, match="do not match config.json"):
        load_classifier(tmp_path / "clf")


@needs_fashion_mnist
@pytest.mark.slow
def test_training_is_seeded_and_writes_a_loadable_classifier(tmp_path):
    config = ClassifierTrainConfig(model=ClassifierConfig(channels=(4, 8, 8), feature_size=16), epochs=2, batch_size=64)
    logs: list[str] = []
    summary = train_classifier(tmp_path / "a", config, train_limit=2048, log=logs.append)
    train_classifier(tmp_path / "b", config, train_limit=2048, log=lambda _: None)
    assert summary["train_images"] == 2048 and len(summary["history"]) == 2 and logs[1].startswith("epoch 2/2")
    # 64 steps of a tiny network on 2048 images already beat chance (10 %) by far, and improve.
    history = summary["history"]
    assert 0.4 < history[1]["test_accuracy"] <= 1.0 and history[1]["train_loss"] < history[0]["train_loss"]
    assert json.loads((tmp_path / "a" / "training.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    a, b = load_classifier(tmp_path / "a"), load_classifier(tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
