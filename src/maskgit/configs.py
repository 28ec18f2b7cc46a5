"""Typed model configs and their named presets.

A config is saved as JSON beside every checkpoint (``config.json``) and is all that is needed to
rebuild the model. The presets reproduce the official ImageNet models and the small model of the
parity fixtures; see ``../shared/spec/maskgit-spec.md`` §1.6 and §2.3.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = [
    "TokenizerConfig",
    "TransformerConfig",
    "tokenizer_preset",
    "transformer_preset",
    "TOKENIZER_PRESETS",
    "TRANSFORMER_PRESETS",
    "ConfigError",
]


class ConfigError(ValueError):
    """A config is malformed: unknown key, wrong type or an inconsistent value."""


C = TypeVar("C", bound="_Config")


class _Config:
    """JSON round trip shared by both configs. ``model_type`` tags the file so that a tokenizer
    config is never read as a transformer config."""

    model_type: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return {"model_type": self.model_type, **data}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
        data = dict(data)
        model_type = data.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ConfigError(
                f"{source}: model_type is {model_type!r}, expected {cls.model_type!r}"
            )
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys are {sorted(names)}"
            )
        for key, value in data.items():
            if isinstance(value, list):
                data[key] = tuple(value)
        try:
            return cls(**data)
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON, atomically (temp file, then rename)."""
        from maskgit.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls: type[C], path: str | os.PathLike[str]) -> C:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return cls.from_dict(data, source=str(path))

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _positive(source: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{source}: {name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TokenizerConfig(_Config):
    """The VQGAN tokenizer (spec §1).

    The encoder has one level per entry of ``channel_multipliers``; every level but the last halves
    the resolution, so 5 levels give a 16x downsampling (the official model) and 3 levels give 4x.
    ``image_size`` is the nominal training and preprocessing resolution; the network itself is fully
    convolutional and accepts any size divisible by ``downsample_factor``.
    """

    model_type: ClassVar[str] = "vqgan"

    filters: int = 128
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    embedding_dim: int = 256
    codebook_size: int = 1024
    norm_groups: int = 32
    image_size: int = 256

    def __post_init__(self) -> None:
        _positive(
            "TokenizerConfig",
            filters=self.filters,
            num_res_blocks=self.num_res_blocks,
            embedding_dim=self.embedding_dim,
            codebook_size=self.codebook_size,
            norm_groups=self.norm_groups,
            image_size=self.image_size,
        )
        if not self.channel_multipliers:
            raise ConfigError("TokenizerConfig: channel_multipliers must not be empty")
        _positive("TokenizerConfig", **{f"channel_multipliers[{i}]": m for i, m in enumerate(self.channel_multipliers)})
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


@dataclass(frozen=True)
class TransformerConfig(_Config):
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
        if not isinstance(self.null_class, bool):
            raise ConfigError(f"TransformerConfig: null_class must be true or false, got {self.null_class!r}")
        _positive(
            "TransformerConfig",
            codebook_size=self.codebook_size,
            num_classes=self.num_classes,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            latent_size=self.latent_size,
        )
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"TransformerConfig: hidden_size {self.hidden_size} is not divisible by "
                f"num_heads {self.num_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"TransformerConfig: dropout must be in [0, 1), got {self.dropout}")

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
