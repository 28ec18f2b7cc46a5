"""Parameter names and layouts: official flax paths ↔ our state dict, and maskgit-torch names ↔
official paths (fixture README §3, maskgit-torch README §3).

Every official scope maps to one of our modules (``tokenizer_scopes``/``transformer_scopes``), and
each leaf under it maps to one parameter with a fixed layout change. The mapping is strict: a
missing, unexpected or wrongly shaped parameter is a ``CheckpointError`` that names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from maskgit.checkpoints.errors import CheckpointError
from maskgit.configs import (
    TOKENIZER_PRESETS,
    TRANSFORMER_PRESETS,
    ConfigError,
    TokenizerConfig,
    TransformerConfig,
)

__all__ = [
    "Scope",
    "ParameterEntry",
    "tokenizer_scopes",
    "transformer_scopes",
    "parameter_entries",
    "official_to_state_dict",
    "state_dict_to_official",
    "infer_tokenizer_config",
    "infer_transformer_config",
    "maskgit_torch_to_official",
    "model_kind_of_official",
    "model_kind_of_maskgit_torch",
]

Array = np.ndarray


@dataclass(frozen=True)
class Scope:
    """An official flax scope, the module of ours that holds its parameters, and its layer kind.

    kinds: ``conv`` (kernel + bias), ``conv_nobias``, ``norm`` (scale + bias), ``dense``,
    ``embedding``, ``attention_in`` (q/k/v DenseGeneral), ``attention_out``, and ``leaf`` (a single
    array whose official path is the scope itself).
    """

    official: str
    ours: str
    kind: str


@dataclass(frozen=True)
class ParameterEntry:
    official: str  # e.g. "encoder/Conv_0/kernel" (no "params/" prefix)
    ours: str  # e.g. "encoder.conv_in.weight"
    to_torch: Callable[[Array], Array]
    to_official: Callable[[Array], Array]


# -- layouts --------------------------------------------------------------------------------------


def _identity(array: Array) -> Array:
    return array


def _conv_to_torch(kernel: Array) -> Array:  # (kh, kw, in, out) → (out, in, kh, kw)
    return kernel.transpose(3, 2, 0, 1)


def _conv_to_official(weight: Array) -> Array:
    return weight.transpose(2, 3, 1, 0)


def _dense_to_torch(kernel: Array) -> Array:  # (in, out) → (out, in)
    return kernel.T


def _attention_in_to_torch(kernel: Array) -> Array:  # (hidden, heads, head_dim) → (hidden, hidden).T
    return kernel.reshape(kernel.shape[0], -1).T


def _attention_out_to_torch(kernel: Array) -> Array:  # (heads, head_dim, hidden) → (hidden, hidden).T
    return kernel.reshape(-1, kernel.shape[-1]).T


def _flatten(array: Array) -> Array:  # (heads, head_dim) → (hidden,)
    return array.reshape(-1)


def _leaf_entries(scope: Scope, num_heads: int) -> list[ParameterEntry]:
    def entry(leaf: str, ours: str, to_torch: Callable[[Array], Array], to_official: Callable[[Array], Array]) -> ParameterEntry:
        official = scope.official if scope.kind == "leaf" else f"{scope.official}/{leaf}"
        return ParameterEntry(official, f"{scope.ours}.{ours}" if ours else scope.ours, to_torch, to_official)

    def split_heads(array: Array) -> Array:
        return array.reshape(num_heads, -1)

    kind = scope.kind
    if kind in ("conv", "conv_nobias"):
        entries = [entry("kernel", "weight", _conv_to_torch, _conv_to_official)]
        if kind == "conv":
            entries.append(entry("bias", "bias", _identity, _identity))
        return entries
    if kind == "norm":
        return [entry("scale", "weight", _identity, _identity), entry("bias", "bias", _identity, _identity)]
    if kind == "dense":
        return [entry("kernel", "weight", _dense_to_torch, _dense_to_torch), entry("bias", "bias", _identity, _identity)]
    if kind == "embedding":
        return [entry("embedding", "weight", _identity, _identity)]
    if kind == "attention_in":
        return [
            entry("kernel", "weight", _attention_in_to_torch, lambda w: w.T.reshape(w.shape[1], num_heads, -1)),
            entry("bias", "bias", _flatten, split_heads),
        ]
    if kind == "attention_out":
        return [
            entry("kernel", "weight", _attention_out_to_torch, lambda w: w.T.reshape(num_heads, -1, w.shape[0])),
            entry("bias", "bias", _identity, _identity),
        ]
    if kind == "leaf":
        return [entry("", "", _identity, _identity)]
    raise AssertionError(f"unknown scope kind {kind}")


# -- scopes ---------------------------------------------------------------------------------------

_RESBLOCK_PARTS = (("GroupNorm_0", "norm1", "norm"), ("Conv_0", "conv1", "conv_nobias"),
                   ("GroupNorm_1", "norm2", "norm"), ("Conv_1", "conv2", "conv_nobias"))


def _resblock_scopes(official: str, ours: str, in_channels: int, out_channels: int) -> list[Scope]:
    scopes = [Scope(official, ours, "block")]
    scopes += [Scope(f"{official}/{a}", f"{ours}.{b}", kind) for a, b, kind in _RESBLOCK_PARTS]
    if in_channels != out_channels:
        # The quirky shortcut conv applied to the block's output (see ResBlock).
        scopes.append(Scope(f"{official}/Conv_2", f"{ours}.shortcut", "conv_nobias"))
    return scopes


def tokenizer_scopes(config: TokenizerConfig) -> list[Scope]:
    """Every official tokenizer scope with our module name, in execution order. ``block`` scopes
    hold no parameters of their own; they are listed for per-module activation checks."""
    widths, repeats = config.widths, config.num_res_blocks
    scopes = [Scope("encoder/Conv_0", "encoder.conv_in", "conv_nobias")]
    channels = config.filters
    for index, width in enumerate(w for w in widths + (widths[-1],) for _ in range(repeats)):
        scopes += _resblock_scopes(f"encoder/ResBlock_{index}", f"encoder.res_blocks.{index}", channels, width)
        channels = width
    scopes += [
        Scope("encoder/GroupNorm_0", "encoder.norm_out", "norm"),
        Scope("encoder/Conv_1", "encoder.conv_out", "conv"),
        Scope("quantizer/codebook", "quantizer.codebook.weight", "leaf"),
        Scope("decoder/Conv_0", "decoder.conv_in", "conv"),
    ]
    upsample = 0
    for index, width in enumerate(w for w in (widths[-1],) + tuple(reversed(widths)) for _ in range(repeats)):
        scopes += _resblock_scopes(f"decoder/ResBlock_{index}", f"decoder.res_blocks.{index}", channels, width)
        channels = width
        if upsample < config.num_levels - 1 and index == (upsample + 2) * repeats - 1:
            scopes.append(Scope(f"decoder/Conv_{upsample + 1}", f"decoder.upsample_convs.{upsample}", "conv"))
            upsample += 1
    scopes += [
        Scope("decoder/GroupNorm_0", "decoder.norm_out", "norm"),
        Scope(f"decoder/Conv_{config.num_levels}", "decoder.conv_out", "conv"),
    ]
    return scopes


def transformer_scopes(config: TransformerConfig) -> list[Scope]:
    """Every official transformer scope with our module name."""
    scopes = [
        Scope("Embed_0/word_embeddings", "word_embeddings", "embedding"),
        Scope("Embed_0/position_embeddings", "position_embeddings", "embedding"),
        Scope("Embed_0/embeddings_ln", "embedding_norm", "norm"),
    ]
    for n in range(config.num_layers):
        official, ours = f"TransformerLayer_{n}", f"layers.{n}"
        attention = f"{official}/Attention_0/self_attention"
        scopes += [Scope(f"{attention}/{p}", f"{ours}.attention.{p}", "attention_in") for p in ("query", "key", "value")]
        scopes += [
            Scope(f"{attention}/out", f"{ours}.attention.out", "attention_out"),
            Scope(f"{official}/Attention_0/attention_output_ln", f"{ours}.attention_norm", "norm"),
            Scope(f"{official}/Mlp_0/intermediate_output", f"{ours}.mlp_intermediate", "dense"),
            Scope(f"{official}/Mlp_0/layer_output", f"{ours}.mlp_output", "dense"),
            Scope(f"{official}/Mlp_0/layer_output_ln", f"{ours}.mlp_norm", "norm"),
        ]
    scopes += [
        Scope("MlmLayer_0/mlm_dense", "mlm_dense", "dense"),
        Scope("MlmLayer_0/mlm_ln", "mlm_norm", "norm"),
        Scope("MlmLayer_0/mlm_bias/bias", "mlm_bias", "leaf"),
    ]
    return scopes


def parameter_entries(config: TokenizerConfig | TransformerConfig) -> list[ParameterEntry]:
    """One entry per official array, in official scope order."""
    if isinstance(config, TokenizerConfig):
        scopes, heads = tokenizer_scopes(config), 0
    else:
        scopes, heads = transformer_scopes(config), config.num_heads
    return [e for scope in scopes if scope.kind != "block" for e in _leaf_entries(scope, heads)]


# -- official ↔ state dict -----------------------------------------------------------------------


def official_to_state_dict(
    flat: Mapping[str, Array],
    config: TokenizerConfig | TransformerConfig,
    expected_shapes: Mapping[str, tuple[int, ...]],
    *,
    source: str = "checkpoint",
) -> dict[str, torch.Tensor]:
    """Map flat official arrays (``"encoder/Conv_0/kernel"``, no ``params/`` prefix) to our state
    dict. ``expected_shapes`` are the model's own parameter shapes; any difference is an error."""
    entries = parameter_entries(config)
    expected_official = {e.official for e in entries}
    missing = [e.official for e in entries if e.official not in flat]
    unexpected = sorted(set(flat) - expected_official)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing parameter(s) {_sample(missing)}")
        if unexpected:
            parts.append(f"unexpected parameter(s) {_sample(unexpected)}")
        raise CheckpointError(f"{source}: {'; '.join(parts)}")
    state: dict[str, torch.Tensor] = {}
    for entry in entries:
        array = np.asarray(flat[entry.official])
        if array.dtype.kind != "f":
            raise CheckpointError(f"{source}: params/{entry.official} has dtype {array.dtype}; weights must be floating point")
        want = tuple(expected_shapes[entry.ours])
        try:
            converted = entry.to_torch(array)
        except ValueError:
            converted = None
        if converted is None or tuple(converted.shape) != want:
            raise CheckpointError(
                f"{source}: params/{entry.official} has shape {tuple(array.shape)}, which does not fit "
                f"{entry.ours} of shape {want}"
            )
        state[entry.ours] = torch.from_numpy(np.array(converted, dtype=np.float32, order="C"))
    return state


