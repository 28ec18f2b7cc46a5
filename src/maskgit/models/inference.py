"""The fast inference forms of the two models, opt in: ``prepare_for_inference`` converts a tokenizer
and a transformer in place for one precision and swaps the modules below in for plain ones.

The plain models (``maskgit.models.tokenizer``, ``maskgit.models.transformer``) compute the official
functions and nothing else. Everything here computes the same functions faster, and every module
it swaps in is a new object built from the plain module's own parameters and submodules (the same
tensors, under the same names), so the state dict, ``save_pretrained`` and ``load_state_dict`` are
unchanged. Where its fast path does not apply (training, autograd, another dtype or device,
``torch.compile``) a swapped-in module runs the plain computation.

- **Weights in the compute dtype.** Autocast would re-cast the float32 weights and LayerNorm outputs
  at every step; keeping the weights in bfloat16 (or float16) removes those copies. Precision is
  kept where it matters: the quantizer's codebook and the encoder's and decoder's output layers
  (final GroupNorm and conv) stay float32, so quantization compares float32 latents and images come
  out of a float32 layer (``CastingConv2d`` and ``CastingGroupNorm`` cast at the two borders). With
  ``fp16`` the tokenizer stays float32 altogether: float16 VQ decoders are known to overflow into
  NaNs, and bfloat16 has float32's range.
- **Tokenizer.** Channels-last convolutions, which oneDNN (CPU) and cuDNN run fastest. Residual
  blocks (``InferenceResBlock``) that, without autograd, write their swish and their residual add
  into tensors only they hold: at decoder sizes these passes are memory bound, and every fresh
  output is memory to fault in. In bfloat16 on a CPU the residual add also goes inside the last
  convolution (oneDNN's convolution with a fused add), instead of a pass of its own. The decoder's
  upsampling convolutions read their input directly instead of its x2 nearest copy
  (``InferenceUpsampleConv``): the same function in 4/9 of the multiply-adds.
- **Transformer on a CPU, in bf16 and fp32** (fp32 wherever oneDNN runs, AVX2 included; bf16 where
  oneDNN has bf16 kernels, AVX-512). Each layer runs as four oneDNN linear calls on weights packed
  once into oneDNN's blocked layout (``FusedLayer``): query, key and value as one matmul, the GELU
  fused into the MLP's first linear (the official tanh form in fp32; in bf16 the erf form, see
  ``_GELU_FORM``), and the residual adds fused into the attention output and the MLP's second
  linear. The head's dense layer takes its GELU the same way (``FusedLinear``). oneDNN's AVX2
  kernels compute the fused fp32 tanh GELU slowly, so there it runs after the call, in place
  (``tanh_gelu_``, ``_fuse_tanh_gelu``). The plain path spends a separate pass on each GELU and
  each residual add, and reorders every weight into the blocked layout on every call.
- **Transformer on a CPU, in int8** (``maskgit.models.quantized``): the same four calls in each
  layer with int8 weights and activations (``Int8Layer``, on ``Int8Weight``), and the layer's six
  linear submodules computed in int8 too (``Int8Linear``), for any forward that calls them as
  modules. The float32 weights stay (the state dict and ``save_pretrained`` are unchanged; the int8
  copies are a cache, made on first use). Everything else is float32: the embeddings, the
  LayerNorms, the attention and its softmax, the head (its dense layer and the logits), and the
  whole tokenizer. int8 is for CPUs without native bf16, where bf16 would be emulated.

The decoding arithmetic (softmax, sampling, schedules) is float32 in every precision.
``benchmarks/sampling_speed.py`` measures each precision against the plain models.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from maskgit.devices import warn_if_bf16_is_emulated
from maskgit.models.quantized import check_int8, int8_linear, quantize_weight
from maskgit.models.tokenizer import VQGAN, ResBlock, UpsampleConv
from maskgit.models.transformer import AttentionCache, ContextCache, MaskGITTransformer, TransformerLayer

__all__ = [
    "PRECISIONS",
    "check_precision",
    "prepare_for_inference",
    "prepare_tokenizer",
    "prepare_transformer",
    "CompiledLogits",
    "CastingConv2d",
    "CastingGroupNorm",
    "FusedLayer",
    "FusedLinear",
    "InferenceResBlock",
    "InferenceUpsampleConv",
    "Int8Layer",
    "Int8Linear",
    "Int8Weight",
    "PackedWeight",
    "tanh_gelu_",
]

#: Supported inference precisions and the dtype of their weights (int8: float32 weights, from which
#: the transformer's linear layers keep int8 copies; ``maskgit.models.quantized``).
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                                      "int8": torch.float32}


def check_precision(precision: str, device: torch.device | str | None = None) -> None:
    """Raise ValueError for an unknown precision, fp16 anywhere but on a CUDA device, or int8 where
    it does not run or would be slower than fp32 (``maskgit.models.quantized.int8_support``); warn
    for bf16 on a CPU without native bfloat16."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device is not None and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (CPUs have no fast float16 matmul); use bf16")
    if precision == "bf16" and device is not None:
        warn_if_bf16_is_emulated(device, "precision bf16", "precision fp32 (--precision fp32)")
    if precision == "int8" and device is not None:
        check_int8(device)


