"""training/perceptual.py: the LPIPS-style perceptual loss from a VGG16 weights file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from maskgit.training.perceptual import PerceptualLoss
from training_helpers import write_vgg_weights


@pytest.mark.parametrize("with_lin", [False, True])
def test_perceptual_loss_from_a_weights_file(tmp_path, with_lin):
    write_vgg_weights(tmp_path / "vgg.safetensors", with_lin)
    loss = PerceptualLoss.from_file(tmp_path / "vgg.safetensors")
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert loss(images, images).item() == pytest.approx(0.0, abs=1e-6)
    noisy = (images + 0.2 * torch.randn_like(images)).clamp(0, 1).requires_grad_(True)
    distance = loss(noisy, images)
    assert distance.item() > 0
    distance.backward()
    assert noisy.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())


def test_perceptual_loss_names_a_missing_or_misshapen_weight(tmp_path):
    state = write_vgg_weights(tmp_path / "vgg.safetensors", with_lin=True)
    del state["features.28.weight"]
    save_file(state, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="features.28.weight"):
        PerceptualLoss.from_file(tmp_path / "missing.safetensors")
    state = write_vgg_weights(tmp_path / "vgg.safetensors", with_lin=True)
    state["lin.2.weight"] = torch.ones(1, 3, 1, 1)
    save_file(state, str(tmp_path / "bad_lin.safetensors"))
    with pytest.raises(ValueError, match="lin.2.weight"):
        PerceptualLoss.from_file(tmp_path / "bad_lin.safetensors")
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        PerceptualLoss.from_file(tmp_path / "nowhere.safetensors")
