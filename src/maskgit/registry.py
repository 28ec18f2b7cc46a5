"""Model names: the models that ship in the package and the registered official checkpoints.

``resolve_pretrained`` turns a name or a path into a pipeline folder: a path is used as it is, a
shipped name (``fashion-mnist``) points into the package, and a registered name (``imagenet256``,
``imagenet512``) points into the cache, where ``maskgit.checkpoints.pipeline_folder`` downloads and
converts it on first use.

``list_models``, ``model_info`` and ``model_class_names`` describe the named models without
downloading anything: a registered checkpoint is described from the hub's registry, and its class
names are the built-in ImageNet names (the registered checkpoints are the official
class-conditional ImageNet models).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.formats import read_model_config
from maskgit.checkpoints.hub import BASE_URL_ENV, checkpoint_names, get_checkpoint
from maskgit.checkpoints.pipeline_folder import (
    TOKENIZER,
    TRANSFORMER,
    convert_official,
    converted_dir,
    is_pipeline_folder,
    read_index,
)
from maskgit.class_names import imagenet_class_names

__all__ = [
    "SHIPPED_MODELS",
    "DEFAULT_MODEL",
    "ModelInfo",
    "shipped_model_dir",
    "list_models",
    "model_info",
    "model_class_names",
    "known_models",
    "resolve_pretrained",
]

#: Models whose weights ship inside the package (src/maskgit/pretrained/<name>).
SHIPPED_MODELS = ("fashion-mnist",)

#: The model the command line uses when none is named: the first one shipped in the package.
DEFAULT_MODEL = SHIPPED_MODELS[0]


def shipped_model_dir(name: str) -> Path:
    """The folder of a model that ships in the package."""
    return Path(str(resources.files("maskgit") / "pretrained" / name))


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

    @property
    def where(self) -> str:
        """One line saying where the weights come from."""
        if self.source == "shipped":
            return "shipped in the package"
        return "official checkpoint, downloaded and converted on first use"


def list_models() -> tuple[str, ...]:
    """Every name ``MaskGIT.from_pretrained`` loads without a path: the shipped models first (the
    first is the command line's default), then the registered checkpoints, sorted."""
    return (*SHIPPED_MODELS, *checkpoint_names())


def model_info(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> ModelInfo:
    """Describe the model called ``name`` (one of ``list_models()``), reading no weights.

    Raises CheckpointError listing the known names for any other name.
    """
    if name in SHIPPED_MODELS:
        folder = shipped_model_dir(name)
        tokenizer, transformer = read_model_config(folder / TOKENIZER), read_model_config(folder / TRANSFORMER)
        side = transformer.latent_size * tokenizer.downsample_factor
        description = (
            f"{transformer.num_classes} classes, {side}x{side} images, {transformer.latent_size}x"
            f"{transformer.latent_size} tokens of {transformer.codebook_size} codes"
        )
        return ModelInfo(name, "shipped", description, folder)
    if name in checkpoint_names():
        entry = get_checkpoint(name)
        converted = converted_dir(name, cache_dir)
        return ModelInfo(
            name,
            "registered",
            entry.description,
            converted,
            urls=tuple(entry.url(file, os.environ.get(BASE_URL_ENV)) for file in entry.files),
            cached=is_pipeline_folder(converted),
        )
    raise CheckpointError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def known_models() -> dict[str, str]:
    """Every model name ``from_pretrained`` accepts, with where its weights come from."""
    return {name: model_info(name).where for name in list_models()}


def model_class_names(name_or_path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of a model, one per class id: of a registered checkpoint (the built-in
    ImageNet names, without downloading), a shipped model or a saved pipeline folder (from its
    index, reading no weights). Raises CheckpointError for an unknown name or a folder that is not
    a saved pipeline."""
    if str(name_or_path) in checkpoint_names() and not Path(name_or_path).exists():
        return imagenet_class_names()
    return read_index(resolve_pretrained(name_or_path)).class_names


def resolve_pretrained(name_or_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The pipeline folder for a path, a shipped model name or a registered name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if name in SHIPPED_MODELS:
        return shipped_model_dir(name)
    if name in checkpoint_names():
        return convert_official(name, cache_dir)
    raise CheckpointError(f"{name}: no such folder, and not a known model name ({', '.join(list_models())})")