def prepare_for_inference(tokenizer: VQGAN, transformer: MaskGITTransformer, precision: str) -> None:
    """Convert both models in place for inference in ``precision`` ("fp32", "bf16", "fp16" or "int8"):
    ``prepare_tokenizer`` and ``prepare_transformer``. Preparing again, for the same or another
    precision, converts the dtypes and keeps the modules already swapped in."""
    check_precision(precision)
    prepare_tokenizer(tokenizer, precision)
    prepare_transformer(transformer, precision)


def prepare_tokenizer(tokenizer: VQGAN, precision: str) -> None:
    """The tokenizer's body in bfloat16 for ``bf16`` (float32 otherwise, int8 included), its
    codebook and output layers in float32, channels-last, ``InferenceResBlock``s for its residual
    blocks and ``InferenceUpsampleConv``s for the decoder's upsampling."""
    check_precision(precision)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    for part in (tokenizer.encoder, tokenizer.decoder):
        part.to(dtype)
        part.norm_out.float()
        part.conv_out.float()
        if dtype != torch.float32:
            # The body's first layer takes float32 images or code vectors, and the float32 output
            # layers take the body's activations: each casts its input.
            if type(part.conv_in) is nn.Conv2d:
                part.conv_in = CastingConv2d(part.conv_in)
            if type(part.norm_out) is nn.GroupNorm:
                part.norm_out = CastingGroupNorm(part.norm_out)
    tokenizer.quantizer.float()
    tokenizer.to(memory_format=torch.channels_last)
    _replace(tokenizer, ResBlock, InferenceResBlock)
    _replace(tokenizer, UpsampleConv, InferenceUpsampleConv)


def prepare_transformer(transformer: MaskGITTransformer, precision: str) -> None:
    """The transformer's weights in the compute dtype and, on a CPU in bf16, fp32 or int8 where
    oneDNN's linear primitive runs, a ``FusedLinear`` head and ``FusedLayer``s, or for int8
    ``Int8Layer``s with ``Int8Linear``s in them (on any CPU where ``check_int8`` passes; it raises
    ValueError elsewhere). Another precision turns the int8 modules back into float ones."""
    check_precision(precision)
    transformer.to(PRECISIONS[precision])
    device = next(transformer.parameters()).device
    # int8 keeps the head's dense layer in float32, so float32 decides whether it is fused.
    fused = (precision != "fp16" and device.type == "cpu"
             and FusedLinear.available(torch.bfloat16 if precision == "bf16" else torch.float32))
    if precision == "int8":
        levels = check_int8(device).levels
        _replace(transformer.layers, nn.Linear, lambda linear: Int8Linear(linear, levels))
        for kind in (TransformerLayer, FusedLayer):
            _replace(transformer, kind, lambda layer: Int8Layer(layer, levels))
    else:
        _replace(transformer, Int8Linear, _plain_linear)
        _replace(transformer, Int8Layer, FusedLayer if fused else _plain_layer)
        if fused:
            _replace(transformer, TransformerLayer, FusedLayer)
    if fused and type(transformer.mlm_dense) is nn.Linear:
        transformer.mlm_dense = FusedLinear(transformer.mlm_dense, gelu=True)
        transformer.mlm_activation = nn.Identity()  # the GELU is computed by mlm_dense now


