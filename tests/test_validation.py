"""Checks on images and size limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskgit.validation import check_count, check_images, check_pixels


def test_good_images_pass_unchanged():
    image = torch.rand(3, 8, 8)
    assert check_images(image) is image
    assert check_images(torch.zeros(2, 3, 4, 4, dtype=torch.float16)).shape == (2, 3, 4, 4)


@pytest.mark.parametrize("image, message", [
    (torch.zeros(3, 4, 4, dtype=torch.uint8), "got dtype torch.uint8 \\(divide uint8 images by 255\\)"),
    (torch.full((3, 4, 4), 254.0), "values must be in \\[0, 1\\], got \\[254, 254\\] \\(divide 0-255"),
    (torch.full((3, 4, 4), -0.5), "got \\[-0.5, -0.5\\]"),
    (torch.full((3, 4, 4), float("nan")), "NaN or infinite"),
    (torch.full((3, 4, 4), float("inf")), "NaN or infinite"),
    (torch.zeros(4, 4, 4), "must be \\(3, H, W\\) or \\(B, 3, H, W\\) RGB"),
    (torch.zeros(0, 3, 4, 4), "empty"),
])
def test_bad_images_are_named(image, message):
    with pytest.raises(ValueError, match=message):
        check_images(image, name="image")


def test_a_non_tensor_image_is_a_type_error():
    with pytest.raises(TypeError, match="torch.Tensor, got ndarray"):
        check_images(np.zeros((3, 4, 4), np.float32))


def test_limits_name_the_flag_that_raises_them():
    check_pixels(2048, 2048)
    with pytest.raises(ValueError, match="image of 2049x2048 = 4,196,352 pixels is over the limit of 4,194,304; raise it with --max-pixels"):
        check_pixels(2049, 2048)
    with pytest.raises(ValueError, match="positive size"):
        check_pixels(0, 5)
    check_count(100_000)
    with pytest.raises(ValueError, match="100,001 images is over the limit of 100,000 per run; raise it with --max-images"):
        check_count(100_001)


def test_the_pipeline_checks_its_images(small_pipeline):
    # Before these checks, 0-255 input came back as values up to 254 and NaN as all-NaN images.
    for image, message in ((torch.full((3, 128, 128), 128.0), "divide 0-255 images by 255"),
                           (torch.full((1, 3, 128, 128), float("nan")), "NaN"),
                           (torch.zeros(3, 128, 128, dtype=torch.uint8), "uint8")):
        with pytest.raises(ValueError, match=message):
            small_pipeline.reconstruct(image)
    with pytest.raises(ValueError, match="NaN"):
        small_pipeline.edit(torch.full((3, 128, 128), float("nan")), (0, 0, 16, 16), 0)
