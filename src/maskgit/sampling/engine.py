"""The decoding loop that every sampler runs in (spec §3.3, generalised).

Each step: logits for the current tokens (two passes batched into one forward under guidance;
with context reuse, a full or a cheap evaluation: ``maskgit.sampling.logits``), shaped by the
sampler, one token drawn for every position, known tokens kept, and then the sampler re-masks
exactly the schedule's number of the new tokens. Position 0 is the class slot:
it is never sampled or re-masked, whatever it holds.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from maskgit.sampling.logits import StepLogits
from maskgit.sampling.noise import NoiseSource
from maskgit.sampling.samplers import Sampler
from maskgit.sampling.schedules import (
    canonical_schedule,
    clamp_num_masked,
    mask_ratio,
    scheduled_num_masked,
    step_ratio,
)
from maskgit.sampling.steps import MASK_ID, selected_probs

__all__ = ["DecodeStep", "run_sampler", "unknown_positions"]

_INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


@dataclass(frozen=True)
class DecodeStep:
    """What one executed step computed (passed to ``callback``).

    Attributes:
        step: absolute step index, ``start_step <= step < num_steps``.
        num_steps: total number of steps.
        logits: (B, L, codebook_size) float32, the (guided, shaped) logits the step sampled from.
        sampled_ids: (B, L) int64, the new tokens with the known ones kept; the output row
            ``final[:, step]``. At a cheap step of context reuse with a sampler that chooses
            before it reads the predictions (Halton, random order), the positions it masks again
            at once hold draws from the last predictions made there.
        unknown: (B, L) bool, the positions that were masked at the start of the step.
        selected_probs: (B, L) float32, probability of each sampled token under ``logits``, +inf
            at known positions; computed when first read (a softmax over the logits), so that a
            callback that only counts steps, such as a progress bar, costs nothing.
        mask_ratio: (B,) float32, the schedule value for this step.
        mask_len: (B,) int64, the clamped number of tokens to re-mask (official ``mask_len``).
        masking: (B, L) bool, the tokens re-masked.
        next_ids: (B, L) int64, the input of the next step (``MASK_ID`` where ``masking``).
        guidance: the guidance scale used at this step.
    """

    step: int
    num_steps: int
    logits: torch.Tensor
    sampled_ids: torch.Tensor
    unknown: torch.Tensor
    mask_ratio: torch.Tensor
    mask_len: torch.Tensor
    masking: torch.Tensor
    next_ids: torch.Tensor
    guidance: float = 0.0

    @functools.cached_property
    def selected_probs(self) -> torch.Tensor:
        return selected_probs(self.logits, self.sampled_ids, self.unknown)


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


def _config_value(transformer: object, name: str) -> int | None:
    value = getattr(getattr(transformer, "config", None), name, None)
    return int(value) if value is not None else None


def unknown_positions(ids: torch.Tensor, transformer: object) -> torch.Tensor:
    """(B, L) bool: the image positions to generate, ``MASK_ID`` or the model's mask id. The class
    slot (position 0) is never one of them, even when it holds a mask or null token."""
    unknown = ids == MASK_ID
    mask_token_id = _config_value(transformer, "mask_token_id")
    if mask_token_id is not None:
        unknown |= ids == mask_token_id
    unknown[:, 0] = False
    return unknown


def _check_ids(ids: object) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dtype not in _INTEGER_DTYPES:
        raise ValueError(f"ids must be an integer torch.Tensor, got {getattr(ids, 'dtype', type(ids).__name__)}")
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] < 2:
        raise ValueError(f"ids must have shape (B, L) with B >= 1 and L >= 2 (class slot + tokens), got {tuple(ids.shape)}")


def _group_len(plan: tuple[bool, ...], index: int, scheduled: torch.Tensor, mask_len: torch.Tensor) -> torch.Tensor:
    """(B,) int64: how many tokens stay masked after the group of the full evaluation at run step
    ``index``: that step and the cheap ones after it, up to the next full evaluation and short of
    the run's final step, which computes and draws every masked token (its draws are the result)
    and so needs no group. The clamped schedule, followed from ``mask_len`` (the full step's own)."""
    remaining = mask_len
    for k in range(index + 1, len(plan) - 1):
        if plan[k]:
            break
        remaining = clamp_num_masked(scheduled[k], remaining)
    return remaining


def run_sampler(
    transformer: Callable[[torch.Tensor], torch.Tensor],
    ids: torch.Tensor,
    sampler: Sampler,
    noise: NoiseSource,
    *,
    start_step: int = 0,
    codebook_size: int | None = None,
    callback: Callable[[DecodeStep], None] | None = None,
) -> torch.Tensor:
    """Fill the unknown tokens of ``ids`` with ``sampler``.

    Args:
        transformer: any callable ids (B, L) int64 → logits (B, L, V) with V ≥ codebook_size,
            e.g. ``MaskGITTransformer``. It receives unknown tokens as ``MASK_ID`` (-1). Any float
            dtype; sampling runs in float32. Its ids are validated here, once, when it offers
            ``check_ids``; its forward need not (and ours does not) sync with the host. Guided
            steps sync once each, to refuse non-finite guided logits, and so does each full
            evaluation of context reuse (to size its cheap steps). Context reuse
            (``sampler.context_reuse``) needs ``MaskGITTransformer``'s ``context_cache`` and the
            ``cache``/``positions`` keywords of its ``codebook_logits``.
        ids: (B, L) integer; position 0 is the class slot (``label + codebook_size``), then the
            image tokens. Unknown tokens are -1 or ``transformer.config.mask_token_id``.
        sampler: the per-step decisions, with ``num_steps`` T.
        noise: the run's randomness (``maskgit.sampling.noise``).
        start_step: first step to run, 0 ≤ start_step < T; the schedule starts at
            r = (start_step + 1) / T (the official editing run uses 2 of 12).
        codebook_size: K, defaults to ``transformer.config.codebook_size``; logits are sliced to
            ``[..., :K]``.
        callback: called with a ``DecodeStep`` after every executed step.

    Returns:
        (B, T, L) int64 on ``ids``' device: row t holds the tokens sampled at step t (before
        re-masking; see ``DecodeStep.sampled_ids`` for context reuse); rows before ``start_step``
        are copies of ``ids``. The result is ``[:, -1]``.

    Raises:
        ValueError: bad ids or start_step, guidance asked of a model without a null class,
            context reuse asked of a transformer that cannot reuse its context, or guided
            logits that are not finite (a scale so large that they overflow float32).
    """
    num_steps = sampler.num_steps
    start_step = sampler.check_start_step(start_step)
    _check_ids(ids)
    if codebook_size is None:
        codebook_size = _config_value(transformer, "codebook_size")
        if codebook_size is None:
            raise ValueError("codebook_size is required when the transformer has no config.codebook_size")
    if codebook_size < 1:
        raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
    steps = torch.arange(start_step, num_steps)
    guidance = [sampler.guidance_at(step) for step in steps.tolist()]
    null_class_id = _config_value(transformer, "null_class_id")
    sampler.check_guidance(null_class_id)
    check = getattr(transformer, "check_ids", None)
    if check is not None:
        check(ids)

    device = ids.device
    ids = ids.to(torch.int64)
    unknown = unknown_positions(ids, transformer)
    # n0 stays fixed for the whole run, so the whole schedule is known up front. It is computed
    # on the CPU once (see schedules.py: float32 arithmetic, identical on every device).
    schedule = canonical_schedule(sampler.schedule)
    total_unknown = unknown.sum(dim=-1).cpu()
    row_ratios = mask_ratio(schedule, step_ratio(steps, num_steps)[:, None], total_unknown).to(device)
    scheduled = scheduled_num_masked(schedule, steps[:, None], num_steps, total_unknown).to(device)

    # Only the codebook rows of the head are read (StepLogits asks for codebook_logits).
    plan = sampler.evaluation_plan(start_step) if sampler.context_reuse else None
    step_logits = StepLogits(transformer, codebook_size, null_class_id, plan)
    groups = step_logits.plan is not None and sampler.chooses_groups
    group = None  # (B, L) bool: the tokens the last full evaluation's group may fix
    final = ids.unsqueeze(1).repeat(1, num_steps, 1)
    current = torch.where(unknown, MASK_ID, ids)
    with torch.no_grad(), _eval_mode(transformer):
        state = sampler.start(current, start_step, noise)
        for i, step in enumerate(steps.tolist()):
            scale = guidance[i]
            unknown = current == MASK_ID
            unknown[:, 0] = False
            mask_len = clamp_num_masked(scheduled[i], unknown.sum(dim=-1))
            masking = needed = None
            cheap, last = step_logits.is_cheap(i), step == num_steps - 1
            if cheap and not sampler.reads_predictions and not last:
                # The choice does not depend on the predictions: made first, so that the cheap
                # evaluation computes only the positions this step fixes. Not at the last step,
                # whose draws are the result at every position (re-masked or not: final[:, -1]).
                masking = sampler.remask(
                    step, logits=None, sampled=None, unknown=unknown, mask_len=mask_len, noise=noise, state=state
                )
                needed = unknown & ~masking
            elif cheap and groups and not last:
                needed = unknown & group  # the group's tokens still masked: the step's candidates
            logits = sampler.shape_logits(step_logits(i, step, current, scale, needed), step)
            sampled = torch.where(unknown, noise.sample(step, logits), current)
            final[:, step] = sampled
            if masking is None:
                choice = {"logits": logits, "sampled": sampled, "noise": noise, "state": state}
                if needed is not None:
                    # A cheap step of a group fixes only candidates: the others keep stale logits
                    # and go back to the mask (the group was sized so that the schedule re-masks
                    # at least as many tokens as lie outside it).
                    outside = unknown & ~needed
                    masking = outside | sampler.remask(
                        step, unknown=needed, mask_len=(mask_len - outside.sum(dim=-1)).clamp_min(0), **choice)
                elif groups and not cheap:
                    masking, group = sampler.remask_group(
                        step, unknown=unknown, mask_len=mask_len,
                        group_len=_group_len(plan, i, scheduled, mask_len), **choice)
                else:
                    masking = sampler.remask(step, unknown=unknown, mask_len=mask_len, **choice)
            current = torch.where(masking, MASK_ID, sampled)
            if callback is not None:
                callback(DecodeStep(
                    step=step, num_steps=num_steps, logits=logits, sampled_ids=sampled,
                    unknown=unknown, mask_ratio=row_ratios[i],
                    mask_len=mask_len, masking=masking, next_ids=current, guidance=scale,
                ))
    return final