def _replace(model: nn.Module, kind: type[nn.Module], make: Callable[[Any], nn.Module]) -> None:
    """Put ``make(module)`` in its parent in the place of every submodule of exactly the type
    ``kind``; modules already swapped in (subclasses of ``kind``) stay."""
    for path, module in list(model.named_modules()):
        if type(module) is kind:
            parent, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent), name, make(module))


def _plain_linear(linear: nn.Linear) -> nn.Linear:
    """A plain ``nn.Linear`` holding ``linear``'s parameters (built on the meta device: nothing is
    allocated or drawn from the global generator)."""
    plain = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
    plain.weight, plain.bias = linear.weight, linear.bias
    return plain.train(linear.training)


def _plain_layer(layer: TransformerLayer) -> TransformerLayer:
    """A plain ``TransformerLayer`` holding ``layer``'s submodules."""
    plain = TransformerLayer.__new__(TransformerLayer)
    _adopt(plain, layer, *_LAYER_PARTS)
    return plain


def _adopt(module: nn.Module, plain: nn.Module, *names: str) -> None:
    """Initialise ``module`` with ``plain``'s submodules ``names`` (the same objects, in the plain
    class's order, so the same state dict) and its training mode. Only ``nn.Module.__init__`` runs:
    the plain class's would build and randomly initialise layers only to drop them."""
    nn.Module.__init__(module)
    for name in names:
        setattr(module, name, getattr(plain, name))
    module.train(plain.training)


#: The submodules of a ``TransformerLayer``, in its own order (so the same state dict).
_LAYER_PARTS = ("attention", "attention_norm", "mlp_intermediate", "mlp_activation", "mlp_output", "mlp_norm",
                "dropout")


class CastingConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (the same parameters) that casts its input to its weights' dtype."""

    def __init__(self, conv: nn.Conv2d) -> None:
        # Built on the meta device: no memory and no random initialisation for weights it replaces.
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                         bias=conv.bias is not None, padding_mode=conv.padding_mode, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype))


