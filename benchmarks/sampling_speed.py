"""Sampling speed of full-size MaskGIT models: the reference path against our fast paths, timed in
one run on one machine, each path in its own process (so that its peak memory is its own).

Paths:
- ``maskgit-torch`` (with ``--maskgit-torch DIR``, ImageNet cases, CPU): that port's own code,
  run as its generation script runs it, for checking that ``reference`` is a fair stand-in.
- ``reference``: what the existing PyTorch ports do: float32, eager, autograd left on, attention
  through torch's default dispatch (as their ``nn.MultiheadAttention`` does), logits over the whole
  vocabulary, an NCHW float32 decoder.
- ``fp32``: ``MaskGIT.to_precision("fp32")``: inference mode, codebook-only logits, a channels-last
  decoder.
- ``bf16``: the same with the weights in bfloat16 (quantizer and output layers float32) and, on a
  CPU, each transformer layer as four oneDNN linear calls (``FusedLayer``).
- ``int8`` (CPU): ``MaskGIT.to_precision("int8")``: the fp32 path with the transformer's linear
  layers in int8 (``Int8Layer``); measured against the peak of oneDNN's int8 linear, activation
  quantization included.
- ``fp16`` (CUDA only); any fast path with ``+compile`` (``MaskGIT.compile``) and/or ``+reuse``
  (``maskgit.reuse_freed_memory()``, which the ``maskgit`` command calls: glibc keeps freed memory
  for reuse), e.g. ``bf16+reuse``, and/or ``+ctxN``: the case's sampler with context reuse N
  (``Sampler.context_reuse``: N cheap steps after each full evaluation), e.g. ``fp32+ctx2``, and
  ``+ctxNg`` the same under ReCAP's grouped rule (``ConfidenceSampler.reuse_group``: each full
  evaluation picks the tokens that its cheap steps fix, and they recompute only those).

Cases: ImageNet 256 / 512 architectures with random weights (the speed does not depend on the
values), batch sizes and step counts from the flags, and the shipped ``fashion-mnist`` model at its
own defaults (80 images: 8 of each class).

For each case and path it reports images/s, the split between the transformer steps and the
decoder (of one call in a fresh process, or with ``--repeats N`` the median of calls 2..N, so a
warm process; the first call's time is kept as ``first_call_s``), the process's peak memory, the
achieved GFLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on one step and one decode) as a
fraction of the matmul peak measured in the same run, and the speed-up over ``reference``. It
writes everything to a JSON file.

    python benchmarks/sampling_speed.py --threads 2 --json benchmarks/results/cpu.json   # and cpu.md, its table
    python benchmarks/sampling_speed.py --threads 2 --maskgit-torch ../maskgit-torch --no-shipped
    python benchmarks/sampling_speed.py --sizes 256 512 --batches 1 8 --steps 8 16 --device cuda --paths reference bf16 fp16 bf16+compile
    python benchmarks/sampling_speed.py --threads 2 --repeats 2 --paths reference fp32 bf16 fp32+reuse bf16+reuse
    python benchmarks/sampling_speed.py --threads 2 --paths fp32 fp32+ctx1 fp32+ctx2 fp32+ctx3 --json benchmarks/results/context-reuse-cpu-2core.json
    python benchmarks/sampling_speed.py --threads 2 --paths fp32 bf16 int8 --no-shipped
    python benchmarks/sampling_speed.py --threads 2 --isa AVX2 --paths fp32 int8 int8+ctx2 --maskgit-torch ../maskgit-torch
    python benchmarks/sampling_speed.py --threads 2 --rounds 3 --paths fp32 int8+ctx2g --maskgit-torch ../maskgit-torch --no-shipped

``--rounds N`` times every path N times, once a round, and reports each path's median round: the
ratios between paths are then the median of each round's own ratio. A virtual machine's speed
drifts, which moves a ratio of two paths timed minutes apart far less than one of paths timed at
either end of a run.

``--isa AVX2`` holds every library's kernels to AVX2 (``tables.ISA_LIMITS``): on a CPU with AVX-512
it stands in for one without AVX-512 and native bf16; the results file records the limit.

A ``+ctxN`` path's FLOPs are counted on one image's whole decoding with that sampler (its cheap
steps compute fewer rows), so its GFLOP/s is the work it did, not the work it saved.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/tables.py, also when loaded by path
from tables import (  # noqa: E402
    ISA_LIMITS,
    context_reuse_modifier,
    device_name,
    hold_to_isa,
    provenance,
    speed_ratio,
    write_results,
)

PRESETS = {256: "imagenet256", 512: "imagenet512"}


# -- in the worker process ------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _models(case: dict[str, Any], device: torch.device):
    from maskgit import VQGAN, MaskGIT, MaskGITTransformer
    from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS

    if case["model"] == "fashion-mnist":
        from maskgit.registry import resolve_pretrained

        # The plain models (a pipeline prepares its own, whose oneDNN calls FLOP counting misses)
        # and the sampler the model's folder records.
        folder = resolve_pretrained("fashion-mnist")
        return (VQGAN.from_pretrained(folder / "tokenizer", device=device).eval(),
                MaskGITTransformer.from_pretrained(folder / "transformer", device=device).eval(),
                MaskGIT.from_pretrained(folder, device=device).sampler)
    torch.manual_seed(0)
    preset = PRESETS[case["size"]]
    tokenizer = VQGAN(TOKENIZER_PRESETS[preset]).to(device).eval()
    transformer = MaskGITTransformer(TRANSFORMER_PRESETS[preset]).to(device).eval()
    from maskgit.sampling import ConfidenceSampler

    return tokenizer, transformer, ConfidenceSampler(num_steps=case["steps"])


def _reference_generate(tokenizer, transformer, classes: torch.Tensor, num_steps: int) -> tuple[torch.Tensor, float]:
    """The ports' loop: grad on, full-vocabulary logits, multinomial draws and Gumbel re-masking,
    an NCHW float32 decoder. Returns images and the decoder's share of time.

    Attention goes through torch's default dispatch, as maskgit-torch's ``nn.MultiheadAttention``
    (with ``need_weights=False``) sends it to the fused CPU kernel; forcing the math kernel made this
    path 1.9x slower than maskgit-torch's own code."""
    from maskgit.sampling import MASK_ID, clamp_num_masked, scheduled_num_masked

    config = transformer.config
    batch, length = classes.shape[0], config.num_tokens + 1
    ids = torch.full((batch, length), MASK_ID, dtype=torch.long, device=classes.device)
    ids[:, 0] = classes + config.codebook_size
    unknown0 = torch.full((batch,), config.num_tokens)
    scheduled = scheduled_num_masked("cosine", torch.arange(num_steps)[:, None], num_steps, unknown0)
    gumbel = torch.distributions.Gumbel(0.0, 1.0)
    for step in range(num_steps):
        logits = transformer(ids)[..., : config.codebook_size]
        probs = torch.softmax(logits, dim=-1)
        sampled = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(batch, length)
        unknown = ids == MASK_ID
        sampled = torch.where(unknown, sampled, ids)
        picked = torch.gather(probs, -1, sampled.clamp(max=config.codebook_size - 1)[..., None])[..., 0]
        picked = torch.where(unknown, picked, torch.inf)
        ratio = 1.0 - (step + 1) / num_steps
        confidence = torch.log(picked) + 4.5 * ratio * gumbel.sample(picked.shape).to(picked.device)
        mask_len = clamp_num_masked(scheduled[step].to(ids.device), unknown.sum(-1))
        cut = torch.sort(confidence, dim=-1).values.gather(-1, mask_len[:, None])
        ids = torch.where(confidence < cut, MASK_ID, sampled)
    _sync(classes.device)
    start = time.perf_counter()
    images = tokenizer.decode_ids(sampled[:, 1:].reshape(batch, config.latent_size, config.latent_size))
    _sync(classes.device)
    return images, time.perf_counter() - start


