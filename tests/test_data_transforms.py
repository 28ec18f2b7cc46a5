"""data/transforms.py: the evaluation transform (parity with maskgit-torch), the random training
crop and flip, padding and mask fitting."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image

from data_helpers import random_image
from maskgit.data import eval_transform, train_transform
from maskgit.data.transforms import PadTransform, center_crop, center_pad, resize_crop_mask, resize_short_side


def coordinate_image(width: int, height: int) -> Image.Image:
    """RGB image whose red channel is x and green channel is y, so a crop reveals its offset."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    array = np.stack([x, y, np.full_like(x, 7)], axis=-1).astype(np.uint8)
    return Image.fromarray(array)


def maskgit_torch_resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """The official/maskgit-torch evaluation preprocessing, restated for parity, with the one fix
    documented in transforms.py (the short side is exactly ``size``)."""
    w, h = image.size
    scale = float(size) / min(w, h)
    rw, rh = int(scale * w), int(scale * h)
    rw, rh = (size, rh) if w <= h else (rw, size)
    image = image.resize((rw, rh), Image.Resampling.BICUBIC)
    top, left = (rh - size) // 2, (rw - size) // 2
    return image.crop((left, top, left + size, top + size))


@pytest.mark.parametrize("width,height,size", [(300, 200, 64), (375, 500, 256), (64, 64, 64), (20, 30, 32), (49, 70, 32)])
def test_eval_transform_matches_maskgit_torch(width, height, size):
    image = random_image(width, height, seed=width)
    expected = np.asarray(maskgit_torch_resize_and_crop(image, size), dtype=np.float32) / 255
    result = eval_transform(size)(image)
    assert result.shape == (3, size, size) and result.dtype == torch.float32
    np.testing.assert_array_equal(result.permute(1, 2, 0).numpy(), expected)


def test_resize_short_side_sizes():
    assert resize_short_side(Image.new("RGB", (300, 200)), 64).size == (96, 64)
    assert resize_short_side(Image.new("RGB", (375, 500)), 256).size == (256, 341)  # int(341.33)
    # int(32 / 49 * 49) == 31 in floating point; the short side must still be exactly 32.
    assert resize_short_side(Image.new("RGB", (49, 70)), 32).size == (32, 45)
    image = Image.new("RGB", (64, 80))
    assert resize_short_side(image, 64) is image  # already the right size: untouched


def test_centre_crop_offsets_on_non_square_image():
    crop = center_crop(coordinate_image(101, 60), 40)
    array = np.asarray(crop)
    assert array[0, 0, 0] == (101 - 40) // 2 == 30 and array[0, 0, 1] == (60 - 40) // 2 == 10
    # Through the eval transform with no resize (short side already S): offset (90 - 64) // 2 = 13.
    tensor = eval_transform(64)(coordinate_image(90, 64))
    assert round(float(tensor[0, 0, 0]) * 255) == 13 and round(float(tensor[1, 0, 0]) * 255) == 0
    assert round(float(tensor[0, 0, 63]) * 255) == 13 + 63
    with pytest.raises(ValueError, match="cannot centre-crop 40x40 from a 30x60 image"):
        center_crop(coordinate_image(30, 60), 40)


def test_eval_transform_converts_modes_to_rgb():
    for mode in ("L", "RGBA"):
        image = random_image(40, 40, seed=3, mode=mode)
        result = eval_transform(40)(image)
        if mode == "RGBA":  # transparency is shown over white, as a viewer would
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
        expected = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(result.permute(1, 2, 0).numpy(), expected)


def _crop_offset_and_flip(tensor: torch.Tensor) -> tuple[int, int, bool]:
    x = (tensor[0] * 255).round().long()
    y = (tensor[1] * 255).round().long()
    flipped = bool(x[0, 0] > x[0, -1])
    return int(x[0].min()), int(y[:, 0].min()), flipped