class CastingGroupNorm(nn.GroupNorm):
    """An ``nn.GroupNorm`` (the same parameters) that casts its input to its weights' dtype."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__(norm.num_groups, norm.num_channels, eps=norm.eps, affine=norm.affine, device="meta")
        self.weight, self.bias = norm.weight, norm.bias
        self.train(norm.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.weight.dtype))


class PackedWeight:
    """oneDNN's blocked ("packed") copy of one or more linear layers' weights, stacked by rows, and
    their biases, for ``torch.ops.mkldnn._linear_pointwise``; ``linear`` and ``linear_add`` call it.

    The linear primitive reorders a plain weight into this layout on every call; keeping the copy
    saves that, and stacking the query, key and value weights gives one wide matmul, which a CPU
    runs faster than three narrow ones. The copy is made on first use, remade when a source
    parameter is replaced or changed in place (``load_state_dict`` after preparation), and is not
    copied by deepcopy.
    """

    def __init__(self, *linears: nn.Linear) -> None:
        self.linears = linears
        self._key: tuple | None = None
        self.weight: Any = None
        self.bias: torch.Tensor | None = None

    def get(self) -> tuple[Any, torch.Tensor]:
        """(packed weight, bias): the stacked weights in oneDNN's layout and the stacked biases."""
        params = [p for linear in self.linears for p in (linear.weight, linear.bias)]
        # Inference tensors have no version counter; they cannot be changed in place either.
        key = tuple((id(p), p.data_ptr(), 0 if p.is_inference() else p._version) for p in params)
        if key != self._key:
            with torch.no_grad():
                self.bias = torch.cat([linear.bias for linear in self.linears])
                self.weight = self._pack(torch.cat([linear.weight for linear in self.linears]), self.bias)
            self._key = key
        return self.weight, self.bias

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor) -> Any:
        return torch.ops.mkldnn._reorder_linear_weight(weight, None)

    def linear(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        """``linear(x)``, or ``gelu(linear(x))`` (``_GELU_FORM``), as one oneDNN call; in float32
        where oneDNN's own tanh GELU is slow (``_fuse_tanh_gelu``), the linear call and then
        ``tanh_gelu_`` on its output."""
        weight, bias = self.get()
        if gelu and (x.dtype != torch.float32 or _fuse_tanh_gelu()):
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], _GELU_FORM[x.dtype])
        y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return tanh_gelu_(y) if gelu else y

    def linear_add(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``linear(x) + residual`` as one oneDNN call."""
        weight, bias = self.get()
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")

    def __deepcopy__(self, memo: dict) -> PackedWeight:
        # Opaque oneDNN tensors cannot be deep-copied; the copy packs its own on first use.
        clone = copy.copy(self)
        clone.linears = tuple(copy.deepcopy(linear, memo) for linear in self.linears)
        clone._key = clone.weight = clone.bias = None
        return clone


class Int8Weight(PackedWeight):
    """The int8 form of ``PackedWeight``: the stacked weights quantized per output channel and
    packed for oneDNN's int8 kernel, which ``linear`` and ``linear_add`` call on activations
    quantized with ``levels`` codes (``maskgit.models.quantized``). The GELU is the official tanh
    form; the outputs are float32."""

    def __init__(self, *linears: nn.Linear, levels: int) -> None:
        super().__init__(*linears)
        self.levels = levels

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor) -> Any:
        return quantize_weight(weight, bias)

    def linear(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        return int8_linear(x, self.get()[0], self.levels, gelu=gelu)

    def linear_add(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.get()[0], self.levels, residual=residual)


#: The GELU that oneDNN fuses into a linear layer, by dtype. The official weights use the tanh
#: approximation, and float32 computes exactly that. In bfloat16 the erf form takes its place:
#: oneDNN's fused tanh GELU costs about as much as the large matmul it follows, the erf form far
#: less, and the two functions differ by at most 4.7e-4 (at x = ±2.7), below bfloat16's resolution
#: of the activations, so the swap moves the logits much less than bfloat16 itself does.
_GELU_FORM = {torch.float32: "tanh", torch.bfloat16: "none"}


@functools.cache
def _fuse_tanh_gelu() -> bool:
    """Whether oneDNN computes the float32 tanh GELU inside its linear call cheaply. Its AVX-512
    kernels do (the epilogue costs a few percent of the MLP's first matmul); with its AVX2 ones the
    fused call takes longer than the linear call followed by ``tanh_gelu_``. oneDNN's bf16 linear
    needs those AVX-512 kernels, so its availability tells the two apart."""
    return FusedLinear.available(torch.bfloat16)


#: The official tanh GELU, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), written as
#: x·sigmoid(x·(a + b·x²)) with a = 2√(2/π), b = 0.044715·a (the same function: 1 + tanh(z) =
#: 2·sigmoid(2z)). ATen's sigmoid is several times faster than its tanh on AVX2.
_GELU_A = 2 * math.sqrt(2 / math.pi)
_GELU_B = 0.044715 * _GELU_A
#: Elements per slice of ``tanh_gelu_``: 1 MiB of float32. Of 64K to 512K, the fastest on the
#: MLP activations of the shipped and the ImageNet model, both held to AVX2 and natively.
_GELU_SLICE = 1 << 18


def tanh_gelu_(x: torch.Tensor) -> torch.Tensor:
    """The official tanh GELU of a float32 tensor, written into ``x`` (no autograd) and returned:
    within 1e-6 plus 1e-6 of its magnitude of ``F.gelu(x, approximate="tanh")``, and finite
    wherever ``x`` is."""
    a = x.new_tensor(_GELU_A)
    # Four passes over the tensor; run on slices that stay in a core's L2 cache, they take a
    # third to a half of the time they take over a 10-40 MB activation from memory (measured).
    for part in x.view(-1).split(_GELU_SLICE) if x.is_contiguous() else (x,):
        t = torch.addcmul(a, part, part, value=_GELU_B)
        part.mul_(t.mul_(part).sigmoid_())
    return x


def _onednn_ready(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether the oneDNN path applies: bf16 or fp32 inference on the CPU without autograd (its
    primitives have no backward), outside torch.compile (which fuses on its own and cannot trace
    opaque oneDNN tensors), in a dtype oneDNN runs on this CPU (a model prepared in fp32 on an
    AVX2 CPU and later cast to bf16 falls back to the plain forward)."""
    return (not module.training and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.dtype in (torch.bfloat16, torch.float32) and not torch.compiler.is_compiling()
            and FusedLinear.available(x.dtype))


def _linear(x: torch.Tensor, packed: PackedWeight, gelu: bool = False) -> torch.Tensor:
    """``linear(x)``, or ``gelu(linear(x))``, as one oneDNN call on packed weights."""
    return packed.linear(x, gelu)


def _linear_add(x: torch.Tensor, residual: torch.Tensor, packed: PackedWeight) -> torch.Tensor:
    """``linear(x) + residual`` as one oneDNN call on packed weights."""
    return packed.linear_add(x, residual)


class FusedLinear(nn.Linear):
    """An ``nn.Linear`` (the same parameters) computed on the CPU (bf16 or fp32, no autograd) by
    oneDNN's linear primitive with a packed weight, its bias and optionally a GELU fused in (tanh in
    float32, erf in bfloat16: ``_GELU_FORM``); elsewhere ``F.linear`` and the tanh GELU."""

    def __init__(self, linear: nn.Linear, gelu: bool = False) -> None:
        # Built on the meta device: no memory and no random initialisation for weights it replaces
        # (drawing from the global generator would change what a seed gives after preparing).
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        self.weight, self.bias = linear.weight, linear.bias
        self.gelu = gelu
        self.packed = PackedWeight(self)
        self.train(linear.training)

    @staticmethod
    @functools.cache
    def available(dtype: torch.dtype) -> bool:
        """Whether this torch build and CPU run the oneDNN linear primitive in ``dtype``
        (``torch.float32`` or ``torch.bfloat16``). fp32 runs wherever oneDNN does (AVX2 included);
        bf16 needs AVX-512: oneDNN has no bf16 kernels below it."""
        try:
            x, w = torch.ones(1, 2, dtype=dtype), torch.ones(2, 2, dtype=dtype)
            torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w, None), None, "none", [], "")
            return True
        except (AttributeError, RuntimeError):
            return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) → (..., out_features): ``linear(x)``, or ``gelu(linear(x))``."""
        if self.bias is None or not _onednn_ready(self, x):
            y = F.linear(x, self.weight, self.bias)
            return F.gelu(y, approximate="tanh") if self.gelu else y
        return _linear(x, self.packed, gelu=self.gelu)


class FusedLayer(TransformerLayer):
    """A ``TransformerLayer`` (the same submodules, so the same parameters and state dict) whose
    CPU inference forward in bf16 or fp32 runs as four oneDNN linear calls: query, key and value as
    one matmul with their weights stacked, the attention output and the MLP output with the
    residual add fused in, and the MLP input with the GELU fused in. Its layers inside run as
    functions there, so forward hooks on them do not fire. Elsewhere (training, autograd, other
    dtypes or devices) it runs the plain forward. Context reuse (``cache``, ``positions``) runs the
    same calls on the rows given, attending to the cached keys and values.
    """

    def __init__(self, layer: TransformerLayer, weights: Callable[..., PackedWeight] = PackedWeight) -> None:
        _adopt(self, layer, *_LAYER_PARTS)
        attention = layer.attention
        self.qkv = weights(attention.query, attention.key, attention.value)
        self.attention_out = weights(attention.out)
        self.mlp_in = weights(layer.mlp_intermediate)
        self.mlp_out = weights(layer.mlp_output)

    def forward(
        self, x: torch.Tensor, cache: AttentionCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, M, hidden) → (B, M, hidden); ``cache`` and ``positions`` (context reuse) as
        ``TransformerLayer``'s."""
        if not _onednn_ready(self, x):
            return super().forward(x, cache, positions)
        batch, length, hidden = x.shape
        heads = self.attention.num_heads
        # (B, L, 3 * hidden) → three (B, heads, L, head_dim) views, as SelfAttention splits them.
        qkv = _linear(x, self.qkv)
        q, k, v = qkv.view(batch, length, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4).unbind(0)
        if cache is not None:
            k, v = cache.update(k, v, positions)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, hidden)
        x = self.attention_norm(_linear_add(attended, x, self.attention_out))
        return self.mlp_norm(_linear_add(_linear(x, self.mlp_in, gelu=True), x, self.mlp_out))


