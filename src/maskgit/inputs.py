"""Editing inputs: an image and its mask, given as PIL images or tensors, brought to the size that
edit, inpaint and outpaint work at. The Python API and the CLI share one rule:

- **By default** the image is resized so that its short side is the model's image size
  (bicubic) and centre-cropped to a square: the official demo's preprocessing, and the recipe of
  ``maskgit.data.eval_transform``. A mask follows the image through the same resize and crop
  (nearest neighbour, so it stays binary). Boxes and extents are in pixels of this model-size
  image, and the results have its size.
- **With** ``keep_size=True`` (the CLI's ``--keep-size``) the image is used at its own size, whose
  sides must then be multiples of the tokenizer's stride (``pipe.tokenizer.config.downsample_factor``:
  16 for the ImageNet models, 2 for ``fashion-mnist``); boxes are in its own pixels.

An image already at the model's size is passed through untouched either way (no resampling, so
float inputs keep every bit).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from maskgit.data.transforms import center_crop, eval_transform, resize_crop_mask, resize_short_side, to_tensor
from maskgit.imageio import mask_from_image
from maskgit.validation import check_images

__all__ = ["ImageInput", "MaskInput", "image_tensor", "mask_tensor", "prepare_image", "prepare_mask"]

#: A PIL image (any mode, converted to RGB) or a float tensor (3, H, W) / (1, 3, H, W) in [0, 1].
ImageInput = Image.Image | torch.Tensor
#: A PIL image (white, or opaque on a transparent layer = True) or an (H, W) tensor: bool, or
#: numbers where > 0.5 is True.
MaskInput = Image.Image | torch.Tensor


def image_tensor(image: ImageInput) -> torch.Tensor:
    """A PIL image or an image tensor → (3, H, W) float32, at its own size.

    PIL images are converted to RGB in [0, 1] (``maskgit.data.transforms.to_tensor``); a tensor
    keeps its device and values, which are checked first (``maskgit.validation.check_images``:
    float, finite, in [0, 1]), before any resampling could hide bad ones.
    """
    if isinstance(image, Image.Image):
        return to_tensor(image)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a PIL image or a torch.Tensor, got {type(image).__name__}")
    check_images(image)
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"edit one (3, H, W) image at a time, got shape {tuple(image.shape)}")
    return image.float()


def mask_tensor(mask: MaskInput) -> torch.Tensor:
    """A PIL mask or a mask tensor → bool (H, W), True where pixels are regenerated."""
    if isinstance(mask, Image.Image):
        return mask_from_image(mask)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        raise ValueError(f"mask must be a PIL image or an (H, W) tensor, got {getattr(mask, 'shape', type(mask).__name__)}")
    return mask > 0.5 if mask.is_floating_point() else mask.bool()


def _resize_tensor(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) float → (3, size, size): the bicubic short-side resize and centre crop of
    ``eval_transform``, done per channel in float (PIL mode ``F``) so nothing is rounded to 8 bits."""
    channels = [Image.fromarray(channel.numpy()) for channel in image.detach().cpu().float()]
    resized = [np.asarray(center_crop(resize_short_side(channel, size), size)) for channel in channels]
    return torch.from_numpy(np.stack(resized)).clamp_(0, 1)  # bicubic overshoots a little at edges


def prepare_image(image: ImageInput, size: int, *, factor: int, keep_size: bool = False) -> torch.Tensor:
    """The image that the editing modes work on (see the module docstring for the rule).

    Args:
        image: a PIL image, or a float tensor (3, H, W) / (1, 3, H, W) in [0, 1].
        size: the model's image size S (``pipe.image_size``).
        factor: the tokenizer's stride; with ``keep_size`` both sides must be multiples of it.
        keep_size: use the image at its own size instead of resizing it to S x S.

    Returns:
        float32 (3, S, S), or (3, H, W) with ``keep_size``; values in [0, 1] for valid inputs.
    """
    tensor = image_tensor(image)
    height, width = tensor.shape[-2:]
    if keep_size:
        if height % factor or width % factor:
            raise ValueError(
                f"image is {height}x{width}: kept at its own size, its sides must be multiples of the "
                f"token size {factor}"
            )
        return tensor
    if (height, width) == (size, size):
        return tensor
    if isinstance(image, Image.Image):
        return eval_transform(size)(image)  # resampled in 8 bits, as the evaluation recipe does
    return _resize_tensor(tensor, size)


def _image_shape(image: ImageInput) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    return tuple(image_tensor(image).shape[-2:])


def prepare_mask(mask: MaskInput, image: ImageInput, size: int, *, keep_size: bool = False) -> torch.Tensor:
    """The mask of ``image``, taken through the resize and crop that ``prepare_image`` gives it.

    Args:
        mask: a PIL mask or an (H, W) tensor (see ``mask_tensor``), the size of ``image``.
        image: the input image, before ``prepare_image``.
        size, keep_size: as for ``prepare_image``.

    Returns:
        bool (S, S), or (H, W) with ``keep_size``.
    """
    pixels = mask_tensor(mask)
    image_shape = _image_shape(image)
    if tuple(pixels.shape) != tuple(image_shape):
        raise ValueError(f"mask is {pixels.shape[0]}x{pixels.shape[1]} but the image is {image_shape[0]}x{image_shape[1]}")
    if keep_size or tuple(image_shape) == (size, size):
        return pixels
    return resize_crop_mask(pixels, size)
