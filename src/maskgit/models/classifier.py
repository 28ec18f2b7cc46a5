"""The Fashion-MNIST image classifier: a compact CNN and its saved folder format.

``ImageClassifier`` takes the images the ``fashion-mnist`` model generates: float32 RGB
(N, 3, 32, 32) in [0, 1], Fashion-MNIST's 28 px items zero-padded to 32 px exactly as
``maskgit.data.build_dataset("fashion-mnist", image_size=32, train=False)`` serves them. It averages
the three channels first, so a slight colour cast in a generated image changes nothing that a grey
one would not. ``logits`` give the class; ``features`` (the penultimate layer, after its ReLU) are
the space in which the evaluator measures FID and diversity (through
``maskgit.evaluation.features.ClassifierFeatures``); ``conv_features`` (the conv stages) are what
``maskgit.training.perceptual`` compares.

It lives with the models so that the evaluator (``maskgit.evaluation``, which ships its weights), the
classifier's trainer (``maskgit.training.classifier_trainer``) and the tokenizer trainer's perceptual
loss can all use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from maskgit.config_base import Config, ConfigError
from maskgit.data.idx import FASHION_MNIST_CLASSES
from maskgit.io import atomic_path

__all__ = ["ClassifierConfig", "ImageClassifier"]

_WEIGHTS_NAME = "model.safetensors"
_CONFIG_NAME = "config.json"
_FORMAT = "maskgit-classifier"


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """The classifier's shape: three conv stages of ``channels`` (each halving the resolution),
    then a ``feature_size``-wide layer (the features) and one logit per class.

    Saved as ``config.json`` with ``"format": "maskgit-classifier"``; reading one checks every key
    and type as the other configs do (``maskgit.config_base``): an unknown key is an error that
    lists the valid ones."""

    tag_key: ClassVar[str] = "format"
    format: ClassVar[str] = _FORMAT

    image_size: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    feature_size: int = 128
    dropout: float = 0.3
    class_names: tuple[str, ...] = FASHION_MNIST_CLASSES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size <= 0 or self.image_size % 8:
            raise ConfigError(f"ClassifierConfig: image_size must be a positive multiple of 8, got {self.image_size}")
        if len(self.channels) != 3 or min(self.channels) <= 0:
            raise ConfigError(f"ClassifierConfig: channels must be three positive ints, got {self.channels}")
        self._check_at_least(1, "feature_size")
        self._check_interval("dropout", 0.0, 1.0, include_high=False)
        if len(self.class_names) < 2:
            raise ConfigError(f"ClassifierConfig: needs at least 2 class_names, got {self.class_names}")


def _conv(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]


class ImageClassifier(nn.Module):
    """Gray average → [conv]·pool → [conv, conv]·pool → [conv]·pool → linear+ReLU (features) → logits."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        first, second, third = config.channels
        self.body = nn.Sequential(
            *_conv(1, first), nn.MaxPool2d(2),
            *_conv(first, second), *_conv(second, second), nn.MaxPool2d(2),
            *_conv(second, third), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(third * (config.image_size // 8) ** 2, config.feature_size),
            nn.ReLU(),
        )  # fmt: skip
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_size, len(config.class_names))

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"the classifier takes (N, 3, {size}, {size}) images in [0, 1], got {tuple(images.shape)}")
        return images.float().mean(dim=1, keepdim=True)

    def conv_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, S, S) float in [0, 1] → the output of each of the four convolutions (after its
        ReLU, before any pooling): float (N, C, S, S), (N, C2, S/2, S/2) twice, (N, C3, S/4, S/4)."""
        h = self._check(images)
        taps = []
        for layer in self.body:
            if isinstance(layer, nn.Flatten):
                break
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                taps.append(h)
        return taps

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) float in [0, 1] → float32 (N, feature_size), non-negative."""
        return self.body(self._check(images)).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) float in [0, 1] → float32 logits (N, num_classes)."""
        return self.head(self.dropout(self.features(images)))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The same as calling the module: float32 logits (N, num_classes)."""
        return self(images)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write ``model.safetensors`` then ``config.json`` into ``directory``, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        with atomic_path(directory / _WEIGHTS_NAME) as temp:
            save_file(tensors, str(temp), metadata={"format": _FORMAT})
        self.config.save(directory / _CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], *, device: str | torch.device | None = None) -> ImageClassifier:
        """Load a folder written by ``save_pretrained``; the model is returned in eval mode."""
        directory = Path(directory)
        for name in (_CONFIG_NAME, _WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory}: no {name} (not a classifier folder)")
        model = cls(ClassifierConfig.load(directory / _CONFIG_NAME))
        state = load_file(str(directory / _WEIGHTS_NAME))
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            raise ValueError(f"{directory / _WEIGHTS_NAME}: parameters do not match {_CONFIG_NAME}")
        model.load_state_dict(state)
        model.eval()
        return model.to(device) if device is not None else model

