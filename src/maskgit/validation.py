"""Checks on what users hand the library: image tensors, and the size limits that keep one
mistyped number from exhausting memory.

Every check raises ValueError with a message that names the argument and says what was expected,
before anything is allocated or written.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "MAX_PIXELS",
    "MAX_INPUT_PIXELS",
    "MAX_IMAGES",
    "check_images",
    "check_pixels",
    "check_count",
    "MAX_TOKEN_PASSES",
    "check_token_passes",
]

# Largest image the models work on (an --image-size squared, an outpainting canvas): the VQGAN's
# first activations take about 2.5 KB per pixel, so 2048 x 2048 needs roughly 10 GB.
MAX_PIXELS = 2048 * 2048
# Largest image file decoded (pixels), like Pillow's decompression-bomb guard but with our own error.
MAX_INPUT_PIXELS = 8192 * 8192
# Most images one run makes (classes x --num): the job list and the manifest grow with it.
MAX_IMAGES = 100_000
# Most tokens the transformer processes for one image (windows x passes x tokens per pass): decoding
# time grows with it, for a small and a large model alike. 2**21 leaves room for the largest canvas
# that MAX_PIXELS allows on the ImageNet models (at most 225 windows of 257 tokens at 256 px, or 49
# of 1025 at 512 px, 12 steps each, even guided), but not for the thousands of windows that a
# small model's 8x8-token window needs to fill a canvas of millions of pixels.
MAX_TOKEN_PASSES = 2**21


def check_pixels(height: int, width: int, limit: int = MAX_PIXELS, *, what: str = "image", flag: str = "--max-pixels") -> None:
    """ValueError when ``height * width`` is not positive or exceeds ``limit`` (which ``flag`` raises)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} must have a positive size, got {height}x{width}")
    if height * width > limit:
        raise ValueError(
            f"{what} of {height}x{width} = {height * width:,} pixels is over the limit of {limit:,}; "
            f"raise it with {flag} if you have the memory"
        )


def check_count(count: int, limit: int = MAX_IMAGES, *, what: str = "images", flag: str = "--max-images") -> None:
    """ValueError when ``count`` exceeds ``limit`` (which ``flag`` raises)."""
    if count > limit:
        raise ValueError(f"{count:,} {what} is over the limit of {limit:,} per run; raise it with {flag}")


def check_token_passes(
    windows: int, passes: int, sequence: int, limit: int = MAX_TOKEN_PASSES, *, flag: str = "--max-token-passes"
) -> None:
    """ValueError when one image's ``windows`` x ``passes`` transformer passes of ``sequence``
    tokens exceed ``limit`` (which ``flag`` raises)."""
    total = windows * passes * sequence
    if total > limit:
        raise ValueError(
            f"one image takes {windows:,} window(s) x {passes:,} transformer passes x {sequence:,} tokens = "
            f"{total:,} token passes, over the limit of {limit:,}; raise it with {flag} if you have the time"
        )


def check_images(images: Any, *, name: str = "image") -> torch.Tensor:
    """Check an image tensor: float, finite, values in [0, 1], shape (3, H, W) or (B, 3, H, W).

    Returns it unchanged. Raises TypeError for a non-tensor and ValueError naming ``name`` for an
    integer dtype (uint8 images must be divided by 255 first), a wrong shape, NaN/inf or values
    outside [0, 1].
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        hint = " (divide uint8 images by 255)" if images.dtype == torch.uint8 else ""
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype {images.dtype}{hint}")
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"{name} must be (3, H, W) or (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    if images.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        hint = " (divide 0-255 images by 255)" if high > 1.0 else ""
        raise ValueError(f"{name} values must be in [0, 1], got [{low:g}, {high:g}]{hint}")
    return images
