"""The official MaskGIT parallel decoder (spec §3.3, fixture README §6).

Each step predicts every token at once, keeps the given ones, and re-masks the least confident
of the new ones according to a mask schedule, so that after ``num_iter`` steps every token is
filled. With the official noise injected it reproduces the JAX decoder's token ids exactly.

The step is split into small functions (``gumbel_noise``, ``sample_ids``, ``selected_probs``,
``mask_by_random_topk``) so that other samplers can reuse them.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from maskgit.sampling.schedules import (
    canonical_schedule,
    clamp_num_masked,
    mask_ratio,
    scheduled_num_masked,
    step_ratio,
)

__all__ = [
    "MASK_ID",
    "DecodeStep",
    "NoiseFn",
    "decode",
    "gumbel_noise",
    "sample_ids",
    "selected_probs",
    "mask_by_random_topk",
]

#: The official spelling of an unknown token. The decoder writes re-masked tokens this way;
#: ``MaskGITTransformer`` reads it as its mask id ``vocab_size - 1``.
MASK_ID = -1

#: ``noise(step, kind, shape) -> Tensor``: supplies standard Gumbel noise in place of the
#: generator. ``kind`` is ``"sample"`` (shape (B, L, codebook_size)) or ``"choice"`` (shape (B, L)).
NoiseFn = Callable[[int, str, tuple[int, ...]], torch.Tensor]


@dataclass(frozen=True)
class DecodeStep:
    """What one executed step of ``decode`` computed (passed to ``callback``).

    Attributes:
        step: absolute step index, ``start_iter <= step < num_iter``.
        num_iter: total number of steps.
        logits: (B, L, codebook_size) float32, the model's logits for the step's input.
        sampled_ids: (B, L) int64, the new tokens with the known ones kept; the output row
            ``final[:, step]``.
        selected_probs: (B, L) float32, probability of each sampled token, +inf at known positions.
        mask_ratio: (B,) float32, the schedule value for this step.
        mask_len: (B,) int64, the clamped number of tokens to re-mask (official ``mask_len``).
        masking: (B, L) bool, the tokens re-masked.
        next_ids: (B, L) int64, the input of the next step (``MASK_ID`` where ``masking``).
    """

    step: int
    num_iter: int
    logits: torch.Tensor
    sampled_ids: torch.Tensor
    selected_probs: torch.Tensor
    mask_ratio: torch.Tensor
    mask_len: torch.Tensor
    masking: torch.Tensor
    next_ids: torch.Tensor


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
    # U = 0 would give -inf; JAX draws U from [tiny, 1) for the same reason.
    uniform = uniform.clamp_min(torch.finfo(torch.float32).tiny)
    return (-torch.log(-torch.log(uniform))).to(device)


def sample_ids(logits: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """One categorical draw per position by Gumbel-max: ``argmax(logits + gumbel)``.

    Args:
        logits: (..., K) float32 unnormalised log-probabilities.
        gumbel: Gumbel noise of the same shape.

    Returns:
        (...) int64 in [0, K).
    """
    return torch.argmax(logits + gumbel, dim=-1)


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


def mask_by_random_topk(
    mask_len: torch.Tensor, probs: torch.Tensor, temperature: torch.Tensor, gumbel: torch.Tensor
) -> torch.Tensor:
    """The official Gumbel-top-k choice of the tokens to re-mask.

    ``confidence = log(probs) + temperature * gumbel``; a token is re-masked when its confidence
    is strictly below the ``mask_len``-th smallest (0-based) of its row, which selects exactly
    ``mask_len`` tokens unless confidences tie.

    Args:
        mask_len: (B,) int64, tokens to re-mask per row.
        probs: (B, L) float32 from ``selected_probs`` (+inf = never re-mask).
        temperature: float32 scalar tensor ≥ 0, the noise scale.
        gumbel: (B, L) Gumbel noise.

    Returns:
        (B, L) bool.
    """
    confidence = torch.log(probs) + temperature * gumbel
    sorted_confidence = torch.sort(confidence, dim=-1).values
    # JAX clamps out-of-range gathers; only reachable for L = 1.
    index = mask_len.clamp(max=probs.shape[-1] - 1).unsqueeze(-1)
    cut = torch.gather(sorted_confidence, -1, index)
    return confidence < cut


@contextlib.contextmanager
def _eval_mode(model: object) -> Iterator[None]:
    # Sampling never uses dropout; a model in training mode (e.g. a preview during training)
    # is switched to eval for the call and restored afterwards.
    if isinstance(model, nn.Module) and model.training:
        model.eval()
        try:
            yield
        finally:
            model.train()
    else:
        yield


_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _model_config_value(transformer: object, name: str) -> int | None:
    config = getattr(transformer, "config", None)
    value = getattr(config, name, None)
    return int(value) if value is not None else None


def _draw(
    noise: NoiseFn | None,
    step: int,
    kind: str,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    if noise is None:
        return gumbel_noise(shape, generator, device)
    value = torch.as_tensor(noise(step, kind, shape))
    if tuple(value.shape) != shape:
        raise ValueError(
            f"noise({step}, {kind!r}, {shape}) returned shape {tuple(value.shape)}, "
            f"expected {shape}"
        )
    return value.to(device=device, dtype=torch.float32)


def decode(
    transformer: Callable[[torch.Tensor], torch.Tensor],
    ids: torch.Tensor,
    *,
    num_iter: int,
    start_iter: int = 0,
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
            e.g. ``MaskGITTransformer`` (run in eval mode) or a guidance wrapper. It receives
            unknown tokens as ``MASK_ID`` (-1). Any float dtype; sampling runs in float32.
        ids: (B, L) integer, class token at position 0 and image tokens after it. Unknown tokens
            are -1 or ``transformer.config.mask_token_id`` (vocab_size - 1).
        num_iter: total number of steps T ≥ 1.
        start_iter: first step to run, 0 ≤ start_iter < num_iter; the schedule starts at
            r = (start_iter + 1) / T (the official editing run uses 2 of 12).
        choice_temperature: scale ≥ 0 of the Gumbel noise in the re-masking choice, annealed
            by (1 - r).
        schedule: mask schedule name (see ``maskgit.sampling.SCHEDULES``).
        generator: the only source of randomness (torch's global RNG if None). It may live on
            another device than the model; the noise is drawn there and moved.
        noise: ``noise(step, kind, shape)`` supplying Gumbel noise instead of the generator
            (used to replay the official JAX noise).
        codebook_size: K, defaults to ``transformer.config.codebook_size``; logits are sliced
            to ``[..., :K]``.
        callback: called with a ``DecodeStep`` after every executed step.

    Returns:
        (B, num_iter, L) int64 on ``ids``' device: row t holds the tokens sampled at step t
        (before re-masking); rows before ``start_iter`` are copies of ``ids`` as given. The
        result is ``[:, -1]``, with every token in [0, K) except the given ones.
    """
    if not _is_int(num_iter) or num_iter < 1:
        raise ValueError(f"num_iter must be an integer >= 1, got {num_iter!r}")
    if not _is_int(start_iter) or not 0 <= start_iter < num_iter:
        raise ValueError(f"start_iter must be in [0, num_iter={num_iter}), got {start_iter!r}")
    num_iter, start_iter = int(num_iter), int(start_iter)
    if not isinstance(ids, torch.Tensor) or ids.dtype not in _INTEGER_DTYPES:
        raise ValueError(
            f"ids must be an integer torch.Tensor, got {getattr(ids, 'dtype', type(ids).__name__)}"
        )
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"ids must have shape (B, L) with B, L >= 1, got {tuple(ids.shape)}")
    if not choice_temperature >= 0:
        raise ValueError(f"choice_temperature must be >= 0, got {choice_temperature}")
    schedule = canonical_schedule(schedule)
    if codebook_size is None:
        codebook_size = _model_config_value(transformer, "codebook_size")
        if codebook_size is None:
            raise ValueError(
                "codebook_size is required when the transformer has no config.codebook_size"
            )
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")

    batch, length = ids.shape
    device = ids.device
    ids = ids.to(torch.int64)
    unknown = ids == MASK_ID
    mask_token_id = _model_config_value(transformer, "mask_token_id")
    if mask_token_id is not None:
        unknown |= ids == mask_token_id
    # n0 stays fixed for the whole run, so the whole schedule is known up front. It is computed
    # on the CPU (see schedules.py: float32 arithmetic, identical on every device).
    total_unknown = unknown.sum(dim=-1).cpu()
    steps = torch.arange(start_iter, num_iter)
    ratios = step_ratio(steps, num_iter)
    row_ratios = mask_ratio(schedule, ratios[:, None], total_unknown).to(device)
    scheduled = scheduled_num_masked(schedule, steps[:, None], num_iter, total_unknown).to(device)
    # The official choice_temperature * (1 - r), a float32 product.
    temperatures = torch.tensor(choice_temperature, dtype=torch.float32) * (1.0 - ratios)
    temperatures = temperatures.to(device)

    final = ids.unsqueeze(1).repeat(1, num_iter, 1)
    current = torch.where(unknown, MASK_ID, ids)
    with torch.no_grad(), _eval_mode(transformer):
        for i, step in enumerate(steps.tolist()):
            logits = transformer(current)
            if logits.shape[:2] != (batch, length) or logits.shape[-1] < codebook_size:
                raise ValueError(
                    f"transformer returned logits of shape {tuple(logits.shape)}, expected "
                    f"({batch}, {length}, >= {codebook_size})"
                )
            logits = logits[..., :codebook_size].float()
            sample_noise = _draw(noise, step, "sample", tuple(logits.shape), generator, device)
            unknown = current == MASK_ID
            sampled = torch.where(unknown, sample_ids(logits, sample_noise), current)
            final[:, step] = sampled

            mask_len = clamp_num_masked(scheduled[i], unknown.sum(dim=-1))
            probs = selected_probs(logits, sampled, unknown)
            choice_noise = _draw(noise, step, "choice", (batch, length), generator, device)
            masking = mask_by_random_topk(mask_len, probs, temperatures[i], choice_noise)
            current = torch.where(masking, MASK_ID, sampled)
            if callback is not None:
                callback(
                    DecodeStep(
                        step=step,
                        num_iter=num_iter,
                        logits=logits,
                        sampled_ids=sampled,
                        selected_probs=probs,
                        mask_ratio=row_ratios[i],
                        mask_len=mask_len,
                        masking=masking,
                        next_ids=current,
                    )
                )
    return final