class Int8Linear(FusedLinear):
    """An ``nn.Linear`` (the same parameters) computed in int8 on the CPU without autograd
    (``Int8Weight``: its weights quantized per output channel, its input per tensor, with
    ``levels`` codes); elsewhere ``F.linear`` on the float32 weights."""

    def __init__(self, linear: nn.Linear, levels: int) -> None:
        super().__init__(linear)
        self.packed = Int8Weight(self, levels=levels)


class Int8Layer(FusedLayer):
    """A ``FusedLayer`` whose four linear calls run in int8 (``Int8Weight``, with ``levels``
    activation codes) and whose forward elsewhere is the plain one, on its linear submodules."""

    def __init__(self, layer: TransformerLayer, levels: int) -> None:
        super().__init__(layer, weights=functools.partial(Int8Weight, levels=levels))


class InferenceResBlock(ResBlock):
    """A tokenizer ``ResBlock`` (the same submodules, so the same parameters and state dict) whose
    forward without autograd writes its swish and its residual add into tensors that only this call
    holds, and in bf16 on a CPU adds the residual inside its last convolution (oneDNN's convolution
    with a fused add; the sum is rounded to bf16 once instead of twice). float32 keeps the plain
    add: oneDNN's fused kernel sums in another order there, which would move the images. Its layers
    run as functions, so forward hooks on them do not fire and nothing a hook could hold is written
    in place. With autograd it runs the plain forward.
    """

    def __init__(self, block: ResBlock) -> None:
        _adopt(self, block, "norm1", "conv1", "norm2", "conv2", "shortcut")

    @staticmethod
    @functools.cache
    def conv_add_available() -> bool:
        """Whether this torch build and CPU run oneDNN's bf16 convolution with a fused binary op."""
        try:
            x = torch.ones(1, 1, 2, 2, dtype=torch.bfloat16)
            conv = nn.Conv2d(1, 1, 1, bias=False, device="meta")  # meta: nothing drawn from the generator
            conv.weight = nn.Parameter(torch.ones(1, 1, 1, 1, dtype=torch.bfloat16), requires_grad=False)
            _conv_add(conv, x, x)
            return True
        except (AttributeError, RuntimeError):
            return False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        h = _conv(self.conv1, F.silu(_group_norm(self.norm1, x), inplace=True))
        h = F.silu(_group_norm(self.norm2, h), inplace=True)
        if x.dtype == torch.bfloat16 and _onednn_ready(self, x) and self.conv_add_available():
            if self.shortcut is None:
                return _conv_add(self.conv2, h, x)
            # The official quirk (see ResBlock): the shortcut conv reads the block's own output.
            h = _conv(self.conv2, h)
            return _conv_add(self.shortcut, h, h)
        h = _conv(self.conv2, h)
        return h.add_(x if self.shortcut is None else _conv(self.shortcut, h))


