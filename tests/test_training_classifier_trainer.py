"""training/classifier_trainer.py: the recipe of the shipped classifier, and seeded training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskgit.config_base import ConfigError
from maskgit.data import FASHION_MNIST_ROOT
from maskgit.evaluation.classifier import fashion_mnist_images, load_classifier
from maskgit.evaluation.features import ClassifierFeatures, extract_features
from maskgit.models.classifier import ClassifierConfig
from maskgit.training.classifier_trainer import ClassifierTrainConfig, train_classifier

SHIPPED = Path(__file__).parents[1] / "src/maskgit/pretrained/fashion-mnist-classifier"


def test_the_default_recipe_is_the_one_the_shipped_weights_record():
    recorded = json.loads((SHIPPED / "training.json").read_text())["config"]
    assert ClassifierTrainConfig.from_dict(recorded, source="training.json") == ClassifierTrainConfig()
    assert ClassifierTrainConfig().to_dict() == {"stage": "classifier", **recorded}
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\] for ClassifierTrainConfig"):
        ClassifierTrainConfig.from_dict({**recorded, "epoch": 3})
    with pytest.raises(ConfigError, match="precision must be 'bf16' or 'fp32', got 'fp16'"):
        ClassifierTrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        ClassifierTrainConfig(epochs=0)


@pytest.mark.skipif(not Path(FASHION_MNIST_ROOT, "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)")
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
    written = json.loads((tmp_path / "a" / "training.json").read_text())
    assert written["test_accuracy"] == summary["test_accuracy"]
    assert ClassifierTrainConfig.from_dict(written["config"]) == config
    a, b = load_classifier(tmp_path / "a"), load_classifier(tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    # The recorded test accuracy is the saved model's, as the evaluator measures it.
    images, labels = fashion_mnist_images("test")
    logits = extract_features(ClassifierFeatures(a, "a"), images, batch_size=1000, progress=False).logits
    assert float((logits.argmax(1) == labels).double().mean()) == summary["test_accuracy"]
