"""Training checkpoints: one file per saved step, written atomically, read without unpickling code.

A checkpoint (``checkpoints/step_XXXXXXXX.pt``, a ``torch.save`` dict read back with
``weights_only=True``) holds: ``format``/``version``, ``stage``, the training ``config`` (JSON), the
``step``, the data ``position`` (epoch, index), the ``world_size``, the RNG states of every rank
(python, numpy, torch, CUDA) and the trainer's own state (models, EMA, optimizers, ...). The
learning-rate schedule is a pure function of the step and the config, so those two restore it.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgit.checkpoints.errors import CheckpointError
from maskgit.training.config import config_from_dict

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CHECKPOINT_PATTERN",
    "capture_rng_state",
    "restore_rng_state",
    "seed_everything",
    "find_latest_checkpoint",
    "find_readable_checkpoint",
    "load_checkpoint_file",
    "read_checkpoint_config",
]

CHECKPOINT_FORMAT = "maskgit-training-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_PATTERN = re.compile(r"step_(\d+)\.pt")


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA RNG states, in types ``torch.load(weights_only=True)`` reads."""
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["key"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)



def find_latest_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file itself, or the highest ``step_*.pt`` in a run folder (or its
    ``checkpoints/`` folder). Raises FileNotFoundError naming the folder if there is none."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run folder")
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = sorted(
        (int(match.group(1)), item)
        for item in folder.iterdir()
        if (match := CHECKPOINT_PATTERN.fullmatch(item.name))
    )
    if not found:
        raise FileNotFoundError(f"{folder}: no checkpoint (step_*.pt) to resume from")
    return found[-1][1]


def find_readable_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], list[str]]:
    """The newest checkpoint that reads: ``(file, state, skipped)``.

    ``path`` is a checkpoint file (read as it is, no fallback) or a run folder, whose ``step_*.pt``
    are tried from the highest step down: a corrupt or truncated one (a crash during its save, a
    damaged disk) is skipped, and ``skipped`` says why, one line per file. Raises
    FileNotFoundError when there is no checkpoint, CheckpointError when none reads.
    """
    path = Path(path)
    if path.is_file():
        return path, load_checkpoint_file(path), []
    newest = find_latest_checkpoint(path)
    candidates = sorted(
        ((int(match.group(1)), item) for item in newest.parent.iterdir() if (match := CHECKPOINT_PATTERN.fullmatch(item.name))),
        reverse=True,
    )
    skipped: list[str] = []
    for _, candidate in candidates:
        try:
            return candidate, load_checkpoint_file(candidate), skipped
        except CheckpointError as error:
            skipped.append(str(error))
    raise CheckpointError(f"{newest.parent}: no readable checkpoint ({'; '.join(skipped)})")


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint safely (``weights_only=True``: no code is unpickled)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found") from None
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable training checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a maskgit training checkpoint (format is not {CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
    return state


def read_checkpoint_config(path: str | os.PathLike[str]) -> Any:
    """The training config stored in a checkpoint (file or run folder → its latest checkpoint)."""
    file, state, _ = find_readable_checkpoint(path)
    return config_from_dict(state["stage"], json.loads(state["config"]), source=str(file))
