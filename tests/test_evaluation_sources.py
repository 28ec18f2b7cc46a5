"""Inputs of ``maskgit fid``: folders, ADM-style .npz files read in chunks, statistics, and their limits."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.evaluation.sources import FolderImages, NpzImages, open_input


def _all(source, batch_size: int) -> list[torch.Tensor]:
    return [image for batch in source.batches(batch_size) for image in batch]


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_images_are_read_in_order_in_chunks(tmp_path, save):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 6, 3), dtype=np.uint8)
    save(tmp_path / "set.npz", arr_0=images)
    source = NpzImages(tmp_path / "set.npz")
    assert len(source) == 7
    read = _all(source, batch_size=3)
    assert [tuple(image.shape) for image in read] == [(3, 5, 6)] * 7
    assert np.array_equal(torch.stack(read).permute(0, 2, 3, 1).numpy(), images)


def test_grayscale_npz_and_folder_images_become_rgb(tmp_path):
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.savez(tmp_path / "gray.npz", arr_0=gray)
    read = _all(NpzImages(tmp_path / "gray.npz"), 5)
    assert read[1].shape == (3, 4, 4) and torch.equal(read[1][0], read[1][2])
    for name in ("b", "a"):
        (tmp_path / "folder" / name).mkdir(parents=True)
    Image.fromarray(gray[0]).save(tmp_path / "folder" / "b" / "x.png")
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(tmp_path / "folder" / "a" / "y.png")
    folder = _all(FolderImages(tmp_path / "folder"), 1)
    assert folder[0].unique().tolist() == [9]  # class folder "a" first
    assert torch.equal(folder[1], torch.from_numpy(gray[0]).expand(3, 4, 4))


def test_an_adm_reference_batch_is_both_statistics_and_images(tmp_path):
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((3, 4, 4, 3), np.uint8), mu=np.zeros(5), sigma=np.eye(5))
    side = open_input(tmp_path / "ref.npz")
    assert side.statistics.dim == 5 and len(side.images) == 3
    np.savez(tmp_path / "stats.npz", mu=np.zeros(5), sigma=np.eye(5))
    side = open_input(tmp_path / "stats.npz")
    assert side.images is None and side.statistics is not None


def test_inputs_out_of_bounds_are_refused_before_reading(tmp_path):
    # A header that claims 3 million images (no data behind it): refused from the header alone.
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive, archive.open("arr_0.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (3_000_000, 8, 8, 3)})
    with pytest.raises(ValueError, match=r"huge\.npz: arr_0 of shape \(3000000, 8, 8, 3\) is larger than allowed"):
        open_input(tmp_path / "huge.npz")
    np.savez(tmp_path / "rgba.npz", arr_0=np.zeros((2, 4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"arr_0 must be uint8 images \(N, H, W, 3\)"):
        open_input(tmp_path / "rgba.npz")
    np.savez(tmp_path / "neither.npz", other=np.zeros(3))
    with pytest.raises(ValueError, match="neither images \\(arr_0\\) nor statistics"):
        open_input(tmp_path / "neither.npz")
    # A truncated archive: the header promises more images than the member holds.
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as archive, archive.open("arr_0.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (4, 2, 2, 3)})
        member.write(bytes(2 * 2 * 3 * 3))
    with pytest.raises(ValueError, match="arr_0 is truncated"):
        _all(NpzImages(tmp_path / "short.npz"), 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        open_input(tmp_path / "empty")
