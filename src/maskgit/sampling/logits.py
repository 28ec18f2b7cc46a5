"""The logits of each decoding step: one transformer pass, two batched into one under guidance,
and with context reuse (``Sampler.context_reuse``) a full evaluation or a cheap one.

Context reuse follows ReCAP (Liu et al., 2025, "Plug-and-Play Context Feature Reuse for Efficient
Masked Generation"). A full evaluation runs every token through every layer and keeps each layer's
keys and values. A cheap evaluation runs only the positions that need it, and every other position
(the class slot, the given tokens, the tokens decided before the last full evaluation) enters
attention through its cached keys and values. The positions that need it are the tokens decided
since the last full evaluation, whose inputs changed, and the masked tokens whose predictions the
step reads: all of them for the confidence sampler, which ranks every masked token; only those it
fixes for a sampler whose choice does not read the predictions (Halton, random order:
``Sampler.reads_predictions``). On a context that has not changed, a cheap evaluation gives the
full one's logits to within rounding; what it gives up is the change that newly decided tokens
would make to the features of the tokens it does not recompute.

Rows are independent: under guidance the conditional and the unconditional half are separate rows
of the batch, and each keeps and reuses its own keys and values. Positions that a cheap step does
not compute keep the last step's logits; no sampler keeps a token drawn from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from maskgit.sampling.steps import MASK_ID

__all__ = ["StepLogits", "fresh_positions"]


def fresh_positions(unknown: torch.Tensor) -> torch.Tensor:
    """The positions a cheap evaluation computes: (B, L) bool → (B, M) int64, each row's True
    positions in increasing order, M the largest count of a row (at least 1).

    A row with fewer positions repeats its first one (a position computed twice gets the same
    value twice), and a row with none lists the class slot, 0: its tokens never change, so
    computing any of them again gives what the cache holds.
    """
    counts = unknown.sum(dim=1)
    width = max(1, int(counts.max()))  # one host sync per full evaluation
    # A stable sort of "not unknown" puts each row's unknown positions first, in raster order.
    order = torch.argsort((~unknown).to(torch.uint8), dim=1, stable=True)[:, :width]
    filled = torch.arange(width, device=unknown.device) < counts[:, None]
    return torch.where(filled, order, order[:, :1])


class StepLogits:
    """The (guided) float32 logits (B, L, K) that each step of one decoding run samples from.

    Args:
        transformer: ids (B, L) → logits (B, L, V ≥ K); its ``codebook_logits`` is called when it
            has one. Context reuse needs ``context_cache()`` and the ``cache`` and ``positions``
            keywords of ``MaskGITTransformer.codebook_logits``.
        codebook_size: K.
        null_class_id: the class slot of the unconditional half under guidance (None: no guidance).
        plan: ``Sampler.evaluation_plan`` for the run's steps (True: full, False: cheap), or None
            for a full evaluation at every step without keeping anything (the official path).

    Raises ValueError when ``plan`` holds a cheap step and the transformer cannot reuse its
    context (a plain callable without ``context_cache``).
    """

    def __init__(
        self,
        transformer: Callable[..., torch.Tensor],
        codebook_size: int,
        null_class_id: int | None,
        plan: Sequence[bool] | None = None,
    ) -> None:
        self.model = getattr(transformer, "codebook_logits", transformer)
        self.codebook_size = codebook_size
        self.null_class_id = null_class_id
        # A plan without a cheap step is the official path: nothing kept.
        self.plan = None if plan is None or all(plan) else tuple(plan)
        self.new_cache = getattr(transformer, "context_cache", None)
        if self.plan is not None and self.new_cache is None:
            raise ValueError(
                "context_reuse needs a transformer that keeps its context (MaskGITTransformer, plain or prepared "
                f"for inference); {type(transformer).__name__} does not: use context_reuse 0"
            )
        self.cache = None
        self.unknown_at_full: torch.Tensor | None = None  # (B, L) bool, masked at the last full evaluation
        self.positions: torch.Tensor | None = None  # (B, M), what the cheap steps compute by default
        self.logits: torch.Tensor | None = None  # (B, L, K), of the last step

    def is_cheap(self, index: int) -> bool:
        """Whether the run's ``index``-th step is a cheap evaluation."""
        return self.plan is not None and not self.plan[index]

    def __call__(
        self, index: int, step: int, current: torch.Tensor, scale: float, needed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The logits of the run's ``index``-th step (absolute ``step``, for messages).

        Args:
            current: (B, L) int64, the step's input, ``MASK_ID`` where unknown.
            scale: the step's guidance scale (0: none).
            needed: at a cheap step, (B, L) bool, the masked positions whose predictions the step
                reads (a sampler that fixes positions whatever the logits reads only those it
                fixes); None: all of them. The logits elsewhere are stale.
        """
        length = current.shape[1]
        ids = current
        if scale:
            unconditional = current.clone()
            unconditional[:, 0] = self.null_class_id
            ids = torch.cat([current, unconditional])
        cheap = self.is_cheap(index)
        if self.plan is None:
            raw = self.model(ids)
        elif not cheap:
            self.cache = self.new_cache()
            raw = self.model(ids, cache=self.cache)
            self.unknown_at_full = current == MASK_ID
            self.unknown_at_full[:, 0] = False
            self.positions = fresh_positions(self.unknown_at_full)
        else:
            positions = self.positions
            if needed is not None:
                # The tokens decided since the full evaluation (their inputs changed) and the
                # masked ones the step reads; the other masked ones keep their cached context.
                positions = fresh_positions(self.unknown_at_full & ((current != MASK_ID) | needed))
            raw = self.model(ids, cache=self.cache, positions=torch.cat([positions, positions]) if scale else positions)
        _check_logits(raw, ids.shape[0], positions.shape[1] if cheap else length, self.codebook_size)
        if scale:
            conditional, free = raw[..., : self.codebook_size].float().chunk(2)
            logits = conditional + scale * (conditional - free)
            _check_guided_logits(logits, conditional, free, scale, step)
        else:
            logits = raw[..., : self.codebook_size].float()
        if cheap:
            # Positions not computed keep the last step's logits; a fresh tensor, as the last
            # step's went to its callback.
            logits = self.logits.scatter(1, positions[..., None].expand(-1, -1, self.codebook_size), logits)
        if self.plan is not None:
            self.logits = logits
        return logits


def _check_guided_logits(
    logits: torch.Tensor, conditional: torch.Tensor, free: torch.Tensor, scale: float, step: int
) -> None:
    # inf or NaN logits would be sampled without complaint and wreck the re-masking choice (NaN
    # confidences fix every token at once). A huge scale overflows float32 here, so the guided
    # logits are checked: one host sync per guided step.
    if bool(torch.isfinite(logits).all()):
        return
    if not (bool(torch.isfinite(conditional).all()) and bool(torch.isfinite(free).all())):
        raise ValueError(f"the transformer returned non-finite logits (inf or NaN) at step {step}")
    raise ValueError(
        f"guidance {scale:g} overflowed the logits to inf or NaN at step {step} (float32); use a smaller guidance scale"
    )


def _check_logits(logits: torch.Tensor, batch: int, length: int, codebook_size: int) -> None:
    if logits.shape[:2] != (batch, length) or logits.shape[-1] < codebook_size:
        raise ValueError(
            f"transformer returned logits of shape {tuple(logits.shape)}, expected "
            f"({batch}, {length}, >= {codebook_size})"
        )
