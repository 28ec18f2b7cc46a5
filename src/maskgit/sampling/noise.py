"""Where a decoding run's randomness comes from.

A noise source gives the engine two things per step: a categorical draw of every position
(``sample``) and a Gumbel vector over the positions (``choice``) that samplers use for random
choices. Three sources:

- ``InjectedNoise``: a user function ``noise(step, kind, shape)`` returning Gumbel noise, used to
  replay the official JAX noise bit for bit (Gumbel-max, as JAX's ``categorical``).
- ``GeneratorNoise``: one ``torch.Generator`` for the whole batch (Gumbel-max), as ``decode``
  always did.
- ``SeededNoise``: per-image seeds, so that image i depends only on ``(seed, i)``. Its uniforms
  come from a counter-based hash of ``(image seed, window, step, kind, position)`` computed with
  integer tensor ops on the model's device: no generator, no per-row Python loop, no host
  transfer, and the same bits on every device. It needs one uniform per position, so its
  categorical draw is by inverse CDF rather than Gumbel-max.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from maskgit.sampling.steps import gumbel_from_uniform, gumbel_noise, sample_ids, sample_ids_from_uniform

__all__ = [
    "NoiseFn",
    "NoiseSource",
    "InjectedNoise",
    "GeneratorNoise",
    "SeededNoise",
    "image_seeds",
    "random_seed",
    "counter_uniform",
]

#: ``noise(step, kind, shape) -> Tensor``: supplies standard Gumbel noise in place of a generator.
#: ``kind`` is ``"sample"`` (shape (B, L, codebook_size)) or ``"choice"`` (shape (B, L)).
NoiseFn = Callable[[int, str, tuple[int, ...]], torch.Tensor]


class NoiseSource(Protocol):
    """What the decoding engine draws from at each step."""

    def sample(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        """logits (B, L, K) float32 → one draw per position from ``softmax(logits)``, (B, L) int64."""
        ...

    def choice(self, step: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        """Standard Gumbel noise of shape (B, L), float32, on ``device``."""
        ...

    def window(self, index: int) -> NoiseSource:
        """The source for the ``index``-th window of a windowed fill (index 0 is this one)."""
        ...


class InjectedNoise:
    """Gumbel noise from a user function (see ``NoiseFn``); categorical draws by Gumbel-max."""

    def __init__(self, noise: NoiseFn) -> None:
        self.noise = noise

    def _draw(self, step: int, kind: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        value = torch.as_tensor(self.noise(step, kind, shape))
        if tuple(value.shape) != shape:
            raise ValueError(
                f"noise({step}, {kind!r}, {shape}) returned shape {tuple(value.shape)}, expected {shape}"
            )
        return value.to(device=device, dtype=torch.float32)

    def sample(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        return sample_ids(logits, self._draw(step, "sample", tuple(logits.shape), logits.device))

    def choice(self, step: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        return self._draw(step, "choice", tuple(shape), device)

    def window(self, index: int) -> InjectedNoise:
        return self


class GeneratorNoise:
    """Gumbel noise from one generator (torch's global RNG if None), drawn on the generator's
    device and moved to the logits' device; categorical draws by Gumbel-max."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def sample(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        return sample_ids(logits, gumbel_noise(tuple(logits.shape), self.generator, logits.device))

    def choice(self, step: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        return gumbel_noise(tuple(shape), self.generator, device)

    def window(self, index: int) -> GeneratorNoise:
        return self


def random_seed() -> int:
    """A fresh seed in [0, 2**32) for a run given none: the API and the CLI draw it here and
    report it, so that the run can be repeated."""
    return secrets.randbelow(2**32)


def image_seeds(seed: int, indices: Sequence[int]) -> list[int]:
    """Independent 63-bit seeds for the images of a run with these indices.

    Image i's noise depends only on ``(seed, i)``: not on the batch size, nor on which images were
    generated before it, so an interrupted run resumes with identical images.
    """
    return [
        int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, dtype=np.uint64)[0] >> 1)
        for index in indices
    ]


# -- counter-based uniforms ---------------------------------------------------------------------
# The state is 64 bits, held as two 32-bit halves in int64 tensors. Every intermediate value stays
# below 2**48 (``_mul32`` multiplies 16-bit halves by 32-bit constants), so nothing overflows and
# every device computes the same bits with plain integer ops.