def _maskgit_torch_run(checkout: str, case: dict[str, Any], classes: torch.Tensor):
    """maskgit-torch's own code (a local checkout of github.com/hmorimitsu/maskgit-torch), with
    random weights, run as its ``generate_imagenet.py`` runs it: its generator's
    ``generate_samples``, autograd left on. Returns a function that runs it and returns (images,
    decoder seconds)."""
    # Their ``maskgit`` is a folder without __init__.py; ours, installed, would win the import.
    package = types.ModuleType("maskgit")
    package.__path__ = [os.path.join(checkout, "maskgit")]
    sys.modules["maskgit"] = package
    from maskgit.inference import ImageNet_class_conditional_generator as Generator  # theirs

    Generator._load_checkpoints = lambda self: None  # random weights: the speed does not depend on them
    torch.manual_seed(0)
    generator = Generator(image_size=case["size"])
    config = generator.maskgit_cf
    config.eval_batch_size = case["batch"]  # as its script sets it
    inputs = torch.full((case["batch"], generator.transformer_block_size), config.transformer.mask_token_id)
    inputs[:, 0] = classes + config.vqvae.codebook_size
    decode = generator.tokenizer_model.decode_from_indices
    timed: dict[str, float] = {}

    def timed_decode(*args, **kwargs):
        start = time.perf_counter()
        images = decode(*args, **kwargs)
        timed["decoder"] = time.perf_counter() - start
        return images

    generator.tokenizer_model.decode_from_indices = timed_decode

    def run():
        images = generator.generate_samples(inputs.clone(), num_iterations=case["steps"])
        return images, timed["decoder"]

    return run


