"""models/classifier.py: the Fashion-MNIST CNN's convolution taps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskgit.models.classifier import ClassifierConfig, ImageClassifier


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
