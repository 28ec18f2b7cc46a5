"""What ``maskgit fid`` compares: an image folder, an ADM-style ``.npz`` of images, or saved statistics.

Images come out as uint8 (3, H, W) RGB, in a fixed order (a folder: sorted by class folder, then
path; an ``.npz``: its order), so that every number computed from them is reproducible.

An ADM-style ``.npz`` holds ``arr_0``, uint8 (N, H, W, 3) (grayscale (N, H, W) or (N, H, W, 1) is
replicated to RGB). It is read in chunks straight from the archive, never whole: 50k images at 512
are 39 GB. ADM's reference batches also hold ``mu`` and ``sigma``; such a file is both a statistics
file (for FID) and an image set (for KID and precision/recall).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maskgit.data.datasets import ImageFolder
from maskgit.evaluation.statistics import FeatureStatistics, is_statistics_file, load_statistics

__all__ = ["ImageSource", "FolderImages", "NpzImages", "EvaluationInput", "open_input", "MAX_IMAGES", "MAX_SIDE"]

MAX_IMAGES = 2_000_000  # 40x the standard 50k; more is a wrong folder, not an evaluation
MAX_SIDE = 4096


class ImageSource:
    """A fixed, ordered set of images: ``len(source)``, and ``batches(size)`` yields lists of uint8
    (3, H, W) RGB tensors in order (sizes may differ between images)."""

    description: str

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int) -> Iterator[list[torch.Tensor]]:
        raise NotImplementedError


def _to_rgb_chw(array: np.ndarray, where: str) -> torch.Tensor:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"{where}: expected an (H, W, 3) image, got shape {array.shape}")
    if max(array.shape[:2]) > MAX_SIDE:
        raise ValueError(f"{where}: {array.shape[0]}x{array.shape[1]} is larger than {MAX_SIDE} px per side")
    tensor = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)
    return tensor.expand(3, -1, -1).contiguous() if tensor.shape[0] == 1 else tensor


class FolderImages(ImageSource):
    """Every image under a folder (class subfolders or one flat folder), RGB."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = ImageFolder(root)
        if len(self.folder) > MAX_IMAGES:
            raise ValueError(f"{root}: {len(self.folder)} images, more than the {MAX_IMAGES} allowed")
        self.description = f"{root} ({len(self.folder)} images)"

    def __len__(self) -> int:
        return len(self.folder)

    def batches(self, batch_size: int) -> Iterator[list[torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield [self._image(index) for index in range(start, min(start + batch_size, len(self)))]

    def _image(self, index: int) -> torch.Tensor:
        picture, _ = self.folder.load(index)
        return _to_rgb_chw(np.asarray(picture, dtype=np.uint8), str(self.folder.path(index)))


class NpzImages(ImageSource):
    """``arr_0`` of an ADM-style ``.npz`` (uint8 NHWC), read chunk by chunk from the archive."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self._member() as member:
            shape, fortran_order, dtype = _read_header(member)
        if dtype != np.uint8 or fortran_order or len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)):
            raise ValueError(f"{self.path}: arr_0 must be uint8 images (N, H, W, 3) in C order, got {dtype} {shape}")
        if shape[0] > MAX_IMAGES or max(shape[1:3]) > MAX_SIDE:
            raise ValueError(f"{self.path}: arr_0 of shape {shape} is larger than allowed "
                             f"({MAX_IMAGES} images, {MAX_SIDE} px per side)")
        self.shape = tuple(shape)
        self.description = f"{self.path} ({shape[0]} images of {shape[1]}x{shape[2]})"

    def _member(self):
        try:
            archive = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as error:
            raise ValueError(f"{self.path}: cannot read the .npz ({error})") from None
        if "arr_0.npy" not in archive.namelist():
            archive.close()
            raise ValueError(f"{self.path}: no arr_0 in this .npz (it has {sorted(archive.namelist())})")
        return _ClosingMember(archive, archive.open("arr_0.npy"))

    def __len__(self) -> int:
        return int(self.shape[0])

    def batches(self, batch_size: int) -> Iterator[list[torch.Tensor]]:
        per_image = int(np.prod(self.shape[1:]))
        with self._member() as member:  # one sequential pass over the (possibly deflated) member
            _read_header(member)
            for start in range(0, len(self), batch_size):
                count = min(batch_size, len(self) - start)
                data = member.read(count * per_image)
                if len(data) != count * per_image:
                    raise ValueError(f"{self.path}: arr_0 is truncated")
                batch = np.frombuffer(data, dtype=np.uint8).reshape((count, *self.shape[1:]))
                yield [_to_rgb_chw(image, str(self.path)) for image in batch]


def _read_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of a .npy stream, leaving it at the first data byte."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)


class _ClosingMember:
    """A zip member that closes its archive with it."""

    def __init__(self, archive: zipfile.ZipFile, member) -> None:
        self.archive, self.member = archive, member

    def __enter__(self):
        return self.member

    def __exit__(self, *exc) -> None:
        self.member.close()
        self.archive.close()


@dataclass(frozen=True)
class EvaluationInput:
    """One side of a comparison: images, saved statistics, or both (an ADM reference batch)."""

    path: Path
    images: ImageSource | None
    statistics: FeatureStatistics | None


def open_input(path: str | os.PathLike[str]) -> EvaluationInput:
    """An image folder, an ``.npz`` with ``arr_0`` and/or ``mu``/``sigma``; ValueError otherwise."""
    path = Path(path)
    if path.is_dir():
        return EvaluationInput(path, FolderImages(path), None)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such folder or file")
    if path.suffix.lower() != ".npz":
        raise ValueError(f"{path}: expected an image folder or an .npz (images in arr_0, or statistics mu/sigma)")
    statistics = load_statistics(path) if is_statistics_file(path) else None
    try:
        with zipfile.ZipFile(path) as archive:
            has_images = "arr_0.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: cannot read the .npz ({error})") from None
    if statistics is None and not has_images:
        raise ValueError(f"{path}: this .npz has neither images (arr_0) nor statistics (mu, sigma)")
    return EvaluationInput(path, NpzImages(path) if has_images else None, statistics)
