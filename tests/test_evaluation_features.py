"""The feature-network registry and TorchScript feature files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.evaluation import features as features_module
from maskgit.evaluation.features import (
    FeatureExtractor,
    FeatureOptions,
    build_feature_extractor,
    extract_features,
    register_feature_extractor,
)
from maskgit.evaluation.sources import NpzImages


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
