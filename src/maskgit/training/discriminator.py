"""The StyleGAN2-style discriminator of the official VQGAN recipe (spec §1.6,
``maskgit/nets/discriminator.py``).

images (B, 3, S, S) float in [0, 1] → logits (B, 1). Layout: conv3x3 → lrelu(0.2); one
downsampling residual block per resolution S, S/2, …, 8 (each ending at half the resolution);
conv3x3 → lrelu; flatten the 4x4 map; dense → lrelu → dense(1). Widths come from a
resolution table: ``min(max_channels, channel_base // r)``; the official table is
``channel_base=16384, max_channels=512`` ({4..32: 512, 64: 256, 128: 128, 256: 64, …}).
All kernels are xavier-uniform with zero biases, as in the official code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Discriminator", "BlurDownsample", "DiscriminatorBlock", "discriminator_widths"]


def discriminator_widths(image_size: int, channel_base: int = 16384, max_channels: int = 512) -> dict[int, int]:
    """Channel count at each resolution 4, 8, …, image_size."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"the discriminator needs a power-of-two image size >= 8, got {image_size}")
    widths = {}
    resolution = 4
    while resolution <= image_size:
        widths[resolution] = max(1, min(max_channels, channel_base // resolution))
        resolution *= 2
    return widths


class BlurDownsample(nn.Module):
    """Depthwise [1, 3, 3, 1]ᵀ[1, 3, 3, 1] / 64 blur with stride 2 and TF "SAME" padding (1 on
    every side for even sizes): the official ``BlurPool2D(filter_size=4)``; halves H and W."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 4, 4)
        return F.conv2d(F.pad(x, (1, 1, 1, 1)), weight, stride=2, groups=channels)


class DiscriminatorBlock(nn.Module):
    """conv3x3(in→in) → lrelu → blur↓ → conv3x3(in→out) → lrelu, plus a residual
    blur↓ → conv1x1(no bias); the sum is divided by √2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.residual = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.blur = BlurDownsample()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blur(F.leaky_relu(self.conv1(x), 0.2))
        h = F.leaky_relu(self.conv2(h), 0.2)
        return (self.residual(self.blur(x)) + h) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """logits (B, 1) for images (B, 3, image_size, image_size); see the module docstring."""

    def __init__(self, image_size: int, channel_base: int = 16384, max_channels: int = 512) -> None:
        super().__init__()
        self.image_size = image_size
        widths = discriminator_widths(image_size, channel_base, max_channels)
        self.conv_in = nn.Conv2d(3, widths[image_size], 3, padding=1)
        blocks = []
        resolution = image_size
        while resolution > 4:
            blocks.append(DiscriminatorBlock(widths[resolution], widths[resolution // 2]))
            resolution //= 2
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(widths[4], widths[4], 3, padding=1)
        self.dense = nn.Linear(widths[4] * 4 * 4, widths[4])
        self.logit = nn.Linear(widths[4], 1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    module.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"the discriminator takes (B, 3, {self.image_size}, {self.image_size}) images, "
                f"got shape {tuple(images.shape)}"
            )
        h = F.leaky_relu(self.conv_in(images), 0.2)
        for block in self.blocks:
            h = block(h)
        h = F.leaky_relu(self.conv_out(h), 0.2)
        # Flax flattens NHWC; the order only matters for loading official weights, which are not released.
        h = F.leaky_relu(self.dense(h.flatten(1)), 0.2)
        return self.logit(h)
