"""Repeated generation with glibc's default ``malloc`` against ``maskgit.reuse_freed_memory()``.

Each mode runs in its own process (``malloc`` settings are process-wide and peak memory is per
process): a full-size model with random weights (the speed does not depend on the values) is
prepared in ``--precision`` and generates the same batch ``--repeats`` times. The first call pays
the first touch of every page in both modes; the later ones show whether freed memory is reused or
faulted in again.

    python benchmarks/memory_reuse.py [--size 256] [--batch 8] [--steps 8] [--precision bf16]
        [--repeats 4] [--threads 2] [--json out.json]

Prints every call's wall time, the median of the calls after the first, the process's peak memory
(VmHWM) and the ratio of the medians; writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

MODES = ("default", "reuse")
PRESETS = {256: "imagenet256", 512: "imagenet512"}


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from maskgit import VQGAN, MaskGIT, MaskGITTransformer, reuse_freed_memory
    from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS
    from maskgit.sampling import ConfidenceSampler

    if mode == "reuse" and not reuse_freed_memory():
        raise SystemExit("reuse_freed_memory() needs glibc")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    preset = PRESETS[args.size]
    pipe = MaskGIT(
        VQGAN(TOKENIZER_PRESETS[preset]).eval(),
        MaskGITTransformer(TRANSFORMER_PRESETS[preset]).eval(),
        sampler=ConfidenceSampler(num_steps=args.steps),
    ).to_precision(args.precision)
    pipe.set_progress_bar_config(disable=True)
    classes = torch.arange(args.batch)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pipe.generate(classes, seed=0)
        seconds.append(time.perf_counter() - start)
    return {"mode": mode, "seconds": seconds, "median_after_first": statistics.median(seconds[1:]),
            "peak_rss_bytes": _peak_rss()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2: the first call is the cold one")
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return

    results = []
    for mode in MODES:
        command = [sys.executable, __file__, "--worker", mode] + [
            f"--{name}={getattr(args, name)}" for name in ("size", "batch", "steps", "precision", "repeats", "threads")
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results.append(result)
        times = ", ".join(f"{s:.2f}" for s in result["seconds"])
        print(f"{mode:8s} calls {times} s; median after the first {result['median_after_first']:.2f} s; "
              f"peak {result['peak_rss_bytes'] / 1e9:.2f} GB", flush=True)
    ratio = results[0]["median_after_first"] / results[1]["median_after_first"]
    print(f"reuse is {ratio:.2f}x faster on repeated calls, at {results[1]['peak_rss_bytes'] / results[0]['peak_rss_bytes']:.2f}x "
          "the peak memory")
    if args.json:
        data = {"device": f"{platform.machine()} CPU, {args.threads} threads", "size": args.size, "batch": args.batch,
                "steps": args.steps, "precision": args.precision, "results": results, "speedup": ratio}
        with open(args.json, "w") as file:
            json.dump(data, file, indent=1)


if __name__ == "__main__":
    main()
