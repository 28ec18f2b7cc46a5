"""Feature networks by name, and running one over a set of images.

A ``FeatureExtractor`` turns images into feature vectors (and, when it has a classifier, logits: for
the Inception Score, or the classes of the shipped classifier). ``preprocess`` works on one image (so
images of different sizes can be batched afterwards); ``__call__`` on a batch of preprocessed images.
Images come in either of two forms: uint8 (3, H, W) in [0, 255], as stored, or float (3, H, W) in
[0, 1], as a model returns them (``float_images`` and ``uint8_images`` convert). Every feature
computation in maskgit goes through this interface and ``extract_features``: ``maskgit fid``, the
reconstruction FID of ``maskgit eval-tokenizer`` and ``maskgit evaluate``'s scores alike. Its
``name`` is stored with saved statistics, so that statistics from different networks or resize
protocols are never compared.

Built in:

- ``inception``: the FID Inception-v3 (``maskgit.evaluation.inception``) with a resize protocol
  (``maskgit.evaluation.resize``); features 2048-d pool3, logits the 1008 unbiased logits.
- ``fashion-mnist``: the shipped Fashion-MNIST classifier (``maskgit.evaluation.classifier``) as
  ``ClassifierFeatures``: its penultimate features and its 10 logits; images of at most 32 px are
  zero-padded to 32, centred, as Fashion-MNIST's 28 px items are padded for the model and the
  classifier. Float images reach it as they are (not rounded to uint8).
- a path to a TorchScript module (``torch.jit.save``): it receives float32 (B, 3, H, W) RGB in
  [0, 1] at the images' own size (so all images must share one size) and returns (B, D) features.

The Inception's resize protocols are defined on stored images, so it rounds float images to uint8
first, as saving them would. ``register_feature_extractor(name, builder)`` adds a named network.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from maskgit.evaluation.resize import RESIZE_PROTOCOLS, resize_for_inception
from maskgit.evaluation.sources import ImageSource
from maskgit.models.classifier import ImageClassifier

__all__ = [
    "FeatureExtractor",
    "FeatureOptions",
    "Features",
    "InceptionFeatures",
    "TorchScriptFeatures",
    "ClassifierFeatures",
    "float_images",
    "uint8_images",
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


def float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] → float32 in [0, 1] (``x / 255``); float images → float32 unchanged."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def uint8_images(images: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] → uint8, clipped and rounded as a saved PNG; uint8 images unchanged."""
    if images.dtype == torch.uint8:
        return images
    return (images.float().clamp(0, 1) * 255.0).round().to(torch.uint8)


class FeatureExtractor:
    """Base class: ``preprocess(image) -> tensor`` for one uint8 (3, H, W) in [0, 255] or float
    (3, H, W) in [0, 1] image, and ``__call__(batch of preprocessed images) -> (features (B, D)
    float32, logits (B, C) float32 or None)``."""

    name: str
    device: torch.device
    has_logits: bool = False  # whether __call__ also returns class logits

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
        return resize_for_inception(uint8_images(image[None]), self.resize)[0]

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
        return float_images(image)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.module(batch.to(self.device))
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != batch.shape[0]:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{self.name}: must return (B, D) features for a batch of {batch.shape[0]}, got {shape}")
        return features.float(), None


class ClassifierFeatures(FeatureExtractor):
    """An ``ImageClassifier``'s penultimate features (N, feature_size) and its logits (N, classes),
    one per name of ``class_names``: the shipped Fashion-MNIST classifier's, or one that
    ``maskgit train-classifier`` wrote. ``image_size`` is the classifier's input size.

    The classifier is moved to ``device`` and put in eval mode."""

    has_logits = True

    def __init__(self, classifier: ImageClassifier, name: str, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.classifier = classifier.to(self.device).eval()
        self.image_size: int = classifier.config.image_size
        self.class_names: tuple[str, ...] = classifier.config.class_names
        self.name = name

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        size = self.image_size
        if height > size or width > size:
            raise ValueError(f"{self.name} takes images of at most {size}x{size}, got {height}x{width}")
        top, left = (size - height) // 2, (size - width) // 2
        return F.pad(float_images(image), (left, size - width - left, top, size - height - top))

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


def _tensor_batches(images: torch.Tensor, batch_size: int) -> Iterator[list[torch.Tensor]]:
    for start in range(0, len(images), batch_size):
        yield list(images[start : start + batch_size])


def extract_features(
    extractor: FeatureExtractor,
    source: ImageSource | torch.Tensor,
    batch_size: int = 50,
    progress: bool = True,
) -> Features:
    """Run ``extractor`` over every image of ``source``, in order, ``batch_size`` at a time.

    ``source`` is an ``ImageSource`` (a folder, an ``.npz``) or images in memory: uint8
    (N, 3, H, W) in [0, 255] or float (N, 3, H, W) in [0, 1]. Returns the features (N, D) float32
    and, when the network has them, the logits (N, C) float32, on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if isinstance(source, torch.Tensor):
        if source.dim() != 4 or source.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(source.shape)}")
        description, count, batches = "images", len(source), _tensor_batches(source, batch_size)
    else:
        description, count, batches = source.description, len(source), source.batches(batch_size)
    features: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    with tqdm(total=count, unit="img", desc="features", disable=not progress) as bar:
        for images in batches:
            inputs = [extractor.preprocess(image) for image in images]
            if any(item.shape != inputs[0].shape for item in inputs):
                raise ValueError(f"{description}: images of different sizes cannot go through "
                                 f"{extractor.name} together ({tuple(inputs[0].shape)} and others)")
            batch_features, batch_logits = extractor(torch.stack(inputs))
            features.append(batch_features.float().cpu())
            if batch_logits is not None:
                logits.append(batch_logits.float().cpu())
            bar.update(len(images))
    if not features:
        raise ValueError(f"{description}: no images")
    return Features(torch.cat(features), torch.cat(logits) if logits else None)
