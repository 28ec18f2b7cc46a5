"""Preparing the two models for fast inference: weights kept in the compute dtype, a channels-last
decoder, and optionally a compiled transformer.

Autocast re-casts float32 weights and float32 LayerNorm outputs at every step; keeping the weights
in bfloat16 (or float16) removes those copies. Precision is kept where it matters:

- the quantizer's codebook, and the encoder's and decoder's output layers (final GroupNorm and
  conv), stay float32, so quantization compares float32 latents and images come out of a float32
  layer;
- with ``fp16`` the tokenizer stays float32 altogether: float16 VQ decoders are known to overflow
  into NaNs, and bfloat16 has float32's range.

On a CPU, in bf16 and fp32, each transformer layer runs its linear layers as four oneDNN linear
primitive calls on weights packed once into oneDNN's blocked layout (``FusedLayer``): query, key
and value as one matmul, the GELU fused into the MLP's first linear (the official tanh form in
fp32; in bf16 the cheaper erf form, see ``_GELU_FORM``), and the residual adds into the attention
output and the MLP's second linear. Measured on this project's CPU (ImageNet-256
transformer, batch 8): ``F.linear`` plus ``F.gelu(approximate="tanh")`` in bf16 takes about 2.7x as
long as the fused call, whose bf16 GELU kernel is the slow part; packing and stacking then take a
step from 0.94 s to 0.80 s. In fp32 the fused GELU is what counts: a step takes 2.51 s plain and
2.38 s fused (batch 8, warm, ``maskgit.reuse_freed_memory``), with logits within 4e-6 of the plain
ones. In bf16 the tokenizer's residual blocks also add their residual inside their last
convolution (``FusedResBlock``).

The decoding arithmetic (softmax, sampling, schedules) is float32 in every precision.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.devices import warn_if_bf16_is_emulated
from maskgit.models.tokenizer import VQGAN, ResBlock
from maskgit.models.transformer import MaskGITTransformer, SelfAttention, TransformerLayer

__all__ = ["PRECISIONS", "check_precision", "prepare_for_inference", "CompiledLogits", "FusedLayer", "FusedLinear",
           "FusedResBlock", "PackedWeight"]

#: Supported inference precisions and their compute dtypes.
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str | None = None) -> None:
    """Raise ValueError for an unknown precision, or fp16 anywhere but on a CUDA device; warn for
    bf16 on a CPU without native bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device is not None and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (CPUs have no fast float16 matmul); use bf16")
    if precision == "bf16" and device is not None:
        warn_if_bf16_is_emulated(device, "precision bf16", "precision fp32 (--precision fp32)")


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
    if precision in ("bf16", "fp32") and device.type == "cpu" and FusedLinear.available():
        _fuse_transformer(transformer)
    if precision == "bf16" and device.type == "cpu" and FusedResBlock.available():
        for block in tokenizer.modules():
            if isinstance(block, ResBlock):
                FusedResBlock.fuse(block)


class PackedWeight:
    """oneDNN's blocked ("packed") copy of one or more linear layers' weights, stacked by rows, and
    their biases, for ``torch.ops.mkldnn._linear_pointwise``.

    The linear primitive reorders a plain weight into this layout on every call; keeping the copy
    saves that, and stacking the query, key and value weights gives one wide matmul, which this
    CPU runs faster than three narrow ones. The copy is remade when a source parameter is replaced
    or changed in place (``load_state_dict`` after preparation), and is not copied by deepcopy.
    """

    def __init__(self, *linears: nn.Linear) -> None:
        self.linears = linears
        self._key: tuple | None = None
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def get(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(packed weight, bias): the stacked weights in oneDNN's layout and the stacked biases."""
        params = [p for linear in self.linears for p in (linear.weight, linear.bias)]
        # Inference tensors have no version counter; they cannot be changed in place either.
        key = tuple((id(p), p.data_ptr(), 0 if p.is_inference() else p._version) for p in params)
        if key != self._key:
            with torch.no_grad():
                weight = torch.cat([linear.weight for linear in self.linears])
                self.bias = torch.cat([linear.bias for linear in self.linears])
                self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)
            self._key = key
        return self.weight, self.bias

    def __deepcopy__(self, memo: dict) -> PackedWeight:
        # Opaque oneDNN tensors cannot be deep-copied; the copy packs its own on first use.
        return PackedWeight(*(copy.deepcopy(linear, memo) for linear in self.linears))


#: The GELU that oneDNN fuses into a linear layer, by dtype. The official weights use the tanh
#: approximation, and float32 computes exactly that. In bfloat16 the erf form takes its place: oneDNN's
#: fused tanh GELU costs more than the 768 → 3072 matmul it follows (ImageNet-256 transformer,
#: batch 8, 2-core Zen 5: 3.2 ms of GELU on 3.2 ms of matmul; the erf form 1.4 ms), and the two
#: functions differ by at most 4.7e-4 (at x = ±2.7), far below bfloat16's resolution of the
#: activations. Measured on the random-weight ImageNet-256 transformer against a float64 run, the
#: swap alone moves the logits by 1.6e-4 RMS; bfloat16 itself moves them by 8.6e-3 RMS, and
#: with the swap by 8.7e-3.
_GELU_FORM = {torch.float32: "tanh", torch.bfloat16: "none"}


