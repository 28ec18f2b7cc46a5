"""The two ways of bringing images to the Inception's 299x299, which change FID by more than most
model improvements. Both take the images as stored, uint8 (B, 3, H, W), and return float32
(B, 3, 299, 299) in [0, 255] for ``FIDInceptionV3``.

``clean`` (clean-fid's default, Parmar et al. 2022): each channel is resized as a float image
(PIL mode ``F``) with PIL's bicubic filter, which antialiases when shrinking, then clipped to
[0, 255] and *not* re-quantized. This is what the PyTorch port's published FIDs used (clean-fid,
default mode).

``legacy`` (the TensorFlow evaluators: the original TTUR FID code and the ADM evaluator, which feed
the uint8 images into the 2015 graph, whose first op is ``ResizeBilinear``): TensorFlow 1.x bilinear
resizing with ``align_corners=False`` and no half-pixel centres. Output pixel ``i`` samples the
input at ``i * in_size / out_size`` (the top-left-aligned grid), interpolating between ``floor`` and
``floor + 1`` (clamped at the border), in float32, rows first as TF computes it; no antialiasing.
This is *not* ``torch.nn.functional.interpolate(..., align_corners=False)``, which samples at
``(i + 0.5) * scale - 0.5``: the two grids differ by up to half an input pixel. pytorch-fid's own
resize (the torch ``interpolate``) is therefore a third protocol, which we do not offer.

Upsampling a 256 image to 299, the two protocols differ mainly in the sampling grid; downsampling a
512 image, in antialiasing (``legacy`` aliases, as the TF evaluators do).

Why both: a number is only comparable with numbers measured the same way. ``legacy`` reproduces the
TF evaluators' resize to float32 rounding (so ADM-protocol FIDs, the ones most MaskGIT-family papers
report, can be checked); ``clean`` is the better-behaved resize (antialiased, no quantisation) and the
one behind clean-fid numbers such as the PyTorch port's.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["RESIZE_PROTOCOLS", "resize_for_inception", "resize_clean", "resize_legacy"]

RESIZE_PROTOCOLS = ("clean", "legacy")
SIZE = 299


def _check(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")


def resize_clean(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """clean-fid's resize: PIL bicubic per channel on float values, clipped, not quantized."""
    _check(images)
    out = np.empty((images.shape[0], 3, size, size), dtype=np.float32)
    for index, image in enumerate(images.cpu().numpy()):
        for channel in range(3):
            plane = Image.fromarray(image[channel].astype(np.float32))  # mode F
            out[index, channel] = np.asarray(plane.resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(out).clamp_(0, 255)


def resize_legacy(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """TensorFlow 1.x ``ResizeBilinear`` (align_corners=False, no half-pixel centres), in float32."""
    _check(images)
    x = images.float()
    height, width = x.shape[-2:]

    def grid(in_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # TF: scale = in / out (float), source = out_index * scale, lerp between floor and floor + 1.
        source = torch.arange(size, dtype=torch.float32) * torch.tensor(in_size / size, dtype=torch.float32)
        low = source.floor().long().clamp_(max=in_size - 1)
        high = (low + 1).clamp_(max=in_size - 1)
        return low, high, source - low.float()

    y_low, y_high, y_frac = grid(height)
    x_low, x_high, x_frac = grid(width)
    top, bottom = x[..., y_low, :], x[..., y_high, :]
    top = top[..., x_low] + (top[..., x_high] - top[..., x_low]) * x_frac
    bottom = bottom[..., x_low] + (bottom[..., x_high] - bottom[..., x_low]) * x_frac
    return top + (bottom - top) * y_frac[:, None]


def resize_for_inception(images: torch.Tensor, protocol: str) -> torch.Tensor:
    """uint8 (B, 3, H, W) → float32 (B, 3, 299, 299) in [0, 255] with the named protocol."""
    if protocol == "clean":
        return resize_clean(images)
    if protocol == "legacy":
        return resize_legacy(images)
    raise ValueError(f"unknown resize protocol {protocol!r}; choose one of {', '.join(RESIZE_PROTOCOLS)}")
