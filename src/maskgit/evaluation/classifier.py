"""The Fashion-MNIST classifier that scores generated images, and the code that trains it.

The model (``ImageClassifier``, ``ClassifierConfig``) is defined in ``maskgit.models.classifier``
and re-exported here. The trained weights ship in ``maskgit/pretrained/fashion-mnist-classifier``
(``load_classifier()``); ``train_classifier`` (``maskgit train-classifier``) reproduces them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from maskgit.data.idx import FASHION_MNIST_ROOT, load_fashion_mnist
from maskgit.io import atomic_write_text
from maskgit.models.classifier import ClassifierConfig, ImageClassifier
from maskgit.registry import shipped_model_dir

__all__ = [
    "ClassifierConfig",
    "ClassifierTrainConfig",
    "ImageClassifier",
    "SHIPPED_CLASSIFIER",
    "load_classifier",
    "fashion_mnist_images",
    "classifier_accuracy",
    "float_images",
    "train_classifier",
]

SHIPPED_CLASSIFIER = "fashion-mnist-classifier"


def load_classifier(path: str | os.PathLike[str] | None = None, *, device: str | torch.device | None = None) -> ImageClassifier:
    """The shipped Fashion-MNIST classifier (``path=None``) or one saved by ``train_classifier``."""
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


@torch.no_grad()
def classifier_accuracy(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (in eval mode) on uint8 or float (N, 3, S, S) images."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = float_images(images[start : start + batch_size])
        correct += int((model(batch).argmax(1) == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / max(1, len(images))


def float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] → float32 in [0, 1]; float images → float32 unchanged."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def _augment(images: torch.Tensor, generator: torch.Generator, shift: int) -> torch.Tensor:
    """Random translation by up to ``shift`` px (zero fill) and a horizontal flip with p = 0.5."""
    count, _, height, width = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (count, 2), generator=generator).tolist()
    flipped = torch.rand(count, generator=generator) < 0.5
    out = torch.stack([padded[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets)])
    out[flipped] = out[flipped].flip(-1)
    return out


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """How ``train_classifier`` trains: AdamW with a one-cycle (warm-up then cosine) learning rate,
    label smoothing, random shifts of up to ``shift`` px and horizontal flips."""

    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    shift: int = 2
    seed: int = 0
    precision: str = "bf16"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")


def _fit(
    model: ImageClassifier,
    config: ClassifierTrainConfig,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    log: Any,
) -> list[dict[str, Any]]:
    """The training loop of ``train_classifier``; returns one record per epoch."""
    (train_images, train_labels), (test_images, test_labels) = train, test
    generator = torch.Generator().manual_seed(config.seed)  # data order and augmentation
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_images) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    history = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        loss_sum, correct = 0.0, 0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            images = _augment(float_images(train_images[index]), generator, config.shift)
            labels = train_labels[index]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach())
            correct += int((logits.argmax(1) == labels).sum())
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / steps_per_epoch,
            "train_accuracy": correct / (steps_per_epoch * config.batch_size),
            "test_accuracy": classifier_accuracy(model, test_images, test_labels),
            "seconds": round(time.perf_counter() - start, 1),
        }
        history.append(record)
        log(
            f"epoch {record['epoch']}/{config.epochs}: loss {record['train_loss']:.4f}, "
            f"train {record['train_accuracy']:.4f}, test {record['test_accuracy']:.4f} ({record['seconds']} s)"
        )
    return history


def train_classifier(
    out_dir: str | os.PathLike[str],
    config: ClassifierTrainConfig = ClassifierTrainConfig(),
    *,
    data_root: str | os.PathLike[str] = FASHION_MNIST_ROOT,
    train_limit: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train an ``ImageClassifier`` on Fashion-MNIST's training split and save it to ``out_dir``.

    Seeded: the initialisation, dropout, the data order and the augmentation all come from
    ``config.seed`` (with one thread count; bf16 kernels may round differently on another).
    ``train_limit`` trains on the first N training images (for tests). Writes ``model.safetensors``,
    ``config.json`` and ``training.json`` (the config, per-epoch train loss / accuracy and test
    accuracy, the wall time). Returns the ``training.json`` content.
    """
    out_dir = Path(out_dir)
    train_images, train_labels = fashion_mnist_images("train", data_root, config.model.image_size)
    test_images, test_labels = fashion_mnist_images("test", data_root, config.model.image_size)
    if train_limit is not None:
        train_images, train_labels = train_images[:train_limit], train_labels[:train_limit]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        # The initialisation and dropout draw from torch's global RNG: seeded here and restored
        # after, so a run depends on config.seed alone, not on what the caller drew before.
        torch.manual_seed(config.seed)
        model = ImageClassifier(config.model)
        history = _fit(model, config, (train_images, train_labels), (test_images, test_labels), log)
    model.eval()
    model.save_pretrained(out_dir)
    summary = {
        "config": asdict(config),
        "train_images": len(train_images),
        "test_accuracy": history[-1]["test_accuracy"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "history": history,
    }
    atomic_write_text(out_dir / "training.json", json.dumps(summary, indent=2) + "\n")
    return summary

