"""The three checkpoint formats we read, and our own that we write.

- ``official``: a flax msgpack file from google-research/maskgit (``{"params": {...}}``).
- ``maskgit-torch``: a ``torch.save`` zip holding ``{"state_dict": {...}}``, from hmorimitsu/maskgit-torch.
  Read with ``weights_only=True``, so no pickled code can run.
- ``maskgit``: ours, a folder with ``config.json`` and ``model.safetensors`` (``save_pretrained``).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from maskgit.checkpoints.config_inference import (
    infer_official_transformer_config,
    infer_tokenizer_config,
    infer_transformer_config,
)
from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.flax_msgpack import flatten_tree, read_flax_msgpack
from maskgit.checkpoints.maskgit_torch import maskgit_torch_to_official, model_kind_of_maskgit_torch
from maskgit.checkpoints.official import model_kind_of_official
from maskgit.configs import ConfigError, TokenizerConfig, TransformerConfig

__all__ = [
    "RawCheckpoint",
    "detect_format",
    "read_checkpoint",
    "read_model_config",
    "write_pretrained",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "config_class_for",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

ModelConfig = TokenizerConfig | TransformerConfig


def config_class_for(kind: str) -> type[TokenizerConfig] | type[TransformerConfig]:
    return {"vqgan": TokenizerConfig, "transformer": TransformerConfig}[kind]


@dataclass
class RawCheckpoint:
    """What a file holds before it is put into a model.

    Exactly one of ``official`` (flat official arrays, ``"encoder/Conv_0/kernel"``) and
    ``state_dict`` (our parameter names) is set. ``config`` is read (ours) or inferred from shapes.
    """

    path: Path
    format: str
    kind: str
    config: ModelConfig
    official: dict[str, np.ndarray] | None = None
    state_dict: dict[str, torch.Tensor] | None = None


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"maskgit"`` (a folder), ``"maskgit-torch"`` (a zip) or ``"official"`` (anything else,
    which must then parse as msgpack)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise CheckpointError(f"{path}: folder has no {CONFIG_NAME}; not a saved maskgit model")
        return "maskgit"
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "maskgit-torch"
    return "official"


def _read_official(path: Path, config: ModelConfig | None, codebook_size: int | None) -> RawCheckpoint:
    tree = read_flax_msgpack(path)
    if "params" not in tree or not isinstance(tree["params"], dict):
        raise CheckpointError(f"{path}: no 'params' collection (top-level keys: {sorted(map(str, tree))[:10]})")
    flat = flatten_tree(tree["params"])  # other top-level collections are ignored, as flax would
    kind = model_kind_of_official(flat, str(path))
    if config is None:
        if kind == "vqgan":
            config = infer_tokenizer_config(flat, source=str(path))
        else:
            config = infer_official_transformer_config(flat, codebook_size=codebook_size, source=str(path))
    return RawCheckpoint(path, "official", kind, config, official=flat)


def _read_maskgit_torch(path: Path, config: ModelConfig | None, codebook_size: int | None) -> RawCheckpoint:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({error})") from None
    except Exception as error:  # weights_only refuses pickled objects with UnpicklingError
        raise CheckpointError(f"{path}: refused or unreadable torch checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        keys = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: expected {{'state_dict': {{...}}}} (maskgit-torch format), got {keys}")
    state = payload["state_dict"]
    kind = model_kind_of_maskgit_torch(state, str(path))
    if kind == "vqgan":
        flat = maskgit_torch_to_official(state, kind, source=str(path))
        config = config or infer_tokenizer_config(flat, source=str(path))
        return RawCheckpoint(path, "maskgit-torch", kind, config, official=flat)
    if config is None:
        vocab, hidden = state["tok_emb.weight"].shape
        config = infer_transformer_config(
            vocab_size=vocab,
            hidden_size=hidden,
            num_layers=len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
            intermediate_size=state["blocks.0.MLP.0.weight"].shape[0] if "blocks.0.MLP.0.weight" in state else 0,
            max_position_embeddings=state["pos_emb"].shape[0] if "pos_emb" in state else 0,
            num_heads=None,  # the port does not store it
            codebook_size=codebook_size,
            source=str(path),
        )
    if not isinstance(config, TransformerConfig):
        raise CheckpointError(f"{path}: holds a transformer, but a {type(config).__name__} was given")
    flat = maskgit_torch_to_official(state, kind, num_heads=config.num_heads, source=str(path))
    return RawCheckpoint(path, "maskgit-torch", kind, config, official=flat)


def read_model_config(path: str | os.PathLike[str]) -> ModelConfig:
    """The config of one of our model folders (its ``config.json``): a ``TokenizerConfig`` or a
    ``TransformerConfig`` by its ``model_type``. Reads no weights; raises CheckpointError naming the file."""
    path = Path(path)
    return _parse_config(path, *_read_config_json(path))


def _read_config_json(path: Path) -> tuple[str, dict[str, Any]]:
    """(model kind, the JSON object) of ``path/config.json``."""
    try:
        data = json.loads((path / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {CONFIG_NAME}; not a saved maskgit model") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path / CONFIG_NAME}: not valid JSON ({error})") from None
    kind = data.get("model_type") if isinstance(data, dict) else None
    if kind not in ("vqgan", "transformer"):
        raise CheckpointError(f"{path / CONFIG_NAME}: model_type must be 'vqgan' or 'transformer', got {kind!r}")
    return kind, data


def _parse_config(path: Path, kind: str, data: dict[str, Any]) -> ModelConfig:
    try:
        return config_class_for(kind).from_dict(data, source=str(path / CONFIG_NAME))
    except ConfigError as error:
        raise CheckpointError(str(error)) from None


def _read_maskgit(path: Path, config: ModelConfig | None, codebook_size: int | None) -> RawCheckpoint:
    kind, data = _read_config_json(path)
    if config is None:
        config = _parse_config(path, kind, data)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{path}: missing {WEIGHTS_NAME}")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights}: cannot read safetensors ({error})") from None
    return RawCheckpoint(path, "maskgit", kind, config, state_dict=state)


def read_checkpoint(
    path: str | os.PathLike[str], *, config: ModelConfig | None = None, codebook_size: int | None = None
) -> RawCheckpoint:
    """Read any supported checkpoint. ``config``, when given, replaces the stored or inferred one.
    ``codebook_size`` (the tokenizer's) lets a transformer's config be inferred when its shapes
    match no preset, and is checked against the model's config in every case."""
    path = Path(path)
    readers = {"official": _read_official, "maskgit-torch": _read_maskgit_torch, "maskgit": _read_maskgit}
    raw = readers[detect_format(path)](path, config, codebook_size)
    if codebook_size is not None and raw.config.codebook_size != codebook_size:
        raise CheckpointError(
            f"{path}: a codebook of {raw.config.codebook_size} codes, but the tokenizer has {codebook_size}"
        )
    return raw


def write_pretrained(directory: str | os.PathLike[str], config: ModelConfig, state: dict[str, Any]) -> None:
    """Write our format: weights first, then the config, each atomically, so a folder with a
    config always has complete weights beside it."""
    from maskgit.io import atomic_path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}
    with atomic_path(directory / WEIGHTS_NAME) as temp:
        save_file(tensors, str(temp), metadata={"format": "pt", "model_type": config.model_type})
    config.save(directory / CONFIG_NAME)
