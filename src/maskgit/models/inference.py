"""Preparing the two models for fast inference: weights kept in the compute dtype, a channels-last
decoder, and optionally a compiled transformer.

Autocast re-casts float32 weights and float32 LayerNorm outputs at every step; keeping the weights
in bfloat16 (or float16) removes those copies. Precision is kept where it matters:

- the quantizer's codebook, and the encoder's and decoder's output layers (final GroupNorm and
  conv), stay float32, so quantization compares float32 latents and images come out of a float32
  layer;
- with ``fp16`` the tokenizer stays float32 altogether: float16 VQ decoders are known to overflow
  into NaNs, and bfloat16 has float32's range.

On a CPU in bf16 the transformer's linear layers run as oneDNN linear primitives with the bias
(and, after ``mlp_intermediate`` and ``mlm_dense``, the tanh GELU) fused in: measured on this
project's CPU, ``F.linear`` plus ``F.gelu(approximate="tanh")`` in bf16 takes about 2.7x as long as
the fused call, whose bf16 GELU kernel is the slow part, and a 768-wide linear about 2.5x.

The decoding arithmetic (softmax, sampling, schedules) is float32 in every precision.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.models.tokenizer import VQGAN
from maskgit.models.transformer import MaskGITTransformer

__all__ = ["PRECISIONS", "check_precision", "prepare_for_inference", "CompiledLogits", "FusedLinear"]

#: Supported inference precisions and their compute dtypes.
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str | None = None) -> None:
    """Raise ValueError for an unknown precision, or fp16 anywhere but on a CUDA device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device is not None and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (CPUs have no fast float16 matmul); use bf16")


def prepare_for_inference(tokenizer: VQGAN, transformer: MaskGITTransformer, precision: str) -> None:
    """Convert both models in place: weights to the compute dtype (see the module docstring for
    what stays float32) and the tokenizer's convolutions to channels-last memory format."""
    check_precision(precision)
    dtype = PRECISIONS[precision]
    transformer.to(dtype)
    tokenizer_dtype = dtype if precision == "bf16" else torch.float32
    for part in (tokenizer.encoder, tokenizer.decoder):
        part.to(tokenizer_dtype)
        part.norm_out.float()
        part.conv_out.float()
    tokenizer.quantizer.float()
    # oneDNN (CPU) and cuDNN run NHWC convolutions fastest, bfloat16 above all.
    tokenizer.to(memory_format=torch.channels_last)
    device = next(transformer.parameters()).device
    if precision == "bf16" and device.type == "cpu" and FusedLinear.available():
        _fuse_linears(transformer)


class FusedLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters, same state dict) computed by oneDNN's linear primitive
    on the CPU, with its bias and optionally a tanh GELU fused in."""

    def __init__(self, linear: nn.Linear, gelu: bool = False) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        self.weight, self.bias = linear.weight, linear.bias
        self.gelu = gelu
        self.train(linear.training)

    @staticmethod
    def available() -> bool:
        """Whether this torch build has the oneDNN linear primitive with bf16 support."""
        try:
            x = torch.ones(1, 2, dtype=torch.bfloat16)
            torch.ops.mkldnn._linear_pointwise(x, torch.ones(2, 2, dtype=torch.bfloat16), None, "none", [], "")
            return True
        except (AttributeError, RuntimeError):
            return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or x.device.type != "cpu" or x.dtype != torch.bfloat16:
            y = F.linear(x, self.weight, self.bias)
            return F.gelu(y, approximate="tanh") if self.gelu else y
        if self.gelu:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu", [], "tanh")
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


def _fuse_linears(transformer: MaskGITTransformer) -> None:
    """Swap every linear layer for a ``FusedLinear``, folding each tanh GELU into the linear that
    feeds it."""
    for layer in transformer.layers:
        for name in ("query", "key", "value", "out"):
            setattr(layer.attention, name, FusedLinear(getattr(layer.attention, name)))
        layer.mlp_intermediate = FusedLinear(layer.mlp_intermediate, gelu=True)
        layer.mlp_activation = nn.Identity()
        layer.mlp_output = FusedLinear(layer.mlp_output)
    transformer.mlm_dense = FusedLinear(transformer.mlm_dense, gelu=True)
    transformer.mlm_activation = nn.Identity()


class CompiledLogits:
    """A ``torch.compile``d ``codebook_logits`` that the decoding engine calls like a transformer.

    ``mode`` defaults to ``"reduce-overhead"`` on CUDA, which captures each static-shape step in a
    CUDA graph, and to the default (fused elementwise kernels) elsewhere.
    """

    def __init__(self, transformer: MaskGITTransformer, mode: str | None = None, **options: Any) -> None:
        device = next(transformer.parameters()).device
        if mode is None and device.type == "cuda":
            mode = "reduce-overhead"
        self.transformer = transformer
        self.config = transformer.config
        self.codebook_logits = torch.compile(transformer.codebook_logits, mode=mode, dynamic=False, **options)

    def check_ids(self, ids: torch.Tensor) -> None:
        self.transformer.check_ids(ids)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codebook_logits(ids)
