"""What a training run's data holds, checked before anything trains; and its datasets.

``survey_data(source)`` reads a data source as ``maskgit train`` takes it:

- a folder with one subfolder per class (class names from the folder names), or with ``train/``
  (and ``val/``, ``validation/`` or ``test/``) split folders holding class folders;
- a folder of images with no subfolders: one class, an unconditional model;
- a built-in name: ``fashion-mnist`` or ``mnist`` (``fashion-mnist:DIR``, ``mnist:DIR`` for idx
  files elsewhere).

It opens every image's header (sizes, grey or colour) and fails with one ``DataError`` line for
data that cannot train: no images, fewer than ``MIN_IMAGES``, unreadable files (named). What it
fixes on the way (mixed sizes are resized, grey images become colour) it says in ``notes``.

``DataSurvey.datasets(image_size)`` then gives the training and held-out datasets. A folder without
a split folder keeps about a tenth of every class out of training (``held_out_indices``). A
folder that fits in memory at the training size is decoded once, up front: every file is read
before training starts (so a damaged file is named then), and training then costs no decoding.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from maskgit.data.datasets import IMAGE_EXTENSIONS, ImageDataset, ImageFolder, build_dataset
from maskgit.data.idx import IdxImages, load_fashion_mnist, load_mnist
from maskgit.data.transforms import TrainTransform, eval_transform, random_horizontal_flip

__all__ = [
    "MIN_IMAGES",
    "BUILTIN_DATASETS",
    "DataError",
    "DataSurvey",
    "RunDatasets",
    "ImageArrayDataset",
    "survey_data",
    "held_out_indices",
]

#: Fewest training images ``maskgit train`` accepts: enough for a batch and a held-out few.
MIN_IMAGES = 16
#: The built-in dataset names.
BUILTIN_DATASETS = ("fashion-mnist", "mnist")
# Image folders up to this many bytes at the training size (uint8) are decoded into memory once.
_MAX_IN_MEMORY_BYTES = 2 << 30
# Folders with more images than this have only a spread-out sample of their headers read.
_MAX_HEADER_SCAN = 20_000
_SPLIT_EVAL_FOLDERS = ("val", "validation", "test")
# A folder without a split keeps this fraction of every class (at least one image of a class with
# two or more) for evaluation, and at most _MAX_HELD_OUT images in all.
_HELD_OUT_FRACTION = 0.1
_MAX_HELD_OUT = 1000
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SHOWN_FILES = 5


class DataError(ValueError):
    """The data cannot be trained on; the message is one line that says why."""


@dataclass(frozen=True)
class DataSurvey:
    """What ``survey_data`` found.

    ``kind`` is ``"class folders"``, ``"one folder"`` (unconditional), ``"fashion-mnist"`` or
    ``"mnist"``. ``labels`` int64 (N,) index ``class_names``. ``sizes`` counts the (width, height)
    of the images (of the headers read, for a very large folder), ``grey`` and ``colour`` count
    the files of each kind. ``eval_folder`` is a folder's held-out split folder, or None when
    ``held_out_indices`` takes images out of the training set (a built-in dataset's held-out split
    is its test split). ``train_count`` and ``held_out_count`` are the images each side gets.
    """

    source: str
    kind: str
    class_names: tuple[str, ...]
    labels: np.ndarray
    sizes: Counter
    grey: int
    colour: int
    train_count: int
    held_out_count: int
    folder: ImageFolder | None = None
    idx: IdxImages | None = None
    eval_folder: ImageFolder | None = None
    notes: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def is_colour(self) -> bool:
        """Whether any image has colour (then the model is trained on colour)."""
        return self.colour > 0

    @property
    def typical_side(self) -> int:
        """The median short side of the images, in pixels."""
        sides = sorted(side for (width, height), n in self.sizes.items() for side in [min(width, height)] * n)
        return sides[len(sides) // 2]

    def size_notes(self, image_size: int) -> list[str]:
        """Lines about the resizing to ``image_size`` (none when every image has that size)."""
        if set(self.sizes) == {(image_size, image_size)}:
            return []
        shown = ", ".join(f"{w}x{h}" for (w, h), _ in self.sizes.most_common(3))
        more = f" and {len(self.sizes) - 3} more" if len(self.sizes) > 3 else ""
        what = f"images of {len(self.sizes)} sizes ({shown}{more})" if len(self.sizes) > 1 else f"{shown} images"
        if self.kind in BUILTIN_DATASETS and all(0 <= image_size - min(size) <= 4 for size in self.sizes):
            return [f"{what}: padded with black to {image_size}x{image_size}"]
        return [f"{what}: each is resized (short side) and centre-cropped to {image_size}x{image_size}"]

    def datasets(self, image_size: int, *, flips: bool, seed: int = 0, progress: bool = False) -> RunDatasets:
        """The training dataset (random horizontal flips with ``flips``; a built-in dataset's own
        augmentation: Fashion-MNIST mirrored, MNIST never), the same images without augmentation
        (for token extraction), and the held-out dataset, at ``image_size``.

        Items are ``(image float32 (3, S, S) in [0, 1], label)``. Raises DataError naming the
        files that cannot be decoded (in-memory folders are decoded here, all of them).
        """
        if self.idx is not None:
            train = build_dataset(self.source, split="train", image_size=image_size, train=True)
            plain = build_dataset(self.source, split="train", image_size=image_size, train=False)
            held_out = build_dataset(self.source, split="test", image_size=image_size, train=False)
            return RunDatasets(train, plain, held_out)
        assert self.folder is not None
        if self.eval_folder is not None:
            train_folder, eval_folder = self.folder, self.eval_folder
        else:
            held = held_out_indices(self.labels, seed)
            kept = np.setdiff1d(np.arange(self.count), held)
            train_folder, eval_folder = self.folder.subset(kept), self.folder.subset(held)
        if len(train_folder) * 3 * image_size**2 <= _MAX_IN_MEMORY_BYTES:
            images = _decode(train_folder, image_size, progress)
            plain = ImageArrayDataset(images, train_folder.labels, self.class_names, source=self.source)
            train = ImageArrayDataset(images, train_folder.labels, self.class_names, flips=flips, source=self.source)
            held_out = ImageArrayDataset(_decode(eval_folder, image_size, progress), eval_folder.labels,
                                         self.class_names, source=f"{self.source} (held out)")
            return RunDatasets(train, plain, held_out)
        # Too large for memory: decoded per item, as ``ImageFolder.load`` names any file it cannot read.
        train = ImageDataset(train_folder, TrainTransform(image_size, flip=flips), image_size=image_size, train=True,
                             source=self.source)
        plain = ImageDataset(train_folder, eval_transform(image_size), image_size=image_size, train=False,
                             source=self.source)
        held_out = ImageDataset(eval_folder, eval_transform(image_size), image_size=image_size, train=False,
                                source=f"{self.source} (held out)")
        return RunDatasets(train, plain, held_out)


@dataclass(frozen=True)
class RunDatasets:
    """The datasets of a run: ``train`` (augmented), ``plain`` (the same images, deterministic:
    what token extraction encodes) and ``held_out`` (deterministic, never trained on)."""

    train: Dataset
    plain: Dataset
    held_out: Dataset


class ImageArrayDataset(Dataset):
    """Images decoded once: uint8 (N, 3, S, S) with labels; ``__getitem__(i) -> (float32
    (3, S, S) in [0, 1], label)``, mirrored left-right with probability 1/2 (torch's RNG) when
    ``flips``. Attributes as ``ImageDataset``: ``class_names``, ``image_size``, ``labels``,
    ``train`` (whether items are random), ``source``."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, class_names: tuple[str, ...], *,
                 flips: bool = False, source: str = "") -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = tuple(class_names)
        self.image_size = int(images.shape[-1])
        self.train = flips
        self.source = source

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].float().div_(255.0)
        if self.train:
            image = random_horizontal_flip(image)
        return image, int(self.labels[index])