FLAGS = ("compile", "reuse")
MODIFIERS = (*FLAGS, "ctxN", "ctxNg")  # ctxN: context reuse N (tables.context_reuse_modifier)


def _parse_path(path: str) -> tuple[str, set[str], int, bool]:
    """``"bf16+compile+reuse"`` → ("bf16", {"compile", "reuse"}, 0, False); ``"fp32+ctx2"`` →
    ("fp32", set(), 2, False), the context reuse, and ``"int8+ctx2g"`` → ("int8", set(), 2, True),
    reuse in groups; SystemExit naming a bad modifier."""
    precision, *modifiers = path.split("+")
    reuse = [r for r in map(context_reuse_modifier, modifiers) if r is not None]
    flags = [m for m in modifiers if context_reuse_modifier(m) is None]
    if (any(m not in FLAGS for m in flags) or len(reuse) > 1 or any(n < 1 for n, _ in reuse)
            or (modifiers and precision in ("reference", "maskgit-torch"))):
        raise SystemExit(f"--paths {path}: modifiers are {', '.join('+' + m for m in MODIFIERS)} (N >= 1), "
                         "on fp32, bf16, fp16 or int8 only")
    return precision, set(flags), *(reuse[0] if reuse else (0, False))


def _with_reuse(sampler, context_reuse: int, reuse_group: bool):
    """The case's sampler with a path's context reuse, in groups or not: the path alone says, also
    where the case's default sampler reuses the context itself (only the confidence sampler has
    ``reuse_group``, so it is set only where asked or where the sampler has it)."""
    grouped = reuse_group or hasattr(sampler, "reuse_group")
    return sampler.replace(context_reuse=context_reuse, **({"reuse_group": reuse_group} if grouped else {}))