def state_dict_to_official(
    state: Mapping[str, torch.Tensor], config: TokenizerConfig | TransformerConfig
) -> dict[str, Array]:
    """The inverse of ``official_to_state_dict``: our state dict → flat official arrays."""
    return {
        e.official: np.ascontiguousarray(e.to_official(state[e.ours].detach().cpu().float().numpy()))
        for e in parameter_entries(config)
    }


def _sample(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} (and {len(names) - limit} more)" if len(names) > limit else shown


# -- model kind -----------------------------------------------------------------------------------


def model_kind_of_official(flat: Mapping[str, Array], source: str) -> str:
    """``"vqgan"`` or ``"transformer"`` from the top-level scopes of an official checkpoint."""
    tops = sorted({name.split("/")[0] for name in flat})
    if {"encoder", "decoder", "quantizer"} <= set(tops):
        return "vqgan"
    if "Embed_0" in tops and "MlmLayer_0" in tops:
        return "transformer"
    raise CheckpointError(f"{source}: not a MaskGIT tokenizer or transformer (top-level scopes: {tops[:10]})")


def model_kind_of_maskgit_torch(state: Mapping[str, object], source: str) -> str:
    if "quantizer.codebook.weight" in state:
        return "vqgan"
    if "tok_emb.weight" in state:
        return "transformer"
    raise CheckpointError(f"{source}: not a maskgit-torch tokenizer or transformer (keys: {_sample(sorted(state))})")


