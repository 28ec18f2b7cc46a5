"""The pipeline folder: a tokenizer and a transformer saved together with their index, as
``MaskGIT.save_pretrained`` writes it and ``MaskGIT.from_pretrained`` reads it, and the conversion of
a registered official checkpoint into one.

    model_index.json    {"format": "maskgit-pipeline", "version": 1, "class_names": [...],
                         "sampler": {...}}   (the model's default sampler, ``Sampler.to_dict``)
    tokenizer/          config.json + model.safetensors (one model folder, ``formats``)
    transformer/        config.json + model.safetensors

The index is written last, so a folder that has one is whole. ``class_names`` (one per class id)
and ``sampler`` may be left out: the names are then ``class_0 .. class_{n-1}`` and the sampler the
official ``ConfidenceSampler()``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.formats import ModelConfig, read_checkpoint, read_model_config, write_pretrained
from maskgit.checkpoints.hub import default_cache_dir, fetch_official
from maskgit.checkpoints.official import official_to_state_dict
from maskgit.class_names import default_class_names, imagenet_class_names
from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS, TransformerConfig
from maskgit.io import atomic_write_text
from maskgit.sampling.samplers import Sampler, sampler_from_dict

__all__ = [
    "PIPELINE_INDEX",
    "FORMAT",
    "VERSION",
    "TOKENIZER",
    "TRANSFORMER",
    "PipelineIndex",
    "is_pipeline_folder",
    "read_index",
    "write_index",
    "write_pipeline",
    "converted_dir",
    "convert_official",
]

#: The file that marks a folder as a saved pipeline.
PIPELINE_INDEX = "model_index.json"
FORMAT = "maskgit-pipeline"
VERSION = 1
#: The model folders inside a pipeline folder.
TOKENIZER = "tokenizer"
TRANSFORMER = "transformer"

#: A model as the folder stores it: its config and its state dict.
StoredModel = tuple[ModelConfig, Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class PipelineIndex:
    """What ``model_index.json`` holds: one class name per class id, and the model's default
    sampler (None: the official ``ConfidenceSampler()``)."""

    class_names: tuple[str, ...]
    sampler: Sampler | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "class_names": list(self.class_names)}
        if self.sampler is not None:
            data["sampler"] = self.sampler.to_dict()
        return data


def is_pipeline_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a whole pipeline folder (it has an index)."""
    return (Path(path) / PIPELINE_INDEX).is_file()


def read_index(folder: str | os.PathLike[str]) -> PipelineIndex:
    """Read and check the index of a pipeline folder, reading no weights: the class names must be
    one non-empty string per class of the transformer (whose ``config.json`` says how many), and
    the sampler one that ``Sampler.to_dict`` wrote. Raises CheckpointError naming the file."""
    folder = Path(folder)
    path = folder / PIPELINE_INDEX
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {PIPELINE_INDEX}; not a saved MaskGIT pipeline folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is not {FORMAT!r}")
    sampler = None
    if data.get("sampler") is not None:
        try:
            sampler = sampler_from_dict(data["sampler"])
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: bad sampler ({error})") from None
    transformer = read_model_config(folder / TRANSFORMER)
    if not isinstance(transformer, TransformerConfig):
        raise CheckpointError(f"{folder / TRANSFORMER}: holds a {transformer.model_type} config, not a transformer's")
    names = _class_names(data.get("class_names"), transformer.num_classes, source=str(path))
    return PipelineIndex(names, sampler)


def _class_names(value: Any, num_classes: int, *, source: str) -> tuple[str, ...]:
    """The index's ``class_names``: absent (the default names) or one non-empty string per class."""
    if value is None:
        return default_class_names(num_classes)
    if not isinstance(value, list) or not all(isinstance(name, str) and name.strip() for name in value):
        shown = repr(value) if not isinstance(value, list) else f"a list with {_first_bad(value)!r}"
        raise CheckpointError(f"{source}: class_names must be a list of non-empty strings, got {shown}")
    if len(value) != num_classes:
        raise CheckpointError(f"{source}: {len(value)} class_names for a transformer with {num_classes} classes")
    return tuple(value)


def _first_bad(values: list[Any]) -> Any:
    return next(v for v in values if not (isinstance(v, str) and v.strip()))


def write_pipeline(
    folder: str | os.PathLike[str], tokenizer: StoredModel, transformer: StoredModel, index: PipelineIndex
) -> None:
    """Write a pipeline folder: both models (each ``(config, state_dict)``), then the index."""
    folder = Path(folder)
    write_pretrained(folder / TOKENIZER, *tokenizer)
    write_pretrained(folder / TRANSFORMER, *transformer)
    write_index(folder, index)


def write_index(folder: str | os.PathLike[str], index: PipelineIndex) -> None:
    """Write ``folder``'s ``model_index.json`` (atomically): after its models, or in place of an
    index whose class names or default sampler change."""
    atomic_write_text(Path(folder) / PIPELINE_INDEX, json.dumps(index.to_dict(), indent=2) + "\n")


def converted_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache>/models/<name>``: where ``convert_official`` puts the registered checkpoint ``name``."""
    return _cache(cache_dir) / "models" / name


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def convert_official(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The registered official checkpoint ``name`` as a pipeline folder in the cache
    (``converted_dir``), downloaded (``hub.fetch_official``) and converted on first use; later calls
    return the folder at once.

    The configs are the presets of that name (else inferred from the shapes), the class names the
    ImageNet names for 1000 classes. The conversion maps the official names and layouts; the
    shapes are checked when the models load the folder. It is written to a temporary folder and
    renamed into place, so an interrupted conversion is simply redone. Raises CheckpointError (or
    DownloadError) naming the file.
    """
    cache = _cache(cache_dir)
    folder = converted_dir(name, cache)
    if is_pipeline_folder(folder):
        return folder
    files = fetch_official(name, cache_dir=cache)
    tokenizer = _official_model(files[TOKENIZER], TOKENIZER_PRESETS.get(name))
    transformer = _official_model(files[TRANSFORMER], TRANSFORMER_PRESETS.get(name), tokenizer[0].codebook_size)
    num_classes = transformer[0].num_classes
    names = imagenet_class_names() if num_classes == 1000 else default_class_names(num_classes)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        write_pipeline(temp, tokenizer, transformer, PipelineIndex(names))
        if folder.exists():  # a half-converted folder from an older run, or a concurrent conversion
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(temp, folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return folder


def _official_model(path: Path, config: ModelConfig | None, codebook_size: int | None = None) -> StoredModel:
    """(config, our state dict) of an official file (``fetch_official`` checked its kind)."""
    raw = read_checkpoint(path, config=config, codebook_size=codebook_size)
    assert raw.official is not None  # an official file, read as one
    return raw.config, official_to_state_dict(raw.official, raw.config, source=str(path))
