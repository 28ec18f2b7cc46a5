"""The shipped Fashion-MNIST classifier that scores generated images, and the images it is
measured on.

The model (``ImageClassifier``, ``ClassifierConfig``) is defined in ``maskgit.models.classifier``;
its trained weights ship in ``maskgit/pretrained/fashion-mnist-classifier`` (``load_classifier()``),
and ``maskgit.training.classifier_trainer`` (``maskgit train-classifier``) reproduces them. As a
feature network it is ``build_feature_extractor("fashion-mnist")`` (``maskgit.evaluation.features``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from maskgit.data.idx import FASHION_MNIST_ROOT, load_fashion_mnist
from maskgit.models.classifier import ImageClassifier
from maskgit.registry import shipped_model_dir

__all__ = ["SHIPPED_CLASSIFIER", "load_classifier", "fashion_mnist_images"]

SHIPPED_CLASSIFIER = "fashion-mnist-classifier"


def load_classifier(path: str | os.PathLike[str] | None = None, *, device: str | torch.device | None = None) -> ImageClassifier:
    """The shipped Fashion-MNIST classifier (``path=None``) or one saved by ``train_classifier``,
    in eval mode."""
    if path is None:
        path = shipped_model_dir(SHIPPED_CLASSIFIER)
    return ImageClassifier.from_pretrained(path, device=device)


def fashion_mnist_images(
    split: str = "test", root: str | os.PathLike[str] = FASHION_MNIST_ROOT, image_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST as uint8 (N, 3, S, S) images and int64 (N,) labels, the 28 px items
    zero-padded to S (left/top margin ``(S - 28) // 2``), grayscale replicated to RGB: exactly
    ``build_dataset("fashion-mnist", image_size=S, train=False)`` times 255, without its per-image
    PIL round trip. ``S`` must be 28..32, as there."""
    data = load_fashion_mnist(root, split)
    height, width = data.images.shape[1:]
    if not (0 <= image_size - height <= 4 and 0 <= image_size - width <= 4):
        raise ValueError(f"image_size must be within 4 px above {height}x{width}, got {image_size}")
    left, top = (image_size - width) // 2, (image_size - height) // 2
    images = torch.from_numpy(data.images)[:, None]
    images = F.pad(images, (left, image_size - width - left, top, image_size - height - top))
    return images.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(data.labels)