# -- config inference -----------------------------------------------------------------------------


def _count(flat: Iterable[str], pattern: str) -> int:
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
    num_levels = _count(flat, r"decoder/Conv_(\d+)/") - 1  # conv_in, one per upsample, conv_out
    blocks = _count(flat, r"encoder/ResBlock_(\d+)/")
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
        num_layers=_count(flat, r"TransformerLayer_(\d+)/"),
        intermediate_size=_shape(flat, "TransformerLayer_0/Mlp_0/intermediate_output/kernel", source)[1],
        max_position_embeddings=_shape(flat, "Embed_0/position_embeddings/embedding", source)[0],
        num_heads=_shape(flat, "TransformerLayer_0/Attention_0/self_attention/query/kernel", source)[1],
        codebook_size=codebook_size,
        source=source,
    )


# -- maskgit-torch --------------------------------------------------------------------------------


_PORT_RESBLOCK_PARTS = {"norm0": "GroupNorm_0", "norm1": "GroupNorm_1", "conv0": "Conv_0", "conv1": "Conv_1", "conv_res": "Conv_2"}


def _port_tokenizer_path(name: str, num_levels: int) -> str | None:
    """maskgit-torch tokenizer key → official path, or None if the key is not of that format."""
    if name == "quantizer.codebook.weight":
        return "quantizer/codebook"
    match = re.fullmatch(r"(encoder|decoder)\.(.+)\.(weight|bias)", name)
    if not match:
        return None
    part, module, leaf = match.groups()
    fixed = {
        ("encoder", "conv_in"): "Conv_0", ("encoder", "conv_out"): "Conv_1", ("encoder", "norm_out"): "GroupNorm_0",
        ("decoder", "conv_in"): "Conv_0", ("decoder", "conv_out"): f"Conv_{num_levels}", ("decoder", "norm_out"): "GroupNorm_0",
    }
    if (part, module) in fixed:
        scope = fixed[(part, module)]
    elif part == "decoder" and (m := re.fullmatch(r"res_blocks\.(\d+)\.3", module)):
        scope = f"Conv_{m.group(1)}"  # the conv after each upsample
    elif m := re.fullmatch(r"res_blocks\.(\d+)\.([01])\.(norm0|norm1|conv0|conv1|conv_res)", module):
        # The port's conversion hard-codes two blocks per level: ResBlock_k → res_blocks.{k//2}.{k%2}.
        scope = f"ResBlock_{2 * int(m.group(1)) + int(m.group(2))}/{_PORT_RESBLOCK_PARTS[m.group(3)]}"
    else:
        return None
    is_norm = "GroupNorm" in scope
    official_leaf = "bias" if leaf == "bias" else ("scale" if is_norm else "kernel")
    return f"{part}/{scope}/{official_leaf}"


