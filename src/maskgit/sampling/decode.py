"""The official MaskGIT parallel decoder (spec §3.3, fixture README §6) as one function.

``decode`` runs the engine with ``ConfidenceSampler`` and the official Gumbel-max draws. With the
official noise injected it reproduces the JAX decoder's token ids exactly. Other samplers, guidance
and per-image seeds go through ``maskgit.sampling.run_sampler`` (or the pipeline) directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from maskgit.sampling.engine import DecodeStep, run_sampler
from maskgit.sampling.noise import GeneratorNoise, InjectedNoise, NoiseFn
from maskgit.sampling.samplers import ConfidenceSampler

__all__ = ["decode"]


def decode(
    transformer: Callable[[torch.Tensor], torch.Tensor],
    ids: torch.Tensor,
    *,
    num_steps: int,
    start_step: int = 0,
    choice_temperature: float = 4.5,
    schedule: str = "cosine",
    generator: torch.Generator | None = None,
    noise: NoiseFn | None = None,
    codebook_size: int | None = None,
    callback: Callable[[DecodeStep], None] | None = None,
) -> torch.Tensor:
    """Fill the unknown tokens of ``ids`` with the official MaskGIT parallel decoder.

    Args:
        transformer: any callable ids (B, L) int64 → logits (B, L, V) with V ≥ codebook_size,
            e.g. ``MaskGITTransformer``. It receives unknown tokens as ``MASK_ID`` (-1).
        ids: (B, L) integer, class token at position 0 and image tokens after it. Unknown tokens
            are -1 or ``transformer.config.mask_token_id`` (vocab_size - 1).
        num_steps: total number of steps T ≥ 1 (the official decoder's ``num_iter``).
        start_step: first step to run, 0 ≤ start_step < num_steps (the official ``start_iter``;
            its editing run uses 2 of 12).
        choice_temperature: scale ≥ 0 of the Gumbel noise in the re-masking choice, annealed
            by (1 - r).
        schedule: mask schedule name (see ``maskgit.sampling.SCHEDULES``).
        generator: the only source of randomness (torch's global RNG if None). It may live on
            another device than the model; the noise is drawn there and moved.
        noise: ``noise(step, kind, shape)`` supplying Gumbel noise instead of the generator
            (used to replay the official JAX noise).
        codebook_size: K, defaults to ``transformer.config.codebook_size``.
        callback: called with a ``DecodeStep`` after every executed step.

    Returns:
        (B, num_steps, L) int64 on ``ids``' device: row t holds the tokens sampled at step t
        (before re-masking); rows before ``start_step`` are copies of ``ids``. The result is
        ``[:, -1]``, with every token in [0, K) except the given ones.
    """
    sampler = ConfidenceSampler(num_steps=num_steps, schedule=schedule, choice_temperature=choice_temperature)
    source = InjectedNoise(noise) if noise is not None else GeneratorNoise(generator)
    return run_sampler(
        transformer, ids, sampler, source, start_step=start_step, codebook_size=codebook_size, callback=callback
    )
