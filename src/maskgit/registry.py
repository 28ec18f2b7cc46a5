"""Model names: the models that ship in the package and the registered official checkpoints.

``resolve_pretrained`` turns a name or a path into a pipeline folder: a path is used as it is, a
shipped name (``fashion-mnist``) points into the package, and a registered name (``imagenet256``,
``imagenet512``) is downloaded into the cache and converted once into our format.

``list_models``, ``model_info`` and ``model_class_names`` describe the named models without
downloading anything: a registered checkpoint is described from the hub's registry, and its class
names are the built-in ImageNet names (the registered checkpoints are the official
class-conditional ImageNet models).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.hub import BASE_URL_ENV, checkpoint_names, default_cache_dir, fetch_official, get_checkpoint
from maskgit.class_names import imagenet_class_names
from maskgit.configs import TokenizerConfig, TransformerConfig

__all__ = [
    "PIPELINE_INDEX",
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

#: The file that marks a folder as a saved pipeline (written last, so a folder with it is whole).
PIPELINE_INDEX = "model_index.json"

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
        converted = _cache(cache_dir) / "models" / name  # where resolve_pretrained converts it to
        return ModelInfo(
            name,
            "registered",
            entry.description,
            converted,
            urls=tuple(entry.url(file, os.environ.get(BASE_URL_ENV)) for file in entry.files),
            cached=(converted / PIPELINE_INDEX).is_file(),
        )
    raise CheckpointError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def known_models() -> dict[str, str]:
    """Every model name ``from_pretrained`` accepts, with where its weights come from."""
    return {name: model_info(name).where for name in list_models()}


def model_class_names(name_or_path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of a model, one per class id: of a registered checkpoint (the built-in
    ImageNet names, without downloading), a shipped model or a saved pipeline folder (loaded on the
    CPU). Raises CheckpointError for an unknown name or a folder that is not a saved pipeline."""
    if str(name_or_path) in checkpoint_names() and not Path(name_or_path).exists():
        return imagenet_class_names()
    from maskgit.pipeline import MaskGIT  # the pipeline builds on this module

    return MaskGIT.from_pretrained(name_or_path, device="cpu").class_names


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _converted_checkpoint(name: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache>/models/<name>``: the registered checkpoint in our format, converted on first use.

    The conversion is written to a temporary folder and renamed into place, so an interrupted
    conversion is simply redone.
    """
    # The pipeline builds on this module, so it is imported here, where the conversion needs it.
    from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS
    from maskgit.models import VQGAN, MaskGITTransformer
    from maskgit.pipeline import MaskGIT

    cache = _cache(cache_dir)
    folder = cache / "models" / name
    if (folder / PIPELINE_INDEX).is_file():
        return folder
    files = fetch_official(name, cache_dir=cache)
    tokenizer = VQGAN.from_pretrained(files["tokenizer"], config=TOKENIZER_PRESETS.get(name))
    transformer = MaskGITTransformer.from_pretrained(files["transformer"], config=TRANSFORMER_PRESETS.get(name))
    names = imagenet_class_names() if transformer.config.num_classes == 1000 else None
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        MaskGIT(tokenizer, transformer, names).save_pretrained(temp)
        if folder.exists():  # a half-converted folder from an older run, or a concurrent conversion
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(temp, folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return folder


def resolve_pretrained(name_or_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The pipeline folder for a path, a shipped model name or a registered name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if name in SHIPPED_MODELS:
        return shipped_model_dir(name)
    if name in checkpoint_names():
        return _converted_checkpoint(name, cache_dir)
    raise CheckpointError(f"{name}: no such folder, and not a known model name ({', '.join(list_models())})")
