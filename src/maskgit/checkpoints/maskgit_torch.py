"""The maskgit-torch format (hmorimitsu/maskgit-torch, its README §3): its parameter names and
layouts, renamed and transposed back to the official flat arrays, which ``official`` then maps."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch

from maskgit.checkpoints.config_inference import count_indices
from maskgit.checkpoints.errors import CheckpointError, sample_names
from maskgit.checkpoints.official import Array, conv_to_official

__all__ = ["maskgit_torch_to_official", "model_kind_of_maskgit_torch"]


def model_kind_of_maskgit_torch(state: Mapping[str, object], source: str) -> str:
    if "quantizer.codebook.weight" in state:
        return "vqgan"
    if "tok_emb.weight" in state:
        return "transformer"
    raise CheckpointError(f"{source}: not a maskgit-torch tokenizer or transformer (keys: {sample_names(sorted(state))})")


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
        num_levels = count_indices(arrays, r"decoder\.res_blocks\.(\d+)\.3\.") + 1
        for name, array in arrays.items():
            path = _port_tokenizer_path(name, num_levels)
            if path is None:
                unknown.append(name)
            else:
                flat[path] = conv_to_official(array) if array.ndim == 4 else array
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
        raise CheckpointError(f"{source}: unexpected maskgit-torch key(s) {sample_names(sorted(unknown))}")
    return flat
