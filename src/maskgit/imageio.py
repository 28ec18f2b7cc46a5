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

__all__ = ["open_image", "load_image", "load_mask", "save_image", "make_grid", "to_uint8"]


def open_image(
    path: str | os.PathLike[str], *, max_bytes: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Open and fully decode an image file; FileNotFoundError or a ValueError naming the file.

    ``max_bytes`` and ``max_pixels`` bound untrusted uploads: the file size is checked before
    reading, and width x height from the header before any pixel is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise ValueError(f"{path}: {path.stat().st_size} bytes is over the limit of {max_bytes} bytes")
    errors = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
    try:
        image = Image.open(path)
    except errors as error:
        raise ValueError(f"{path}: cannot read image ({type(error).__name__}: {error})") from None
    if max_pixels is not None and image.width * image.height > max_pixels:
        image.close()
        raise ValueError(f"{path}: {image.width}x{image.height} is over the limit of {max_pixels} pixels")
    try:
        image.load()  # decode now, so that a truncated file fails here
    except errors as error:
        raise ValueError(f"{path}: cannot read image ({type(error).__name__}: {error})") from None
    return image


def load_image(path: str | os.PathLike[str], **limits: int | None) -> torch.Tensor:
    """An image file → float32 (3, H, W) in [0, 1] (converted to RGB). ``limits``: see ``open_image``."""
    array = np.asarray(open_image(path, **limits).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_mask(path: str | os.PathLike[str], **limits: int | None) -> torch.Tensor:
    """A mask image → bool (H, W): white (luminance > 127) means regenerate; on an image with
    transparency, the opaque (painted) pixels do. ``limits``: see ``open_image``."""
    image = open_image(path, **limits)
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
