"""Small in-memory datasets and helpers shared by the training tests and their worker script."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_train_worker.py"


class RandomImages(Dataset):
    """``n`` seeded random images (3, size, size) in [0, 1] with labels; a random horizontal flip
    drawn from torch's RNG, like the real training transforms."""

    def __init__(self, n: int, size: int = 16, classes: int = 3, seed: int = 1) -> None:
        generator = torch.Generator().manual_seed(seed)
        # Smooth images (upsampled noise) so a tiny tokenizer can make progress on them.
        coarse = torch.rand(n, 3, size // 4, size // 4, generator=generator)
        self.images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        self.labels = torch.randint(0, classes, (n,), generator=generator)
        self.class_names = tuple(f"class{i}" for i in range(classes))
        self.image_size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[index])


class RandomTokens(Dataset):
    """``n`` token grids (latent, latent) int64 in [0, codebook_size) with labels; tokens follow
    a simple pattern per class, so a transformer can learn them."""

    def __init__(self, n: int, latent: int = 4, codebook_size: int = 32, classes: int = 3, seed: int = 2) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=generator)
        base = (torch.arange(latent * latent) % codebook_size).view(latent, latent)
        noise = torch.randint(0, 3, (n, latent, latent), generator=generator)
        self.ids = (base[None] + 5 * self.labels[:, None, None] + noise) % codebook_size
        self.codebook_size = codebook_size
        self.latent_size = latent
        self.class_names = tuple(f"class{i}" for i in range(classes))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.ids[index], int(self.labels[index])


def flat_tensors(state: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state dict, keyed by its dotted path."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(state, dict):
        for key, value in state.items():
            out.update(flat_tensors(value, f"{prefix}{key}."))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            out.update(flat_tensors(value, f"{prefix}{index}."))
    elif isinstance(state, torch.Tensor):
        out[prefix.rstrip(".")] = state
    return out


def make_trainer(stage: str, out: Any, overrides: dict[str, Any], *, resume: Any = None, progress: bool = False):
    """A tiny trainer of either stage on the synthetic data above (no tokenizer for the
    transformer: it trains on RandomTokens)."""
    from maskgit.training import TokenizerTrainer, TransformerTrainer, load_train_config

    config = load_train_config(stage, "tiny", overrides)
    if stage == "tokenizer":
        return TokenizerTrainer(config, out, dataset=RandomImages(12), resume=resume, progress=progress)
    return TransformerTrainer(config, out, dataset=RandomTokens(12), resume=resume, progress=progress)


def metrics_log(out: Any) -> list[dict]:
    """The records of a run's metrics.jsonl, in order."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a ``_train_worker.py`` subprocess: this checkout's sources, ``threads``
    threads, and a process group on the loopback interface."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["WORKER_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env["GLOO_SOCKET_IFNAME"] = "lo"  # keep the process group on the loopback interface
    return env


def write_vgg_weights(path: Any, with_lin: bool) -> dict[str, torch.Tensor]:
    """Seeded He-scaled VGG16 conv weights (and, with ``with_lin``, LPIPS heads) in the perceptual
    loss's safetensors format; returns the state written."""
    from safetensors.torch import save_file

    from maskgit.training.perceptual import LPIPS_CHANNELS, VGG16_CONV_SHAPES

    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, in_channels, out_channels in VGG16_CONV_SHAPES:
        state[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * (2 / (9 * in_channels)) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(out_channels)
    if with_lin:
        for k, channels in enumerate(LPIPS_CHANNELS):
            state[f"lin.{k}.weight"] = torch.rand(1, channels, 1, 1, generator=generator)
    save_file(state, str(path))
    return state
