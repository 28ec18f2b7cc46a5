"""Mask schedules: how many tokens stay masked after each decoding step (spec §3.1).

A schedule maps the progress ratio ``r = (step + 1) / num_steps`` in (0, 1] and the number of
tokens that were unknown at the start, ``n0``, to a mask ratio in [1e-6, 1]. After a step,
``floor(n0 * mask_ratio)`` tokens are re-masked, clamped so that every step fixes at least one new
token and re-masks at least one (the official ``max(1, min(unknown - 1, ·))``).

Everything is computed in float32, as the official JAX code does. This is not cosmetic: in
float32 ``cos(pi/2 * 2/3)`` is 0.49999997, so with ``n0 = 256`` and 12 steps, step 7 re-masks 127
tokens where float64 would give 128, and the official editing run depends on it. Transcendental
functions (cos, log2, exp2, pow) are evaluated in float64 and rounded to float32, which gives the
correctly rounded float32 value on every device; it matches every value in the official traces
bit for bit, where torch's own float32 cos is one ulp off at cos(pi/16).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = [
    "SCHEDULES",
    "cosine_ratio",
    "canonical_schedule",
    "step_ratio",
    "mask_ratio",
    "scheduled_num_masked",
    "clamp_num_masked",
    "num_masked_per_step",
    "num_masked_after_step",
]

# The official names (mask_schedule.py) and the paper's names for the same curves.
_ALIASES = {"linear": "uniform", "square": "pow2", "cubic": "pow3", "sqrt": "pow0.5"}

#: Every accepted schedule name. Besides these, ``pow<X>`` works for any float X > 0.
SCHEDULES: tuple[str, ...] = (
    "cosine", "uniform", "linear", "square", "cubic", "sqrt", "log", "exp"
)

MIN_MASK_RATIO = 1e-6
_HALF_PI = math.pi / 2  # a Python float; float32(pi/2) is what JAX multiplies with


def _unknown_schedule(name: object) -> ValueError:
    return ValueError(
        f"unknown mask schedule {name!r}; valid names: {', '.join(SCHEDULES)}, "
        "or pow<X> for any float X > 0 (e.g. pow2, pow0.5)"
    )


def canonical_schedule(name: str) -> str:
    """The canonical spelling of a schedule name: ``"cosine"``, ``"uniform"``, ``"log"``,
    ``"exp"`` or ``"pow<X>"`` (aliases resolved: ``linear`` → ``uniform``, ``square`` →
    ``pow2``, ``cubic`` → ``pow3``, ``sqrt`` → ``pow0.5``). Raises ValueError otherwise."""
    if not isinstance(name, str):
        raise _unknown_schedule(name)
    name = _ALIASES.get(name, name)
    if name in ("cosine", "uniform", "log", "exp"):
        return name
    if name.startswith("pow"):
        _pow_exponent(name)
        return name
    raise _unknown_schedule(name)


def _pow_exponent(name: str) -> float:
    try:
        exponent = float(name[3:])
    except ValueError:
        raise _unknown_schedule(name) from None
    if not (math.isfinite(exponent) and exponent > 0):
        raise ValueError(f"mask schedule {name!r}: the exponent must be a finite number > 0")
    return exponent


def step_ratio(step: int | torch.Tensor, num_steps: int) -> torch.Tensor:
    """``(step + 1) / num_steps`` in float32, in (0, 1] for 0 ≤ step < num_steps. ``step`` may be
    an int (a scalar tensor comes back) or an integer tensor of steps (same shape back), on CPU."""
    steps = torch.as_tensor(step).detach().cpu().to(torch.float32)
    return (steps + 1.0) / torch.tensor(num_steps, dtype=torch.float32)


def _rounded(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    # A float32 transcendental evaluated in float64 and rounded: the correctly rounded float32
    # result, identical on every device and kernel path (float32 cos kernels disagree in the last
    # bit; XLA's values in the fixture traces are all the correctly rounded ones).
    return function(x.to(torch.float64)).to(torch.float32)


def cosine_ratio(r: torch.Tensor, *, correctly_rounded: bool = True) -> torch.Tensor:
    """The cosine schedule ``cos(pi/2 * r)``, float32, unclamped; ``r`` float32 in [0, 1] (CPU).

    The angle is ``float32(pi/2) * r`` in float32, as in the official code. With
    ``correctly_rounded`` (the default, and what decoding uses) the cosine is evaluated in float64
    and rounded, which matches the official traces on every device. Training's mask ratios use
    torch's float32 cos kernel instead (``correctly_rounded=False``), as they always have: it is
    within one ulp but differs on about 5% of inputs, which changes ``ceil(ratio * N)`` for a few
    in a million ratios, so switching would change which tokens a training run masks.
    """
    angle = torch.tensor(_HALF_PI, dtype=torch.float32) * r.to(torch.float32)
    return _rounded(torch.cos, angle) if correctly_rounded else torch.cos(angle)


def mask_ratio(
    schedule: str, ratio: torch.Tensor | float, total_unknown: torch.Tensor | int
) -> torch.Tensor:
    """The fraction of the initially unknown tokens that stays masked, float32 in [1e-6, 1].

    Each operation of the official formula is done in float32 (see the module docstring); the
    arithmetic runs on the CPU so the result does not depend on the device.

    Args:
        schedule: a name from ``SCHEDULES`` or ``pow<X>``.
        ratio: progress r in (0, 1] (rounded to float32; at inference ``step_ratio``).
        total_unknown: n0, the number of tokens unknown at the start (integer); only ``log``
            and ``exp`` depend on it.

    Returns:
        float32 tensor of the broadcast shape of ``ratio`` and ``total_unknown``, on ``ratio``'s
        device (or ``total_unknown``'s when ``ratio`` is a Python float).
    """
    name = canonical_schedule(schedule)
    device = ratio.device if isinstance(ratio, torch.Tensor) else None
    if device is None and isinstance(total_unknown, torch.Tensor):
        device = total_unknown.device
    r = torch.as_tensor(ratio).detach().cpu().to(torch.float32)
    # The official code takes log2 of the int32 count, which JAX promotes to float32.
    n0 = torch.as_tensor(total_unknown).detach().cpu().to(torch.float32)
    if name == "uniform":
        value = 1.0 - r
    elif name == "cosine":
        value = cosine_ratio(r)
    elif name == "log":
        value = -_rounded(torch.log2, r) / _rounded(torch.log2, n0)
    elif name == "exp":
        value = 1.0 - _rounded(torch.exp2, -_rounded(torch.log2, n0) * (1.0 - r))
    else:
        # JAX casts the Python exponent to float32 before the float32 power.
        exponent = float(torch.tensor(_pow_exponent(name), dtype=torch.float32))
        value = 1.0 - _rounded(lambda x: x**exponent, r)
    value = value * torch.ones_like(n0)  # every schedule returns the broadcast shape
    # log/exp give 0/0 or inf*0 = NaN for n0 ≤ 1 at r = 1 (undefined in the official code too);
    # treat it as "nothing left to mask" so that the count stays a valid integer.
    value = torch.nan_to_num(value, nan=MIN_MASK_RATIO)
    return value.clamp(MIN_MASK_RATIO, 1.0).to(device)


def scheduled_num_masked(
    schedule: str, step: int | torch.Tensor, num_steps: int, total_unknown: torch.Tensor | int
) -> torch.Tensor:
    """``floor(n0 * mask_ratio)`` with a float32 product, before the clamp (the official
    ``mask_len`` before ``clamp_num_masked``).

    Returns:
        int64 tensor of the broadcast shape of ``step`` and ``total_unknown`` (pass steps (S, 1)
        and n0 (B,) for an (S, B) table), on ``total_unknown``'s device (CPU for an int).
    """
    n0 = torch.as_tensor(total_unknown)
    n0_cpu = n0.detach().cpu()
    product = n0_cpu.to(torch.float32) * mask_ratio(schedule, step_ratio(step, num_steps), n0_cpu)
    return torch.floor(product).to(device=n0.device, dtype=torch.int64)


def clamp_num_masked(count: torch.Tensor, num_unknown: torch.Tensor) -> torch.Tensor:
    """``max(1, min(num_unknown - 1, count))``, int64: every step fixes at least one new token
    and re-masks at least one (the official clamp; with one unknown token left, that token is
    re-masked, and with none left, nothing is)."""
    count = torch.as_tensor(count, dtype=torch.int64)
    num_unknown = torch.as_tensor(num_unknown, dtype=torch.int64, device=count.device)
    return torch.clamp_min(torch.minimum(num_unknown - 1, count), 1)


def num_masked_per_step(
    schedule: str, num_steps: int, n0: int, *, start_step: int = 0
) -> list[int]:
    """How many tokens each step re-masks, for steps ``start_step .. num_steps - 1``, for a row
    that had ``n0`` unknown tokens when decoding began; entry ``i`` is the number of masks in the
    input of step ``start_step + i + 1``.

    This follows the official decoder step by step (the clamp depends on the tokens still
    unknown), so it is what a correct decoder must produce, ties in confidence aside:
    0 when ``n0 = 0``, otherwise ``max(1, min(unknown - 1, floor(n0 * mask_ratio)))``.
    """
    if not 0 <= start_step < num_steps:
        raise ValueError(
            f"need 0 <= start_step < num_steps, got start_step={start_step}, num_steps={num_steps}"
        )
    if n0 < 0:
        raise ValueError(f"n0 must be >= 0, got {n0}")
    scheduled = scheduled_num_masked(schedule, torch.arange(start_step, num_steps), num_steps, n0)
    counts = []
    unknown = n0
    for count in scheduled.tolist():
        # The official clamp; then the cut is the count-th smallest confidence and known tokens
        # have +inf, so with no unknown token left the clamped count of 1 masks nothing.
        unknown = min(max(1, min(unknown - 1, count)), unknown)
        counts.append(unknown)
    return counts


def num_masked_after_step(
    schedule: str, step: int, num_steps: int, n0: int, *, start_step: int = 0
) -> int:
    """The number of tokens that step ``step`` re-masks (see ``num_masked_per_step``)."""
    if not 0 <= start_step <= step < num_steps:
        raise ValueError(
            f"need 0 <= start_step <= step < num_steps, got start_step={start_step}, step={step}, "
            f"num_steps={num_steps}"
        )
    return num_masked_per_step(schedule, num_steps, n0, start_step=start_step)[step - start_step]
