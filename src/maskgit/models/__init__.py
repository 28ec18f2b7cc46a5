"""The two MaskGIT models and a loader that picks the right one for a checkpoint."""

from __future__ import annotations

import os

from maskgit.checkpoints.formats import read_checkpoint
from maskgit.models.tokenizer import VQGAN
from maskgit.models.transformer import MaskGITTransformer

__all__ = ["VQGAN", "MaskGITTransformer", "load_model"]


def load_model(path: str | os.PathLike[str]) -> VQGAN | MaskGITTransformer:
    """Load whichever model a checkpoint holds, in any supported format."""
    kind = read_checkpoint(path).kind
    cls = VQGAN if kind == "vqgan" else MaskGITTransformer
    return cls.from_pretrained(path)
