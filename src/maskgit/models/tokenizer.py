"""The VQGAN tokenizer: encoder, vector quantizer and decoder (spec §1, fixture README §5.1).

Images are float NCHW RGB in [0, 1] (no [-1, 1] shift, as in the official demo). Decoded images are
returned raw and unclipped, as the official decoder returns them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.configs import TokenizerConfig
from maskgit.models.pretrained import PretrainedMixin, embedding

__all__ = ["VQGAN", "ResBlock", "UpsampleConv", "Encoder", "Decoder", "VectorQuantizer", "QuantizerOutput"]

# Flax GroupNorm defaults, which the official weights were trained with (torch's default is 1e-5).
GROUP_NORM_EPS = 1e-6


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=GROUP_NORM_EPS)


class ResBlock(nn.Module):
    """GN → swish → conv3x3 → GN → swish → conv3x3, plus a residual.

    Official quirk (must be kept to use the released weights): when the channel count changes, the
    1x1 "shortcut" conv is applied to the block's *output* ``h`` and the block returns
    ``h + shortcut(h)``; the input ``x`` is dropped. Its kernel is therefore ``out -> out``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _group_norm(out_channels, norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(out_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.shortcut is None:
            return h + x
        return h + self.shortcut(h)


class UpsampleConv(nn.Conv2d):
    """Nearest x2 upsampling, then a 3x3 convolution (padding 1): (B, C, h, w) → (B, C, 2h, 2w). A
    ``Conv2d`` itself, so its parameters keep the plain convolution's names."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    """Image (B, 3, H, W) → pre-quantization latents (B, embedding_dim, H/f, W/f)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        blocks = config.encoder_blocks  # every level, then the "mid" blocks at the last width
        # The official encoder's first conv has no bias.
        self.conv_in = nn.Conv2d(3, config.filters, 3, padding=1, bias=False)
        self.res_blocks = nn.ModuleList(ResBlock(b.in_channels, b.out_channels, config.norm_groups) for b in blocks)
        self._downsample_after = {index for index, block in enumerate(blocks) if block.resample_after}
        channels = blocks[-1].out_channels
        self.norm_out = _group_norm(channels, config.norm_groups)
        self.conv_out = nn.Conv2d(channels, config.embedding_dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(images)
        for index, block in enumerate(self.res_blocks):
            h = block(h)
            if index in self._downsample_after:
                h = F.avg_pool2d(h, 2)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Quantized latents (B, embedding_dim, h, w) → image (B, 3, h*f, w*f), unclipped."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        # "mid" blocks at the last width, then the levels deepest first, each but the
        # shallowest followed by a nearest x2 upsample and a 3x3 conv.
        blocks = config.decoder_blocks
        self.conv_in = nn.Conv2d(config.embedding_dim, blocks[0].in_channels, 3, padding=1)
        self.res_blocks = nn.ModuleList(ResBlock(b.in_channels, b.out_channels, config.norm_groups) for b in blocks)
        self.upsample_convs = nn.ModuleList(UpsampleConv(b.out_channels) for b in blocks if b.resample_after)
        self._upsample_after = {index for index, block in enumerate(blocks) if block.resample_after}
        channels = blocks[-1].out_channels
        self.norm_out = _group_norm(channels, config.norm_groups)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(latents)
        upsample_convs = iter(self.upsample_convs)
        for index, block in enumerate(self.res_blocks):
            h = block(h)
            if index in self._upsample_after:
                h = next(upsample_convs)(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class QuantizerOutput(NamedTuple):
    """``quantized`` (B, D, h, w) carries straight-through gradients to the latents; ``ids``
    (B, h, w) int64; ``distances`` (B*h*w, K) squared Euclidean distances to every code."""

    quantized: torch.Tensor
    ids: torch.Tensor
    distances: torch.Tensor


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantizer with a (codebook_size, embedding_dim) codebook, no l2-norm."""

    def __init__(self, codebook_size: int, embedding_dim: int) -> None:
        super().__init__()
        self.codebook = embedding(codebook_size, embedding_dim)

    def distances(self, vectors: torch.Tensor) -> torch.Tensor:
        """Squared distances (N, K) of vectors (N, D), computed as the official
        ``||z||² − 2 z·cᵀ + ||c||²`` so that argmin ties and rounding match it."""
        codebook = self.codebook.weight.float()
        vectors = vectors.float()
        return (
            vectors.pow(2).sum(1, keepdim=True)
            - 2 * vectors @ codebook.t()
            + codebook.pow(2).sum(1)[None, :]
        )

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) → code vectors (B, D, h, w)."""
        return self.codebook(ids).permute(0, 3, 1, 2)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        batch, dim, height, width = latents.shape
        vectors = latents.permute(0, 2, 3, 1).reshape(-1, dim)
        distances = self.distances(vectors)
        ids = distances.argmin(dim=1).view(batch, height, width)  # first index wins on ties
        quantized = self.embed(ids).to(latents.dtype)
        if latents.requires_grad:
            # Straight-through estimator. Only when training: the extra add/subtract rounds, and
            # inference must return the code vectors bit for bit.
            quantized = latents + (quantized - latents).detach()
        return QuantizerOutput(quantized, ids, distances)


class VQGAN(PretrainedMixin, nn.Module):
    """The MaskGIT VQGAN tokenizer.

    ``from_pretrained`` reads official Flax msgpack files, maskgit-torch ``.ckpt`` files and folders
    written by ``save_pretrained``.
    """

    config_class = TokenizerConfig

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        super().__init__()
        self.config = config or TokenizerConfig()
        self.encoder = Encoder(self.config)
        self.quantizer = VectorQuantizer(self.config.codebook_size, self.config.embedding_dim)
        self.decoder = Decoder(self.config)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisers: lecun-normal conv kernels, zero biases, unit norms, and a
        fan-in uniform codebook."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                # Flax's truncated normal divides by this constant so that the truncated
                # distribution keeps the target standard deviation.
                std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.GroupNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        limit = math.sqrt(3.0 / self.config.codebook_size)
        nn.init.uniform_(self.quantizer.codebook.weight, -limit, limit)

    # -- input checks ---------------------------------------------------------------------------

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        if images.shape[1] != 3:
            raise ValueError(
                f"images must have 3 channels (RGB, NCHW), got {images.shape[1]} in shape "
                f"{tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
        factor = self.config.downsample_factor
        height, width = images.shape[-2:]
        if height % factor or width % factor or height == 0 or width == 0:
            raise ValueError(
                f"image sides must be positive multiples of {factor}, got {height}x{width}"
            )

    def _check_ids(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
            raise TypeError("ids must be an integer torch.Tensor")
        if ids.dim() != 3:
            raise ValueError(f"ids must be (B, h, w), got shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.codebook_size):
            raise ValueError(
                f"token ids must be in [0, {self.config.codebook_size}), got values in "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )

    # -- public API -----------------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float in [0, 1] → latents (B, D, H/f, W/f), before quantization."""
        self._check_images(images)
        return self.encoder(images)

    def quantize(self, latents: torch.Tensor) -> QuantizerOutput:
        """latents (B, D, h, w) → nearest codes, ids and distances."""
        return self.quantizer(latents)

    def encode_to_ids(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float in [0, 1] → token ids (B, H/f, W/f) int64 in [0, K)."""
        return self.quantize(self.encode(images)).ids

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """code vectors (B, D, h, w) → images (B, 3, h*f, w*f), unclipped."""
        return self.decoder(quantized)

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """token ids (B, h, w) → images (B, 3, h*f, w*f), roughly [0, 1] but not clipped."""
        self._check_ids(ids)
        return self.decoder(self.quantizer.embed(ids.long()))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """images → ids → images; the tokenizer's round trip, unclipped."""
        return self.decode_ids(self.encode_to_ids(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training forward: (reconstruction with straight-through gradients, quantizer output)."""
        quantized = self.quantize(self.encode(images))
        return self.decode(quantized.quantized), quantized
