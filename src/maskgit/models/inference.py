"""Preparing the two models for fast inference: weights kept in the compute dtype, a channels-last
decoder, and optionally a compiled transformer.

Autocast re-casts float32 weights and float32 LayerNorm outputs at every step; keeping the weights
in bfloat16 (or float16) removes those copies. Precision is kept where it matters:

- the quantizer's codebook, and the encoder's and decoder's output layers (final GroupNorm and
  conv), stay float32, so quantization compares float32 latents and images come out of a float32
  layer;
- with ``fp16`` the tokenizer stays float32 altogether: float16 VQ decoders are known to overflow
  into NaNs, and bfloat16 has float32's range.

The decoding arithmetic (softmax, sampling, schedules) is float32 in every precision.
"""

from __future__ import annotations

from typing import Any

import torch

from maskgit.models.tokenizer import VQGAN
from maskgit.models.transformer import MaskGITTransformer

__all__ = ["PRECISIONS", "compute_dtype", "check_precision", "prepare_for_inference", "CompiledLogits"]

#: Supported inference precisions and their compute dtypes.
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the transformer's weights for ``precision`` (``fp32``, ``bf16``, ``fp16``)."""
    check_precision(precision)
    return PRECISIONS[precision]


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
