"""Seeded generation with the shipped model: the old per-row CPU noise against on-device noise.

Both paths give image i a noise stream that depends only on (seed, i). The old path (kept here as
the baseline, as it was in maskgit 0.1.0) draws every row's Gumbel noise for all (L, K) logits from
its own CPU ``torch.Generator`` at every step and copies it to the model's device. The new path
(``SeededNoise``) hashes (seed, step, position) with integer tensor ops on the device and draws
each token by inverse CDF from one uniform per position.

    python benchmarks/seeded_noise.py [--batch 64] [--steps 8] [--repeats 3] [--threads 2] [--json out.json]

Prints the median wall time of each path, per whole generation and per noise draw alone, and
their ratio; ``--json`` writes the numbers, and their table beside them (``benchmarks/tables.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from maskgit import MaskGIT
from maskgit.sampling import ConfidenceSampler, InjectedNoise, SeededNoise, gumbel_noise, image_seeds

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/tables.py, also when loaded by path
from tables import device_name, provenance, write_results  # noqa: E402


class RowNoise:
    """The 0.1.0 noise path: one CPU generator per row, full Gumbel tensors, copied to the device."""

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.device = device

    def __call__(self, step: int, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        rows = [gumbel_noise(tuple(shape[1:]), generator=g) for g in self.generators]
        return torch.stack(rows).to(self.device)


def _median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = MaskGIT.from_pretrained("fashion-mnist", device=args.device)
    pipe.set_progress_bar_config(disable=True)  # timed code: no bar
    device = pipe.device
    sampler = ConfidenceSampler(num_steps=args.steps)
    classes = [i % 10 for i in range(args.batch)]
    seeds = image_seeds(0, range(args.batch))
    length = 1 + pipe.transformer.config.latent_size ** 2
    logits = torch.randn(args.batch, length, pipe.transformer.config.codebook_size, device=device)

    def old_noise_step():
        noise = InjectedNoise(RowNoise(seeds, device))
        noise.sample(0, logits)
        noise.choice(0, (args.batch, length), device)

    def new_noise_step():
        noise = SeededNoise(seeds, device=device)
        noise.sample(0, logits)
        noise.choice(0, (args.batch, length), device)

    def old_generation():
        pipe.generate(classes, sampler=sampler, noise=RowNoise(seeds, device))

    def new_generation():
        pipe.generate(classes, sampler=sampler, seed=0)

    # Warm-up (allocator, first-call dispatch) before timing.
    old_noise_step(), new_noise_step(), new_generation()
    results = {
        "kind": "seeded-noise",
        "provenance": provenance(device_name(args.device, args.threads)),
        "batch": args.batch,
        "steps": args.steps,
        "noise_per_step_s": {"old": _median_time(old_noise_step, 5), "new": _median_time(new_noise_step, 5)},
        "generation_s": {"old": _median_time(old_generation, args.repeats), "new": _median_time(new_generation, args.repeats)},
    }
    for key in ("noise_per_step_s", "generation_s"):
        results[key]["ratio"] = results[key]["old"] / results[key]["new"]
    print(f"seeded generation, shipped fashion-mnist model, batch {args.batch}, {args.steps} steps, "
          f"{results['provenance']['device']}")
    print(f"  noise per step:  old {results['noise_per_step_s']['old'] * 1e3:8.1f} ms   "
          f"new {results['noise_per_step_s']['new'] * 1e3:8.1f} ms   ratio {results['noise_per_step_s']['ratio']:.1f}x")
    print(f"  whole run:       old {results['generation_s']['old']:8.2f} s    "
          f"new {results['generation_s']['new']:8.2f} s    ratio {results['generation_s']['ratio']:.2f}x")
    if args.json:
        print(f"wrote {args.json} and {write_results(args.json, results)}")


if __name__ == "__main__":
    main()
