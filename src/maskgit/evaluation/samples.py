"""Class-balanced sample sets for FID: N images per class, one PNG each, any shard reproducible.

Image ``i`` of a set is class ``classes[i // N]``, sample ``i % N``, written to
``<out>/<class:04d>/<sample:04d>.png`` (the layout of ``maskgit generate`` and of maskgit-torch's
``generate_imagenet.py``); with a seed it depends only on ``(seed, i)`` (``MaskGIT.generate``'s
``image_indices``), so the set is the same whatever the batch size, the number of processes, or the
interruptions. Process ``rank`` of ``world_size`` makes the images with ``i % world_size == rank``
(round-robin, so every process gets every class). Images already on disk are never written again.

``pack_npz`` writes the set as an ADM-format ``.npz`` (``arr_0`` uint8 (N, H, W, 3), ``arr_1`` int64
labels, as ADM's ``image_sample.py``), streamed image by image so that 50k images at 512 (39 GB)
never sit in memory.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from maskgit.imageio import open_image, save_image
from maskgit.io import atomic_path

__all__ = ["SamplePlan", "write_samples", "pack_npz"]


@dataclass(frozen=True)
class SamplePlan:
    """``per_class`` images of each class in ``classes`` (ids), in a fixed order."""

    classes: tuple[int, ...]
    per_class: int

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a sample set needs at least one class")
        repeated = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if repeated:
            raise ValueError(f"class(es) {', '.join(map(str, repeated))} listed more than once: a sample set has each class once")
        if self.per_class < 1:
            raise ValueError(f"images per class must be at least 1, got {self.per_class}")

    def __len__(self) -> int:
        return len(self.classes) * self.per_class

    def label(self, index: int) -> int:
        return self.classes[index // self.per_class]

    def path(self, out: Path, index: int) -> Path:
        return out / f"{self.label(index):04d}" / f"{index % self.per_class:04d}.png"

    def shard(self, rank: int, world_size: int) -> list[int]:
        """The image indices process ``rank`` of ``world_size`` is responsible for."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        return list(range(rank, len(self), world_size))


def write_samples(
    pipeline,
    plan: SamplePlan,
    out: str | os.PathLike[str],
    *,
    sampler=None,
    seed: int = 0,
    batch_size: int = 16,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> list[int]:
    """Generate and write this process's missing images of ``plan``; returns the indices written.

    ``sampler`` (None: the pipeline's default) and ``seed`` fix every image; PNGs are written
    atomically, so an interrupted run leaves only whole files and resumes where it stopped.
    """
    out = Path(out)
    mine = plan.shard(rank, world_size)
    todo = [index for index in mine if not plan.path(out, index).is_file()]
    with tqdm(total=len(mine), initial=len(mine) - len(todo), unit="img", desc=f"sample[{rank}]",
              disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            images = pipeline.generate([plan.label(i) for i in batch], sampler=sampler, seed=seed, image_indices=batch)
            for index, image in zip(batch, images):
                save_image(image, plan.path(out, index))
            bar.update(len(batch))
    return todo


def pack_npz(plan: SamplePlan, out: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Pack the written images of ``plan`` into an ADM-format ``.npz`` (atomically); returns its path."""
    out, destination = Path(out), Path(destination)
    missing = [plan.path(out, i) for i in range(len(plan)) if not plan.path(out, i).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of the set are missing (first: {missing[0]}); finish the run first")
    first = np.asarray(open_image(plan.path(out, 0)).convert("RGB"))
    shape = (len(plan), *first.shape)
    with atomic_path(destination) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("arr_0.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(
                member, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
            for index in range(len(plan)):
                image = np.asarray(open_image(plan.path(out, index)).convert("RGB"), dtype=np.uint8)
                if image.shape != first.shape:
                    raise ValueError(f"{plan.path(out, index)}: {image.shape} differs from the set's {first.shape}")
                member.write(image.tobytes())
        labels = np.asarray([plan.label(i) for i in range(len(plan))], dtype=np.int64)
        with archive.open("arr_1.npy", "w") as member:
            np.lib.format.write_array(member, labels)
    return destination
