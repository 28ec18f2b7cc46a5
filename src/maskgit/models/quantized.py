"""int8 arithmetic for the transformer's linear layers on a CPU: the weights quantized once, the
activations at every call, and oneDNN's int8 linear kernel (``torch.ops.onednn.qlinear_pointwise``,
the kernel PyTorch's own x86 int8 inference lowers to) multiplying them.

- **Weights**: int8, symmetric, one scale per output channel (``max |w| / 127`` of its row),
  packed once into oneDNN's layout (``QuantizedWeight``).
- **Activations**: uint8, asymmetric, one scale and zero point per tensor, taken from the tensor's
  own minimum and maximum at every call (dynamic quantization, ``quantize_activations``). The
  GELU's outputs (above -0.17) use the whole code range this way. One scale per token moves the
  logits less, but oneDNN's kernel takes one activation scale, so it costs a pass over every
  output after the kernel, which made it much slower: ``benchmarks/int8_kernels.py``
  measures both, and the other int8 kernels of torch and torchao.
- **Output**: float32, with the bias and optionally the GELU (the official tanh form) or a
  residual add computed inside the kernel.

Whether int8 runs, and how, is decided from the hardware at run time (``int8_support``): oneDNN's
int8 kernels need x86 with AVX2 or newer (elsewhere int8 would be slower than float32), and
without VNNI (AVX-512 VNNI, AVX-VNNI or AMX) they add pairs of uint8 x int8 products in 16 bits,
which saturates on 8-bit activations. A probe of the kernel on the worst case tells which
applies, and the activations then use 7 bits (``Int8Support.levels``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Int8Support", "QuantizedWeight", "int8_support", "check_int8", "quantize_activations", "quantize_weight",
           "int8_linear"]

#: torch's CPU kernel levels (``torch.backends.cpu.get_cpu_capability()``) with oneDNN int8
#: kernels faster than float32: x86 with AVX2 or AVX-512.
INT8_CPU_CAPABILITIES = ("AVX2", "AVX512")


@dataclass(frozen=True)
class Int8Support:
    """How int8 runs on this machine: ``levels`` activation codes, 256 (8 bits: VNNI or AMX) or
    128 (7 bits: AVX2 or AVX-512 without VNNI, whose 16-bit pair sums would saturate on 8 bits)."""

    levels: int


def _cpu_capability() -> str:
    """torch's CPU kernel level: ``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, or an Arm or other level."""
    return torch.backends.cpu.get_cpu_capability()


