"""The two resize protocols: clean-fid's PIL bicubic on floats, and TensorFlow 1.x bilinear."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from maskgit.evaluation.resize import resize_clean, resize_for_inception, resize_legacy


def _tf1_bilinear_reference(image: np.ndarray, size: int) -> np.ndarray:
    """TF 1.x ResizeBilinear (align_corners=False, half_pixel_centers=False), one pixel at a time."""
    channels, height, width = image.shape
    out = np.zeros((channels, size, size))
    for i in range(size):
        y = i * (height / size)
        y0, y1 = int(np.floor(y)), min(int(np.floor(y)) + 1, height - 1)
        for j in range(size):
            x = j * (width / size)
            x0, x1 = int(np.floor(x)), min(int(np.floor(x)) + 1, width - 1)
            top = image[:, y0, x0] + (image[:, y0, x1] - image[:, y0, x0]) * (x - x0)
            bottom = image[:, y1, x0] + (image[:, y1, x1] - image[:, y1, x0]) * (x - x0)
            out[:, i, j] = top + (bottom - top) * (y - y0)
    return out


@pytest.mark.parametrize("height,width,size", [(5, 4, 7), (9, 12, 4), (3, 3, 3)])
def test_legacy_resize_is_tensorflow_1_bilinear(height, width, size):
    images = torch.randint(0, 256, (2, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = resize_legacy(images, size)
    for image, resized in zip(images, ours):
        np.testing.assert_allclose(resized.numpy(), _tf1_bilinear_reference(image.double().numpy(), size), atol=1e-3)


def test_legacy_grid_is_not_torchs_half_pixel_grid():
    row = torch.tensor([0, 100], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 2, 2)
    assert resize_legacy(row, 4)[0, 0, 0].tolist() == [0, 50, 100, 100]  # TF: samples at 0, .5, 1, 1.5
    torch_grid = F.interpolate(row.float(), size=(4, 4), mode="bilinear", align_corners=False)
    assert torch_grid[0, 0, 0].tolist() == [0, 25, 75, 100]


def test_clean_resize_is_pil_bicubic_on_unquantized_floats():
    images = torch.randint(0, 256, (1, 3, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours = resize_clean(images, 31)
    for channel in range(3):
        plane = Image.fromarray(images[0, channel].numpy().astype(np.float32))
        expected = np.clip(np.asarray(plane.resize((31, 31), Image.Resampling.BICUBIC)), 0, 255)
        np.testing.assert_array_equal(ours[0, channel].numpy(), expected)
    assert ours.min() >= 0 and ours.max() <= 255  # bicubic overshoot clipped
    assert not torch.equal(ours, ours.round())  # not re-quantized to integers
    # A constant image stays constant under both protocols.
    flat = torch.full((1, 3, 16, 16), 77, dtype=torch.uint8)
    for protocol in ("clean", "legacy"):
        resized = resize_for_inception(flat, protocol)
        assert resized.shape == (1, 3, 299, 299)
        torch.testing.assert_close(resized, torch.full_like(resized, 77.0), rtol=0, atol=1e-3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"images must be uint8 \(B, 3, H, W\)"):
        resize_legacy(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="unknown resize protocol 'bilinear'; choose one of clean, legacy"):
        resize_for_inception(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), "bilinear")
