"""Starting a run from trained weights (``maskgit train --init``): loading the model, and giving its
transformer a new class table.

``load_init_model`` reads a model name (``imagenet256``, ``fashion-mnist``, ...), a saved pipeline
folder, or an official checkpoint pair written ``TOKENIZER,TRANSFORMER`` (two files or folders in
any format ``VQGAN.from_pretrained`` reads). ``with_new_classes`` keeps everything a transformer
learned about images and replaces what it knew about classes: the official vocabulary layout
(image-token ids ``[0, K)``, then the class ids, then the mask id last; spec §2) is kept, the
image-token and mask rows of the embedding table and of the output bias are copied, and the new
classes start from the mean of the old class rows, a class-neutral start that training then pulls apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from maskgit.models import VQGAN, MaskGITTransformer

__all__ = ["InitModel", "load_init_model", "with_new_classes"]


@dataclass
class InitModel:
    """The two models of an ``--init`` source (float32, on the CPU, in eval mode) and what it was."""

    tokenizer: VQGAN
    transformer: MaskGITTransformer
    source: str

    @property
    def image_size(self) -> int:
        """The side of the images the transformer generates: its token grid times the tokenizer's stride."""
        return self.transformer.config.latent_size * self.tokenizer.config.downsample_factor


def load_init_model(spec: str | os.PathLike[str]) -> InitModel:
    """The models named by ``spec``: a model name, a saved pipeline folder, or
    ``TOKENIZER,TRANSFORMER`` (a pair of checkpoints; a path that itself contains a comma and
    exists is taken whole). Raises CheckpointError or FileNotFoundError naming what is wrong."""
    from maskgit.registry import resolve_pretrained

    text = str(spec)
    if "," in text and not Path(text).exists():
        tokenizer_path, transformer_path = (part.strip() for part in text.split(",", 1))
        tokenizer = VQGAN.from_pretrained(tokenizer_path)
        transformer = MaskGITTransformer.from_pretrained(transformer_path, codebook_size=tokenizer.config.codebook_size)
        return InitModel(tokenizer, transformer, text)
    folder = resolve_pretrained(text)
    if not (folder / "tokenizer").is_dir() or not (folder / "transformer").is_dir():
        raise FileNotFoundError(f"{folder}: not a saved pipeline (no tokenizer/ and transformer/ folders); "
                                "give a model name, a pipeline folder or TOKENIZER,TRANSFORMER checkpoints")
    return InitModel(VQGAN.from_pretrained(folder / "tokenizer"), MaskGITTransformer.from_pretrained(folder / "transformer"),
                     text)


@torch.no_grad()
def with_new_classes(transformer: MaskGITTransformer, num_classes: int, *, null_class: bool) -> MaskGITTransformer:
    """A copy of ``transformer`` (float32, CPU) for ``num_classes`` classes, with a null class when
    ``null_class`` (for classifier-free guidance).

    Kept: every weight but the embedding table and the output bias; of those, the rows of the
    image tokens ``[0, K)`` and of the mask token (the last id). New: the class rows, each the mean
    of the old class rows; the null row is the old null row when the model had one, else that mean.
    """
    old = transformer.config
    config = old.replace(num_classes=num_classes, null_class=null_class)
    model = MaskGITTransformer(config)
    state = {name: tensor.detach().float().cpu().clone() for name, tensor in transformer.state_dict().items()}
    codebook = old.codebook_size
    for name in ("word_embeddings.weight", "mlm_bias"):
        table, new = state[name], torch.empty((config.vocab_size, *state[name].shape[1:]))
        class_mean = table[codebook : codebook + old.num_classes].mean(dim=0)
        new[:codebook] = table[:codebook]
        new[codebook : codebook + num_classes] = class_mean
        if config.null_class_id is not None:
            new[config.null_class_id] = table[old.null_class_id] if old.null_class_id is not None else class_mean
        new[config.mask_token_id] = table[old.mask_token_id]
        state[name] = new
    model.load_state_dict(state)
    return model.eval()
