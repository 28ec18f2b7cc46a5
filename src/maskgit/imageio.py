"""Image files ↔ tensors: reading inputs and masks, writing PNGs (rounded, atomically) and grids.

Tensors are float32 (3, H, W) in [0, 1]; masks are bool (H, W). Reading is faithful to the file:
the EXIF orientation is applied, 16-bit images are scaled (not clipped) to 8 bits, palette and
CMYK images are converted to RGB, and transparent pixels are shown over white, as a viewer would.
Files are decoded only when their pixel count is within a limit (``MAX_INPUT_PIXELS`` by default).
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from maskgit.io import atomic_path
from maskgit.validation import MAX_INPUT_PIXELS

__all__ = [
    "open_image", "to_rgb", "load_image", "load_mask", "mask_from_image", "save_image", "make_grid", "make_class_grid",
    "to_uint8", "to_pil_images",
]

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def open_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Open and fully decode an image file, turned upright by its EXIF orientation.

    Raises FileNotFoundError, or ValueError naming the file when it is not a readable image or has
    more than ``max_pixels`` pixels (checked from the header, before decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size ourselves
            image = Image.open(path)
        width, height = image.size
        if width * height > max_pixels:
            image.close()
            raise _TooLarge(
                f"{path}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
                "for an input image; raise it with --max-input-pixels"
            )
        image.load()  # decode now, so that a truncated file fails here
        return ImageOps.exif_transpose(image)
    except _TooLarge as error:
        raise ValueError(str(error)) from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: too many pixels to decode safely ({error})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, EOFError, struct.error) as error:
        # Pillow's decoders raise any of these for damaged files.
        raise ValueError(f"{path}: cannot read image ({type(error).__name__}: {error})") from None


class _TooLarge(Exception):
    pass


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image → 8-bit RGB, without the clipping ``Image.convert("RGB")`` does to 16-bit data.

    16-bit and 32-bit integer grayscale (``I;16*``, ``I``) is taken as 0..65535 and scaled to 0..255;
    palette, CMYK, 1-bit and the other modes go through Pillow's conversion; transparency (alpha or a
    palette's transparent colour) is composited over white.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        levels = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(levels / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_INPUT_PIXELS) -> torch.Tensor:
    """An image file → float32 (3, H, W) in [0, 1] (see ``to_rgb`` for the modes)."""
    array = np.asarray(to_rgb(open_image(path, max_pixels=max_pixels)), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_mask(path: str | os.PathLike[str], *, max_pixels: int = MAX_INPUT_PIXELS) -> torch.Tensor:
    """A mask image → bool (H, W): white (luminance > 127) means regenerate."""
    return mask_from_image(open_image(path, max_pixels=max_pixels))


def mask_from_image(image: Image.Image) -> torch.Tensor:
    """A PIL mask → bool (H, W): white (luminance > 127), or the opaque pixels of a mask drawn on
    a transparent layer, means regenerate."""
    if image.mode in ("RGBA", "LA") and image.getextrema()[-1][0] < 255:
        # A mask drawn on a transparent layer: the painted (opaque) pixels are the mask.
        return torch.from_numpy(np.asarray(image.getchannel("A")) > 127)
    return torch.from_numpy(np.asarray(to_rgb(image).convert("L")) > 127)


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


# Labels longer than this are cut (with an ellipsis) so one long class name cannot widen the grid.
_MAX_LABEL_CHARS = 28


def make_class_grid(
    rows: Sequence[tuple[str, torch.Tensor]], *, min_tile: int = 64, padding: int = 2
) -> torch.Tensor:
    """One labelled row per class: ``rows`` is ``(label, images (B_i, 3, H, W) in [0, 1])`` pairs.

    Each row starts with its label (Pillow's built-in font, black on white) and then its images.
    Images smaller than ``min_tile`` pixels are enlarged by the smallest integer factor that
    reaches it, with nearest-neighbour scaling, so that a 32 px image stays crisp and visible.
    Returns float32 (3, H', W') in [0, 1]: ``H' = len(rows) · (h + padding) + padding`` for
    tiles of height ``h = factor · H``.
    """
    if not rows or any(images.dim() != 4 or images.shape[0] == 0 or images.shape[1] != 3 for _, images in rows):
        raise ValueError("rows must be a non-empty list of (label, non-empty (B, 3, H, W) batch) pairs")
    sizes = {tuple(images.shape[-2:]) for _, images in rows}
    if len(sizes) != 1:
        raise ValueError(f"every row needs images of one size, got {sorted(sizes)}")
    height, width = sizes.pop()
    factor = max(1, math.ceil(min_tile / max(height, width)))
    tile_height, tile_width = factor * height, factor * width
    labels = [label if len(label) <= _MAX_LABEL_CHARS else label[: _MAX_LABEL_CHARS - 1] + "…" for label, _ in rows]
    font = ImageFont.load_default(size=max(10, min(24, tile_height // 4)))
    label_width = max(int(font.getlength(label)) for label in labels) + 4 * padding
    columns = max(images.shape[0] for _, images in rows)
    canvas = Image.new(
        "RGB",
        (label_width + columns * (tile_width + padding) + padding, len(rows) * (tile_height + padding) + padding),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for row, (label, (_, images)) in enumerate(zip(labels, rows)):
        top = padding + row * (tile_height + padding)
        draw.text((2 * padding, top + tile_height // 2), label, fill="black", font=font, anchor="lm")
        for column, image in enumerate(images):
            tile = Image.fromarray(to_uint8(image)).resize((tile_width, tile_height), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_width + column * (tile_width + padding), top))
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float().div_(255.0)
