"""int8 kernels for the transformer's linear layers, timed against float32 and bfloat16 on this CPU,
and how far int8 moves the logits from float32: the measurements behind ``precision="int8"``
(``maskgit.models.quantized``).

    python benchmarks/int8_kernels.py --threads 2 --json benchmarks/results/int8-kernels.json

**Kernels.** Each case is one transformer layer's four linear shapes (query, key and value stacked;
the attention output; the MLP's two layers) on the tokens of one pass: ImageNet 256 (768 wide, MLP
3072) at batch 1 and 8 (257 tokens an image) and the shipped ``fashion-mnist`` model (256 wide,
MLP 1024) on the README's 80 images with guidance (2 x 80 x 65 tokens). Every int8 kernel's time
includes quantizing its input at each call. The kernels:

- ``fp32 oneDNN``: float32 on weights packed once for oneDNN (``PackedWeight``, what ``FusedLayer``
  runs); ``fp32 F.linear``: torch's float32 linear (MKL), what the plain layers run;
  ``bf16 oneDNN``: as the first in bfloat16, where oneDNN has a bf16 linear (AVX-512 and newer).
- ``int8 oneDNN, per tensor``: this package's int8 path (``Int8Weight``): uint8 activations with one
  scale per tensor, oneDNN's int8 linear with the bias fused.
- ``int8 oneDNN, per token``: int8 activations with one scale per token; oneDNN's kernel takes one
  activation scale, so each row is rescaled (and the bias added) in a pass after it.
- ``int8 torch._int_mm, per token``: the same on torch's int8 matmul (int32 out), scaled after.
- ``torchao``: torchao's ``Int8DynamicActivationInt8WeightConfig`` (per token), eager, when torchao
  is installed (``pip install torchao``; it is not a dependency).
- ``torch.ao quantize_dynamic``: the deprecated dynamic quantization (fbgemm), per tensor.
- ``quantization alone``: quantizing the four inputs per tensor, the int8 path's overhead.

The ``layer`` rows time one whole layer as the package prepares it for each precision (attention,
softmax and LayerNorms included, all float32 in int8).

``--isa AVX2`` (a default) and ``AVX512_CORE`` repeat the timing in processes whose oneDNN, MKL,
fbgemm and torch kernels are limited to that instruction set (``ONEDNN_MAX_CPU_ISA`` and the
like): what a CPU without AVX-512, and one without VNNI, would run, on this CPU's cores (their
caches and clocks stay this CPU's). Without VNNI the package's int8 runs on 7-bit activations (``Int8Support``).

**Accuracy.** int8 logits against float32 ones, on the shipped model (its inputs at every step of
a guided generation of one image a class, seed 0) and on the ImageNet 256 transformer with random
weights (random tokens, from nearly none to all masked): the relative RMS error, the largest error
at a position relative to that position's largest logit, and how often the most likely token is
the same. Variants: per tensor or per token, 8 or 7 bits, and the head's dense layer and the logits
layer in int8 too; bf16 beside them for scale.

**Generation quality.** ``--quality N`` generates N images of each class with the shipped model's
default sampler, seed 0, in fp32, in int8 and in int8 on 7-bit activations (what a CPU without
VNNI computes: the integer products are exact on either), and scores them with the shipped
evaluator as the sampler comparison does (``sampler_comparison.run_setting``): accuracy, the worst
class, FID against the test set beside the floor on as many real images, and diversity.

Timings are the best of ``--rounds`` rounds in which every kernel of a case runs once in turn.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/tables.py, also when loaded by path
from tables import ISA_LIMITS, device_name, provenance, write_results  # noqa: E402

#: name → (model, width, MLP width, heads, batch, tokens an image).
CASES = {
    "ImageNet 256, batch 1": ("imagenet256", 768, 3072, 16, 1, 257),
    "ImageNet 256, batch 8": ("imagenet256", 768, 3072, 16, 8, 257),
    "fashion-mnist, 80 images guided": ("fashion-mnist", 256, 1024, 8, 160, 65),
}


# -- the kernels ------------------------------------------------------------------------------------


def per_token_linear(x: torch.Tensor, weight: Any, levels: int = 256, gelu: bool = False,
                     residual: torch.Tensor | None = None) -> torch.Tensor:
    """``maskgit.models.quantized.int8_linear`` with one symmetric int8 scale per token instead of
    one per tensor: oneDNN's kernel at activation scale 1, then each row rescaled and the bias added."""
    bound = levels // 2 - 1
    scale = x.abs().amax(-1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny).div_(bound)
    codes = torch.round(x / scale).to(torch.int8)
    y = torch.ops.onednn.qlinear_pointwise(codes, 1.0, 0, weight.packed, weight.scales, weight.zero_points, None,
                                           1.0, 0, torch.float32, "none", [], "")
    y = torch.addcmul(weight.bias, y, scale)
    y = F.gelu(y, approximate="tanh") if gelu else y
    return y if residual is None else y.add_(residual)


