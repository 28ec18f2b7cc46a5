"""A written run as an ADM-format ``.npz`` (``arr_0`` uint8 (N, H, W, 3), ``arr_1`` int64 labels,
as ADM's ``image_sample.py`` writes it), the input of the reference FID evaluators.

Streamed image by image, so that 50k images at 512 (39 GB) never sit in memory.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from maskgit.imageio import open_image
from maskgit.io import atomic_path
from maskgit.runs.plan import RunPlan

__all__ = ["pack_npz"]


def pack_npz(plan: RunPlan, out: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Pack the written images of ``plan`` in ``out`` into an ADM-format ``.npz`` (atomically);
    returns its path."""
    out, destination = Path(out), Path(destination)
    paths = [out / plan.path(i) for i in range(len(plan))]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of the set are missing (first: {missing[0]}); finish the run first")
    first = np.asarray(open_image(paths[0]).convert("RGB"))
    shape = (len(plan), *first.shape)
    with atomic_path(destination) as temp, zipfile.ZipFile(temp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("arr_0.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(
                member, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape})
            for path in paths:
                image = np.asarray(open_image(path).convert("RGB"), dtype=np.uint8)
                if image.shape != first.shape:
                    raise ValueError(f"{path}: {image.shape} differs from the set's {first.shape}")
                member.write(image.tobytes())
        labels = np.asarray(plan.labels, dtype=np.int64)
        with archive.open("arr_1.npy", "w") as member:
            np.lib.format.write_array(member, labels)
    return destination