_PORT_TRANSFORMER_FIXED = {
    "tok_emb.weight": "Embed_0/word_embeddings/embedding",
    "pos_emb": "Embed_0/position_embeddings/embedding",
    "emb_ln.weight": "Embed_0/embeddings_ln/scale",
    "emb_ln.bias": "Embed_0/embeddings_ln/bias",
    "Token_Prediction.0.weight": "MlmLayer_0/mlm_dense/kernel",
    "Token_Prediction.0.bias": "MlmLayer_0/mlm_dense/bias",
    "Token_Prediction.2.weight": "MlmLayer_0/mlm_ln/scale",
    "Token_Prediction.2.bias": "MlmLayer_0/mlm_ln/bias",
    "bias": "MlmLayer_0/mlm_bias/bias",
}
_PORT_LAYER_PARTS = {
    "MultiHeadAttention.out_proj": "Attention_0/self_attention/out",
    "AttentionLN": "Attention_0/attention_output_ln",
    "MLP.0": "Mlp_0/intermediate_output",
    "MLP.2": "Mlp_0/layer_output",
    "MlpLN": "Mlp_0/layer_output_ln",
}


def maskgit_torch_to_official(
    state: Mapping[str, torch.Tensor], kind: str, *, num_heads: int = 0, source: str = "checkpoint"
) -> dict[str, Array]:
    """A maskgit-torch state dict → flat official arrays (undoing its renames and transposes).
    The transformer needs ``num_heads``, which that format does not store."""
    # The port saved permuted views; .contiguous() would not matter for numpy, but float32 does.
    arrays = {name: tensor.detach().float().cpu().numpy() for name, tensor in state.items()}
    flat: dict[str, Array] = {}
    unknown: list[str] = []
    if kind == "vqgan":
        num_levels = _count(arrays, r"decoder\.res_blocks\.(\d+)\.3\.") + 1
        for name, array in arrays.items():
            path = _port_tokenizer_path(name, num_levels)
            if path is None:
                unknown.append(name)
            else:
                flat[path] = _conv_to_official(array) if array.ndim == 4 else array
    else:
        for name, array in arrays.items():
            if name in _PORT_TRANSFORMER_FIXED:
                path = _PORT_TRANSFORMER_FIXED[name]
                flat[path] = array.T if path.endswith("mlm_dense/kernel") else array
                continue
            match = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)|blocks\.(\d+)\.MultiHeadAttention\.(in_proj_weight|in_proj_bias)", name)
            if not match:
                unknown.append(name)
                continue
            if match.group(5):  # fused q, k, v rows
                layer, what = match.group(4), match.group(5)
                prefix = f"TransformerLayer_{layer}/Attention_0/self_attention"
                for part, chunk in zip(("query", "key", "value"), np.split(array, 3)):
                    if what == "in_proj_weight":
                        flat[f"{prefix}/{part}/kernel"] = chunk.T.reshape(chunk.shape[1], num_heads, -1)
                    else:
                        flat[f"{prefix}/{part}/bias"] = chunk.reshape(num_heads, -1)
                continue
            layer, module, leaf = match.group(1), match.group(2), match.group(3)
            if module not in _PORT_LAYER_PARTS:
                unknown.append(name)
                continue
            scope = f"TransformerLayer_{layer}/{_PORT_LAYER_PARTS[module]}"
            if leaf == "bias":
                flat[f"{scope}/bias"] = array
            elif module.endswith("LN"):
                flat[f"{scope}/scale"] = array
            elif module == "MultiHeadAttention.out_proj":
                flat[f"{scope}/kernel"] = array.T.reshape(num_heads, -1, array.shape[0])
            else:
                flat[f"{scope}/kernel"] = array.T
    if unknown:
        raise CheckpointError(f"{source}: unexpected maskgit-torch key(s) {_sample(sorted(unknown))}")
    return flat