def _run_worker(case: dict[str, Any], path: str, device_name: str, threads: int,
                maskgit_torch: str | None = None, repeats: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    precision, modifiers, context_reuse, reuse_group = _parse_path(path)
    compiled = "compile" in modifiers
    if precision == "maskgit-torch":  # before importing this package: both are called ``maskgit``
        if device.type != "cpu":
            raise SystemExit("the maskgit-torch path runs on the CPU only here")
        run = _maskgit_torch_run(maskgit_torch, case, torch.arange(case["batch"]) % 1000)
        return _time(run, device, compiled=False, subtract_decoder=False, repeats=repeats)

    from maskgit import MaskGIT, reuse_freed_memory

    if "reuse" in modifiers and not reuse_freed_memory():
        raise SystemExit(f"{path}: reuse_freed_memory() needs glibc")

    tokenizer, transformer, sampler = _models(case, device)
    sampler = _with_reuse(sampler, context_reuse, reuse_group)
    classes = torch.arange(case["batch"], device=device) % transformer.config.num_classes
    if precision == "reference":
        transformer.requires_grad_(True)  # as the ports leave it
        tokenizer.requires_grad_(True)
        run = lambda: _reference_generate(tokenizer, transformer, classes, sampler.num_steps)  # noqa: E731
    else:
        pipe = MaskGIT(tokenizer, transformer, sampler=sampler).to_precision(precision)
        pipe.set_progress_bar_config(disable=True)  # timed code: no bar
        if compiled:
            pipe.compile()
        ids = torch.randint(0, transformer.config.codebook_size,
                            (case["batch"], transformer.config.latent_size, transformer.config.latent_size), device=device)

        def run():
            images = pipe.generate(classes, seed=0)
            _sync(device)
            start = time.perf_counter()
            pipe.decode(ids)  # as generate decodes
            _sync(device)
            return images, time.perf_counter() - start

    return _time(run, device, compiled=compiled, subtract_decoder=precision != "reference", repeats=repeats)


def _peak_rss() -> int:
    """This process's peak resident memory in bytes. Linux's VmHWM starts afresh at exec; ru_maxrss
    would start from the parent's resident size at fork."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _time(run, device: torch.device, compiled: bool, subtract_decoder: bool, repeats: int = 1) -> dict[str, Any]:
    """Time ``repeats`` calls of ``run`` (after a warm-up call when compiling); ``run`` returns
    (images, decoder seconds). The result is the one call, or with ``repeats`` > 1 the median call
    of the warm ones (2..N). ``subtract_decoder``: the decode was timed apart, outside generation."""
    warmup = None
    if compiled:  # compilation happens on the first call of a shape: timed apart
        start = time.perf_counter()
        run()
        warmup = time.perf_counter() - start
    calls = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        _, decoder_s = run()
        _sync(device)
        total = time.perf_counter() - start
        if subtract_decoder:
            total -= decoder_s  # the extra timed decode of the fast paths is not part of generation
        calls.append((total, decoder_s))
    warm = sorted(calls[1:] or calls)
    total, decoder_s = warm[(len(warm) - 1) // 2]
    result = {"seconds": total, "decoder_s": decoder_s, "transformer_s": total - decoder_s, "peak_rss_bytes": _peak_rss(),
              "compile_s": warmup, "first_call_s": calls[0][0], "calls": len(calls)}
    if device.type == "cuda":
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


# -- in the parent process ------------------------------------------------------------------------


def matmul_peak(dtype: torch.dtype | str, device: torch.device, size: int = 2048, repeats: int = 20) -> float:
    """Best achieved GFLOP/s of a square matmul, measured now (after three warm-up calls).
    ``dtype="int8"``: the int8 path's linear (``maskgit.models.quantized.int8_linear``) with its
    activation quantization, the equivalent FLOPs per second."""
    a = torch.randn(size, size, device=device, dtype=torch.float32 if dtype == "int8" else dtype)
    b = torch.randn(size, size, device=device, dtype=a.dtype)
    if dtype == "int8":
        from maskgit.models.quantized import check_int8, int8_linear, quantize_weight

        weight, levels = quantize_weight(b), check_int8(device).levels
        matmul = lambda: int8_linear(a, weight, levels)  # noqa: E731
    else:
        matmul = lambda: torch.mm(a, b)  # noqa: E731
    for _ in range(3):
        matmul()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        matmul()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flop_counter():
    """A ``FlopCounterMode`` that also counts torch's CPU flash-attention kernel, which its registry
    lacks (torch 2.13): without it an ImageNet-256 image counted 891 GFLOP instead of 930, and every
    fraction of peak came out 4 % low."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash})


def count_flops(case: dict[str, Any], context_reuse: int = 0, reuse_group: bool = False) -> float:
    """FLOPs of one image: ``steps`` transformer passes (codebook logits; two with guidance, the
    conditional and the unconditional one) and one decode. With ``context_reuse``, the passes are
    counted on one image's whole decoding with that sampler: its cheap steps compute fewer rows."""
    tokenizer, transformer, sampler = _models(case, torch.device("cpu"))
    config = transformer.config
    ids = torch.zeros(1, config.num_tokens + 1, dtype=torch.long)
    grid = torch.zeros(1, config.latent_size, config.latent_size, dtype=torch.long)
    with torch.inference_mode():
        with flop_counter() as step:
            if context_reuse:
                from maskgit.sampling import MASK_ID, SeededNoise, run_sampler

                ids[:, 1:] = MASK_ID
                ids[:, 0] = config.codebook_size  # class 0
                run_sampler(transformer, ids, _with_reuse(sampler, context_reuse, reuse_group), SeededNoise([0]))
            else:
                transformer.codebook_logits(ids)
        with flop_counter() as decode:
            tokenizer.decode_ids(grid)
    if not step.get_total_flops() or not decode.get_total_flops():
        raise RuntimeError(f"{case['model']}: the FLOP counter saw no matmuls or convolutions")
    if context_reuse:
        return step.get_total_flops() + decode.get_total_flops()
    passes = 2 if sampler.guidance else 1
    return sampler.num_steps * passes * step.get_total_flops() + decode.get_total_flops()


def _peak_for(path: str, peaks: dict[str, float]) -> float:
    """The matmul peak a path is measured against: float32 for the float32 paths."""
    precision = _parse_path(path)[0]
    return peaks["fp32" if precision in ("maskgit-torch", "reference", "fp32") else precision]


def _run_in_process(job: dict[str, Any]) -> dict[str, Any] | None:
    """``_run_worker`` on ``job`` in a fresh process (its peak memory its own): its result, or None,
    printing why, when it failed."""
    output = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if output.returncode != 0:
        why = output.stderr.strip().splitlines()[-1] if output.stderr.strip() else ""
        if output.returncode < 0:
            why = f"killed by signal {-output.returncode}" + (" (out of memory?)" if output.returncode == -9 else "")
        print(f"  {job['path']}: failed: {why}")
        return None
    return json.loads(output.stdout.strip().splitlines()[-1])


def in_rounds(paths: list[str], rounds: int, run: Callable[[str], dict[str, Any] | None]) -> list[tuple[str, dict[str, Any]]]:
    """Time every path ``rounds`` times with ``run`` (a result with ``seconds`` and
    ``peak_rss_bytes``, or None where it failed): once a round, in order in even rounds and in
    reverse in odd ones, so that a machine slowing down or speeding up through the run weighs on
    every path alike. Returns (path, result) for each path that ran at least once, in ``paths``'
    order: its median round's result (the lower middle of an even count), and with ``rounds`` > 1
    also ``round_seconds`` (each round's time, None where it failed: ``tables.speed_ratio`` pairs
    them) and the highest ``peak_rss_bytes`` of its rounds."""
    results: dict[str, list[dict[str, Any] | None]] = {path: [] for path in paths}
    for index in range(rounds):
        for path in paths if index % 2 == 0 else paths[::-1]:
            results[path].append(run(path))
    rows = []
    for path, runs in results.items():
        ran = sorted((result for result in runs if result is not None), key=lambda result: result["seconds"])
        if not ran:
            continue
        row = dict(ran[(len(ran) - 1) // 2])
        if rounds > 1:
            row["round_seconds"] = [None if result is None else result["seconds"] for result in runs]
            row["peak_rss_bytes"] = max(result["peak_rss_bytes"] for result in ran)
        rows.append((path, row))
    return rows


def _physical_memory() -> int:
    """This machine's RAM in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _too_big(path: str, case: dict[str, Any], done: list, memory: int) -> bool:
    """Whether ``path`` would run out of memory on ``case``: its peak on a smaller image size at the
    same batch, scaled by the pixel count, above 90 % of RAM (the ports' autograd-on paths need
    about 50 GB at 512 px, batch 8). Prints why it is skipped."""
    for other, result in done:
        if result["path"] == path and other["model"] != "fashion-mnist" and other["batch"] == case["batch"] \
                and other["size"] < case["size"]:
            estimate = result["peak_rss_bytes"] * (case["size"] / other["size"]) ** 2
            if estimate > 0.9 * memory:
                print(f"  {path}: skipped at {case['size']} px, batch {case['batch']}: its {result['peak_rss_bytes'] / 1e9:.1f} GB "
                      f"peak at {other['size']} px scales to {estimate / 1e9:.0f} GB, over this machine's {memory / 1e9:.0f} GB")
                return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description="MaskGIT sampling speed: reference path vs fast paths")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256], choices=sorted(PRESETS))
    parser.add_argument("--batches", type=int, nargs="*", default=[8])
    parser.add_argument("--steps", type=int, nargs="*", default=[8])
    parser.add_argument("--paths", nargs="*", default=["reference", "fp32", "bf16", "int8"])
    parser.add_argument("--no-shipped", action="store_true", help="skip the shipped fashion-mnist model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--maskgit-torch", default=None, metavar="DIR",
                        help="a checkout of github.com/hmorimitsu/maskgit-torch (needs einops, ml_collections and requests): "
                             "also time its own code on the ImageNet cases")
    parser.add_argument("--repeats", type=int, default=1,
                        help="calls per path in one process; above 1 the median of calls 2..N is reported (warm)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every path this many times, once a round (in reverse order every other round), "
                             "and report each path's median round; the table's ratios are then the median of each "
                             "round's own ratio, which the machine's drift in speed moves much less")
    parser.add_argument("--isa", default="native", choices=tuple(ISA_LIMITS),
                        help="time as if this CPU had only these instruction sets (every process, the matmul peaks "
                             "included): AVX2 stands in for a CPU without AVX-512 and native bf16")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    isa = hold_to_isa(args.isa)
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(_run_worker(job["case"], job["path"], job["device"], job["threads"], job.get("maskgit_torch"),
                                     job.get("repeats", 1))))
        return
    if not 1 <= args.repeats <= 20:
        parser.error(f"--repeats must be 1 to 20, got {args.repeats}")
    if not 1 <= args.rounds <= 10:
        parser.error(f"--rounds must be 1 to 10, got {args.rounds}")
    for path in args.paths:
        _parse_path(path)
    if "maskgit-torch" in args.paths:
        parser.error("--paths maskgit-torch: give --maskgit-torch DIR instead (it adds that path to the ImageNet cases)")
    args.paths = list(dict.fromkeys(args.paths))  # each path once

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    cases = [{"model": f"imagenet{size}", "size": size, "batch": batch, "steps": steps}
             for size in args.sizes for batch in args.batches for steps in args.steps]
    if not args.no_shipped:
        cases.append({"model": "fashion-mnist", "size": 32, "batch": 80, "steps": None})
    dtypes: dict[str, torch.dtype | str] = {"fp32": torch.float32, "bf16": torch.bfloat16}
    dtypes.update({"fp16": torch.float16} if device.type == "cuda" else {})
    if any(_parse_path(path)[0] == "int8" for path in args.paths):
        from maskgit.models.quantized import int8_support

        support = int8_support(device)
        if isinstance(support, str):  # where int8 would be slower than fp32, or does not run
            print(f"int8 paths skipped: {support}")
            args.paths = [path for path in args.paths if _parse_path(path)[0] != "int8"]
        else:
            dtypes["int8"] = "int8"
    # The peaks of the precisions the paths use (fp32 for the reference paths and maskgit-torch).
    used = {"fp32"} | {_parse_path(path)[0] for path in args.paths}
    dtypes = {name: dtype for name, dtype in dtypes.items() if name in used}
    peaks = {name: matmul_peak(dtype, device) for name, dtype in dtypes.items()}
    memory = _physical_memory()
    report: dict[str, Any] = {"kind": "sampling-speed", "provenance": provenance(device_name(args.device, args.threads)),
                              "torch": torch.__version__, "repeats": args.repeats, "rounds": args.rounds, "matmul_peak_gflops": peaks,
                              "cases": [], "isa": isa}
    print(f"{report['provenance']['device']}, torch {torch.__version__} ({isa['cpu_capability']} kernels); "
          "matmul peak GFLOP/s: "
          + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    done: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (case, result) of every finished run
    for case in cases:
        flops = count_flops(case)
        reuse_flops = {reuse: count_flops(case, *reuse)
                       for reuse in sorted({_parse_path(path)[2:] for path in args.paths} - {(0, False)})}
        guided = False
        if case["steps"] is None:
            sampler = _models(case, torch.device("cpu"))[2]
            case["steps"], guided = sampler.num_steps, bool(sampler.guidance)
        rows = []
        paths = (["maskgit-torch"] if args.maskgit_torch and case["model"] != "fashion-mnist" else []) + args.paths
        paths = [path for path in paths if not _too_big(path, case, done, memory)]
        if "reference" in paths and guided:
            print(f"  reference: skipped for {case['model']}: its default sampler uses guidance, which the ports lack")
            paths.remove("reference")
        worker = {"case": case, "device": args.device, "threads": args.threads, "repeats": args.repeats,
                  "maskgit_torch": os.path.abspath(args.maskgit_torch) if args.maskgit_torch else None}
        for path, result in in_rounds(paths, args.rounds, lambda path, worker=worker: _run_in_process({**worker, "path": path})):
            path_flops = reuse_flops.get(_parse_path(path)[2:], flops)
            result.update(path=path, images_per_s=case["batch"] / result["seconds"], gflop_per_image=path_flops / 1e9,
                          gflops=path_flops * case["batch"] / result["seconds"] / 1e9)
            result["fraction_of_peak"] = result["gflops"] / _peak_for(path, peaks)
            rows.append(result)
            done.append((case, result))
        reference = next((r for r in rows if r["path"] == "reference"), None)
        print(f"\n{case['model']} batch {case['batch']}, {case['steps']} steps, {flops / 1e9:.0f} GFLOP per image")
        print(f"  {'path':<14}{'time s':>9}{'img/s':>9}{'transf. s':>11}{'decoder s':>11}{'peak GB':>9}"
              f"{'GFLOP/s':>9}{'of peak':>9}{'speed-up':>10}")
        for row in rows:
            row["speedup"] = speed_ratio(reference, row) if reference else None
            print(f"  {row['path']:<14}{row['seconds']:>9.2f}{row['images_per_s']:>9.2f}{row['transformer_s']:>11.2f}"
                  f"{row['decoder_s']:>11.2f}{row['peak_rss_bytes'] / 1e9:>9.2f}{row['gflops']:>9.0f}"
                  f"{row['fraction_of_peak']:>9.0%}" + (f"{row['speedup']:>9.2f}x" if row["speedup"] else ""))
        report["cases"].append({**case, "gflop_per_image": flops / 1e9, "paths": rows})
    # The matmul peak again at the end: the machine's speed drifts; the fractions use the higher.
    for name, dtype in dtypes.items():
        peaks[name] = max(peaks[name], matmul_peak(dtype, device))
    for case in report["cases"]:
        for row in case["paths"]:
            row["fraction_of_peak"] = row["gflops"] / _peak_for(row["path"], peaks)
    print("\nmatmul peak GFLOP/s, the higher of the start and the end: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
          + " (the fractions in the JSON use these)")
    if args.json:
        print(f"wrote {args.json} and {write_results(args.json, report)}")


if __name__ == "__main__":
    main()
