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
_BELOW_ONE = 1.0 - 2.0**-24  # the largest float32 below 1


def gumbel_from_uniform(uniform: torch.Tensor) -> torch.Tensor:
    """``-log(-log(U))``: standard Gumbel(0, 1) from uniforms in [0, 1], float32.

    U is clamped into [tiny, 1 - 2**-24], so the result is always finite, from about -4.5 to 16.6:
    U = 0 would give -inf (``jax.random.gumbel`` draws from [tiny, 1) for the same reason) and
    U = 1 would give +inf, which a zero choice temperature would turn into NaN. Draws from
    ``torch.rand`` and from JAX never reach either end, so they are unchanged.
    """
    return -torch.log(-torch.log(uniform.float().clamp(_TINY, _BELOW_ONE)))


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
        probs: (..., K) float probabilities ≥ 0 (rows need not sum to exactly 1).
        uniform: (...) float in [0, 1]; the ends included.

    Returns:
        (...) int64 in [0, K): always an id of positive probability, whatever the uniform (a row
        with no positive probability gives K - 1).
    """
    probs = probs.float()
    cdf = probs.cumsum(dim=-1)
    total = cdf[..., -1:]
    # U * total must stay below the total: at U = 1 (or U * total rounded up to it) no cdf
    # entry exceeds it, and the search would run past the last id.
    target = torch.minimum(uniform.float().clamp(0, 1).unsqueeze(-1) * total,
                           torch.nextafter(total, torch.zeros_like(total)))
    # right=True returns the first index whose cdf is > target: an id with positive probability
    # when the cdf is summed in order (it grows only there). The second search, for target 0,
    # finds the first id of positive probability in any order of summation (a sum of
    # non-negative numbers is 0 only if each one is).
    found = torch.searchsorted(cdf, torch.cat([target, torch.zeros_like(target)], dim=-1), right=True)
    ids, first_positive = found.clamp_max(probs.shape[-1] - 1).unbind(-1)
    # A parallel cumsum (CUDA) may round cdf[i] above cdf[i - 1] although probs[i] is 0: such a
    # draw takes the first id of positive probability instead.
    chosen = torch.gather(probs, -1, ids.unsqueeze(-1)).squeeze(-1)
    return torch.where(chosen > 0, ids, first_positive)


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
