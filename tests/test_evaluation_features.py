"""The feature-network interface: the registry, images in memory in either pixel form, the
classifier's features and TorchScript feature files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.evaluation import features as features_module
from maskgit.evaluation.features import (
    ClassifierFeatures,
    FeatureExtractor,
    FeatureOptions,
    InceptionFeatures,
    build_feature_extractor,
    extract_features,
    float_images,
    register_feature_extractor,
    uint8_images,
)
from maskgit.evaluation.sources import NpzImages
from maskgit.models.classifier import ClassifierConfig, ImageClassifier


class _Brightness(FeatureExtractor):
    name = "brightness"

    def __init__(self, options: FeatureOptions) -> None:
        self.options = options
        self.device = torch.device(options.device)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image.float()

    def __call__(self, batch):
        return batch.mean(dim=(2, 3)), None


def test_a_registered_network_is_built_by_name_with_the_options(monkeypatch, tmp_path):
    monkeypatch.setattr(features_module, "_REGISTRY", dict(features_module._REGISTRY))
    register_feature_extractor("brightness", _Brightness)
    extractor = build_feature_extractor("brightness", FeatureOptions(resize="legacy"))
    assert isinstance(extractor, _Brightness) and extractor.options.resize == "legacy"
    assert "brightness" in features_module.feature_extractor_names()
    images = np.stack([np.full((4, 4, 3), value, np.uint8) for value in (10, 20, 30)])
    np.savez(tmp_path / "set.npz", arr_0=images)
    result = extract_features(extractor, NpzImages(tmp_path / "set.npz"), batch_size=2, progress=False)
    assert result.features[:, 0].tolist() == [10, 20, 30] and result.logits is None


class _WrongShape(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=1)  # (B, H, W): not (B, D)


def test_torchscript_files_are_checked(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.jit.save(torch.jit.script(_WrongShape()), str(path))
    extractor = build_feature_extractor(str(path))
    assert extractor.name.startswith("torchscript:wrong.pt:") and not extractor.has_logits
    np.savez(tmp_path / "set.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"must return \(B, D\) features for a batch of 2, got \(2, 4, 4\)"):
        extract_features(extractor, NpzImages(tmp_path / "set.npz"), progress=False)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pt: cannot load as a TorchScript module"):
        build_feature_extractor(str(tmp_path / "junk.pt"))


def test_the_two_pixel_forms_convert_exactly():
    stored = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(1, 3, 16, 16)
    as_float = float_images(stored)
    assert as_float.dtype == torch.float32 and as_float.max() == 1.0
    assert torch.equal(uint8_images(as_float), stored) and uint8_images(stored) is stored
    # Out-of-range values clip, and halves round as a saved PNG would.
    assert uint8_images(torch.tensor([-0.5, 2.0, 0.5 / 255 + 1e-6])).tolist() == [0, 255, 1]
    assert float_images(as_float.double()).dtype == torch.float32
    # The Inception's resize protocols are defined on stored images: float images are rounded first.
    inception = InceptionFeatures(torch.nn.Identity(), "legacy")
    jitter = (torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) - 0.5) * 0.8 / 255  # under half a level
    noisy = (as_float[0] + jitter).clamp(0, 1)
    assert torch.equal(inception.preprocess(noisy), inception.preprocess(stored[0]))


def test_a_classifier_takes_stored_and_float_images_alike_and_pads_small_ones():
    torch.manual_seed(0)
    classifier = ImageClassifier(ClassifierConfig(channels=(4, 8, 8), feature_size=16, class_names=("a", "b", "c")))
    extractor = ClassifierFeatures(classifier, "tiny", "cpu")
    assert not classifier.training and extractor.image_size == 32 and extractor.class_names == ("a", "b", "c")
    stored = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    from_uint8 = extract_features(extractor, stored, batch_size=2, progress=False)
    from_float = extract_features(extractor, stored.float() / 255, batch_size=2, progress=False)
    assert torch.equal(from_uint8.features, from_float.features) and torch.equal(from_uint8.logits, from_float.logits)
    with torch.no_grad():
        expected = classifier.features(stored.float() / 255)
    torch.testing.assert_close(from_uint8.features, expected)
    torch.testing.assert_close(from_uint8.logits, classifier.head(expected))
    # 28 px items are zero-padded to 32, centred, as Fashion-MNIST's are.
    small = extract_features(extractor, stored[:, :, 2:30, 2:30], progress=False)
    padded = stored.clone()
    padded[:, :, :2], padded[:, :, 30:], padded[:, :, :, :2], padded[:, :, :, 30:] = 0, 0, 0, 0
    torch.testing.assert_close(small.features, extract_features(extractor, padded, progress=False).features)
    with pytest.raises(ValueError, match="tiny takes images of at most 32x32, got 40x40"):
        extract_features(extractor, torch.zeros(1, 3, 40, 40), progress=False)
    with pytest.raises(ValueError, match=r"images must be \(N, 3, H, W\)"):
        extract_features(extractor, torch.zeros(3, 32, 32), progress=False)
