"""Training the Fashion-MNIST classifier that ``maskgit evaluate`` scores with (``maskgit
train-classifier``).

``train_classifier`` trains an ``ImageClassifier`` (``maskgit.models.classifier``) on Fashion-MNIST's
training split, seeded, and saves it as a classifier folder. With the defaults of
``ClassifierTrainConfig`` it reproduces the shipped weights' recipe
(``maskgit/pretrained/fashion-mnist-classifier/training.json`` records it). A classifier of another
width and seed serves as the tokenizer's perceptual loss (``maskgit.training.perceptual``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from maskgit.config_base import Config
from maskgit.data.idx import FASHION_MNIST_ROOT
from maskgit.evaluation.classifier import fashion_mnist_images
from maskgit.evaluation.features import ClassifierFeatures, extract_features, float_images
from maskgit.io import atomic_write_text
from maskgit.models.classifier import ClassifierConfig, ImageClassifier

__all__ = ["ClassifierTrainConfig", "train_classifier"]


@dataclass(frozen=True)
class ClassifierTrainConfig(Config):
    """How ``train_classifier`` trains: AdamW with a one-cycle (warm-up then cosine) learning rate,
    label smoothing, random shifts of up to ``shift`` px and horizontal flips. ``precision`` is
    ``bf16`` (CPU autocast) or ``fp32``."""

    tag_key: ClassVar[str] = "stage"
    stage: ClassVar[str] = "classifier"

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
        super().__post_init__()
        self._check_at_least(1, "epochs", "batch_size")
        self._check_at_least(0, "shift")
        self._check_choice("precision", ("bf16", "fp32"))


def _accuracy(model: ImageClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on uint8 (N, 3, S, S) images, measured in eval mode
    through the evaluator's path (``ClassifierFeatures``); the model's training flag is restored."""
    was_training = model.training
    device = next(model.parameters()).device
    logits = extract_features(ClassifierFeatures(model, "classifier", device), images, 500, progress=False).logits
    model.train(was_training)
    return float((logits.argmax(1) == labels).double().mean())


def _augment(images: torch.Tensor, generator: torch.Generator, shift: int) -> torch.Tensor:
    """Random translation by up to ``shift`` px (zero fill) and a horizontal flip with p = 0.5."""
    count, _, height, width = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (count, 2), generator=generator).tolist()
    flipped = torch.rand(count, generator=generator) < 0.5
    out = torch.stack([padded[i, :, y : y + height, x : x + width] for i, (y, x) in enumerate(offsets)])
    out[flipped] = out[flipped].flip(-1)
    return out


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
            "test_accuracy": _accuracy(model, test_images, test_labels),
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
        "config": config.to_dict(),
        "train_images": len(train_images),
        "test_accuracy": history[-1]["test_accuracy"],
        "wall_seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "history": history,
    }
    atomic_write_text(out_dir / "training.json", json.dumps(summary, indent=2) + "\n")
    return summary

