"""Model configs inferred from the parameter shapes of an official checkpoint, where the file
holds no config. What the weights do not say (the image size, the split of the transformer's
vocabulary into codes and classes) comes from a preset of the same shapes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.official import Array
from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS, ConfigError, TokenizerConfig, TransformerConfig

__all__ = [
    "count_indices",
    "infer_tokenizer_config",
    "infer_transformer_config",
    "infer_official_transformer_config",
]


def count_indices(flat: Iterable[str], pattern: str) -> int:
    """How many distinct values the first group of ``pattern`` takes over the names in ``flat``."""
    regex = re.compile(pattern)
    return len({m.group(1) for name in flat if (m := regex.match(name))})


def _shape(flat: Mapping[str, Array], name: str, source: str) -> tuple[int, ...]:
    if name not in flat:
        raise CheckpointError(f"{source}: missing parameter params/{name}")
    return tuple(np.shape(flat[name]))


def infer_tokenizer_config(flat: Mapping[str, Array], *, source: str = "checkpoint") -> TokenizerConfig:
    """Rebuild the tokenizer config from official parameter shapes: widths and channel
    multipliers from the convs, the level count from the decoder's convs."""
    filters = _shape(flat, "encoder/Conv_0/kernel", source)[3]
    embedding_dim = _shape(flat, "encoder/Conv_1/kernel", source)[3]
    codebook_size = _shape(flat, "quantizer/codebook", source)[0]
    num_levels = count_indices(flat, r"decoder/Conv_(\d+)/") - 1  # conv_in, one per upsample, conv_out
    blocks = count_indices(flat, r"encoder/ResBlock_(\d+)/")
    if num_levels < 1 or blocks % (num_levels + 1):
        raise CheckpointError(
            f"{source}: {blocks} encoder ResBlocks do not fit {num_levels} levels plus the middle blocks"
        )
    repeats = blocks // (num_levels + 1)
    widths = [_shape(flat, f"encoder/ResBlock_{level * repeats}/Conv_0/kernel", source)[3] for level in range(num_levels)]
    if any(width % filters for width in widths):
        raise CheckpointError(f"{source}: level widths {widths} are not multiples of filters={filters}")
    found = TokenizerConfig(
        filters=filters,
        channel_multipliers=tuple(width // filters for width in widths),
        num_res_blocks=repeats,
        embedding_dim=embedding_dim,
        codebook_size=codebook_size,
        image_size=256 if 256 % 2 ** (num_levels - 1) == 0 else 2 ** (num_levels - 1),
    )
    # The weights do not say the image size; take it from a preset with the same architecture.
    for preset in TOKENIZER_PRESETS.values():
        if preset.replace(image_size=found.image_size) == found:
            return preset
    return found


def infer_transformer_config(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    intermediate_size: int,
    max_position_embeddings: int,
    num_heads: int | None,
    codebook_size: int | None = None,
    source: str = "checkpoint",
) -> TransformerConfig:
    """Rebuild the transformer config from shapes. The split of the vocabulary into codebook and
    classes is not in the weights (nor, for maskgit-torch files, the head count): those come from
    a preset of the same shapes, or from ``codebook_size`` (the tokenizer's, which the caller
    knows) and the head count, or the caller must pass a config. A vocabulary split by
    ``codebook_size`` is the official layout: codes, classes, the mask; no null class."""
    latent = TransformerConfig.latent_size_from_positions(max_position_embeddings)
    for preset in TRANSFORMER_PRESETS.values():
        if (
            preset.vocab_size == vocab_size
            and preset.hidden_size == hidden_size
            and preset.num_layers == num_layers
            and preset.intermediate_size == intermediate_size
            and preset.latent_size == latent
            and num_heads in (None, preset.num_heads)
            and codebook_size in (None, preset.codebook_size)
        ):
            return preset
    if codebook_size is not None and num_heads:
        num_classes = vocab_size - codebook_size - 1
        if num_classes < 1:
            raise CheckpointError(
                f"{source}: vocabulary of {vocab_size} ids leaves no class ids beside {codebook_size} codes "
                "and the mask; is the tokenizer the one this transformer was trained with?"
            )
        try:
            return TransformerConfig(
                codebook_size=codebook_size, num_classes=num_classes, hidden_size=hidden_size,
                num_layers=num_layers, num_heads=num_heads, intermediate_size=intermediate_size, latent_size=latent,
            )
        except ConfigError as error:
            raise CheckpointError(f"{source}: {error}") from None
    missing = [what for what, known in (("the codebook size", codebook_size), ("the head count", num_heads)) if not known]
    hint = "" if codebook_size else ", or load it beside its tokenizer: MaskGIT.from_pretrained(tokenizer=..., transformer=...)"
    raise CheckpointError(
        f"{source}: {' and '.join(missing)} cannot be read from the weights (vocab {vocab_size}, hidden {hidden_size}, "
        f"{num_layers} layers) and no preset has these shapes; pass config=TransformerConfig(...){hint}"
    )


def infer_official_transformer_config(
    flat: Mapping[str, Array], *, codebook_size: int | None = None, source: str = "checkpoint"
) -> TransformerConfig:
    vocab_size, hidden_size = _shape(flat, "Embed_0/word_embeddings/embedding", source)
    return infer_transformer_config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=count_indices(flat, r"TransformerLayer_(\d+)/"),
        intermediate_size=_shape(flat, "TransformerLayer_0/Mlp_0/intermediate_output/kernel", source)[1],
        max_position_embeddings=_shape(flat, "Embed_0/position_embeddings/embedding", source)[0],
        num_heads=_shape(flat, "TransformerLayer_0/Attention_0/self_attention/query/kernel", source)[1],
        codebook_size=codebook_size,
        source=source,
    )