_LOW32 = 0xFFFFFFFF
# One key per Feistel round (the fractional digits of the golden ratio, pi, e and sqrt 2), so
# that the rounds are not all the same permutation.
_ROUND_KEYS = (0x9E3779B9, 0x243F6A88, 0xB7E15162, 0x6A09E667)
_OUTPUT_KEY = 0x5BD1E995


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``(x * constant) mod 2**32`` for x in [0, 2**32), split into 16-bit halves to stay exact."""
    low = (x & 0xFFFF) * constant
    high = ((x >> 16) * constant) & 0xFFFF
    return (low + (high << 16)) & _LOW32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser: a bijection on [0, 2**32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def _feistel(left: torch.Tensor, right: torch.Tensor, keys: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feistel rounds ``(l, r) -> (r, l ^ mix(r ^ key))`` on a 64-bit state split in 32-bit halves.

    Each round is a bijection of the 64-bit state whatever the round function, so distinct states
    stay distinct: no two seeds ever share a stream. Two rounds carry a change of ``right`` into
    both halves through the mixer.
    """
    for key in keys:
        left, right = right, left ^ _mix32(right ^ key)
    return left, right


def _unit_interval(bits: torch.Tensor) -> torch.Tensor:
    """32-bit hashes → float32 ``(2k + 1) / 2**24`` with k their top 23 bits.

    Both factors are exact in float32 (2k + 1 < 2**24 is an integer float32 holds, and 2**-24 a
    power of two), so the result is exact too: from 2**-24 to 1 - 2**-24, never 0 or 1. Keeping
    24 bits instead would round ``(2**24 - 0.5) / 2**24`` up to exactly 1.
    """
    return ((bits >> 9) * 2 + 1).to(torch.float32) * (1.0 / (1 << 24))


def counter_uniform(seeds: torch.Tensor, counter: Sequence[int], length: int) -> torch.Tensor:
    """Uniforms in (0, 1) that depend only on (row seed, counter, position).

    The 64 bits of each seed stay in the hash state: for a fixed counter, the state is a bijection
    of the seed, so seeds that differ in any bit (the high 32 included) give different states.

    Args:
        seeds: (B,) int64, one per row (all 64 bits are used; image seeds lie in [0, 2**63)); the
            result lives on its device.
        counter: small non-negative ints (each < 2**32) naming the draw, e.g. (window, step, kind).
        length: number of positions L.

    Returns:
        (B, L) float32, odd multiples of 2**-24, strictly inside (0, 1): from 2**-24 to 1 - 2**-24.
    """
    seeds = seeds.to(torch.int64)
    # The arithmetic shift copies the sign bit; the mask keeps the 32 bits of two's complement.
    left, right = seeds & _LOW32, (seeds >> 32) & _LOW32
    left, right = _feistel(left, right, _ROUND_KEYS[:2])
    for value in counter:
        left, right = _feistel(left, right ^ int(value), _ROUND_KEYS[2:])
    positions = torch.arange(length, device=seeds.device, dtype=torch.int64)
    # Both halves reach every position: the left one through the first mixer, the right one
    # through the second, so two states give streams that differ almost everywhere.
    bits = _mix32(_mix32(left[:, None] ^ positions) ^ right[:, None] ^ _OUTPUT_KEY)
    return _unit_interval(bits)


_SAMPLE, _CHOICE = 0, 1


class SeededNoise:
    """Per-image noise: row b's draws depend only on ``seeds[b]``, the window, the step and the
    position, so an image is the same whatever batch it is generated in."""

    def __init__(self, seeds: torch.Tensor | Sequence[int], device: torch.device | str | None = None,
                 window_index: int = 0) -> None:
        seeds = torch.as_tensor(seeds, dtype=torch.int64)
        if seeds.dim() != 1:
            raise ValueError(f"seeds must be a (B,) sequence, got shape {tuple(seeds.shape)}")
        # Checked where the seeds are (host data, usually); then moved to the device once.
        if seeds.device.type == "cpu" and bool((seeds < 0).any()):
            raise ValueError("seeds must be non-negative 63-bit integers")
        self.seeds = seeds.to(device) if device is not None else seeds
        self.window_index = window_index

    @classmethod
    def for_images(cls, seed: int, indices: Sequence[int], device: torch.device | str | None = None) -> SeededNoise:
        """The noise of images ``indices`` of a run seeded with ``seed`` (see ``image_seeds``)."""
        return cls(image_seeds(seed, indices), device=device)

    def _uniform(self, step: int, kind: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if shape[0] != self.seeds.shape[0]:
            raise ValueError(f"{self.seeds.shape[0]} image seeds for a batch of {shape[0]}")
        seeds = self.seeds if self.seeds.device == device else self.seeds.to(device)
        return counter_uniform(seeds, (self.window_index, step, kind), shape[1])

    def sample(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        uniform = self._uniform(step, _SAMPLE, tuple(logits.shape), logits.device)
        return sample_ids_from_uniform(torch.softmax(logits, dim=-1), uniform)

    def choice(self, step: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        return gumbel_from_uniform(self._uniform(step, _CHOICE, tuple(shape), device))

    def window(self, index: int) -> SeededNoise:
        return SeededNoise(self.seeds, window_index=self.window_index + index)
