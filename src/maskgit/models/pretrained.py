"""``from_pretrained`` / ``save_pretrained`` for both models, over every checkpoint format."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
from torch import nn

from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.formats import read_checkpoint, write_pretrained
from maskgit.checkpoints.official import official_to_state_dict

__all__ = ["PretrainedMixin", "embedding"]

M = TypeVar("M", bound="PretrainedMixin")

_KIND_NAMES = {"vqgan": "VQGAN tokenizer", "transformer": "MaskGIT transformer"}


def embedding(num_embeddings: int, embedding_dim: int) -> nn.Embedding:
    """``nn.Embedding(num_embeddings, embedding_dim)``, float32 weights (num_embeddings,
    embedding_dim), without its initial normal draw on the meta device, where ``from_pretrained``
    builds models: there the draw gives nothing and its first call imports torch._dynamo (about a
    second of every command's start). Elsewhere the draw stays, so a seed gives the same initial
    weights (and training run) as it always did, though the models' ``reset_parameters`` redraw
    them."""
    weight = torch.empty(num_embeddings, embedding_dim)
    if not weight.is_meta:
        nn.init.normal_(weight)
    return nn.Embedding(num_embeddings, embedding_dim, _weight=weight)


class PretrainedMixin:
    """Loading and saving shared by ``VQGAN`` and ``MaskGITTransformer``.

    Subclasses are ``nn.Module``s with a ``config`` attribute and a ``config_class``.
    """

    config_class: Any
    config: Any

    @classmethod
    def from_pretrained(
        cls: type[M],
        path: str | os.PathLike[str],
        config: Any | None = None,
        *,
        device: str | torch.device | None = None,
        codebook_size: int | None = None,
    ) -> M:
        """Load weights from an official msgpack file, a maskgit-torch ``.ckpt`` or a folder
        written by ``save_pretrained``. Without ``config`` it is read from the folder or inferred
        from the parameter shapes; ``codebook_size`` (the tokenizer's) completes the inference of a
        transformer whose shapes match no preset, and must match the loaded model's codebook.
        Returns the model in eval mode.
        """
        expected_kind = cls.config_class.model_type
        if config is not None and not isinstance(config, cls.config_class):
            raise TypeError(f"config must be a {cls.config_class.__name__}, got {type(config).__name__}")
        raw = read_checkpoint(path, config=config, codebook_size=codebook_size)
        if raw.kind != expected_kind:
            raise CheckpointError(
                f"{path}: holds a {_KIND_NAMES[raw.kind]} ({raw.format} format), "
                f"but {cls.__name__} needs a {_KIND_NAMES[expected_kind]}"
            )
        # Build on the meta device: no memory and no random init for weights we overwrite.
        with torch.device("meta"):
            model = cls(raw.config)  # type: ignore[call-arg]
        assert isinstance(model, nn.Module)
        expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
        if raw.official is not None:
            state = official_to_state_dict(raw.official, raw.config, expected, source=str(path))
        else:
            assert raw.state_dict is not None
            state = raw.state_dict
            _check_state(state, expected, str(path))
        _check_dtypes(state, str(path))
        # Weights stored in half precision (``save_pretrained(dtype=...)``) load as float32: the
        # compute precision is chosen afterwards (``MaskGIT.to_precision``), not by the file.
        state = {name: tensor if tensor.dtype == torch.float32 else tensor.float() for name, tensor in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        model.eval()
        return model.to(device) if device is not None else model  # type: ignore[return-value]

    def save_pretrained(self, directory: str | os.PathLike[str], *, dtype: torch.dtype | None = None) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``. ``dtype``
        (``torch.float16`` or ``torch.bfloat16``) stores the weights in half the space; they load
        as float32 again."""
        assert isinstance(self, nn.Module)
        if dtype not in (None, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}")
        state = self.state_dict()
        if dtype is not None:
            state = {name: tensor.to(dtype) for name, tensor in state.items()}
        write_pretrained(directory, self.config, state)


def _check_state(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: missing parameter(s) {missing[:8]}; unexpected parameter(s) {unexpected[:8]}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(f"{source}: {name} has shape {tuple(state[name].shape)}, expected {shape}")


def _check_dtypes(state: dict[str, torch.Tensor], source: str) -> None:
    """Weights must be floating point: an int8 or bool tensor would load and then fail (or compute
    nonsense) deep inside a forward pass."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"{source}: {name} has dtype {tensor.dtype}; weights must be floating point")
