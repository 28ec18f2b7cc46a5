"""Image files: rounding, atomic PNG writes, masks, grids and unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.imageio import load_image, load_mask, make_grid, save_image, to_pil_images, to_uint8


def test_png_values_are_rounded_not_truncated(tmp_path):
    image = torch.full((3, 2, 2), 254.6 / 255)
    image[0, 0, 0] = 1.7  # clipped
    image[1, 0, 0] = -0.2
    save_image(image, tmp_path / "a.png")
    array = np.asarray(Image.open(tmp_path / "a.png"))
    assert array[1, 1, 0] == 255 and array[0, 0, 0] == 255 and array[0, 0, 1] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left


def test_load_save_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    image = load_image(tmp_path / "in.png")
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    np.testing.assert_array_equal(to_uint8(image), pixels)


def test_mask_white_means_regenerate_and_alpha_layers(tmp_path):
    gray = np.zeros((4, 4), np.uint8)
    gray[1, 2] = 255
    Image.fromarray(gray).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").nonzero().tolist() == [[1, 2]]
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[3, 0, 3] = 255  # painted on a transparent layer
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert load_mask(tmp_path / "a.png").nonzero().tolist() == [[3, 0]]


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png: cannot read image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_grid_layout():
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.25, 0.5, 0.75, 1.0)])
    grid = make_grid(images, padding=1)
    assert grid.shape == (3, 2 * 5 + 1, 3 * 5 + 1)  # 3 columns, 2 rows
    assert grid[0, 1, 6] == 0.25 and grid[0, 6, 1] == 0.75 and grid[0, 6, 11] == 1.0  # padding is white


def test_to_pil_images_rounds_like_to_uint8():
    images = torch.rand(2, 3, 5, 7)
    pictures = to_pil_images(images)
    assert [p.size for p in pictures] == [(7, 5), (7, 5)] and pictures[0].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(pictures[1]), to_uint8(images[1]))
    assert len(to_pil_images(images[0])) == 1
