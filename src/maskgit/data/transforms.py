"""Image preprocessing: PIL image → float32 tensor (3, S, S) in [0, 1].

Evaluation follows the official/maskgit-torch recipe (``reconstruct_images.py``): a bicubic resize
that makes the short side S, then an S x S centre crop at offsets ``((w - S) // 2, (h - S) // 2)``,
then ``ToTensor`` (divide by 255, no [-1, 1] shift). The long side becomes ``int(scale * side)``
(truncation, as there), with ``scale = S / short_side``; the short side is set to exactly S rather than
``int(scale * short_side)``, which float rounding can make S - 1.

Training follows the taming-transformers ImageNet VQGAN recipe (``SmallestMaxSize`` then
``RandomCrop``): the same short-side resize, then an S x S crop at a uniformly random offset, plus a
horizontal flip with probability 0.5. A random *resized* crop is deliberately not used: it would
train the tokenizer on zoomed-in statistics that evaluation never shows it. Every random draw comes from
torch's RNG (the global one, or ``generator=``), so seeding torch per worker makes runs reproducible.

Transforms are small classes rather than closures so that DataLoader workers can pickle them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from maskgit.imageio import to_rgb

__all__ = [
    "to_tensor",
    "resize_short_side",
    "center_crop",
    "random_crop",
    "center_pad",
    "resize_crop_mask",
    "random_horizontal_flip",
    "EvalTransform",
    "TrainTransform",
    "PadTransform",
    "eval_transform",
    "train_transform",
]


def _check_size(size: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ValueError(f"image size must be a positive int, got {size!r}")
    return size


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image of any mode → float32 (3, H, W) RGB in [0, 1] (grayscale is replicated; 16-bit,
    palette and transparent images as ``maskgit.imageio.to_rgb`` reads them)."""
    image = to_rgb(image)
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_short_side(
    image: Image.Image, size: int, resample: Image.Resampling = Image.Resampling.BICUBIC
) -> Image.Image:
    """Resize (bicubic by default) so that the short side is ``size``; the long side becomes
    ``int(size / short * long)`` (truncated, as maskgit-torch does)."""
    _check_size(size)
    width, height = image.size
    scale = size / min(width, height)
    if width <= height:
        new_size = (size, max(size, int(scale * height)))
    else:
        new_size = (max(size, int(scale * width)), size)
    if new_size == image.size:
        return image
    return image.resize(new_size, resample)


def _crop(image: Image.Image, left: int, top: int, size: int) -> Image.Image:
    return image.crop((left, top, left + size, top + size))


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The ``size`` x ``size`` crop at offsets ``((w - size) // 2, (h - size) // 2)``."""
    _check_size(size)
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from a {width}x{height} image")
    return _crop(image, (width - size) // 2, (height - size) // 2, size)


def random_crop(image: Image.Image, size: int, generator: torch.Generator | None = None) -> Image.Image:
    """A ``size`` x ``size`` crop at a uniformly random offset (torch RNG)."""
    _check_size(size)
    width, height = image.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from a {width}x{height} image")
    left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
    top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
    return _crop(image, left, top, size)


def center_pad(image: Image.Image, size: int) -> Image.Image:
    """Pad with black to ``size`` x ``size``, the image centred (left/top margin ``(size - w) // 2``)."""
    _check_size(size)
    width, height = image.size
    if width > size or height > size:
        raise ValueError(f"cannot pad a {width}x{height} image to {size}x{size}")
    left, top = (size - width) // 2, (size - height) // 2
    return ImageOps.expand(image, border=(left, top, size - width - left, size - height - top), fill=0)


def resize_crop_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """bool (H, W) → bool (S, S): the evaluation transform's short-side resize and centre crop,
    with nearest-neighbour resampling so the mask stays binary and follows its image exactly."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(mask.shape)}")
    picture = Image.fromarray(mask.cpu().numpy().astype(np.uint8) * 255)
    picture = center_crop(resize_short_side(picture, size, Image.Resampling.NEAREST), size)
    return torch.from_numpy(np.asarray(picture) > 127)


def random_horizontal_flip(
    image: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror a (..., H, W) tensor left-right with probability ``p`` (torch RNG)."""
    if float(torch.rand((), generator=generator)) < p:
        return image.flip(-1)
    return image


class EvalTransform:
    """Short-side bicubic resize to S, centre crop, to tensor: deterministic."""

    def __init__(self, image_size: int) -> None:
        self.image_size = _check_size(image_size)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """PIL image → float32 (3, S, S) in [0, 1]. ``generator`` is accepted and unused."""
        return to_tensor(center_crop(resize_short_side(to_rgb(image), self.image_size), self.image_size))

    def __repr__(self) -> str:
        return f"EvalTransform(image_size={self.image_size})"


class TrainTransform:
    """Short-side bicubic resize to S, random S x S crop, horizontal flip with p = 0.5."""

    def __init__(self, image_size: int, flip: bool = True) -> None:
        self.image_size = _check_size(image_size)
        self.flip = flip

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """PIL image → float32 (3, S, S) in [0, 1]; random draws from ``generator`` or torch's global RNG."""
        image = random_crop(resize_short_side(to_rgb(image), self.image_size), self.image_size, generator)
        tensor = to_tensor(image)
        return random_horizontal_flip(tensor, generator=generator) if self.flip else tensor

    def __repr__(self) -> str:
        return f"TrainTransform(image_size={self.image_size}, flip={self.flip})"


class PadTransform:
    """Zero-pad a small image (28x28 digits) to S x S, lossless; optionally flip with p = 0.5."""

    def __init__(self, image_size: int, flip: bool = False) -> None:
        self.image_size = _check_size(image_size)
        self.flip = flip

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """PIL image (at most S x S) → float32 (3, S, S) in [0, 1]."""
        tensor = to_tensor(center_pad(image, self.image_size))
        return random_horizontal_flip(tensor, generator=generator) if self.flip else tensor

    def __repr__(self) -> str:
        return f"PadTransform(image_size={self.image_size}, flip={self.flip})"


def eval_transform(image_size: int) -> EvalTransform:
    """The deterministic evaluation transform: PIL image → float32 (3, S, S) in [0, 1]."""
    return EvalTransform(image_size)


def train_transform(image_size: int) -> TrainTransform:
    """The training transform (random crop after short-side resize, flip p = 0.5):
    PIL image → float32 (3, S, S) in [0, 1]."""
    return TrainTransform(image_size)
