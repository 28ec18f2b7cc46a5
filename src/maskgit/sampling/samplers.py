"""Samplers: the per-step decisions of parallel decoding, behind one interface.

At every step the engine (``maskgit.sampling.engine``) asks the model for logits, lets the sampler
shape them (softmax temperature, top-k), draws a token for every position, and then asks the
sampler which of the new tokens to re-mask. How many are re-masked comes from the mask schedule,
the same for every sampler, so every sampler fixes exactly the schedule's number of tokens.

- ``ConfidenceSampler``: the official MaskGIT choice. It keeps the most confident tokens, with
  Gumbel noise of scale ``choice_temperature * (1 - r)`` in the confidences. With the default
  softmax temperature 1 and no top-k it is exactly the official decoder.
- ``HaltonSampler``: fixes positions in the order of the 2-D Halton sequence (Besnier et al.,
  "Halton Scheduler for Masked Generative Image Transformer", ICLR 2025): spread-out positions
  first, whatever the model's confidence. ``roll=True`` starts each image at a random point of
  the sequence.
- ``RandomSampler``: fixes positions in a uniformly random order.

Every sampler also has a softmax temperature (a pair anneals linearly from the first value to the
second over the steps), top-k filtering, classifier-free guidance with a scale schedule, and
context reuse (``context_reuse``: cheap steps between full evaluations of the transformer, see
``maskgit.sampling.logits``). Samplers are frozen dataclasses: ``to_dict`` /
``sampler_from_dict`` round-trip them through JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from maskgit.sampling.schedules import canonical_schedule, step_ratio
from maskgit.sampling.steps import filter_top_k, mask_by_random_topk, remask_lowest, selected_probs

__all__ = [
    "MAX_CONTEXT_REUSE",
    "Sampler",
    "ConfidenceSampler",
    "HaltonSampler",
    "RandomSampler",
    "SAMPLERS",
    "GUIDANCE_SCHEDULES",
    "build_sampler",
    "sampler_from_dict",
    "sampler_from_options",
    "sampler_options",
    "SAMPLER_FLAGS",
    "sampler_flags",
    "halton_order",
]

GUIDANCE_SCHEDULES = ("constant", "linear", "cosine")


# Sampling runs in float32: a temperature or a scale must be a float32 number, or it turns into
# 0 or inf on the device. Softmax temperatures go down to anything that rounds to a positive
# float32, i.e. above half the smallest one (the logits are shifted to a maximum of 0 first, so
# any of them gives the right limit). The choice temperature stops where ``t * gumbel`` could
# overflow (Gumbel draws from uniforms lie within ±17).
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)
_SOFTMAX_TEMPERATURE_FLOOR = 2.0**-150
_MAX_CHOICE_TEMPERATURE = 1e36

#: The most cheap steps after a full evaluation: a bound on a user's number. Every cheap step
#: reuses the context of older tokens as the last full evaluation saw it, so far beyond this a run
#: would decode on one evaluation's stale context, and a full evaluation every 65 steps costs
#: little next to the 64 between.
MAX_CONTEXT_REUSE = 64


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _in_range(value: object, low: float, high: float, *, above_low: bool = False) -> bool:
    return _is_number(value) and (low < value if above_low else low <= value) and value <= high


@dataclass(frozen=True)
class Sampler:
    """The options every sampler shares.

    Attributes:
        num_steps: decoding steps T ≥ 1.
        schedule: mask schedule name (``maskgit.sampling.SCHEDULES``, or ``pow<X>``).
        softmax_temperature: T > 0 dividing the logits before sampling; a pair (T0, T1) anneals
            linearly from T0 at the first step to T1 at the last. Anything float32 holds, from
            2**-149 (the argmax, in effect) to its maximum (uniform, in effect).
        top_k: sample only among the k most likely tokens (None: all).
        guidance: classifier-free guidance scale w ≥ 0 (float32); logits = cond + w · (cond − uncond).
            Needs a model trained with class dropout (``TransformerConfig.null_class``). A scale
            that overflows the logits is refused when the run meets it.
        guidance_schedule: ``constant`` (w at every step), ``linear`` (0 → w) or ``cosine``
            (0 → w along a half cosine), over the steps.
        context_reuse: N, 0 ≤ N ≤ ``MAX_CONTEXT_REUSE``: after each full evaluation of the
            transformer, N cheap steps that recompute only the tokens decided since it and the
            masked tokens whose predictions the step reads, and reuse the cached keys and values
            of the others (``evaluation_plan``, ``maskgit.sampling.logits``). 0 (the default)
            evaluates in full at every step: the official decoding.
    """

    name: ClassVar[str] = ""
    #: Whether ``remask`` reads the logits and the sampled tokens. A sampler that fixes positions
    #: from their order and the noise alone (False) is asked first at the cheap steps of context
    #: reuse, which then compute only the positions it fixes (``maskgit.sampling.logits``).
    reads_predictions: ClassVar[bool] = True

    num_steps: int = 16
    schedule: str = "cosine"
    softmax_temperature: float | tuple[float, float] = 1.0
    top_k: int | None = None
    guidance: float = 0.0
    guidance_schedule: str = "constant"
    context_reuse: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.num_steps, numbers.Integral) or isinstance(self.num_steps, bool):
            raise ValueError(f"num_steps must be an integer, got {self.num_steps!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps}")
        canonical_schedule(self.schedule)
        temperature = self.softmax_temperature
        if isinstance(temperature, list):
            object.__setattr__(self, "softmax_temperature", temperature := tuple(temperature))
        values = temperature if isinstance(temperature, tuple) else (temperature,)
        if not 1 <= len(values) <= 2 or not all(
            _in_range(v, _SOFTMAX_TEMPERATURE_FLOOR, _FLOAT32_MAX, above_low=True) for v in values
        ):
            raise ValueError(
                "softmax_temperature must be a number > 0 or a pair of them, each above "
                f"{_SOFTMAX_TEMPERATURE_FLOOR:.2g} and at most {_FLOAT32_MAX:.3g} (float32), got {temperature!r}"
            )
        if len(values) == 1 and isinstance(temperature, tuple):
            object.__setattr__(self, "softmax_temperature", float(values[0]))
        if self.top_k is not None and (
            not isinstance(self.top_k, numbers.Integral) or isinstance(self.top_k, bool) or self.top_k < 1
        ):
            raise ValueError(f"top_k must be an integer >= 1 or None, got {self.top_k!r}")
        if not _in_range(self.guidance, 0, _FLOAT32_MAX):
            raise ValueError(
                f"guidance must be a number >= 0 and at most {_FLOAT32_MAX:.3g} (float32), got {self.guidance!r}"
            )
        if self.guidance_schedule not in GUIDANCE_SCHEDULES:
            raise ValueError(
                f"unknown guidance schedule {self.guidance_schedule!r}; valid: {', '.join(GUIDANCE_SCHEDULES)}"
            )
        reuse = self.context_reuse
        if not isinstance(reuse, numbers.Integral) or isinstance(reuse, bool) or not 0 <= reuse <= MAX_CONTEXT_REUSE:
            raise ValueError(f"context_reuse must be an integer from 0 to {MAX_CONTEXT_REUSE}, got {reuse!r}")

    # -- per-step values --------------------------------------------------------------------------

    def progress(self, step: int) -> float:
        """Where ``step`` lies in the run: 0 at the first step, 1 at the last (1 if T = 1)."""
        return step / (self.num_steps - 1) if self.num_steps > 1 else 1.0

    def softmax_temperature_at(self, step: int) -> float:
        temperature = self.softmax_temperature
        if isinstance(temperature, tuple):
            first, last = temperature
            return first + (last - first) * self.progress(step)
        return float(temperature)

    def guidance_at(self, step: int) -> float:
        """The guidance scale of ``step``; exactly 0.0 when ``guidance`` is 0."""
        if self.guidance == 0 or self.guidance_schedule == "constant":
            return float(self.guidance)
        r = self.progress(step)
        if self.guidance_schedule == "linear":
            return self.guidance * r
        return self.guidance * (1 - math.cos(math.pi * r)) / 2

    def check_start_step(self, start_step: int) -> int:
        """``start_step`` as an int when it is a step of this sampler, 0 ≤ start_step < num_steps;
        ValueError otherwise."""
        if not isinstance(start_step, numbers.Integral) or isinstance(start_step, bool) or not (
            0 <= start_step < self.num_steps
        ):
            raise ValueError(f"start_step must be in [0, num_steps={self.num_steps}), got {start_step!r}")
        return int(start_step)

    def transformer_passes(self, start_step: int = 0) -> int:
        """Transformer passes that one image costs from ``start_step`` to the last step: one a
        step, two at every guided step (the unconditional pass too; a linear or cosine guidance
        schedule starts at 0). What decoding time grows with, on any machine. A cheap step of
        context reuse is a pass too, over fewer tokens (``evaluation_plan``)."""
        return sum(2 if self.guidance_at(step) else 1 for step in range(start_step, self.num_steps))

    def evaluation_plan(self, start_step: int = 0) -> tuple[bool, ...]:
        """How the transformer is evaluated at each step from ``start_step`` to the last: True for a
        full evaluation, False for a cheap one that reuses the context of the last full one.

        ``context_reuse`` N: each full evaluation is followed by up to N cheap steps. A step whose
        guidance turns on or off is full whatever N is: the cache holds the batch of the last full
        evaluation, without the unconditional half before guidance starts. With N = 0 every step
        is full. The first step is always full.
        """
        plan: list[bool] = []
        cheap_since_full, guided_at_full = 0, None
        for step in range(start_step, self.num_steps):
            guided = bool(self.guidance_at(step))
            full = guided_at_full is None or guided != guided_at_full or cheap_since_full >= self.context_reuse
            if full:
                cheap_since_full, guided_at_full = 0, guided
            else:
                cheap_since_full += 1
            plan.append(full)
        return tuple(plan)

    def check_guidance(self, null_class_id: int | None) -> None:
        """Refuse guidance on a model without a null class: the unconditional pass feeds the null
        class id, which only a model trained with class dropout has (``TransformerConfig.null_class``).

        Raises ValueError when ``guidance`` is not 0 and ``null_class_id`` is None.
        """
        if self.guidance and null_class_id is None:
            raise ValueError(
                f"guidance {self.guidance:g} needs a model trained with class dropout (a null class, "
                "TransformerConfig.null_class); this model has none, so use guidance 0"
            )

    def shape_logits(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """The logits that ``step`` samples from: divided by the softmax temperature, then
        top-k filtered. Unchanged (the same tensor) at temperature 1 with no top-k.

        Away from temperature 1 each row is first shifted to a maximum of 0 (softmax is the same
        for any shift). Then ``(logits - max) / T`` cannot overflow: it is 0 at the argmax and
        ≤ 0 elsewhere, tending to -inf as T → 0, so that a tiny T gives the argmax, not NaN.
        """
        temperature = self.softmax_temperature_at(step)
        if temperature != 1.0:
            logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
        return filter_top_k(logits, self.top_k)

    # -- the choice of positions ------------------------------------------------------------------

    def start(self, ids: torch.Tensor, step: int, noise: Any) -> Any:
        """Per-run state, computed once before the first executed ``step`` (default: none).
        ``ids`` (B, L) is the run's input with position 0 the class slot."""
        return None

    def remask(
        self,
        step: int,
        *,
        logits: torch.Tensor,
        sampled: torch.Tensor,
        unknown: torch.Tensor,
        mask_len: torch.Tensor,
        noise: Any,
        state: Any,
    ) -> torch.Tensor:
        """Which of the newly sampled tokens go back to the mask: (B, L) bool, ``mask_len[b]``
        of them in row b, all inside ``unknown``.

        Args:
            logits: (B, L, K) float32, the shaped logits the tokens were sampled from (None, with
                ``sampled``, when ``reads_predictions`` is False and the engine asks first).
            sampled: (B, L) int64, the new tokens (known positions keep theirs).
            unknown: (B, L) bool, positions that were masked at the start of the step.
            mask_len: (B,) int64, from the schedule.
            noise: the run's ``NoiseSource``.
            state: what ``start`` returned.
        """
        raise NotImplementedError

    @property
    def chooses_groups(self) -> bool:
        """Whether each full evaluation of context reuse chooses the group of tokens that it and
        its cheap steps fix (``remask_group``; ``ConfidenceSampler.reuse_group``)."""
        return False

    def remask_group(self, step: int, *, group_len: torch.Tensor, **remask: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``remask`` (the same keyword arguments) at a full evaluation that also chooses a group
        (``chooses_groups``): the (B, L) bool re-masked now, and the (B, L) bool group, the unknown
        positions that stay fixed when ``group_len`` (B,) int64 ≤ ``mask_len`` of them are
        re-masked by the same scores, so that the group holds every position fixed now. One draw
        of the step's noise."""
        raise NotImplementedError(f"the {self.name} sampler does not choose groups")

    # -- serialisation ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"sampler": name, field: value, ...}`` (temperature pairs as lists).
        ``context_reuse`` is left out when 0, and ``reuse_group`` when false: a record without
        them (every record written before they existed among them) means the official full
        evaluation at every step, or the official choice among every masked token."""
        data = dataclasses.asdict(self)
        if isinstance(data["softmax_temperature"], tuple):
            data["softmax_temperature"] = list(data["softmax_temperature"])
        if not data["context_reuse"]:
            del data["context_reuse"]
        if not data.get("reuse_group", True):
            del data["reuse_group"]
        return {"sampler": self.name, **data}

    def replace(self, **changes: Any) -> Sampler:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ConfidenceSampler(Sampler):
    """The official MaskGIT sampler (spec §3.3): re-mask the least confident new tokens, with
    confidences ``log p + choice_temperature · (1 − r) · Gumbel``.

    ``reuse_group`` (with ``context_reuse`` N ≥ 1; no effect without it): ReCAP's rule for a
    confidence sampler. Each full evaluation ranks the masked tokens once and picks, by that
    ranking, the group that it and its N cheap steps will fix; the cheap steps then recompute only
    the group's tokens still masked (and those decided since the full evaluation) and choose among
    them by their fresh confidences. Without it (the default), every cheap step recomputes every
    token masked at the full evaluation and chooses among all of them: the official rule on fresh
    predictions, at a smaller saving. The final step computes every masked token and may fix any of
    them, as its draws are the result; a group is sized over its steps before the final one.
    """

    name: ClassVar[str] = "confidence"

    choice_temperature: float = 4.5
    reuse_group: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _in_range(self.choice_temperature, 0, _MAX_CHOICE_TEMPERATURE):
            raise ValueError(
                f"choice_temperature must be a number >= 0 and at most {_MAX_CHOICE_TEMPERATURE:g}, "
                f"got {self.choice_temperature!r}"
            )
        if not isinstance(self.reuse_group, bool):
            raise ValueError(f"reuse_group must be true or false, got {self.reuse_group!r}")

    @property
    def chooses_groups(self) -> bool:
        return self.reuse_group and self.context_reuse > 0

    def _confidence_terms(self, step, logits, sampled, unknown, noise):
        """What ``mask_by_random_topk`` scores: (probabilities (B, L) from ``selected_probs``, the
        noise scale, the step's Gumbel draw)."""
        probs = selected_probs(logits, sampled, unknown)
        choice = noise.choice(step, tuple(unknown.shape), unknown.device)
        # The official choice_temperature * (1 - r), a float32 product.
        ratio = step_ratio(torch.tensor([step]), self.num_steps)
        temperature = (torch.tensor(self.choice_temperature, dtype=torch.float32) * (1.0 - ratio))[0]
        return probs, temperature.to(unknown.device), choice

    def remask(self, step, *, logits, sampled, unknown, mask_len, noise, state):
        probs, temperature, choice = self._confidence_terms(step, logits, sampled, unknown, noise)
        return mask_by_random_topk(mask_len, probs, temperature, choice)

    def remask_group(self, step, *, logits, sampled, unknown, mask_len, group_len, noise, state):
        probs, temperature, choice = self._confidence_terms(step, logits, sampled, unknown, noise)
        # The same scores cut at two depths: what is re-masked now, and what stays outside the group.
        return (mask_by_random_topk(mask_len, probs, temperature, choice),
                unknown & ~mask_by_random_topk(group_len, probs, temperature, choice))


@dataclass(frozen=True)
class RandomSampler(Sampler):
    """Fix positions in a uniformly random order (independent of the model's confidence)."""

    name: ClassVar[str] = "random"
    reads_predictions: ClassVar[bool] = False

    def remask(self, step, *, logits, sampled, unknown, mask_len, noise, state):
        choice = noise.choice(step, tuple(unknown.shape), unknown.device)
        return remask_lowest(torch.where(unknown, choice, torch.inf), mask_len)


@dataclass(frozen=True)
class HaltonSampler(Sampler):
    """Fix positions in the order of the 2-D Halton sequence (see ``halton_order``); with
    ``roll``, each image starts at its own random point of the sequence."""

    name: ClassVar[str] = "halton"
    reads_predictions: ClassVar[bool] = False

    roll: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.roll, bool):
            raise ValueError(f"roll must be true or false, got {self.roll!r}")

    def start(self, ids, step, noise):
        batch, length = ids.shape
        side = math.isqrt(length - 1)
        if side * side != length - 1:
            raise ValueError(f"the Halton sampler needs a square token grid, got {length - 1} tokens")
        order = halton_order(side).to(ids.device)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel(), device=ids.device)
        rank = rank.expand(batch, -1)
        if self.roll:
            # The argmax of i.i.d. noise is a uniformly random position: the image's offset.
            shift = noise.choice(step, (batch, length), ids.device)[:, 1:].argmax(dim=-1)
            rank = (rank + shift[:, None]) % order.numel()
        # Position 0 is the class slot, never re-masked (its rank is never read).
        return torch.cat([torch.zeros_like(rank[:, :1]), rank], dim=1)

    def remask(self, step, *, logits, sampled, unknown, mask_len, noise, state):
        # Later in the order = lower score = re-masked first; ranks are distinct, so no ties.
        return remask_lowest(torch.where(unknown, -state.float(), torch.inf), mask_len)


