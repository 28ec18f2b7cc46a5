"""training/perceptual.py: the LPIPS-style perceptual losses, from a VGG16 weights file or a
classifier folder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from maskgit.config_base import ConfigError
from maskgit.models.classifier import ClassifierConfig, ImageClassifier
from maskgit.training.perceptual import ClassifierPerceptualLoss, PerceptualLoss, load_perceptual
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


def test_the_distance_is_the_lpips_sum_over_five_vgg_taps(tmp_path):
    state = write_vgg_weights(tmp_path / "vgg.safetensors", with_lin=True)
    loss = PerceptualLoss(state)
    generator = torch.Generator().manual_seed(2)
    images, targets = torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    taps = loss.features(images)
    assert [tuple(t.shape[1:]) for t in taps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    expected = torch.zeros(())
    for k, (a, b) in enumerate(zip(taps, loss.features(targets))):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)  # unit length along the channels, per pixel
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        weight = state[f"lin.{k}.weight"].view(1, -1, 1, 1)
        expected = expected + ((a - b) ** 2 * weight).sum(1).mean()
    torch.testing.assert_close(loss(images, targets), expected, rtol=1e-5, atol=1e-6)
    assert loss.train().training is False  # always frozen in eval mode


def test_inputs_of_other_shapes_are_refused(tmp_path):
    loss = PerceptualLoss(write_vgg_weights(tmp_path / "vgg.safetensors", with_lin=False))
    with pytest.raises(ValueError, match=r"two \(B, 3, H, W\) batches of one shape, got \(1, 3, 16, 16\) and \(1, 3, 16, 20\)"):
        loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 20))
    with pytest.raises(ValueError, match=r"at least 16x16, got \(8, 8\)"):
        loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 8)
    with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors file"):
        PerceptualLoss.from_file(tmp_path / "bad.safetensors")


def _classifier(size: int = 32) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(ClassifierConfig(image_size=size, channels=(4, 8, 8), feature_size=16)).eval()


def test_the_classifier_distance_is_the_lpips_sum_over_its_four_conv_taps():
    classifier = _classifier()
    # Non-trivial running statistics, so that batch norm in training mode would change the result.
    for bn in (m for m in classifier.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    loss = ClassifierPerceptualLoss(classifier)
    generator = torch.Generator().manual_seed(3)
    images, targets = torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    taps = classifier.conv_features(images)
    assert [tuple(t.shape[1:]) for t in taps] == [(4, 32, 32), (8, 16, 16), (8, 16, 16), (8, 8, 8)]
    expected = torch.zeros(())
    for a, b in zip(taps, classifier.conv_features(targets)):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        expected = expected + ((a - b) ** 2).sum(1).mean()
    loss.train()  # a trainer's .train() must not put the classifier's batch norms in training mode
    assert not classifier.training
    torch.testing.assert_close(loss(images, targets), expected, rtol=1e-5, atol=1e-6)
    assert loss(images, images).item() == pytest.approx(0.0, abs=1e-6)
    noisy = (images + 0.2 * torch.randn(images.shape, generator=generator)).clamp(0, 1).requires_grad_(True)
    loss(noisy, images).backward()
    assert noisy.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in classifier.parameters())
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        loss(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))


def test_load_perceptual_picks_the_network_by_what_the_path_names(tmp_path):
    _classifier().save_pretrained(tmp_path / "clf")
    assert isinstance(load_perceptual(tmp_path / "clf", image_size=32), ClassifierPerceptualLoss)
    write_vgg_weights(tmp_path / "vgg.safetensors", with_lin=False)
    assert isinstance(load_perceptual(tmp_path / "vgg.safetensors", image_size=32), PerceptualLoss)
    with pytest.raises(FileNotFoundError, match="not a classifier folder"):
        load_perceptual(tmp_path, image_size=32)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_perceptual(tmp_path / "nowhere", image_size=32)
    with pytest.raises(ConfigError, match="the classifier takes 32 px images, the tokenizer 16 px"):
        load_perceptual(tmp_path / "clf", image_size=16)