def held_out_indices(labels: np.ndarray, seed: int) -> np.ndarray:
    """Indices (sorted int64) of the images a folder without a split keeps for evaluation: a
    seeded tenth of each class (at least one image of a class with two or more, never a class's
    last image), at most 1000 in all."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    scale = min(1.0, _MAX_HELD_OUT / max(1.0, _HELD_OUT_FRACTION * len(labels)))
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, int(len(members) * _HELD_OUT_FRACTION * scale)))
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def survey_data(source: str | os.PathLike[str]) -> DataSurvey:
    """Survey a data source (see the module docstring). Raises DataError (one line) for no data,
    too few images or unreadable files, and FileNotFoundError for a path that does not exist."""
    text = str(source)
    kind, _, location = text.partition(":")
    if kind in BUILTIN_DATASETS:
        return _survey_idx(text, kind, location or None)
    root = Path(text)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder (nor a built-in dataset: {', '.join(BUILTIN_DATASETS)})")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; give a folder of images (one subfolder per class) or a built-in dataset")
    train_root, eval_root = root, None
    if (root / "train").is_dir():
        train_root = root / "train"
        eval_root = next((root / name for name in _SPLIT_EVAL_FOLDERS if (root / name).is_dir()), None)
    folder = _image_folder(train_root)
    eval_folder = _image_folder(eval_root) if eval_root is not None else None
    if eval_folder is not None and eval_folder.class_names != folder.class_names:
        raise DataError(
            f"{eval_root}: its classes {list(eval_folder.class_names)} differ from {train_root}'s {list(folder.class_names)}"
        )
    if len(folder) < MIN_IMAGES:
        raise DataError(f"{train_root}: {len(folder)} images; at least {MIN_IMAGES} are needed to train")
    sizes, grey, colour, scanned = _scan_headers(folder, eval_folder)
    notes = []
    if grey and colour:
        notes.append(f"grey and colour images mixed ({grey} grey, {colour} colour): grey images are converted to colour")
    total = len(folder) + (len(eval_folder) if eval_folder is not None else 0)
    if scanned < total:
        notes.append(f"checked the headers of {scanned:,} of the {total:,} images; the others are checked as they load")
    held_out = len(eval_folder) if eval_folder is not None else len(held_out_indices(folder.labels, 0))
    has_classes = any(entry.is_dir() and not entry.name.startswith(".") for entry in os.scandir(train_root))
    return DataSurvey(
        text, "class folders" if has_classes else "one folder", folder.class_names, folder.labels, sizes, grey, colour,
        train_count=len(folder) - (0 if eval_folder is not None else held_out), held_out_count=held_out,
        folder=folder, eval_folder=eval_folder, notes=tuple(notes),
    )


def _image_folder(root: Path) -> ImageFolder:
    try:
        return ImageFolder(root)
    except ValueError as error:
        message = str(error)
        if "no images found" in message:
            extensions = ", ".join(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)
            raise DataError(f"{root}: no images ({extensions}); at least {MIN_IMAGES} are needed to train") from None
        raise DataError(message) from None


def _survey_idx(text: str, kind: str, location: str | None) -> DataSurvey:
    if kind == "fashion-mnist":
        images = load_fashion_mnist(location, "train") if location else load_fashion_mnist(split="train")
    else:
        images = load_mnist(location, "train")
    test = load_fashion_mnist(location, "test") if kind == "fashion-mnist" and location else (
        load_fashion_mnist(split="test") if kind == "fashion-mnist" else load_mnist(location, "test"))
    height, width = images.images.shape[1:]
    return DataSurvey(text, kind, images.class_names, images.labels, Counter({(width, height): len(images)}),
                      grey=len(images), colour=0, train_count=len(images), held_out_count=len(test), idx=images)


def _scan_headers(folder: ImageFolder, eval_folder: ImageFolder | None) -> tuple[Counter, int, int, int]:
    """Read the header of every image (or of a spread-out sample of a very large folder): the
    sizes, and how many are grey or colour. Raises DataError naming the files that do not open."""
    paths = [folder.path(i) for i in range(len(folder))]
    if eval_folder is not None:
        paths += [eval_folder.path(i) for i in range(len(eval_folder))]
    if len(paths) > _MAX_HEADER_SCAN:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, _MAX_HEADER_SCAN)]
    sizes: Counter = Counter()
    grey = colour = 0
    bad = []
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as image:
                    width, height = image.size
                    mode = image.mode
                    if image.mode == "P":  # a palette image is grey when its palette is
                        palette = np.asarray(image.getpalette() or [0, 0, 0]).reshape(-1, 3)
                        mode = "L" if (palette == palette[:, :1]).all() else "RGB"
        except Exception as error:  # Pillow raises many types for a file that is not an image
            bad.append(f"{path} ({type(error).__name__})")
            continue
        sizes[(width, height)] += 1
        if mode in _GREY_MODES:
            grey += 1
        else:
            colour += 1
    if bad:
        raise DataError(_unreadable(bad))
    return sizes, grey, colour, len(paths)


def _unreadable(bad: list[str]) -> str:
    shown = "; ".join(bad[:_SHOWN_FILES]) + (f"; and {len(bad) - _SHOWN_FILES} more" if len(bad) > _SHOWN_FILES else "")
    return f"{len(bad)} unreadable image file{'s' if len(bad) > 1 else ''}: {shown}; remove or replace {'them' if len(bad) > 1 else 'it'}"


def _decode(folder: ImageFolder, image_size: int, progress: bool) -> torch.Tensor:
    """Every image of ``folder`` at ``image_size`` (short-side resize, centre crop) as uint8
    (N, 3, S, S). Raises DataError naming every file that cannot be decoded."""
    from tqdm import tqdm

    transform = eval_transform(image_size)
    images = torch.empty(len(folder), 3, image_size, image_size, dtype=torch.uint8)
    bad = []
    for index in tqdm(range(len(folder)), desc="loading images", unit="img", disable=not progress, leave=False):
        try:
            image, _ = folder.load(index)
        except ValueError as error:
            bad.append(f"{folder.path(index)} ({str(error).rsplit('(', 1)[-1].rstrip(')')})")
            continue
        images[index] = transform(image).mul_(255.0).round_().to(torch.uint8)
    if bad:
        raise DataError(_unreadable(bad))
    return images