SAMPLERS: dict[str, type[Sampler]] = {
    cls.name: cls for cls in (ConfidenceSampler, HaltonSampler, RandomSampler)
}


def sampler_options(name: str) -> tuple[str, ...]:
    """The options (fields) of the sampler called ``name``, in order; ValueError for an unknown name."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return tuple(field.name for field in dataclasses.fields(SAMPLERS[name]))


#: The ``maskgit`` command line's flag for the kind (``sampler``) and for each sampler option that
#: has one (``roll`` has none).
SAMPLER_FLAGS = {
    "sampler": "--sampler", "num_steps": "--steps", "schedule": "--schedule", "choice_temperature": "--temperature",
    "softmax_temperature": "--softmax-temperature", "top_k": "--top-k", "guidance": "--guidance",
    "guidance_schedule": "--guidance-schedule", "context_reuse": "--context-reuse", "reuse_group": "--reuse-group",
}


def sampler_flags(sampler: Sampler) -> list[str]:
    """The ``maskgit generate`` flags that give ``sampler``, whatever the model's default: every
    option with a flag, context reuse included when 0 and the confidence sampler's ``reuse_group``
    when false (``--no-reuse-group``; a flag left out keeps the model's value). An option that is
    None (no top-k) has no flag. An option without a flag is left out at its kind's default and is
    a ValueError otherwise: no command line gives that sampler."""
    # Every field as it is, not to_dict's record, which leaves out the values a flag must still set.
    fields = {"sampler": sampler.name, **{field.name: getattr(sampler, field.name) for field in dataclasses.fields(sampler)}}
    default = type(sampler)()
    flags = []
    for field, value in fields.items():
        if field not in SAMPLER_FLAGS:
            if value != getattr(default, field):
                raise ValueError(f"no maskgit flag sets the {sampler.name} sampler's {field}={value!r}")
            continue
        if isinstance(value, bool):
            flags.append(SAMPLER_FLAGS[field] if value else "--no-" + SAMPLER_FLAGS[field][2:])
        elif value is not None:
            flags += [SAMPLER_FLAGS[field], ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return flags


def sampler_from_options(options: Mapping[str, Any], default: Sampler | None = None) -> Sampler:
    """The sampler that ``options`` describe: where the CLI's flags, the studio's form, a JSON
    record and a benchmark setting all become a sampler.

    ``options`` maps ``"sampler"`` to the kind (``confidence``, ``halton``, ``random``) and field
    names to values. The kind defaults to ``default``'s (else ``confidence``). Fields left out keep
    ``default``'s values (the model's sampler): all of them when the kind is the same, the fields
    every sampler shares when the options switch kinds; without ``default``, the kind's defaults.

    Raises ValueError naming the option: an unknown kind, an option the kind does not have, or a
    bad value (``Sampler.__post_init__``).
    """
    fields = dict(options)
    if "sampler" in fields:
        name = fields.pop("sampler")
    else:
        name = default.name if default is not None else ConfidenceSampler.name
    valid = sampler_options(name)
    unknown = [key for key in fields if key not in valid]
    if unknown:
        verb = "is not an option" if len(unknown) == 1 else "are not options"
        raise ValueError(f"{' and '.join(unknown)} {verb} of the {name} sampler")
    kept: dict[str, Any] = {}
    if default is not None:
        shared = valid if name == default.name else [field.name for field in dataclasses.fields(Sampler)]
        kept = {key: value for key, value in default.to_dict().items() if key in shared}
    return SAMPLERS[name](**{**kept, **fields})


def build_sampler(name: str, **fields: Any) -> Sampler:
    """A sampler by name (``confidence``, ``halton``, ``random``) with the given fields
    (``sampler_from_options``)."""
    return sampler_from_options({"sampler": name, **fields})


def sampler_from_dict(data: dict[str, Any]) -> Sampler:
    """The inverse of ``Sampler.to_dict`` (``sampler_from_options``)."""
    if not isinstance(data, dict) or "sampler" not in data:
        raise ValueError(f"a sampler must be a JSON object with a 'sampler' key, got {data!r}")
    return sampler_from_options(data)


def _scaled_radical_inverse(index: int, base: int, size: int) -> int:
    """``floor(radical_inverse_base(index) * size)``, in exact integer arithmetic."""
    numerator, denominator = 0, 1
    while index:
        index, digit = divmod(index, base)
        numerator = numerator * base + digit
        denominator *= base
    return numerator * size // denominator


@functools.lru_cache(maxsize=16)
def _halton_order(size: int) -> tuple[int, ...]:
    cells = size * size
    seen: dict[int, None] = {}
    index = 0
    # Low discrepancy guarantees coverage well within this bound (16x16 needs ~1.3k points).
    while len(seen) < cells:
        index += 1
        if index > 64 * cells + 10_000:
            raise RuntimeError(f"the Halton sequence did not cover a {size}x{size} grid")
        row = _scaled_radical_inverse(index, 2, size)
        col = _scaled_radical_inverse(index, 3, size)
        seen.setdefault(row * size + col)
    return tuple(seen)


def halton_order(size: int) -> torch.Tensor:
    """The Halton order of a ``size x size`` token grid: (size*size,) int64 raster indices.

    Points i = 1, 2, ... of the Halton sequence in bases 2 (rows) and 3 (columns) are scaled to
    the grid and floored; repeated cells are dropped in order of first appearance, as in the
    Halton-MaskGIT reference construction. Every cell appears exactly once.
    """
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or not 1 <= size <= 256:
        raise ValueError(f"size must be an integer in [1, 256], got {size!r}")
    return torch.tensor(_halton_order(int(size)), dtype=torch.int64)
