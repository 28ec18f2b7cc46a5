"""Token files: a dataset's images encoded once by the tokenizer, so that the transformer trains
without running the VQGAN.

File format (version 1), all integers little-endian, no pickle::

    bytes 0-7     magic b"MGTOKENS"
    bytes 8-15    uint64: length L of the JSON header
    bytes 16-     the UTF-8 JSON header (L bytes), then zero padding to a multiple of 64 bytes;
                  that multiple is the data start D
    D + ids_offset      ids    (count, h, w) in ``ids_dtype`` ("<u2" when codebook_size <= 65536, else "<i4")
    D + labels_offset   labels (count,) "<i8"

The header holds ``format`` ("maskgit-tokens"), ``version``, ``count``, ``grid`` [h, w],
``codebook_size``, ``class_names``, the two dtypes and offsets, and free-form ``metadata``. The arrays
are 64-byte aligned so that ``TokenDataset`` memory-maps them with numpy. When ``extract_tokens``
adds flips, record ``2i`` is image ``i`` and record ``2i + 1`` its mirror image.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from maskgit.devices import resolve_device
from maskgit.io import atomic_path

__all__ = ["TOKEN_FILE_MAGIC", "TokenFileWriter", "write_token_file", "TokenDataset", "extract_tokens"]

TOKEN_FILE_MAGIC = b"MGTOKENS"
_FORMAT = "maskgit-tokens"
_VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sQ")
_LABELS_DTYPE = np.dtype("<i8")
# Decode at most this many records at a time when counting codes, to bound memory on big files.
_CHUNK = 1 << 16


def _align(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _ids_dtype(codebook_size: int) -> np.dtype:
    return np.dtype("<u2") if codebook_size <= 1 << 16 else np.dtype("<i4")


def _as_numpy(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return array


class TokenFileWriter:
    """Write a token file in batches (``extract_tokens`` streams ImageNet-sized sets through it).

    Use as a context manager: the file appears atomically on a clean exit, after checking that
    exactly ``count`` records were written; on an error nothing is left at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        count: int,
        grid: tuple[int, int],
        codebook_size: int,
        class_names: Sequence[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if count <= 0:
            raise ValueError(f"{path}: a token file needs at least one record, got count={count}")
        if len(grid) != 2 or min(grid) <= 0:
            raise ValueError(f"grid must be two positive sizes (h, w), got {grid}")
        if codebook_size <= 0:
            raise ValueError(f"codebook_size must be positive, got {codebook_size}")
        class_names = tuple(str(name) for name in class_names)
        if not class_names:
            raise ValueError("class_names must not be empty")
        self.path = Path(path)
        self.count = int(count)
        self.grid = (int(grid[0]), int(grid[1]))
        self.codebook_size = int(codebook_size)
        self.class_names = class_names
        self._ids_dtype = _ids_dtype(codebook_size)
        ids_bytes = self.count * self.grid[0] * self.grid[1] * self._ids_dtype.itemsize
        self._labels_offset = _align(ids_bytes)
        self._header = {
            "format": _FORMAT,
            "version": _VERSION,
            "count": self.count,
            "grid": list(self.grid),
            "codebook_size": self.codebook_size,
            "class_names": list(class_names),
            "ids_dtype": self._ids_dtype.str,
            "ids_offset": 0,
            "labels_dtype": _LABELS_DTYPE.str,
            "labels_offset": self._labels_offset,
            "metadata": metadata or {},
        }
        self._labels: list[np.ndarray] = []
        self.written = 0
        self._stack: contextlib.ExitStack | None = None
        self._file: BinaryIO | None = None
        self._data_start = 0

    def __enter__(self) -> TokenFileWriter:
        stack = contextlib.ExitStack()
        try:
            temp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(open(temp, "wb"))
            header = json.dumps(self._header).encode("utf-8")
            self._file.write(_PREFIX.pack(TOKEN_FILE_MAGIC, len(header)))
            self._file.write(header)
            self._data_start = _align(_PREFIX.size + len(header))
            self._file.write(b"\0" * (self._data_start - _PREFIX.size - len(header)))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def write(self, ids: Any, labels: Any) -> None:
        """Append ids (B, h, w) ints in [0, codebook_size) and labels (B,) in [0, num_classes)."""
        assert self._file is not None, "use TokenFileWriter as a context manager"
        ids = _as_numpy(ids, "ids")
        labels = _as_numpy(labels, "labels")
        if ids.ndim != 3 or tuple(ids.shape[1:]) != self.grid:
            raise ValueError(f"ids must be (B, {self.grid[0]}, {self.grid[1]}), got shape {ids.shape}")
        if labels.shape != (len(ids),):
            raise ValueError(f"labels must be ({len(ids)},) to match the ids, got shape {labels.shape}")
        if self.written + len(ids) > self.count:
            raise ValueError(f"{self.path}: more than the declared {self.count} records written")
        if ids.size and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise ValueError(
                f"token ids must be in [0, {self.codebook_size}), got values in [{ids.min()}, {ids.max()}]"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels must be in [0, {len(self.class_names)}) for {len(self.class_names)} class names, "
                f"got values in [{labels.min()}, {labels.max()}]"
            )
        self._file.write(np.ascontiguousarray(ids, dtype=self._ids_dtype).tobytes())
        self._labels.append(labels.astype(_LABELS_DTYPE))
        self.written += len(ids)

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        assert self._stack is not None and self._file is not None
        # The stack closes the file, then renames it into place; told of an exception (the caller's
        # or ours) it removes the temporary file instead.
        try:
            if exc_type is None:
                if self.written != self.count:
                    raise ValueError(f"{self.path}: {self.written} records written, {self.count} declared")
                self._file.seek(self._data_start + self._labels_offset)
                self._file.write(np.concatenate(self._labels).tobytes())
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        self._stack.__exit__(exc_type, exc, traceback)


def write_token_file(
    path: str | os.PathLike[str],
    ids: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    codebook_size: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write a token file atomically (format in the module docstring).

    ``ids`` (N, h, w) and ``labels`` (N,) are integer tensors or arrays; labels index ``class_names``.
    Pass the tokenizer's ``codebook_size``; without it the smallest that holds the ids
    (``max(ids) + 1``) is recorded. Bad shapes or out-of-range values raise ``ValueError``.
    """
    ids = _as_numpy(ids, "ids")
    if ids.ndim != 3:
        raise ValueError(f"ids must be (N, h, w), got shape {ids.shape}")
    if codebook_size is None:
        codebook_size = int(ids.max()) + 1 if ids.size else 1
    with TokenFileWriter(
        path,
        count=len(ids),
        grid=(ids.shape[1], ids.shape[2]),
        codebook_size=codebook_size,
        class_names=class_names,
        metadata=metadata,
    ) as writer:
        writer.write(ids, labels)


class TokenDataset(Dataset):
    """A token file, memory-mapped: ``__getitem__(i) -> (ids int64 (h, w), label int)``.

    Attributes: ``class_names`` (tuple of str), ``latent_size`` (h), ``grid`` (h, w),
    ``codebook_size``, ``metadata`` (dict), ``ids`` (the read-only (N, h, w) memory map), ``labels``
    int64 (N,). A file that is not a token file, or is truncated, raises ``ValueError`` naming it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such token file")
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size or prefix[:8] != TOKEN_FILE_MAGIC:
                raise ValueError(f"{path}: not a maskgit token file (bad magic)")
            header_length = _PREFIX.unpack(prefix)[1]
            if _PREFIX.size + header_length > size:
                raise ValueError(f"{path}: truncated token file header")
            try:
                header = json.loads(handle.read(header_length).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"{path}: token file header is not valid JSON ({error})") from None
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            raise ValueError(f"{path}: header format is not {_FORMAT!r}")
        if header.get("version") != _VERSION:
            raise ValueError(f"{path}: token file version {header.get('version')!r}, this reader needs {_VERSION}")
        try:
            count = int(header["count"])
            height, width = (int(side) for side in header["grid"])
            ids_dtype = np.dtype(header["ids_dtype"])
            labels_dtype = np.dtype(header["labels_dtype"])
            data_start = _align(_PREFIX.size + header_length)
            ids_start = data_start + int(header["ids_offset"])
            labels_start = data_start + int(header["labels_offset"])
            codebook_size = int(header["codebook_size"])
            class_names = tuple(str(name) for name in header["class_names"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: malformed token file header ({type(error).__name__}: {error})") from None
        expected = labels_start + count * labels_dtype.itemsize
        if size != expected:
            raise ValueError(
                f"{path}: token file is {size} bytes, the header describes {expected} "
                f"({'truncated' if size < expected else 'trailing bytes'})"
            )
        self.header = header
        self.metadata: dict[str, Any] = dict(header.get("metadata") or {})
        self.codebook_size = codebook_size
        self.class_names = class_names
        self.grid = (height, width)
        self.latent_size = height
        self.ids = np.memmap(path, dtype=ids_dtype, mode="r", offset=ids_start, shape=(count, height, width))
        self.labels = np.memmap(path, dtype=labels_dtype, mode="r", offset=labels_start, shape=(count,))

    # Memory maps would be pickled as copies of the whole array; DataLoader workers reopen instead.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._open()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        ids = torch.from_numpy(self.ids[index].astype(np.int64))
        return ids, int(self.labels[index])

    def code_usage(self) -> np.ndarray:
        """How often each code occurs over the whole file: int64 (codebook_size,)."""
        counts = np.zeros(self.codebook_size, dtype=np.int64)
        for start in range(0, len(self), _CHUNK):
            chunk = np.asarray(self.ids[start : start + _CHUNK]).reshape(-1)
            counts += np.bincount(chunk, minlength=self.codebook_size)[: self.codebook_size]
        return counts

    def __repr__(self) -> str:
        return (
            f"TokenDataset({str(self.path)!r}, {len(self)} records, grid {self.grid[0]}x{self.grid[1]}, "
            f"codebook_size={self.codebook_size}, {len(self.class_names)} classes)"
        )


@torch.inference_mode()
def extract_tokens(
    tokenizer: torch.nn.Module,
    dataset: Dataset,
    path: str | os.PathLike[str],
    *,
    batch_size: int = 64,
    flips: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
    num_workers: int = 0,
) -> TokenDataset:
    """Encode every image of ``dataset`` with ``tokenizer.encode_to_ids`` and write a token file.

    ``dataset`` yields (image float32 (3, S, S) in [0, 1], label int) and has ``class_names`` (an
    ``ImageDataset`` built with ``train=False``: random augmentation would be frozen into the file).
    With ``flips`` each image's horizontal mirror is encoded too (record 2i is image i, 2i + 1 its
    mirror), doubling the count. The tokenizer is moved to ``device`` and run in eval mode (its
    training flag is restored afterwards). The file is written atomically; returns it opened.
    """
    if getattr(dataset, "train", False):
        raise ValueError(
            "extract_tokens needs a deterministic dataset (build it with train=False); "
            "random crops and flips would be frozen into the token file"
        )
    class_names = getattr(dataset, "class_names", None)
    if not class_names:
        raise ValueError("the dataset must have class_names")
    count = len(dataset)  # type: ignore[arg-type]
    if count == 0:
        raise ValueError(f"{getattr(dataset, 'source', 'dataset')}: no images to encode")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    config = tokenizer.config  # type: ignore[union-attr]
    image_size = getattr(dataset, "image_size", None)
    factor = config.downsample_factor
    if image_size is not None and image_size % factor:
        raise ValueError(f"image size {image_size} is not a multiple of the tokenizer's downsampling factor {factor}")

    from tqdm import tqdm

    device = resolve_device(device)  # "auto", "cpu", "cuda:N"; ValueError for a device we lack
    was_training = tokenizer.training
    tokenizer.to(device).eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    metadata = {
        "source": str(getattr(dataset, "source", "")),
        "image_size": image_size,
        "flips": flips,
        "num_images": count,
        "tokenizer_config": config.to_dict(),
    }
    try:
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(tqdm(total=count, unit="img", disable=not progress, desc="tokens"))
            writer: TokenFileWriter | None = None
            for images, labels in loader:
                images = images.to(device, non_blocking=True)
                ids = tokenizer.encode_to_ids(images)
                if flips:
                    mirrored = tokenizer.encode_to_ids(images.flip(-1))
                    ids = torch.stack([ids, mirrored], dim=1).flatten(0, 1)
                    labels = labels.repeat_interleave(2)
                if writer is None:  # the grid is known once the first batch is encoded
                    writer = stack.enter_context(
                        TokenFileWriter(
                            path,
                            count=count * (2 if flips else 1),
                            grid=(ids.shape[1], ids.shape[2]),
                            codebook_size=config.codebook_size,
                            class_names=class_names,
                            metadata=metadata,
                        )
                    )
                writer.write(ids, labels)
                bar.update(len(images))
    finally:
        tokenizer.train(was_training)
    return TokenDataset(path)
