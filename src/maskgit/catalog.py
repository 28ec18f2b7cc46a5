"""The models that load by name: those shipped in the package and the registered official checkpoints.

``MaskGIT.from_pretrained(name)`` accepts every name listed here. Listing never downloads anything:
a registered checkpoint is described from the registry and its class names are the built-in
ImageNet names (the registered checkpoints are the official class-conditional ImageNet models).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.hub import BASE_URL_ENV, checkpoint_names, default_cache_dir, get_checkpoint
from maskgit.class_names import imagenet_class_names
from maskgit.configs import TokenizerConfig, TransformerConfig
from maskgit.pipeline import PIPELINE_INDEX, SHIPPED_MODELS, MaskGIT, shipped_model_dir

__all__ = ["DEFAULT_MODEL", "ModelInfo", "list_models", "model_info", "model_class_names"]

# The model the command line uses when none is named: the first one shipped in the package.
DEFAULT_MODEL = SHIPPED_MODELS[0]


@dataclass(frozen=True)
class ModelInfo:
    """Where a named model comes from.

    ``source`` is ``"shipped"`` (its files are inside the installed package, at ``location``) or
    ``"registered"`` (official files downloaded on first use from ``urls``, which follow
    ``$MASKGIT_BASE_URL``, and converted once into ``location``, a folder of the cache; ``cached``
    says whether that has happened).
    """

    name: str
    source: str
    description: str
    location: Path
    urls: tuple[str, ...] = ()
    cached: bool = True


def list_models() -> tuple[str, ...]:
    """Every name ``MaskGIT.from_pretrained`` loads without a path: the shipped models first (the
    first is the command line's default), then the registered checkpoints, sorted."""
    return (*SHIPPED_MODELS, *checkpoint_names())


def model_info(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> ModelInfo:
    """Describe the model called ``name`` (one of :func:`list_models`), reading no weights.

    Raises CheckpointError listing the known names for any other name.
    """
    if name in SHIPPED_MODELS:
        folder = shipped_model_dir(name)
        tokenizer = TokenizerConfig.load(folder / "tokenizer" / "config.json")
        transformer = TransformerConfig.load(folder / "transformer" / "config.json")
        side = transformer.latent_size * tokenizer.downsample_factor
        description = (
            f"{transformer.num_classes} classes, {side}x{side} images, {transformer.latent_size}x"
            f"{transformer.latent_size} tokens of {transformer.codebook_size} codes"
        )
        return ModelInfo(name, "shipped", description, folder)
    if name in checkpoint_names():
        entry = get_checkpoint(name)
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        converted = cache / "models" / name  # where MaskGIT.from_pretrained converts it to
        return ModelInfo(
            name,
            "registered",
            entry.description,
            converted,
            urls=tuple(entry.url(file, os.environ.get(BASE_URL_ENV)) for file in entry.files),
            cached=(converted / PIPELINE_INDEX).is_file(),
        )
    raise CheckpointError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def model_class_names(name_or_path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of a model, one per class id: of a registered checkpoint (the built-in
    ImageNet names, without downloading), a shipped model or a saved pipeline folder (loaded on the
    CPU). Raises CheckpointError for an unknown name or a folder that is not a saved pipeline."""
    if str(name_or_path) in checkpoint_names() and not Path(name_or_path).exists():
        return imagenet_class_names()
    return MaskGIT.from_pretrained(name_or_path, device="cpu").class_names
