"""maskgit.inputs: the one image-size rule of the editing modes, for PIL images, tensors and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.data.transforms import eval_transform, to_tensor
from maskgit.inputs import image_tensor, mask_tensor, prepare_image, prepare_mask


def _picture(height: int, width: int) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_a_pil_image_follows_the_evaluation_recipe():
    picture = _picture(30, 40)
    torch.testing.assert_close(prepare_image(picture, 32, factor=2), eval_transform(32)(picture), rtol=0, atol=0)
    kept = prepare_image(picture, 32, factor=2, keep_size=True)
    torch.testing.assert_close(kept, to_tensor(picture), rtol=0, atol=0)
    assert prepare_image(picture.convert("L"), 32, factor=2).shape == (3, 32, 32)


def test_a_tensor_is_resized_in_float_like_the_8_bit_recipe():
    picture = _picture(48, 64)
    resized = prepare_image(to_tensor(picture), 32, factor=2)
    assert resized.shape == (3, 32, 32) and resized.dtype == torch.float32
    assert 0 <= resized.min() and resized.max() <= 1
    # The same geometry and filter; the 8-bit path rounds (and clips) between its two passes,
    # which on this noise image moves a few pixels by a few levels.
    difference = (resized - eval_transform(32)(picture)).abs()
    assert difference.mean() < 0.5 / 255 and difference.max() < 8 / 255


def test_an_image_at_the_model_size_passes_through_untouched():
    image = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    prepared = prepare_image(image, 32, factor=16)
    assert prepared.dtype == torch.float32 and torch.equal(prepared, image[0].float())


def test_keep_size_needs_whole_tokens():
    with pytest.raises(ValueError, match=r"image is 30x32: .* multiples of the token size 16"):
        prepare_image(torch.rand(3, 30, 32), 64, factor=16, keep_size=True)


def test_bad_images_are_refused():
    with pytest.raises(TypeError, match="PIL image or a torch.Tensor"):
        image_tensor(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"one \(3, H, W\) image at a time"):
        image_tensor(torch.rand(2, 3, 8, 8))
    # Values are checked before a resize could clip them into range.
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\], got \[0, 255\]"):
        prepare_image(torch.full((3, 8, 8), 255.0).index_fill_(1, torch.tensor([0]), 0.0), 32, factor=2)
    with pytest.raises(ValueError, match="divide uint8 images by 255"):
        prepare_image(torch.zeros(3, 8, 8, dtype=torch.uint8), 32, factor=2)


def test_the_mask_follows_the_image():
    picture = _picture(48, 64)
    mask = torch.zeros(48, 64, dtype=torch.bool)
    mask[8:24, 40:64] = True
    prepared = prepare_mask(mask, picture, 32)
    # Short side 48 → 32 (scale 2/3), width 64 → 42, centre crop from column 5; nearest
    # neighbour takes each output pixel from the source pixel under its centre.
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[5:16, 21:] = True
    assert prepared.dtype == torch.bool and torch.equal(prepared, expected)
    assert torch.equal(prepare_mask(mask, picture, 32, keep_size=True), mask)
    with pytest.raises(ValueError, match="mask is 48x64 but the image is 32x32"):
        prepare_mask(mask, torch.rand(3, 32, 32), 32)


def test_masks_from_pil_images_and_tensors():
    gray = np.zeros((4, 4), np.uint8)
    gray[1, 2] = 255
    assert torch.equal(mask_tensor(Image.fromarray(gray)), torch.from_numpy(gray > 0))
    layer = np.zeros((4, 4, 4), np.uint8)  # transparent, with one opaque black stroke
    layer[2, 1, 3] = 255
    assert mask_tensor(Image.fromarray(layer, "RGBA")).nonzero().tolist() == [[2, 1]]
    assert mask_tensor(torch.tensor([[0.2, 0.7]])).tolist() == [[False, True]]
    assert mask_tensor(torch.tensor([[0, 3]])).tolist() == [[False, True]]
    with pytest.raises(ValueError, match=r"\(H, W\) tensor"):
        mask_tensor(torch.zeros(1, 4, 4))
