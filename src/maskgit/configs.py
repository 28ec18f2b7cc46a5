"""Typed model configs and their named presets.

A config is saved as JSON beside every checkpoint (``config.json``) and is all that is needed to
rebuild the model. Keys, types, files and overrides come from ``maskgit.config_base.Config``. The
presets reproduce the official ImageNet models and the small model of the parity fixtures; see
``../shared/spec/maskgit-spec.md`` §1.6 and §2.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from maskgit.config_base import Config, ConfigError

__all__ = [
    "ResBlockSpec",
    "TokenizerConfig",
    "TransformerConfig",
    "tokenizer_preset",
    "transformer_preset",
    "TOKENIZER_PRESETS",
    "TRANSFORMER_PRESETS",
    "ConfigError",
]


class ResBlockSpec(NamedTuple):
    """One ResBlock of the tokenizer's encoder or decoder: its channels, and whether the resolution
    changes after it (the encoder average-pools; the decoder upsamples x2 and applies a 3x3 conv)."""

    in_channels: int
    out_channels: int
    resample_after: bool


@dataclass(frozen=True)
class TokenizerConfig(Config):
    """The VQGAN tokenizer (spec §1).

    The encoder has one level per entry of ``channel_multipliers``; every level but the last halves
    the resolution, so 5 levels give a 16x downsampling (the official model) and 3 levels give 4x.
    ``image_size`` is the nominal training and preprocessing resolution; the network itself is fully
    convolutional and accepts any size divisible by ``downsample_factor``.
    """

    tag_key: ClassVar[str] = "model_type"
    model_type: ClassVar[str] = "vqgan"

    filters: int = 128
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    embedding_dim: int = 256
    codebook_size: int = 1024
    norm_groups: int = 32
    image_size: int = 256

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(1, "filters", "num_res_blocks", "embedding_dim", "codebook_size", "norm_groups", "image_size")
        if not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise ConfigError(
                f"TokenizerConfig: channel_multipliers must be one or more integers >= 1, got {self.channel_multipliers}"
            )
        for width in self.widths:
            if width % self.norm_groups:
                raise ConfigError(
                    f"TokenizerConfig: every width must be divisible by norm_groups={self.norm_groups}, "
                    f"got widths {self.widths}"
                )
        if self.image_size % self.downsample_factor:
            raise ConfigError(
                f"TokenizerConfig: image_size {self.image_size} is not divisible by the "
                f"downsample factor {self.downsample_factor}"
            )

    @classmethod
    def preset(cls, name: str) -> TokenizerConfig:
        return tokenizer_preset(name)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel count of each level, ``filters * multiplier``."""
        return tuple(self.filters * m for m in self.channel_multipliers)

    @property
    def num_levels(self) -> int:
        return len(self.channel_multipliers)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (self.num_levels - 1)

    @property
    def latent_size(self) -> int:
        """Side of the token grid at ``image_size``."""
        return self.image_size // self.downsample_factor

    # The block order below is the one source of the architecture: the models build their blocks
    # from it, and the official name mapping numbers ``ResBlock_<i>`` and the upsample convs by it.

    @property
    def encoder_blocks(self) -> tuple[ResBlockSpec, ...]:
        """The encoder's ResBlocks in order: ``num_res_blocks`` per level, then as many "mid"
        blocks at the last width; average pooling after each level but the last."""
        return self._blocks(self.filters, self.widths + (self.widths[-1],), resample_groups=range(self.num_levels - 1))

    @property
    def decoder_blocks(self) -> tuple[ResBlockSpec, ...]:
        """The decoder's ResBlocks in order: the "mid" blocks at the last width, then the levels
        deepest first; an upsample (nearest x2, then a 3x3 conv) after each level but the shallowest."""
        groups = (self.widths[-1],) + tuple(reversed(self.widths))
        return self._blocks(self.widths[-1], groups, resample_groups=range(1, self.num_levels))

    def _blocks(self, channels: int, group_widths: tuple[int, ...], resample_groups: range) -> tuple[ResBlockSpec, ...]:
        blocks = []
        for group, width in enumerate(group_widths):
            for repeat in range(self.num_res_blocks):
                last = repeat == self.num_res_blocks - 1
                blocks.append(ResBlockSpec(channels, width, last and group in resample_groups))
                channels = width
        return tuple(blocks)


