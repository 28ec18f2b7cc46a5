"""Image files: rounding, atomic PNG writes, masks, grids and unreadable files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.imageio import load_image, load_mask, make_class_grid, make_grid, save_image, to_pil_images, to_uint8


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


def test_class_grid_has_one_labelled_row_per_class_with_enlarged_tiles():
    # A 32 px tile of four quadrants, so that the nearest-neighbour enlargement can be checked.
    tile = torch.zeros(3, 32, 32)
    tile[:, :16, 16:], tile[:, 16:, :16], tile[:, 16:, 16:] = 0.25, 0.5, 0.75
    rows = [("T-shirt/top", tile[None].repeat(3, 1, 1, 1)), ("Bag", tile[None].repeat(2, 1, 1, 1))]
    grid = make_class_grid(rows, min_tile=64, padding=2)
    label_width = grid.shape[2] - 3 * (64 + 2) - 2  # three columns of 64 px tiles (2x) after the labels
    assert grid.shape[:2] == (3, 2 * (64 + 2) + 2) and 40 < label_width < 200
    first = grid[:, 2 : 2 + 64, label_width : label_width + 64]
    expected = tile.repeat_interleave(2, 1).repeat_interleave(2, 2)  # exact 2x2 blocks, no blending
    assert torch.allclose(first, expected, atol=1 / 255)
    second_row_top = 2 + 64 + 2
    assert torch.allclose(grid[:, second_row_top : second_row_top + 64, label_width : label_width + 64], expected, atol=1 / 255)
    # The shorter row ends in white; each row's label is dark text on white beside its tiles.
    assert grid[:, second_row_top:, label_width + 2 * 66 :].min() == 1.0
    for top in (2, second_row_top):
        label = grid[:, top : top + 64, :label_width]
        assert label.min() < 0.3 and label.mean() > 0.8
    # Big images keep their size; mixed sizes are refused.
    assert make_class_grid([("x", torch.zeros(1, 3, 80, 80))], min_tile=64, padding=0).shape[1] == 80
    with pytest.raises(ValueError, match="one size"):
        make_class_grid([("a", torch.zeros(1, 3, 8, 8)), ("b", torch.zeros(1, 3, 16, 16))])
    with pytest.raises(ValueError, match="non-empty"):
        make_class_grid([])


# -- every mode read faithfully -------------------------------------------------------------------


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    image = load_image(tmp_path / "g16.png")
    # Pillow's own convert("RGB") clips everything above 255: a mean near 254 instead of 127.5.
    assert abs(float(image.mean()) * 255 - 127.5) < 0.6
    np.testing.assert_allclose(image[0].numpy() * 255, np.round(ramp / 257.0), atol=0)
    assert torch.equal(image[0], image[2])


def test_palette_alpha_and_cmyk_images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(to_uint8(load_image(tmp_path / "cmyk.tif")), rgb)

    palette = Image.fromarray(rgb).quantize(8)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(to_uint8(load_image(tmp_path / "p.png")), np.asarray(palette.convert("RGB")))

    # Transparent pixels are shown over white; opaque ones keep their colour; half-transparent blend.
    rgba = np.concatenate([rgb, np.zeros((6, 5, 1), np.uint8)], axis=2)
    rgba[0, 0, 3], rgba[0, 1, 3] = 255, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    result = to_uint8(load_image(tmp_path / "rgba.png"))
    assert (result[1:] == 255).all() and (result[0, 0] == rgb[0, 0]).all()
    np.testing.assert_allclose(result[0, 1], rgb[0, 1].astype(float) * 128 / 255 + 255 * 127 / 255, atol=1)
    la = np.stack([rgb[..., 0], np.full((6, 5), 0, np.uint8)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert (to_uint8(load_image(tmp_path / "la.png")) == 255).all()
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "pt.png", transparency=0)
    hidden = np.asarray(palette) == 0
    assert hidden.any() and (to_uint8(load_image(tmp_path / "pt.png"))[hidden] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[0, 0] = 255  # top-left marker of a landscape image
    picture = Image.fromarray(pixels)
    exif = picture.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    picture.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    image = load_image(tmp_path / "rotated.jpg")
    assert image.shape == (3, 8, 4)  # portrait, as a viewer shows it
    assert float(image[:, 0, -1].mean()) > 0.8  # the marker went to the top-right corner


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"big.png: 300x200 = 60,000 pixels is over the limit of 59,999 .*--max-input-pixels"):
        load_image(tmp_path / "big.png", max_pixels=59_999)
    assert load_image(tmp_path / "big.png", max_pixels=60_000).shape == (3, 200, 300)


def test_truncated_and_foreign_files_are_value_errors(tmp_path):
    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    (tmp_path / "page.png").write_bytes(b"<html>not an image</html>")
    for name in ("cut.png", "page.png"):
        with pytest.raises(ValueError, match=f"{name}: cannot read image"):
            load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such image file"):
        load_image(tmp_path / "missing.png")
