"""The official parameter names: flax scopes ↔ our state dict (fixture README §3).

Every official scope maps to one of our modules (``tokenizer_scopes``/``transformer_scopes``), and
each leaf under it maps to one parameter with a fixed layout change. The mapping is strict: a
missing, unexpected or wrongly shaped parameter is a ``CheckpointError`` that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from maskgit.checkpoints.errors import CheckpointError, sample_names
from maskgit.configs import ResBlockSpec, TokenizerConfig, TransformerConfig

__all__ = [
    "Scope",
    "ParameterEntry",
    "tokenizer_scopes",
    "transformer_scopes",
    "parameter_entries",
    "official_to_state_dict",
    "state_dict_to_official",
    "conv_to_official",
    "model_kind_of_official",
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


def conv_to_official(weight: Array) -> Array:
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
        entries = [entry("kernel", "weight", _conv_to_torch, conv_to_official)]
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


def _resblock_scopes(official: str, ours: str, block: ResBlockSpec) -> list[Scope]:
    scopes = [Scope(official, ours, "block")]
    scopes += [Scope(f"{official}/{a}", f"{ours}.{b}", kind) for a, b, kind in _RESBLOCK_PARTS]
    if block.in_channels != block.out_channels:
        # The quirky shortcut conv applied to the block's output (see ResBlock).
        scopes.append(Scope(f"{official}/Conv_2", f"{ours}.shortcut", "conv_nobias"))
    return scopes


def tokenizer_scopes(config: TokenizerConfig) -> list[Scope]:
    """Every official tokenizer scope with our module name, in execution order. ``block`` scopes
    hold no parameters of their own; they are listed for per-module activation checks. The blocks
    are numbered in the order the models build them (``config.encoder_blocks``/``decoder_blocks``)."""
    scopes = [Scope("encoder/Conv_0", "encoder.conv_in", "conv_nobias")]
    for index, block in enumerate(config.encoder_blocks):
        scopes += _resblock_scopes(f"encoder/ResBlock_{index}", f"encoder.res_blocks.{index}", block)
    scopes += [
        Scope("encoder/GroupNorm_0", "encoder.norm_out", "norm"),
        Scope("encoder/Conv_1", "encoder.conv_out", "conv"),
        Scope("quantizer/codebook", "quantizer.codebook.weight", "leaf"),
        Scope("decoder/Conv_0", "decoder.conv_in", "conv"),
    ]
    upsample = 0
    for index, block in enumerate(config.decoder_blocks):
        scopes += _resblock_scopes(f"decoder/ResBlock_{index}", f"decoder.res_blocks.{index}", block)
        if block.resample_after:  # official Conv_1.. follow the upsamples; Conv_0 is conv_in
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
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
    *,
    source: str = "checkpoint",
) -> dict[str, torch.Tensor]:
    """Map flat official arrays (``"encoder/Conv_0/kernel"``, no ``params/`` prefix) to our state
    dict. ``expected_shapes`` are the model's own parameter shapes; any difference is an error.
    Without them (a conversion between files, with no model at hand) the shapes are checked when
    a model loads the result."""
    entries = parameter_entries(config)
    expected_official = {e.official for e in entries}
    missing = [e.official for e in entries if e.official not in flat]
    unexpected = sorted(set(flat) - expected_official)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing parameter(s) {sample_names(missing)}")
        if unexpected:
            parts.append(f"unexpected parameter(s) {sample_names(unexpected)}")
        raise CheckpointError(f"{source}: {'; '.join(parts)}")
    state: dict[str, torch.Tensor] = {}
    for entry in entries:
        array = np.asarray(flat[entry.official])
        if array.dtype.kind != "f":
            raise CheckpointError(f"{source}: params/{entry.official} has dtype {array.dtype}; weights must be floating point")
        want = None if expected_shapes is None else tuple(expected_shapes[entry.ours])
        try:
            converted = entry.to_torch(array)
        except ValueError:
            converted = None
        if converted is None or want not in (None, tuple(converted.shape)):
            target = entry.ours if want is None else f"{entry.ours} of shape {want}"
            raise CheckpointError(
                f"{source}: params/{entry.official} has shape {tuple(array.shape)}, which does not fit {target}"
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


# -- model kind -----------------------------------------------------------------------------------


def model_kind_of_official(flat: Mapping[str, Array], source: str) -> str:
    """``"vqgan"`` or ``"transformer"`` from the top-level scopes of an official checkpoint."""
    tops = sorted({name.split("/")[0] for name in flat})
    if {"encoder", "decoder", "quantizer"} <= set(tops):
        return "vqgan"
    if "Embed_0" in tops and "MlmLayer_0" in tops:
        return "transformer"
    raise CheckpointError(f"{source}: not a MaskGIT tokenizer or transformer (top-level scopes: {tops[:10]})")