def _exact_levels(multiply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> int | None:
    """The most activation levels (256 or 128) on which ``multiply(codes, weight)`` (uint8 (4, 64) x
    int8 (16, 64) → float32 (4, 16), unscaled) is exact on the worst case for 16-bit pair sums,
    uint8 ``levels - 1`` times int8 127; None when it is exact on neither."""
    weight = torch.full((16, 64), 127, dtype=torch.int8)
    for levels in (256, 128):
        result = multiply(torch.full((4, 64), levels - 1, dtype=torch.uint8), weight)
        if torch.equal(result, torch.full((4, 16), 64.0 * (levels - 1) * 127)):
            return levels
    return None


def _onednn_multiply(codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``codes @ weight.T`` by oneDNN's int8 linear, unscaled."""
    out_features = weight.shape[0]
    return torch.ops.onednn.qlinear_pointwise(
        codes, 1.0, 0, torch.ops.onednn.qlinear_prepack(weight, None), torch.ones(out_features),
        torch.zeros(out_features, dtype=torch.long), None, 1.0, 0, torch.float32, "none", [], "")


@functools.cache
def _probe_levels() -> int | None:
    """``_exact_levels`` of oneDNN's int8 linear; None where this torch build has none."""
    try:
        return _exact_levels(_onednn_multiply)
    except (AttributeError, RuntimeError, NotImplementedError):
        return None


def int8_support(device: torch.device | str = "cpu") -> Int8Support | str:
    """How int8 runs on ``device`` (``Int8Support``), or why it does not: a one-line reason."""
    device = torch.device(device)
    if device.type == "cuda":
        return "precision int8 runs on CPUs only (oneDNN's int8 kernels); on CUDA use bf16 or fp16"
    if device.type != "cpu":
        return f"precision int8 runs on CPUs only (oneDNN's int8 kernels); on {device.type} use fp32"
    capability = _cpu_capability()
    if capability not in INT8_CPU_CAPABILITIES:
        return (f"precision int8 needs an x86 CPU with AVX2 or newer, where oneDNN's int8 kernels beat float32; "
                f"torch runs {capability} kernels on this CPU: use fp32")
    levels = _probe_levels()
    if levels is None:
        return ("precision int8: this torch build has no working oneDNN int8 linear kernel "
                "(torch.ops.onednn.qlinear_pointwise); use fp32")
    return Int8Support(levels)


def check_int8(device: torch.device | str = "cpu") -> Int8Support:
    """``int8_support(device)``, or ValueError with its reason."""
    support = int8_support(device)
    if isinstance(support, str):
        raise ValueError(support)
    return support


@dataclass
class QuantizedWeight:
    """A linear layer's weights in int8, packed for oneDNN, with their float32 scales (out,),
    zero points (out,; all 0, the weights are symmetric) and float32 bias (out,)."""

    packed: torch.Tensor
    scales: torch.Tensor
    zero_points: torch.Tensor
    bias: torch.Tensor | None


def quantize_weight(weight: torch.Tensor, bias: torch.Tensor | None = None) -> QuantizedWeight:
    """float (out, in) weights → int8 codes ``round(w / scale)`` in [-127, 127] with one scale per
    output channel, ``max |w| / 127`` of its row, packed once for ``int8_linear``."""
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=1).div_(127).clamp_(min=torch.finfo(torch.float32).tiny)
    codes = torch.round(weight / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return QuantizedWeight(torch.ops.onednn.qlinear_prepack(codes, None), scales,
                           torch.zeros(weight.shape[0], dtype=torch.long),
                           None if bias is None else bias.detach().float())


def quantize_activations(x: torch.Tensor, levels: int = 256) -> tuple[torch.Tensor, float, int]:
    """float32 x (...) → (uint8 codes (...) in [0, levels), scale, zero point) with
    ``x ≈ scale * (codes - zero_point)``: one scale for the whole tensor, over the range
    [min(x, 0), max(x, 0)] (so that 0 is exact). Raises ValueError on inf or NaN.

    Two passes after the minimum and maximum: one multiply-add, one conversion. The range spans
    ``levels - 2`` steps and the zero point is rounded up, so every ``x / scale + zero_point + 0.5``
    lies in [0.5, levels - 0.5) and the conversion's truncation rounds it to the nearest code
    without a clamp.
    """
    low, high = (float(value) for value in torch.aminmax(x))
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError("int8: the activations hold inf or NaN")
    low, high = min(low, 0.0), max(high, 0.0)
    # The floor keeps 1 / scale finite in float32 when the range is subnormal (all but zero).
    scale = max((high - low) / (levels - 2), torch.finfo(torch.float32).tiny) if high > low else 1.0
    zero_point = math.ceil(-low / scale)
    offset = torch.tensor(zero_point + 0.5, dtype=x.dtype)
    return torch.add(offset, x, alpha=1 / scale).to(torch.uint8), scale, zero_point


def int8_linear(x: torch.Tensor, weight: QuantizedWeight, levels: int = 256, gelu: bool = False,
                residual: torch.Tensor | None = None) -> torch.Tensor:
    """float32 x (..., in) → float32 (..., out): ``linear(x)``, ``gelu(linear(x))`` (tanh form) or
    ``linear(x) + residual`` (residual: float32, the output's shape), with x quantized per tensor
    to ``levels`` codes and multiplied in int8 by oneDNN."""
    codes, scale, zero_point = quantize_activations(x, levels)
    if residual is not None:
        return torch.ops.onednn.qlinear_pointwise.binary(
            codes, scale, zero_point, weight.packed, weight.scales, weight.zero_points, residual, weight.bias,
            1.0, 0, torch.float32, 1.0, 0, "add", 1.0, "none", [], "")
    return torch.ops.onednn.qlinear_pointwise(
        codes, scale, zero_point, weight.packed, weight.scales, weight.zero_points, weight.bias, 1.0, 0,
        torch.float32, "gelu" if gelu else "none", [], "tanh" if gelu else "")
