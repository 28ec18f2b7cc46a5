"""The small pure functions a decoding step is made of (spec §3.3), shared by every sampler.

None of them draws randomness: the noise comes in as an argument, so each one is deterministic and
runs on whatever device its inputs live on.
"""

from __future__ import annotations

import torch

__all__ = [
    "MASK_ID",
    "gumbel_noise",
    "gumbel_from_uniform",
    "sample_ids",
    "sample_ids_from_uniform",
    "filter_top_k",
    "selected_probs",
    "remask_lowest",
    "mask_by_random_topk",
]

#: The official spelling of an unknown token. The decoder writes re-masked tokens this way;
#: ``MaskGITTransformer`` reads it as its mask id ``vocab_size - 1``.
MASK_ID = -1

_TINY = torch.finfo(torch.float32).tiny


def gumbel_from_uniform(uniform: torch.Tensor) -> torch.Tensor:
    """``-log(-log(U))``: standard Gumbel(0, 1) from uniforms in [0, 1), float32.

    U = 0 would give -inf; it is clamped to the smallest normal float32 as ``jax.random.gumbel``
    draws from [tiny, 1) for the same reason.
    """
    return -torch.log(-torch.log(uniform.float().clamp_min(_TINY)))


def gumbel_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, float32, drawn as ``-log(-log(U))`` like ``jax.random.gumbel``.

    Drawn on the generator's device (so a seed gives the same numbers wherever the model runs)
    and then moved to ``device``. Without a generator it uses torch's global RNG on ``device``.
    """
    draw_device = generator.device if generator is not None else device
    uniform = torch.rand(shape, generator=generator, device=draw_device, dtype=torch.float32)
    return gumbel_from_uniform(uniform).to(device)


def sample_ids(logits: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """One categorical draw per position by Gumbel-max: ``argmax(logits + gumbel)``.

    Args:
        logits: (..., K) float32 unnormalised log-probabilities.
        gumbel: Gumbel noise of the same shape.

    Returns:
        (...) int64 in [0, K).
    """
    return torch.argmax(logits + gumbel, dim=-1)


def sample_ids_from_uniform(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One categorical draw per position by inverse CDF: the first id whose cumulative
    probability exceeds ``U * total``. It needs one uniform per position instead of Gumbel-max's K.

    Args:
        probs: (..., K) float probabilities (rows need not sum to exactly 1; zeros are never drawn).
        uniform: (...) float in (0, 1).

    Returns:
        (...) int64 in [0, K).
    """
    cdf = probs.float().cumsum(dim=-1)
    target = uniform.float().unsqueeze(-1) * cdf[..., -1:]
    # right=True returns the first index whose cdf is > target: an id with positive probability.
    ids = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return ids.clamp_max(probs.shape[-1] - 1)


def filter_top_k(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row and set the rest to -inf (``None``: unchanged)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def selected_probs(logits: torch.Tensor, ids: torch.Tensor, unknown: torch.Tensor) -> torch.Tensor:
    """``softmax(logits)[ids]`` at unknown positions and +inf at known ones (which therefore are
    never re-masked).

    Args:
        logits: (B, L, K) float32.
        ids: (B, L) int; known positions may hold ids ≥ K (the class token), which are ignored.
        unknown: (B, L) bool.

    Returns:
        (B, L) float32, probabilities in [0, 1] or +inf.
    """
    probs = torch.softmax(logits, dim=-1)
    index = ids.clamp(0, logits.shape[-1] - 1).unsqueeze(-1)
    picked = torch.gather(probs, -1, index).squeeze(-1)
    return torch.where(unknown, picked, torch.full_like(picked, float("inf")))


def remask_lowest(scores: torch.Tensor, mask_len: torch.Tensor) -> torch.Tensor:
    """The positions whose score is strictly below the ``mask_len``-th smallest (0-based) of their
    row: exactly ``mask_len`` of them unless scores tie. Positions scored +inf are never chosen
    while fewer than ``mask_len`` finite scores are below them.

    Args:
        scores: (B, L) float32, higher = keep.
        mask_len: (B,) int64.

    Returns:
        (B, L) bool, True = re-mask.
    """
    sorted_scores = torch.sort(scores, dim=-1).values
    # JAX clamps out-of-range gathers; only reachable for L = 1.
    index = mask_len.clamp(max=scores.shape[-1] - 1).unsqueeze(-1)
    cut = torch.gather(sorted_scores, -1, index)
    return scores < cut


def mask_by_random_topk(
    mask_len: torch.Tensor, probs: torch.Tensor, temperature: torch.Tensor, gumbel: torch.Tensor
) -> torch.Tensor:
    """The official Gumbel-top-k choice of the tokens to re-mask.

    ``confidence = log(probs) + temperature * gumbel``; the ``mask_len`` least confident tokens
    of each row are re-masked (``remask_lowest``).

    Args:
        mask_len: (B,) int64, tokens to re-mask per row.
        probs: (B, L) float32 from ``selected_probs`` (+inf = never re-mask).
        temperature: float32 scalar tensor ≥ 0, the noise scale.
        gumbel: (B, L) Gumbel noise.

    Returns:
        (B, L) bool.
    """
    return remask_lowest(torch.log(probs) + temperature * gumbel, mask_len)
