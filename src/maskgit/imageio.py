"""Image files ↔ tensors: reading inputs and masks, writing PNGs (rounded, atomically) and grids.

Tensors are float32 (3, H, W) in [0, 1]; masks are bool (H, W).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from maskgit.io import atomic_path

__all__ = ["open_image", "load_image", "load_mask", "mask_from_image", "save_image", "make_grid", "to_uint8", "to_pil_images"]


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file; FileNotFoundError or a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        image = Image.open(path)
        image.load()  # decode now, so that a truncated file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot read image ({type(error).__name__}: {error})") from None
    return image


def load_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """An image file → float32 (3, H, W) in [0, 1] (converted to RGB)."""
    array = np.asarray(open_image(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_mask(path: str | os.PathLike[str]) -> torch.Tensor:
    """A mask image → bool (H, W): white (luminance > 127) means regenerate."""
    return mask_from_image(open_image(path))


def mask_from_image(image: Image.Image) -> torch.Tensor:
    """A PIL mask → bool (H, W): white (luminance > 127), or the opaque pixels of a mask drawn on
    a transparent layer, means regenerate."""
    if image.mode in ("RGBA", "LA") and image.getextrema()[-1][0] < 255:
        # A mask drawn on a transparent layer: the painted (opaque) pixels are the mask.
        return torch.from_numpy(np.asarray(image.getchannel("A")) > 127)
    return torch.from_numpy(np.asarray(image.convert("L")) > 127)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """float (3, H, W) in [0, 1] → uint8 (H, W, 3), rounded (not truncated) and clipped."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
    array = (image.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return array.permute(1, 2, 0).numpy()


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) or (3, H, W) float in [0, 1] → RGB PIL images, rounded as ``to_uint8``."""
    batch = images[None] if images.dim() == 3 else images
    return [Image.fromarray(to_uint8(image)) for image in batch]


def save_image(image: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Write (3, H, W) in [0, 1] as a PNG, atomically."""
    with atomic_path(path) as temp:
        Image.fromarray(to_uint8(image)).save(temp, format="PNG")


def make_grid(images: torch.Tensor, columns: int | None = None, padding: int = 2) -> torch.Tensor:
    """(B, 3, H, W) → one (3, H', W') image tiled row by row with white padding."""
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (B, 3, H, W) batch, got {tuple(images.shape)}")
    count, channels, height, width = images.shape
    columns = columns or min(count, max(1, math.ceil(math.sqrt(count))))
    rows = math.ceil(count / columns)
    grid = torch.ones(channels, rows * (height + padding) + padding, columns * (width + padding) + padding)
    for index, image in enumerate(images.detach().float().cpu()):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    return grid