def _parity_taps(kernel: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3x3 kernel's taps along ``dim`` combined as they fall on a nearest x2 upsampled input, for
    even and odd output rows (or columns): an even row 2m reads input row m-1 through tap 0 and row
    m through taps 1 and 2; an odd row 2m+1 reads row m through taps 0 and 1 and row m+1 through
    tap 2. Each result has 2 in place of 3 along ``dim``."""
    first, middle, last = kernel.unbind(dim)
    return torch.stack((first, middle + last), dim), torch.stack((first + middle, last), dim)


class InferenceUpsampleConv(UpsampleConv):
    """An ``UpsampleConv`` (the same parameters) that without autograd convolves the input itself
    instead of its x2 upsampled copy: every output pixel of a 3x3 convolution over a nearest
    upsampled image reads only a 2x2 window of the original, through taps that depend on the
    pixel's row and column parity (``_parity_taps``). So one 2x2 convolution with the four parities'
    summed kernels stacked as output channels, over the input padded by one, computes the same
    function with 16 multiply-adds per input pixel and channel pair instead of 36, and skips the
    upsampled copy; the four parities are then interleaved. The summed kernels change the rounding
    only (about 1e-6 of the output's range in float32; the kernels are summed in float32 and cast
    to the weights' dtype). With autograd it runs the plain forward.
    """

    def __init__(self, conv: UpsampleConv) -> None:
        with torch.device("meta"):  # nothing allocated or drawn for the parameters it replaces
            super().__init__(conv.in_channels)
        self.weight, self.bias = conv.weight, conv.bias
        self.train(conv.training)

    def phase_weight(self) -> torch.Tensor:
        """(4·C, C, 2, 2) in the weight's dtype: the kernel of output parity (a, b) in rows
        (a·2 + b)·C to (a·2 + b + 1)·C."""
        kernels = [column for row in _parity_taps(self.weight.float(), 2) for column in _parity_taps(row, 3)]
        return torch.cat(kernels).to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().forward(x)
        batch, _, height, width = x.shape
        channels = self.out_channels
        bias = None if self.bias is None else self.bias.repeat(4)
        # (B, 4C, h+1, w+1): parity (a, b)'s output for pixel (m, n) is at (m + a, n + b).
        phases = F.conv2d(F.pad(x, (1, 1, 1, 1)), self.phase_weight(), bias)
        phases = phases.view(batch, 2, 2, channels, height + 1, width + 1)
        out = torch.empty((batch, channels, 2 * height, 2 * width), dtype=phases.dtype, device=phases.device,
                          memory_format=torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
                          else torch.contiguous_format)
        for a in (0, 1):
            for b in (0, 1):
                out[:, :, a::2, b::2] = phases[:, a, b, :, a:a + height, b:b + width]
        return out


def _group_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _conv_add(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``conv(x) + other`` as one oneDNN call; ``other`` has the convolution's output shape."""
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, other, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
        "add", None, None, [], None)


class CompiledLogits:
    """A ``torch.compile``d ``codebook_logits`` that the decoding engine calls like a transformer.

    ``mode`` defaults to ``"reduce-overhead"`` on CUDA, which captures each static-shape step in a
    CUDA graph, and to the default (fused elementwise kernels) elsewhere.

    Context reuse (a call with ``cache``) runs the transformer's own, uncompiled forms: its cheap
    steps change shape as tokens are decided, and a CUDA graph would overwrite the cached keys and
    values that it returned on its next replay. So a sampler with ``context_reuse`` gains nothing
    from compiling.
    """

    def __init__(self, transformer: MaskGITTransformer, mode: str | None = None, **options: Any) -> None:
        device = next(transformer.parameters()).device
        if mode is None and device.type == "cuda":
            mode = "reduce-overhead"
        self.transformer = transformer
        self.config = transformer.config
        self.compiled = torch.compile(transformer.codebook_logits, mode=mode, dynamic=False, **options)

    def check_ids(self, ids: torch.Tensor) -> None:
        self.transformer.check_ids(ids)

    def context_cache(self) -> ContextCache:
        return self.transformer.context_cache()

    def codebook_logits(
        self, ids: torch.Tensor, *, cache: ContextCache | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``MaskGITTransformer.codebook_logits``: compiled without ``cache``, eager with it."""
        if cache is None:
            return self.compiled(ids)
        return self.transformer.codebook_logits(ids, cache=cache, positions=positions)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.compiled(ids)
