"""Small in-memory datasets and helpers shared by the training tests and their worker script."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


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
