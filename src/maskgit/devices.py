"""Turning what a user types for ``--device`` (or ``device=``) into a ``torch.device`` that exists.

Checked up front, so that a typo or a missing GPU is a clear error before any file is read or any
model is built, not a CUDA traceback halfway through a run.
"""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "DEVICE_HELP"]

DEVICE_HELP = "auto (cuda if available, else cpu), cpu, cuda, cuda:N or mps"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` or None → ``cuda`` when available, else ``cpu``; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` or a ``torch.device`` → that device, checked to exist here.

    Raises ValueError naming the input: an unknown name (with the valid forms), CUDA or MPS asked for
    on a machine without it, or a CUDA index beyond the visible GPUs.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = spec if isinstance(spec, torch.device) else torch.device(str(spec).strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {str(spec)!r}; expected {DEVICE_HELP}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(spec)!r}: CUDA is not available on this machine (use --device cpu or auto)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {str(spec)!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(spec)!r}: MPS is not available on this machine (use --device cpu or auto)")
        return device
    raise ValueError(f"unsupported device {str(spec)!r}; expected {DEVICE_HELP}")
