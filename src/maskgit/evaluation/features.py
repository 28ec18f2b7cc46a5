"""Feature networks by name, and running one over a set of images.

A ``FeatureExtractor`` turns uint8 images into feature vectors (and, when it has a classifier,
logits for the Inception Score). ``preprocess`` works on one image (so images of different sizes can
be batched afterwards); ``__call__`` on a batch of preprocessed images. Its ``name`` is stored with
saved statistics, so that statistics from different networks or resize protocols are never compared.

Built in:

- ``inception``: the FID Inception-v3 (``maskgit.evaluation.inception``) with a resize protocol
  (``maskgit.evaluation.resize``); features 2048-d pool3, logits the 1008 unbiased logits.
- ``fashion-mnist``: the shipped Fashion-MNIST classifier (``maskgit.evaluation.classifier``), its
  penultimate features and its 10 logits; images of at most 32 px are zero-padded to 32, centred, as
  Fashion-MNIST's 28 px items are padded for the model and the classifier.
- a path to a TorchScript module (``torch.jit.save``): it receives float32 (B, 3, H, W) RGB in
  [0, 1] at the images' own size (so all images must share one size) and returns (B, D) features.

``register_feature_extractor(name, builder)`` adds a named network (the shipped Fashion-MNIST
classifier registers itself this way).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from maskgit.evaluation.resize import RESIZE_PROTOCOLS, resize_for_inception
from maskgit.evaluation.sources import ImageSource

__all__ = [
    "FeatureExtractor",
    "FeatureOptions",
    "Features",
    "InceptionFeatures",
    "TorchScriptFeatures",
    "ClassifierFeatures",
    "register_feature_extractor",
    "feature_extractor_names",
    "build_feature_extractor",
    "extract_features",
]


@dataclass(frozen=True)
class FeatureOptions:
    """Settings a feature network may need: the device, the Inception weights (a path, or None for
    the cache) and the resize protocol (``clean`` or ``legacy``)."""

    device: str | torch.device = "cpu"
    inception_weights: str | os.PathLike[str] | None = None
    resize: str = "clean"


@dataclass(frozen=True)
class Features:
    """Features (N, D) float32 and, when the network has a classifier, logits (N, C) float32."""

    features: torch.Tensor
    logits: torch.Tensor | None


class FeatureExtractor:
    """Base class: ``preprocess(uint8 (3, H, W)) -> tensor`` and ``__call__(batch) -> (features, logits | None)``."""

    name: str
    device: torch.device
    has_logits: bool = False  # whether __call__ also returns class logits (for the Inception Score)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class InceptionFeatures(FeatureExtractor):
    """The FID Inception-v3 behind a resize protocol."""

    has_logits = True

    def __init__(self, model: torch.nn.Module, resize: str, device: str | torch.device = "cpu") -> None:
        if resize not in RESIZE_PROTOCOLS:
            raise ValueError(f"unknown resize protocol {resize!r}; choose one of {', '.join(RESIZE_PROTOCOLS)}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.resize = resize
        self.name = f"inception-2015-12-05/{resize}"

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return resize_for_inception(image[None], self.resize)[0]

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        output = self.model(batch.to(self.device))
        return output.features, output.logits


class TorchScriptFeatures(FeatureExtractor):
    """A user's TorchScript feature network; named after the file and a hash of its bytes."""

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such TorchScript file (and not a feature network name: "
                                    f"{', '.join(feature_extractor_names())})")
        self.device = torch.device(device)
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as error:  # noqa: BLE001 - torch.jit.load raises many types for a bad file
            raise ValueError(f"{path}: cannot load as a TorchScript module ({type(error).__name__}: {error})") from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.name = f"torchscript:{path.name}:{digest}"

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image.float() / 255.0

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.module(batch.to(self.device))
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != batch.shape[0]:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{self.name}: must return (B, D) features for a batch of {batch.shape[0]}, got {shape}")
        return features.float(), None


class ClassifierFeatures(FeatureExtractor):
    """An ``ImageClassifier``'s penultimate features and logits (the shipped Fashion-MNIST one)."""

    has_logits = True

    def __init__(self, classifier: torch.nn.Module, name: str, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.classifier = classifier.to(self.device).eval()
        self.size = classifier.config.image_size
        self.name = name

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if height > self.size or width > self.size:
            raise ValueError(f"{self.name} takes images of at most {self.size}x{self.size}, got {height}x{width}")
        top, left = (self.size - height) // 2, (self.size - width) // 2
        return F.pad(image.float() / 255.0, (left, self.size - width - left, top, self.size - height - top))

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.classifier.features(batch.to(self.device))
        return features, self.classifier.head(features)  # in eval mode the dropout before the head is the identity


def _build_fashion_mnist(options: FeatureOptions) -> FeatureExtractor:
    from maskgit.evaluation.classifier import SHIPPED_CLASSIFIER, load_classifier

    return ClassifierFeatures(load_classifier(device=options.device), SHIPPED_CLASSIFIER, options.device)


def _build_inception(options: FeatureOptions) -> FeatureExtractor:
    from maskgit.evaluation.inception import load_inception

    return InceptionFeatures(load_inception(options.inception_weights), options.resize, options.device)


_REGISTRY: dict[str, Callable[[FeatureOptions], FeatureExtractor]] = {
    "inception": _build_inception,
    "fashion-mnist": _build_fashion_mnist,
}


def register_feature_extractor(name: str, builder: Callable[[FeatureOptions], FeatureExtractor]) -> None:
    """Make ``build_feature_extractor(name)`` call ``builder(options)``."""
    _REGISTRY[name] = builder


def feature_extractor_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_feature_extractor(spec: str, options: FeatureOptions | None = None) -> FeatureExtractor:
    """A registered network by name (``inception``, ...), else a path to a TorchScript module."""
    options = options or FeatureOptions()
    if spec in _REGISTRY:
        return _REGISTRY[spec](options)
    return TorchScriptFeatures(spec, options.device)


def extract_features(
    extractor: FeatureExtractor, source: ImageSource, batch_size: int = 50, progress: bool = True
) -> Features:
    """Run ``extractor`` over every image of ``source``, in order."""
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    features: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    with tqdm(total=len(source), unit="img", desc="features", disable=not progress) as bar:
        for images in source.batches(batch_size):
            inputs = [extractor.preprocess(image) for image in images]
            if any(item.shape != inputs[0].shape for item in inputs):
                raise ValueError(f"{source.description}: images of different sizes cannot go through "
                                 f"{extractor.name} together ({tuple(inputs[0].shape)} and others)")
            batch_features, batch_logits = extractor(torch.stack(inputs))
            features.append(batch_features.float().cpu())
            if batch_logits is not None:
                logits.append(batch_logits.float().cpu())
            bar.update(len(images))
    if not features:
        raise ValueError(f"{source.description}: no images")
    return Features(torch.cat(features), torch.cat(logits) if logits else None)