def test_train_transform_is_a_random_crop_with_flips_from_torch_rng():
    size = 16
    transform = train_transform(size)
    image = coordinate_image(40, size)  # short side already S: crops are exact coordinate windows
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(200)]
    offsets, flips = set(), []
    for output in outputs:
        assert output.shape == (3, size, size) and output.dtype == torch.float32
        assert 0.0 <= float(output.min()) and float(output.max()) <= 1.0
        left, top, flipped = _crop_offset_and_flip(output)
        expected = torch.arange(left, left + size, dtype=torch.float32) / 255
        row = output[0, 0].flip(-1) if flipped else output[0, 0]
        torch.testing.assert_close(row, expected, rtol=0, atol=1e-6)  # a contiguous window, maybe mirrored
        assert top == 0 and 0 <= left <= 40 - size
        offsets.add(left)
        flips.append(flipped)
    assert len(offsets) > 15  # 25 possible offsets, 200 draws
    assert 0.35 < np.mean(flips) < 0.65
    # Seeding torch reproduces the stream exactly; Python's random module plays no part.
    torch.manual_seed(0)
    random.seed(123)
    again = [transform(image) for _ in range(200)]
    assert all(torch.equal(a, b) for a, b in zip(outputs, again))
    generator = torch.Generator().manual_seed(5)
    first = [transform(image, generator=generator) for _ in range(5)]
    generator.manual_seed(5)
    assert all(torch.equal(a, transform(image, generator=generator)) for a in first)


def test_train_transform_resizes_short_side_before_cropping():
    image = random_image(60, 30, seed=1)
    resized = resize_short_side(image, 20)
    assert resized.size == (40, 20)
    torch.manual_seed(1)
    output = train_transform(20)(image)
    candidates = []
    for left in range(0, 21):
        crop = torch.from_numpy(np.asarray(resized.crop((left, 0, left + 20, 20)), dtype=np.float32) / 255)
        crop = crop.permute(2, 0, 1)
        candidates += [crop, crop.flip(-1)]
    assert any(torch.equal(output, candidate) for candidate in candidates)


def test_transforms_pickle_for_dataloader_workers():
    for transform in (train_transform(32), eval_transform(32)):
        clone = pickle.loads(pickle.dumps(transform))
        assert repr(clone) == repr(transform)


def test_center_pad():
    padded = np.asarray(center_pad(Image.fromarray(np.full((28, 28), 200, np.uint8)), 32))
    assert padded.shape == (32, 32)
    assert (padded[2:30, 2:30] == 200).all() and padded.sum() == 200 * 28 * 28


def test_resize_crop_mask_follows_the_eval_transform():
    # 40x80 → short side 20 (20x40) → centre crop at column 10: original columns 20..40 → 0..10.
    mask = torch.zeros(40, 80, dtype=torch.bool)
    mask[:, 20:40] = True
    fitted = resize_crop_mask(mask, 20)
    assert fitted.dtype == torch.bool and fitted.shape == (20, 20)
    assert fitted[:, :10].all() and not fitted[:, 10:].any()
    # The same geometry as the image transform: a white stripe lands where the mask does.
    stripe = Image.fromarray(mask.numpy().astype(np.uint8) * 255).convert("RGB")
    assert ((eval_transform(20)(stripe)[0] > 0.5) == fitted).float().mean() > 0.9
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        resize_crop_mask(torch.zeros(1, 4, 4, dtype=torch.bool), 2)


def test_pad_transform_pads_and_flips_only_when_asked():
    digit = Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6) * 7)  # left-right asymmetric
    plain = PadTransform(8)(digit)
    assert plain.shape == (3, 8, 8) and plain.dtype == torch.float32
    expected = torch.from_numpy(np.asarray(center_pad(digit, 8), dtype=np.float32) / 255)
    assert all(torch.equal(plain[c], expected) for c in range(3))
    generator = torch.Generator().manual_seed(0)
    assert all(torch.equal(PadTransform(8)(digit, generator=generator), plain) for _ in range(20))
    flipping = PadTransform(8, flip=True)
    outputs = [flipping(digit, generator=generator) for _ in range(40)]
    assert all(torch.equal(out, plain) or torch.equal(out, plain.flip(-1)) for out in outputs)
    assert 5 < sum(not torch.equal(out, plain) for out in outputs) < 35
    assert repr(flipping) == "PadTransform(image_size=8, flip=True)"


@pytest.mark.parametrize("size", [0, -4, 2.5, True])
def test_image_sizes_must_be_positive_ints(size):
    for make in (eval_transform, train_transform, PadTransform):
        with pytest.raises(ValueError, match=f"image size must be a positive int, got {size!r}"):
            make(size)
    with pytest.raises(ValueError, match="cannot pad a 10x6 image to 8x8"):
        center_pad(Image.new("L", (10, 6)), 8)
