"""Model names: the models that ship in the package and the registered official checkpoints.

``resolve_pretrained`` turns a name or a path into a pipeline folder: a path is used as it is, a
shipped name (``fashion-mnist``) points into the package, and a registered name (``imagenet256``,
``imagenet512``) is downloaded into the cache and converted once into our format.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.hub import checkpoint_names, default_cache_dir, fetch_official

__all__ = ["PIPELINE_INDEX", "SHIPPED_MODELS", "shipped_model_dir", "known_models", "resolve_pretrained"]

#: The file that marks a folder as a saved pipeline (written last, so a folder with it is whole).
PIPELINE_INDEX = "model_index.json"

#: Models whose weights ship inside the package (src/maskgit/pretrained/<name>).
SHIPPED_MODELS = ("fashion-mnist",)


def shipped_model_dir(name: str) -> Path:
    """The folder of a model that ships in the package."""
    return Path(str(resources.files("maskgit") / "pretrained" / name))


def known_models() -> dict[str, str]:
    """Every model name ``from_pretrained`` accepts, with where its weights come from."""
    names = {name: "shipped in the package" for name in SHIPPED_MODELS}
    names.update({name: "official checkpoint, downloaded and converted on first use" for name in checkpoint_names()})
    return names


def _converted_checkpoint(name: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache>/models/<name>``: the registered checkpoint in our format, converted on first use.

    The conversion is written to a temporary folder and renamed into place, so an interrupted
    conversion is simply redone.
    """
    # The pipeline builds on this module, so it is imported here, where the conversion needs it.
    from maskgit.class_names import imagenet_class_names
    from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS
    from maskgit.models import VQGAN, MaskGITTransformer
    from maskgit.pipeline import MaskGIT

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
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
    raise CheckpointError(f"{name}: no such folder, and not a known model name ({', '.join(known_models())})")