@dataclass(frozen=True)
class TransformerConfig(Config):
    """The bidirectional transformer (spec §2).

    Vocabulary layout (official): ids ``[0, codebook_size)`` are image tokens, the next
    ``num_classes`` ids are class tokens (``label + codebook_size``), and the last id
    (``vocab_size - 1``) is the mask token. The official code writes the mask as -1, which JAX's
    wrapping ``take`` maps to that last row; both spellings are accepted.

    ``null_class`` (ours; False for the official weights, whose layout it leaves untouched) adds
    one id between the class tokens and the mask, ``null_class_id = codebook_size + num_classes``:
    the "no class" token that class-dropout training puts in the class slot and that
    classifier-free guidance uses for its unconditional pass.
    """

    tag_key: ClassVar[str] = "model_type"
    model_type: ClassVar[str] = "transformer"

    codebook_size: int = 1024
    num_classes: int = 1000
    hidden_size: int = 768
    num_layers: int = 24
    num_heads: int = 16
    intermediate_size: int = 3072
    latent_size: int = 16
    dropout: float = 0.1
    null_class: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(
            1, "codebook_size", "num_classes", "hidden_size", "num_layers", "num_heads", "intermediate_size", "latent_size"
        )
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"TransformerConfig: hidden_size {self.hidden_size} is not divisible by "
                f"num_heads {self.num_heads}"
            )
        self._check_interval("dropout", 0.0, 1.0, include_high=False)

    @classmethod
    def preset(cls, name: str) -> TransformerConfig:
        return transformer_preset(name)

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + int(self.null_class) + 1

    @property
    def null_class_id(self) -> int | None:
        """The null ("no class") token, or None for a model trained without class dropout."""
        return self.codebook_size + self.num_classes if self.null_class else None

    @property
    def mask_token_id(self) -> int:
        """The canonical mask id, ``vocab_size - 1`` (the row that the official -1 reads)."""
        return self.vocab_size - 1

    @property
    def num_tokens(self) -> int:
        """Image tokens per sample, ``latent_size ** 2``."""
        return self.latent_size**2

    @property
    def max_position_embeddings(self) -> int:
        """Class token plus image tokens."""
        return self.num_tokens + 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @staticmethod
    def latent_size_from_positions(max_position_embeddings: int) -> int:
        latent = math.isqrt(max_position_embeddings - 1)
        if latent * latent != max_position_embeddings - 1:
            raise ConfigError(
                f"max_position_embeddings {max_position_embeddings} is not latent_size**2 + 1"
            )
        return latent


TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    "imagenet256": TokenizerConfig(image_size=256),
    "imagenet512": TokenizerConfig(image_size=512),
    # The random-weight model of ../shared/fixtures/official (config_small128.json).
    "small128": TokenizerConfig(filters=32, embedding_dim=16, codebook_size=64, image_size=128),
}

TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    "imagenet256": TransformerConfig(latent_size=16),
    "imagenet512": TransformerConfig(latent_size=32),
    "small128": TransformerConfig(
        codebook_size=64,
        num_classes=10,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        latent_size=8,
    ),
}


def tokenizer_preset(name: str) -> TokenizerConfig:
    try:
        return TOKENIZER_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown tokenizer preset {name!r}; valid presets are {sorted(TOKENIZER_PRESETS)}"
        ) from None


def transformer_preset(name: str) -> TransformerConfig:
    try:
        return TRANSFORMER_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown transformer preset {name!r}; valid presets are {sorted(TRANSFORMER_PRESETS)}"
        ) from None