def _linears(width: int, mlp: int) -> list[nn.Linear]:
    """One layer's four linear shapes (query, key and value stacked), with the official initialiser."""
    torch.manual_seed(0)
    linears = [nn.Linear(width, 3 * width), nn.Linear(width, width), nn.Linear(width, mlp), nn.Linear(mlp, width)]
    for linear in linears:
        nn.init.trunc_normal_(linear.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.normal_(linear.bias, std=0.02)
    return linears


def kernels(width: int, mlp: int, tokens: int) -> dict[str, Callable[[], Any]]:
    """name → a call that runs the four linear shapes on ``tokens`` rows, for every kernel that runs here."""
    from maskgit.models.inference import FusedLinear, Int8Weight, PackedWeight
    from maskgit.models.quantized import int8_support, quantize_activations, quantize_weight

    linears = _linears(width, mlp)
    torch.manual_seed(1)
    inputs = [torch.randn(tokens, width)] * 3 + [F.gelu(torch.randn(tokens, mlp), approximate="tanh")]
    pairs = list(zip(linears, inputs))
    out: dict[str, Callable[[], Any]] = {}
    packed = [PackedWeight(linear) for linear in linears]
    out["fp32 oneDNN"] = lambda: [p.linear(x) for p, x in zip(packed, inputs)]
    out["fp32 F.linear"] = lambda: [F.linear(x, linear.weight, linear.bias) for linear, x in pairs]
    if FusedLinear.available(torch.bfloat16):  # oneDNN has no bf16 linear below AVX-512 (nor under an AVX2 limit)
        bf16 = [PackedWeight(copy.deepcopy(linear).bfloat16()) for linear in linears]
        bf16_inputs = [x.bfloat16() for x in inputs]
        out["bf16 oneDNN"] = lambda: [p.linear(x) for p, x in zip(bf16, bf16_inputs)]
    support = int8_support()
    if not isinstance(support, str):
        levels = support.levels
        int8 = [Int8Weight(linear, levels=levels) for linear in linears]
        out["int8 oneDNN, per tensor (maskgit)"] = lambda: [w.linear(x) for w, x in zip(int8, inputs)]
        weights = [quantize_weight(linear.weight, linear.bias) for linear in linears]
        out["int8 oneDNN, per token"] = lambda: [per_token_linear(x, w, levels) for w, x in zip(weights, inputs)]
        transposed = [torch.round(linear.weight.detach() / w.scales[:, None]).to(torch.int8).t() for linear, w in
                      zip(linears, weights)]

        def int_mm():
            for x, w, t in zip(inputs, weights, transposed):
                scale = x.abs().amax(-1, keepdim=True).div_(127)
                torch._int_mm(torch.round(x / scale).to(torch.int8), t).float().mul_(scale).mul_(w.scales).add_(w.bias)

        out["int8 torch._int_mm, per token"] = int_mm
        out["quantization alone (per tensor)"] = lambda: [quantize_activations(x, levels) for x in inputs]
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        torchao = [copy.deepcopy(linear) for linear in linears]
        for linear in torchao:
            quantize_(linear, Int8DynamicActivationInt8WeightConfig())
        out["torchao Int8DynamicActivationInt8Weight, per token"] = lambda: [linear(x) for linear, x in zip(torchao, inputs)]
    except ImportError:
        pass
    with warnings.catch_warnings():  # it warns that it is deprecated: that is why it is measured, not used
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        dynamic = [quantize_dynamic(nn.Sequential(copy.deepcopy(linear)), {nn.Linear}, dtype=torch.qint8)
                   for linear in linears]
    out["torch.ao quantize_dynamic (deprecated), per tensor"] = lambda: [m(x) for m, x in zip(dynamic, inputs)]
    return out


def layers(model: str, width: int, mlp: int, heads: int, batch: int, length: int) -> dict[str, Callable[[], Any]]:
    """name → a call of one whole transformer layer as the package prepares it in each precision."""
    from maskgit import MaskGITTransformer
    from maskgit.configs import TransformerConfig
    from maskgit.models.inference import prepare_transformer
    from maskgit.models.quantized import int8_support

    config = TransformerConfig(hidden_size=width, intermediate_size=mlp, num_heads=heads, num_layers=1, dropout=0.0)
    torch.manual_seed(2)
    x = torch.randn(batch, length, width)
    out = {}
    for precision in ("fp32", "bf16", "int8"):
        if precision == "int8" and isinstance(int8_support(), str):
            continue
        transformer = MaskGITTransformer(config).eval()
        prepare_transformer(transformer, precision)
        layer, inputs = transformer.layers[0], x.to(next(transformer.parameters()).dtype)
        out[f"layer, {precision}"] = lambda layer=layer, inputs=inputs: layer(inputs)
    return out


def time_calls(calls: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Best and median seconds of each call over ``rounds`` rounds, every call once a round in turn."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():  # warm-up: packing, first-touch memory
            call()
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                seconds[name].append(time.perf_counter() - start)
    return {name: {"best_s": min(values), "median_s": sorted(values)[len(values) // 2]} for name, values in seconds.items()}


def measure_speed(threads: int, rounds: int) -> dict[str, Any]:
    """Every kernel and layer of every case, in this process."""
    from maskgit.models.quantized import int8_support

    torch.set_num_threads(threads)
    support = int8_support()
    cases = []
    for name, (model, width, mlp, heads, batch, length) in CASES.items():
        tokens = batch * length
        calls = {**kernels(width, mlp, tokens), **layers(model, width, mlp, heads, batch, length)}
        flops = 2 * tokens * width * (6 * width + 2 * mlp)  # the four linear shapes
        times = time_calls(calls, rounds)
        cases.append({"case": name, "tokens": tokens, "linear_gflop": flops / 1e9, "kernels": times})
        print(f"{name}: {tokens} tokens", flush=True)
        for kernel, result in times.items():
            print(f"  {kernel:<54}{1e3 * result['best_s']:9.2f} ms (median {1e3 * result['median_s']:.2f})", flush=True)
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "int8": support if isinstance(support, str) else {"levels": support.levels}, "cases": cases}


# -- accuracy --------------------------------------------------------------------------------------


def _errors(logits: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Relative RMS error, the largest error at a position over that position's largest |logit|, and
    the fraction of positions whose most likely token is the same."""
    difference = logits - reference
    return {"relative_rms": (difference.norm() / reference.norm()).item(),
            "max_relative": (difference.abs().amax(-1) / reference.abs().amax(-1)).max().item(),
            "argmax_agreement": (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()}


def _shipped_inputs() -> tuple[Any, torch.Tensor]:
    """The shipped transformer (plain, float32) and its inputs (N, 65) at every step of a guided
    generation of one image a class, seed 0, with its default sampler."""
    from maskgit import MaskGIT
    from maskgit.models import MaskGITTransformer
    from maskgit.registry import resolve_pretrained

    pipe = MaskGIT.from_pretrained("fashion-mnist")
    pipe.set_progress_bar_config(disable=True)
    seen, logits = [], pipe.transformer.codebook_logits
    pipe.transformer.codebook_logits = lambda ids: seen.append(ids.clone()) or logits(ids)  # the engine calls this
    pipe.generate(list(range(len(pipe.class_names))), seed=0)
    plain = MaskGITTransformer.from_pretrained(resolve_pretrained("fashion-mnist") / "transformer").eval()
    return plain, torch.cat(seen)


def _imagenet_inputs() -> tuple[Any, torch.Tensor]:
    """The ImageNet 256 transformer with random weights (seed 0) and 8 sequences of random tokens,
    masked from 5 % to all of them."""
    from maskgit import MaskGITTransformer
    from maskgit.configs import TRANSFORMER_PRESETS

    torch.manual_seed(0)
    model = MaskGITTransformer(TRANSFORMER_PRESETS["imagenet256"]).eval()
    config, generator = model.config, torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.codebook_size, (8, config.num_tokens + 1), generator=generator)
    masked = torch.rand(ids.shape, generator=generator) < torch.linspace(0.05, 1.0, 8)[:, None]
    ids = torch.where(masked, -1, ids)
    ids[:, 0] = config.codebook_size + torch.randint(0, config.num_classes, (8,), generator=generator)
    return model, ids


def _variant_logits(plain: Any, ids: torch.Tensor, variant: str) -> torch.Tensor:
    """Codebook logits of ``plain`` prepared as ``variant`` describes."""
    import maskgit.models.inference as inference
    from maskgit.models.inference import Int8Linear, prepare_transformer
    from maskgit.models.quantized import int8_linear, quantize_weight

    model = copy.deepcopy(plain)
    if variant == "bf16":
        prepare_transformer(model, "bf16")
        with torch.inference_mode():
            return model.codebook_logits(ids).float()
    prepare_transformer(model, "int8")
    levels = 128 if "7 bits" in variant else 256
    for module in model.modules():
        for weights in vars(module).values():
            if isinstance(weights, inference.Int8Weight):
                weights.levels = levels
    if "head" in variant:
        model.mlm_dense = Int8Linear(model.mlm_dense, levels)
        model.mlm_dense.gelu, model.mlm_activation = True, nn.Identity()
    original = inference.int8_linear
    inference.int8_linear = per_token_linear if "per token" in variant else original
    try:
        with torch.inference_mode():
            if "logits" in variant:
                size = model.config.codebook_size
                weight = quantize_weight(model.word_embeddings.weight[:size], model.mlm_bias[:size])
                return int8_linear(model._hidden(ids), weight, levels)
            return model.codebook_logits(ids)
    finally:
        inference.int8_linear = original


VARIANTS = ("int8 per tensor, 8 bits (maskgit with VNNI or AMX)", "int8 per tensor, 7 bits (maskgit without VNNI)",
            "int8 per token, 8 bits", "int8 per token, 7 bits", "int8 per tensor, 8 bits, head in int8",
            "int8 per tensor, 8 bits, head and logits in int8", "bf16")


def measure_accuracy() -> list[dict[str, Any]]:
    rows = []
    for model_name, load in (("fashion-mnist", _shipped_inputs), ("ImageNet 256, random weights", _imagenet_inputs)):
        plain, ids = load()
        with torch.inference_mode():
            reference = plain.codebook_logits(ids)
        for variant in VARIANTS:
            errors = _errors(_variant_logits(plain, ids, variant), reference)
            rows.append({"model": model_name, "positions": ids.numel(), "variant": variant, **errors})
            print(f"{model_name:<30}{variant:<52}" + "  ".join(f"{k} {v:.4f}" for k, v in errors.items()), flush=True)
    return rows


def measure_quality(num_per_class: int) -> list[dict[str, Any]]:
    """The shipped model's images in fp32 and int8 (8 and 7 bits), scored by the shipped evaluator."""
    from sampler_comparison import run_setting

    import maskgit.models.quantized as quantized
    from maskgit import MaskGIT
    from maskgit.evaluation.evaluate import GenerationEvaluator
    from maskgit.runs import RunPlan

    evaluator, rows = GenerationEvaluator(), []
    probe = quantized._probe_levels
    for name, precision, levels in (("fp32", "fp32", None), ("int8, 8 bits", "int8", 256), ("int8, 7 bits", "int8", 128)):
        if levels is not None:
            if isinstance(quantized.int8_support(), str):
                continue
            quantized._probe_levels = lambda levels=levels: levels  # 7 bits: the same integer products as without VNNI
        try:
            pipe = MaskGIT.from_pretrained("fashion-mnist", precision=precision)
        finally:
            quantized._probe_levels = probe
        pipe.set_progress_bar_config(disable=True)
        plan = RunPlan(tuple(range(len(pipe.class_names))), num_per_class)
        row = run_setting(pipe, evaluator, pipe.sampler.to_dict(), plan, seed=0, batch_size=250)
        rows.append({"variant": name, **{key: row[key] for key in (
            "accuracy", "worst_class_accuracy", "worst_class", "fid", "fid_floor", "diversity", "images", "seconds")}})
        print(f"{name:<14} accuracy {100 * row['accuracy']:.1f} %, worst {row['worst_class']} "
              f"{100 * row['worst_class_accuracy']:.0f} %, FID {row['fid']:.2f} (floor {row['fid_floor']:.2f}), "
              f"diversity {100 * row['diversity']:.1f} %", flush=True)
    return rows


# -- the run ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (every kernel once a round)")
    parser.add_argument("--isa", nargs="+", default=["native", "AVX2"], choices=tuple(ISA_LIMITS),
                        help="instruction sets to time under (native: all this CPU has; AVX512_CORE is not a default: "
                        "on this project's CPU that run did not finish in reasonable time, cause not found)")
    parser.add_argument("--no-accuracy", action="store_true", help="no logits comparison")
    parser.add_argument("--quality", type=int, default=20, metavar="N",
                        help="generate and score N images of each class in fp32 and int8 (0: skip)")
    parser.add_argument("--json", default=None, help="write the results here (and the table beside it)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100:
        parser.error(f"--rounds must be 1 to 100, got {args.rounds}")
    if not 0 <= args.quality <= 1000:
        parser.error(f"--quality must be 0 to 1000, got {args.quality}")
    if args.worker:  # one instruction set, in the environment the parent set
        print(json.dumps(measure_speed(args.threads, args.rounds)))
        return
    report: dict[str, Any] = {"kind": "int8-kernels", "provenance": provenance(device_name("cpu", args.threads)),
                              "torch": torch.__version__, "rounds": args.rounds, "runs": []}
    try:
        report["torchao"] = version("torchao")
    except PackageNotFoundError:  # not installed: its row is left out
        report["torchao"] = None
    for isa in args.isa:
        print(f"\n{isa}", flush=True)
        command = [sys.executable, __file__, "--worker", "--threads", str(args.threads), "--rounds", str(args.rounds)]
        output = subprocess.run(command, env={**os.environ, **ISA_LIMITS[isa]}, capture_output=True, text=True)
        if output.returncode != 0:
            raise SystemExit(f"{isa}: the worker failed:\n{output.stderr[-2000:]}")
        result = json.loads(output.stdout.strip().splitlines()[-1])
        print("\n".join(output.stdout.strip().splitlines()[:-1]))
        report["runs"].append({"isa": isa, "environment": ISA_LIMITS[isa], **result})
    if not args.no_accuracy:
        print("\naccuracy", flush=True)
        torch.set_num_threads(args.threads)
        report["accuracy"] = measure_accuracy()
    if args.quality:
        print("\ngeneration quality", flush=True)
        torch.set_num_threads(args.threads)
        report["quality"] = {"num_per_class": args.quality, "seed": 0, "rows": measure_quality(args.quality)}
    if args.json:
        print(f"wrote {args.json} and {write_results(args.json, report)}")


if __name__ == "__main__":
    main()
