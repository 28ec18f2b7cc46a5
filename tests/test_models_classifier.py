"""models/classifier.py: the Fashion-MNIST CNN's convolution taps, its config and its folder format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from maskgit.config_base import ConfigError
from maskgit.models.classifier import ClassifierConfig, ImageClassifier

SHIPPED = Path(__file__).parents[1] / "src/maskgit/pretrained/fashion-mnist-classifier"


def test_conv_features_are_the_layers_that_features_are_computed_from():
    torch.manual_seed(0)
    model = ImageClassifier(ClassifierConfig(channels=(4, 8, 16), feature_size=16)).eval()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    taps = model.conv_features(images)
    assert [tuple(t.shape) for t in taps] == [(3, 4, 32, 32), (3, 8, 16, 16), (3, 8, 16, 16), (3, 16, 8, 8)]
    assert all(t.min() >= 0 for t in taps)  # after each ReLU
    linear = model.body[-2]
    expected = F.relu(linear(F.max_pool2d(taps[-1], 2).flatten(1)))
    torch.testing.assert_close(model.features(images), expected)
    # The taps see the grey average, as the logits do: a grey image in three equal channels.
    grey = images.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    torch.testing.assert_close(model.conv_features(grey)[0], taps[0])


def test_save_and_load_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(ClassifierConfig(channels=(4, 8, 8), feature_size=16)).eval()
    model.save_pretrained(tmp_path / "clf")
    loaded = ImageClassifier.from_pretrained(tmp_path / "clf")
    assert loaded.config == model.config and not loaded.training
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded.logits(images), model.logits(images))
    with pytest.raises(FileNotFoundError, match="not a classifier folder"):
        ImageClassifier.from_pretrained(tmp_path)
    (tmp_path / "clf" / "config.json").write_text(json.dumps({"format": "maskgit-classifier", "feature_size": 32}))
    with pytest.raises(ValueError, match="do not match config.json"):
        ImageClassifier.from_pretrained(tmp_path / "clf")
    (tmp_path / "clf" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: not valid JSON"):
        ImageClassifier.from_pretrained(tmp_path / "clf")


def test_the_config_follows_the_shared_config_rules_and_reads_the_shipped_file(tmp_path):
    shipped = ClassifierConfig.load(SHIPPED / "config.json")
    assert shipped == ClassifierConfig()  # the defaults are the shipped network
    # Written back, it is the shipped file byte for byte: the format did not change.
    shipped.save(tmp_path / "config.json")
    assert (tmp_path / "config.json").read_bytes() == (SHIPPED / "config.json").read_bytes()
    data = json.loads((SHIPPED / "config.json").read_text())
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['widths'\] for ClassifierConfig; valid keys are \['channels', 'class_names', "):
        ClassifierConfig.from_dict({**data, "widths": [1, 2, 3]})
    with pytest.raises(ConfigError, match="format is 'vqgan', expected 'maskgit-classifier'"):
        ClassifierConfig.from_dict({**data, "format": "vqgan"})
    with pytest.raises(ConfigError, match="config: feature_size must be int, got '128'"):
        ClassifierConfig.from_dict({**data, "feature_size": "128"})
    with pytest.raises(ConfigError, match="channels must be three positive ints"):
        ClassifierConfig(channels=(16, 32))
    with pytest.raises(ConfigError, match="image_size must be a positive multiple of 8"):
        ClassifierConfig(image_size=28)
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
        ClassifierConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="at least 2 class_names"):
        ClassifierConfig(class_names=("only",))
