"""Editing masks and composites: which tokens to regenerate, and how to blend the result back.

- Box editing follows the official demo (spec §4, fixture README §6.1): the pixel box becomes a
  latent box grown by one token on each side, and the output is blended into the original through
  the latent mask, resized with PIL's default (bicubic) filter and Gaussian-blurred.
- Free-form inpainting regenerates every token that the pixel mask touches and keeps the pixels
  outside the mask.
- Outpainting places the image's tokens on a larger token canvas and generates the border.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

__all__ = [
    "Box",
    "Extend",
    "latent_box_mask",
    "composite_mask",
    "token_mask_from_pixels",
    "composite",
    "outpaint_canvas",
    "outpaint_mask",
]


@dataclass(frozen=True)
class Box:
    """A pixel box, as the official demo writes it: ``top, left, height, width``."""

    top: int
    left: int
    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> Box:
        """``"128,64,256,288"`` or the demo's ``"128_64_256_288"``."""
        parts = text.replace("_", ",").split(",")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"box must be TOP,LEFT,HEIGHT,WIDTH in pixels, got {text!r}") from None
        if len(values) != 4:
            raise ValueError(f"box must have 4 numbers TOP,LEFT,HEIGHT,WIDTH, got {text!r}")
        return cls(*values)

    def check_inside(self, height: int, width: int) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"box {self} must have a positive height and width")
        if self.top < 0 or self.left < 0 or self.top + self.height > height or self.left + self.width > width:
            raise ValueError(f"box {self} is outside the {height}x{width} image")


@dataclass(frozen=True)
class Extend:
    """Pixels to add on each side for outpainting: ``top, right, bottom, left``."""

    top: int
    right: int
    bottom: int
    left: int

    @classmethod
    def parse(cls, text: str) -> Extend:
        try:
            values = [int(p) for p in text.split(",")]
        except ValueError:
            raise ValueError(f"extend must be TOP,RIGHT,BOTTOM,LEFT in pixels, got {text!r}") from None
        if len(values) != 4:
            raise ValueError(f"extend must have 4 numbers TOP,RIGHT,BOTTOM,LEFT, got {text!r}")
        return cls(*values)

    def in_tokens(self, factor: int) -> Extend:
        """Round every side up to whole tokens of ``factor`` pixels."""
        if min(self.top, self.right, self.bottom, self.left) < 0:
            raise ValueError(f"extend {self} must not be negative")
        if self.top + self.right + self.bottom + self.left == 0:
            raise ValueError("extend must add at least one pixel on some side")
        return Extend(*(math.ceil(v / factor) for v in (self.top, self.right, self.bottom, self.left)))


def latent_box_mask(box: Box, image_height: int, image_width: int, factor: int = 16) -> torch.Tensor:
    """The official latent box: bool (h, w), True where tokens are regenerated.

    Rows ``[max(0, top//f - 1), min(h, height//f + top//f + 1))`` and likewise columns: the box is
    grown by one token on each side. The official code adds ``height//f + top//f`` (not
    ``(top+height)//f``); we keep that so that the same box selects the same tokens.
    """
    box.check_inside(image_height, image_width)
    h, w = image_height // factor, image_width // factor
    top = max(0, box.top // factor - 1)
    bottom = min(h, box.height // factor + box.top // factor + 1)
    left = max(0, box.left // factor - 1)
    right = min(w, box.left // factor + box.width // factor + 1)
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


def composite_mask(token_mask: torch.Tensor, image_height: int, image_width: int) -> torch.Tensor:
    """The official blending weight: float32 (H, W) in [0, 1], 1 where generated pixels are used.

    The 0/255 token mask is resized with PIL's default filter (bicubic) and blurred with
    ``GaussianBlur(radius = side // 16 - 1)``, exactly as the demo's ``composite_outputs``.
    """
    mask = Image.fromarray(token_mask.cpu().numpy().astype(np.uint8) * 255)
    mask = mask.resize((image_width, image_height))
    radius = max(0, min(image_height, image_width) // 16 - 1)
    if radius:
        mask = mask.filter(ImageFilter.GaussianBlur(radius=radius))
    return torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)


def token_mask_from_pixels(pixel_mask: torch.Tensor, factor: int) -> torch.Tensor:
    """bool (H, W) pixel mask → bool (H/f, W/f): a token is regenerated if the mask touches any
    of its pixels."""
    if pixel_mask.dim() != 2:
        raise ValueError(f"mask must be (H, W), got shape {tuple(pixel_mask.shape)}")
    height, width = pixel_mask.shape
    if height % factor or width % factor:
        raise ValueError(f"mask sides must be multiples of {factor}, got {height}x{width}")
    pooled = F.max_pool2d(pixel_mask[None, None].float(), factor)
    return pooled[0, 0] > 0


def composite(generated: torch.Tensor, original: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``generated * alpha + original * (1 - alpha)``; images (B, 3, H, W), alpha (H, W)."""
    alpha = alpha.to(generated.device, generated.dtype)[None, None]
    return generated * alpha + original.to(generated) * (1 - alpha)


def outpaint_canvas(ids: torch.Tensor, extend_tokens: Extend, mask_id: int = -1) -> torch.Tensor:
    """Place ids (B, h, w) on a larger canvas (B, h + top + bottom, w + left + right) filled with
    ``mask_id``."""
    e = extend_tokens
    return F.pad(ids, (e.left, e.right, e.top, e.bottom), value=mask_id)


def outpaint_mask(height: int, width: int, extend_tokens: Extend) -> torch.Tensor:
    """The tokens outpainting generates: bool (height + top + bottom, width + left + right), True on
    the new border around an image of ``height x width`` tokens."""
    known = torch.zeros(1, height, width, dtype=torch.long)
    return outpaint_canvas(known, extend_tokens, mask_id=1)[0].bool()
