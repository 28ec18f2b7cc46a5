"""Exponential moving average (Polyak averaging) of a model's weights.

The official configs average with decay 0.999 (``polyak_decay`` in base_config). Early in training
the average would be dominated by the random initialisation, so the decay is warmed up as in
TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: ``min(decay, (1 + n) / (10 + n))``
after ``n`` updates.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Holds ``model``, a frozen deep copy of the tracked module in eval mode.

    ``update(source)`` moves every floating-point parameter and buffer of ``model`` towards
    ``source``'s; integer buffers are copied. ``state_dict``/``load_state_dict`` round-trip the
    averaged weights and the update count for exact resumption.
    """

    def __init__(self, source: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.model = copy.deepcopy(source).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        decay = self.current_decay()
        averaged = self.model.state_dict()
        for name, value in source.state_dict().items():
            target = averaged[name]
            if target.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), 1.0 - decay)
            else:
                target.copy_(value)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
