"""The Fashion-MNIST classifier that scores generated images, and the code that trains it.

``ImageClassifier`` is a compact CNN on the images the ``fashion-mnist`` model generates: float32
RGB (N, 3, 32, 32) in [0, 1], Fashion-MNIST's 28 px items zero-padded to 32 px exactly as
``maskgit.data.build_dataset("fashion-mnist", image_size=32, train=False)`` serves them. It averages
the three channels first, so a slight colour cast in a generated image changes nothing that a grey
one would not. ``logits`` give the class; ``features`` (the penultimate layer, after its ReLU) are
the space in which ``maskgit.evaluation.evaluate`` measures FID and diversity.

The trained weights ship in ``maskgit/pretrained/fashion-mnist-classifier`` (``load_classifier()``);
``train_classifier`` (``maskgit train-classifier``) reproduces them.
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
from safetensors.torch import load_file, save_file
from torch import nn

from maskgit.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, load_fashion_mnist
from maskgit.io import atomic_path, atomic_write_text
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
_WEIGHTS_NAME = "model.safetensors"
_CONFIG_NAME = "config.json"
_FORMAT = "maskgit-classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    """The classifier's shape: three conv stages of ``channels`` (each halving the resolution),
    then a ``feature_size``-wide layer (the features) and one logit per class."""

    image_size: int = 32
    channels: tuple[int, int, int] = (32, 64, 128)
    feature_size: int = 128
    dropout: float = 0.3
    class_names: tuple[str, ...] = FASHION_MNIST_CLASSES

    def __post_init__(self) -> None:
        if self.image_size <= 0 or self.image_size % 8:
            raise ValueError(f"ClassifierConfig: image_size must be a positive multiple of 8, got {self.image_size}")
        if len(self.channels) != 3 or min(self.channels) <= 0:
            raise ValueError(f"ClassifierConfig: channels must be three positive ints, got {self.channels}")
        if len(self.class_names) < 2:
            raise ValueError(f"ClassifierConfig: needs at least 2 class_names, got {self.class_names}")

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ClassifierConfig:
        if data.get("format") != _FORMAT:
            raise ValueError(f"{source}: not a {_FORMAT} config (format {data.get('format')!r})")
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("channels", "class_names"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


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
        atomic_write_text(directory / _CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], *, device: str | torch.device | None = None) -> ImageClassifier:
        """Load a folder written by ``save_pretrained``; the model is returned in eval mode."""
        directory = Path(directory)
        for name in (_CONFIG_NAME, _WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory}: no {name} (not a classifier folder)")
        try:
            data = json.loads((directory / _CONFIG_NAME).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{directory / _CONFIG_NAME}: not valid JSON ({error})") from None
        model = cls(ClassifierConfig.from_dict(data, source=str(directory / _CONFIG_NAME)))
        state = load_file(str(directory / _WEIGHTS_NAME))
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            raise ValueError(f"{directory / _WEIGHTS_NAME}: parameters do not match {_CONFIG_NAME}")
        model.load_state_dict(state)
        model.eval()
        return model.to(device) if device is not None else model


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

