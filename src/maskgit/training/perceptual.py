"""Plug-in perceptual losses: LPIPS-style distances between a frozen network's features.

Two feature networks, chosen by what ``perceptual_weights`` (tokenizer training config) names;
``load_perceptual`` dispatches:
- a safetensors **file**: VGG16 (``PerceptualLoss``), as LPIPS. No VGG weights ship with maskgit
  and none can be downloaded here.
- a **folder** written by ``maskgit train-classifier``: that Fashion-MNIST CNN's four convolution
  outputs (``ClassifierPerceptualLoss``), a perceptual loss for grey 32 px images that needs no
  download. Train it with another seed (and width) than the evaluator's classifier: a loss on the
  very network that scores the samples would optimise the score rather than the images.

VGG16 weights file (safetensors, float):
- ``features.{i}.weight`` (out, in, 3, 3) and ``features.{i}.bias`` (out,) for the 13 convolutions
  of VGG16, with torchvision's indices i ∈ {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}. A
  torchvision VGG16 converts with
  ``save_file({k: v for k, v in vgg16(weights=...).state_dict().items() if k.startswith("features.")}, path)``.
- optional ``lin.{k}.weight`` (1, C_k, 1, 1), k = 0..4, C = (64, 128, 256, 512, 512): the LPIPS
  v0.1 per-channel weights (the ``lpips`` package calls them ``lin{k}.model.1.weight``). Without
  them every channel weighs 1.

Computation (as LPIPS): for VGG16, images in [0, 1] are normalised with the ImageNet mean/std
(identical to LPIPS's scaling layer on [-1, 1] inputs) and features taken after relu1_2, relu2_2,
relu3_3, relu4_3 and relu5_3; the classifier takes [0, 1] images as they are. Each tap is
unit-normalised over channels, the squared differences are weighted per channel (VGG16 with ``lin``
weights; 1 otherwise), summed over channels, averaged over space and batch, and summed over the
taps. The feature network is frozen.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.config_base import ConfigError
from maskgit.models.classifier import ImageClassifier

__all__ = [
    "PerceptualLoss",
    "ClassifierPerceptualLoss",
    "load_perceptual",
    "VGG16_CONV_INDICES",
    "VGG16_CONV_SHAPES",
    "LPIPS_CHANNELS",
]

# (torchvision index, in, out); a 2x2 max-pool follows the convs at 2, 7, 14, 21 (before the next block).
VGG16_CONV_SHAPES: tuple[tuple[int, int, int], ...] = (
    (0, 3, 64), (2, 64, 64),
    (5, 64, 128), (7, 128, 128),
    (10, 128, 256), (12, 256, 256), (14, 256, 256),
    (17, 256, 512), (19, 512, 512), (21, 512, 512),
    (24, 512, 512), (26, 512, 512), (28, 512, 512),
)
VGG16_CONV_INDICES = tuple(index for index, _, _ in VGG16_CONV_SHAPES)
# The feature taps are the ReLU after the last conv of each block.
_TAP_AFTER = (2, 7, 14, 21, 28)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance. ``forward(a, b)`` with images (B, 3, H, W) in [0, 1] (H, W ≥ 16)
    returns the batch-mean distance, a float32 scalar (0 for identical inputs)."""

    def __init__(self, state: dict[str, torch.Tensor], source: str = "perceptual weights") -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for index, in_channels, out_channels in VGG16_CONV_SHAPES:
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            for name, shape in (("weight", (out_channels, in_channels, 3, 3)), ("bias", (out_channels,))):
                key = f"features.{index}.{name}"
                if key not in state:
                    raise ValueError(f"{source}: missing {key} (a VGG16 conv {shape})")
                if tuple(state[key].shape) != shape:
                    raise ValueError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
                getattr(conv, name).data.copy_(state[key].float())
            self.convs[str(index)] = conv
        for k, channels in enumerate(LPIPS_CHANNELS):
            key = f"lin.{k}.weight"
            if key in state:
                if tuple(state[key].shape) != (1, channels, 1, 1):
                    raise ValueError(
                        f"{source}: {key} has shape {tuple(state[key].shape)}, expected {(1, channels, 1, 1)}"
                    )
                weight = state[key].float().reshape(channels)
            else:
                weight = torch.ones(channels)
            self.register_buffer(f"lin_{k}", weight)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PerceptualLoss:
        """Load the safetensors weights file described in the module docstring."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: perceptual-loss weights file not found")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path}: not a readable safetensors file ({error})") from None
        return cls(state, source=str(path))

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # always frozen, always eval

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        taps = []
        for index, _, _ in VGG16_CONV_SHAPES:
            h = F.relu(self.convs[str(index)](h))
            if index in _TAP_AFTER:
                taps.append(h)
                if index != _TAP_AFTER[-1]:
                    h = F.max_pool2d(h, 2)
        return taps

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_pair(images, targets)
        if min(images.shape[-2:]) < 16:  # VGG16 halves the images four times
            raise ValueError(f"perceptual loss needs images of at least 16x16, got {tuple(images.shape[-2:])}")
        weights = [getattr(self, f"lin_{k}") for k in range(len(LPIPS_CHANNELS))]
        return _tap_distance(self.features(images), self.features(targets), weights)


class ClassifierPerceptualLoss(nn.Module):
    """LPIPS-style distance on a frozen ``ImageClassifier``'s four convolution outputs.
    ``forward(a, b)`` with images (B, 3, S, S) in [0, 1], S the classifier's image size, returns the
    batch-mean distance, a float32 scalar (0 for identical inputs). Gradients reach the images, not
    the classifier."""

    def __init__(self, classifier: ImageClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> ClassifierPerceptualLoss:
        return super().train(False)  # frozen, and its batch norms must keep their running statistics

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        _check_pair(images, targets)
        return _tap_distance(self.classifier.conv_features(images), self.classifier.conv_features(targets))


def load_perceptual(path: str | os.PathLike[str], image_size: int) -> PerceptualLoss | ClassifierPerceptualLoss:
    """The perceptual loss that ``path`` names for ``image_size`` px images: a classifier folder
    (``ClassifierPerceptualLoss``) or a VGG16 safetensors file (``PerceptualLoss``). Raises
    FileNotFoundError for neither, and ConfigError for a classifier of another image size."""
    path = Path(path)
    if not path.is_dir():
        return PerceptualLoss.from_file(path)
    classifier = ImageClassifier.from_pretrained(path)
    if classifier.config.image_size != image_size:
        raise ConfigError(
            f"perceptual_weights {path}: the classifier takes {classifier.config.image_size} px images, "
            f"the tokenizer {image_size} px"
        )
    return ClassifierPerceptualLoss(classifier)


def _check_pair(images: torch.Tensor, targets: torch.Tensor) -> None:
    if images.shape != targets.shape or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"perceptual loss takes two (B, 3, H, W) batches of one shape, got "
            f"{tuple(images.shape)} and {tuple(targets.shape)}"
        )


def _tap_distance(
    taps: list[torch.Tensor], target_taps: list[torch.Tensor], weights: list[torch.Tensor] | None = None
) -> torch.Tensor:
    """Sum over taps of the channel-weighted squared distance between unit-normalised features."""
    total = taps[0].new_zeros((), dtype=torch.float32)
    for k, (a, b) in enumerate(zip(taps, target_taps)):
        a, b = a.float(), b.float()
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        squared = (a - b).pow(2)
        if weights is not None:
            squared = squared * weights[k].view(1, -1, 1, 1)
        total = total + squared.sum(1).mean()
    return total