def _onednn_ready(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether the oneDNN path applies: bf16 or fp32 inference on the CPU, outside torch.compile (which
    fuses on its own and cannot trace opaque oneDNN tensors)."""
    return (not module.training and x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float32)
            and not torch.compiler.is_compiling())


class FusedLinear(nn.Linear):
    """An ``nn.Linear`` (same parameters, same state dict) computed on the CPU (bf16 or fp32) by oneDNN's
    linear primitive with a packed weight, its bias fused in, and optionally a GELU after it (tanh
    in float32, erf in bfloat16: ``_GELU_FORM``) or a residual added to it; elsewhere the plain
    computation with the tanh GELU."""

    def __init__(self, linear: nn.Linear, gelu: bool = False) -> None:
        # Not nn.Linear.__init__: it would allocate and randomly initialise a weight only to drop it,
        # drawing from the global generator (so preparing a model would change what a seed gives).
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.gelu = gelu
        self.packed = PackedWeight(self)
        self.train(linear.training)

    @staticmethod
    @functools.cache
    def available() -> bool:
        """Whether this torch build and CPU run the oneDNN linear primitive in bf16 (which needs
        more of it than fp32; oneDNN has no bf16 kernels below AVX-512)."""
        try:
            x, w = torch.ones(1, 2, dtype=torch.bfloat16), torch.ones(2, 2, dtype=torch.bfloat16)
            torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w, None), None, "none", [], "")
            return True
        except (AttributeError, RuntimeError):
            return False

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., in_features) → (..., out_features): ``gelu(linear(x))`` or ``linear(x) + residual``."""
        if self.bias is None or not _onednn_ready(self, x):
            y = F.linear(x, self.weight, self.bias)
            y = F.gelu(y, approximate="tanh") if self.gelu else y
            return y if residual is None else y + residual
        weight, bias = self.packed.get()
        if residual is not None:
            if self.gelu:
                raise ValueError("a FusedLinear fuses either its GELU or a residual add, not both")
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
        if self.gelu:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], _GELU_FORM[x.dtype])
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class FusedLayer(TransformerLayer):
    """A ``TransformerLayer`` (same parameters, same state dict) whose CPU inference forward in bf16
    or fp32 runs as four oneDNN linear calls: query, key and value as one matmul with their weights
    stacked, the attention output and the MLP output with the residual add fused in, and the MLP
    input with the GELU fused in. Made by ``fuse`` from a plain layer; elsewhere (training,
    other dtypes or devices) it runs the plain forward.
    """

    attention: SelfAttention
    mlp_intermediate: FusedLinear
    mlp_output: FusedLinear

    @classmethod
    def fuse(cls, layer: TransformerLayer) -> FusedLayer:
        """Turn ``layer`` into a ``FusedLayer`` in place (its modules and parameters are kept)."""
        attention = layer.attention
        attention.out = FusedLinear(attention.out)
        layer.mlp_intermediate = FusedLinear(layer.mlp_intermediate, gelu=True)
        layer.mlp_activation = nn.Identity()
        layer.mlp_output = FusedLinear(layer.mlp_output)
        layer.__class__ = cls
        layer.qkv = PackedWeight(attention.query, attention.key, attention.value)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _onednn_ready(self, x):
            return super().forward(x)
        batch, length, hidden = x.shape
        heads = self.attention.num_heads
        weight, bias = self.qkv.get()
        qkv = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        # (B, L, 3 * hidden) → three (B, heads, L, head_dim) views, as SelfAttention splits them.
        q, k, v = qkv.view(batch, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, hidden)
        x = self.attention_norm(self.attention.out(attended, residual=x))
        return self.mlp_norm(self.mlp_output(self.mlp_intermediate(x), residual=x))


def _fuse_transformer(transformer: MaskGITTransformer) -> None:
    """Make every layer a ``FusedLayer`` and fold the head's GELU into its dense layer."""
    for layer in transformer.layers:
        FusedLayer.fuse(layer)
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


class FusedResBlock(ResBlock):
    """A tokenizer ``ResBlock`` (same parameters) whose CPU inference forward in bf16 adds the
    residual inside its last convolution (oneDNN's convolution with a fused add), instead of
    writing the convolution's output and reading it back for the add: at decoder sizes the add is a
    memory-bound pass of its own (ImageNet-256 decoder, 8 images, 2-core Zen 5: 1.00 s → 0.93 s).
    The sum is rounded to bf16 once instead of twice. float32 keeps the plain blocks: there the
    gain is about 1 % and oneDNN's fused kernel sums in another order, which moves the images by
    up to 4e-5. Made by ``fuse`` from a plain block; elsewhere it runs the plain forward."""

    @classmethod
    def fuse(cls, block: ResBlock) -> FusedResBlock:
        """Turn ``block`` into a ``FusedResBlock`` in place."""
        block.__class__ = cls
        return block

    @staticmethod
    @functools.cache
    def available() -> bool:
        """Whether this torch build and CPU run oneDNN's bf16 convolution with a fused binary op."""
        try:
            x = torch.ones(1, 1, 2, 2, dtype=torch.bfloat16)
            # skip_init: a plain Conv2d would draw its random weight from the global generator.
            conv = nn.utils.skip_init(nn.Conv2d, 1, 1, 1, bias=False, dtype=torch.bfloat16).requires_grad_(False)
            _conv_add(conv, x, x)
            return True
        except (AttributeError, RuntimeError):
            return False

    def _forward_in_place(self, x: torch.Tensor) -> torch.Tensor:
        # bf16 only: a pipeline converted back to float32 keeps these blocks, and their float32 sums.
        if x.dtype != torch.bfloat16 or not _onednn_ready(self, x):
            return super()._forward_in_place(x)
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = F.silu(self.norm2(h), inplace=True)
        if self.shortcut is None:
            return _conv_add(self.conv2, h, x)
        # The official quirk (see ResBlock): the shortcut conv reads the block's own output.
        h = self.conv2(h)
        return _conv_add(self.shortcut, h, h)


def _conv_add(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``conv(x) + other`` as one oneDNN call; ``other`` has the convolution's output shape."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, other, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
        "add", None, None, [], None)
