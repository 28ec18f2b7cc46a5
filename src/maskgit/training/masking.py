"""Training-time masking of token sequences (spec §2.3, §3.1).

Per sample: r ~ U[0, 1), mask ratio = cos(π/2 · r) (the cosine schedule), ``ceil(ratio · N)``
tokens (at least 1) masked at uniformly random positions. All of it is drawn from a generator
seeded by the sample's own seed (see ``engine.SeededDataset``), so masks do not depend on the
batch split, the number of processes or resumption.
"""

from __future__ import annotations

import math

import torch

__all__ = ["sample_masks", "masked_inputs"]


def sample_masks(sample_seeds: torch.Tensor, num_tokens: int, class_dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks for a batch. ``sample_seeds`` (B,) int64.

    Returns ``mask`` (B, num_tokens) bool, True = masked, with between 1 and ``num_tokens`` masked
    per row, and ``drop_class`` (B,) bool, True for samples whose class token is dropped
    (probability ``class_dropout``). Both are on the CPU.
    """
    draws = []
    for seed in sample_seeds.tolist():
        generator = torch.Generator().manual_seed(int(seed))
        draws.append(torch.rand(num_tokens + 2, generator=generator))
    uniform = torch.stack(draws) if draws else torch.empty(0, num_tokens + 2)
    ratio = torch.cos(0.5 * math.pi * uniform[:, 0])
    num_masked = torch.ceil(ratio * num_tokens).long().clamp(1, num_tokens)
    # The rank of each position's noise value: masking the num_masked lowest is a uniform choice.
    ranks = uniform[:, 1 : num_tokens + 1].argsort(dim=1).argsort(dim=1)
    mask = ranks < num_masked[:, None]
    drop_class = uniform[:, num_tokens + 1] < class_dropout
    return mask, drop_class


def masked_inputs(
    ids: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    drop_class: torch.Tensor,
    *,
    codebook_size: int,
    mask_token_id: int,
    null_class_id: int | None = None,
) -> torch.Tensor:
    """The transformer input (B, 1 + N): class token ``label + codebook_size`` (the null class
    token ``null_class_id`` where ``drop_class``) followed by ``ids`` (B, N) with masked positions
    set to the mask token. Dropping a class needs a model with a null class."""
    class_tokens = labels + codebook_size
    if null_class_id is not None:
        class_tokens = torch.where(drop_class, torch.full_like(labels, null_class_id), class_tokens)
    elif bool(drop_class.any()):
        raise ValueError("class dropout needs a model with a null class (TransformerConfig.null_class)")
    tokens = torch.where(mask, torch.full_like(ids, mask_token_id), ids)
    return torch.cat([class_tokens[:, None], tokens], dim=1)
