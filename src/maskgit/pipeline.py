"""``MaskGIT``: the tokenizer and the transformer together, saved and loaded as one folder.

Folder layout (written by ``save_pretrained``)::

    model_index.json    {"format": "maskgit-pipeline", "version": 1, "class_names": [...]}
    tokenizer/          config.json + model.safetensors (VQGAN)
    transformer/        config.json + model.safetensors (MaskGITTransformer)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from maskgit.checkpoints.errors import CheckpointError
from maskgit.io import atomic_write_text
from maskgit.models import VQGAN, MaskGITTransformer

__all__ = ["MaskGIT", "PIPELINE_INDEX"]

PIPELINE_INDEX = "model_index.json"
_FORMAT = "maskgit-pipeline"
_VERSION = 1


class MaskGIT(nn.Module):
    """A VQGAN tokenizer and a MaskGIT transformer that share a codebook.

    ``class_names`` (one per class id) lets users and the CLI name classes; it defaults to
    ``class_0 .. class_{n-1}``.
    """

    def __init__(
        self,
        tokenizer: VQGAN,
        transformer: MaskGITTransformer,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if tokenizer.config.codebook_size != transformer.config.codebook_size:
            raise ValueError(
                f"tokenizer codebook_size {tokenizer.config.codebook_size} != transformer "
                f"codebook_size {transformer.config.codebook_size}"
            )
        num_classes = transformer.config.num_classes
        names = tuple(class_names) if class_names is not None else tuple(f"class_{i}" for i in range(num_classes))
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a transformer with {num_classes} classes")
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.class_names = names

    @property
    def image_size(self) -> int:
        """The generated image side: the transformer's token grid times the tokenizer's stride."""
        return self.transformer.config.latent_size * self.tokenizer.config.downsample_factor

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        """Write both models and ``model_index.json`` (last, so a folder with an index is whole)."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.transformer.save_pretrained(directory / "transformer")
        index = {"format": _FORMAT, "version": _VERSION, "class_names": list(self.class_names)}
        atomic_write_text(directory / PIPELINE_INDEX, json.dumps(index, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> MaskGIT:
        """Load a folder written by ``save_pretrained``. Returns the pipeline in eval mode."""
        path = Path(path)
        index_path = path / PIPELINE_INDEX
        if not index_path.is_file():
            raise CheckpointError(f"{path}: no {PIPELINE_INDEX}; not a saved MaskGIT pipeline folder")
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{index_path}: not valid JSON ({error})") from None
        if not isinstance(index, dict) or index.get("format") != _FORMAT:
            raise CheckpointError(f"{index_path}: format is not {_FORMAT!r}")
        tokenizer = VQGAN.from_pretrained(path / "tokenizer", device=device)
        transformer = MaskGITTransformer.from_pretrained(path / "transformer", device=device)
        return cls(tokenizer, transformer, index.get("class_names")).eval()
