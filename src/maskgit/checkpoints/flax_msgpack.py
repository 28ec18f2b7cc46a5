"""Read and write the official checkpoint format (``flax.serialization.to_bytes``) with msgpack and
numpy alone: no jax, flax or tensorflow (fixture README §3, spec §5.2).

A checkpoint is a msgpack map of nested maps (flax scopes). Array leaves are msgpack ExtType
values: code 1 is an ndarray, code 3 a numpy scalar, code 2 a complex number. Arrays over 2**30
bytes are split into a map with the key ``__msgpack_chunked_array__``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from maskgit.checkpoints.errors import CheckpointError

__all__ = ["read_flax_msgpack", "write_flax_msgpack", "flatten_tree", "unflatten_tree"]

_EXT_NDARRAY = 1
_EXT_COMPLEX = 2
_EXT_SCALAR = 3
_CHUNKED = "__msgpack_chunked_array__"
_MAX_CHUNK_BYTES = 2**30


def _decode_array(payload: bytes) -> np.ndarray:
    shape, dtype_name, buffer = msgpack.unpackb(payload, raw=True)
    name = dtype_name.decode() if isinstance(dtype_name, bytes) else dtype_name
    if name == "bfloat16":
        # numpy has no bfloat16: widen the 16 stored bits to the top half of a float32.
        bits = np.frombuffer(buffer, np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(buffer, np.dtype(name)).reshape(shape)


def _ext_hook(code: int, payload: bytes) -> Any:
    if code == _EXT_NDARRAY:
        return _decode_array(payload)
    if code == _EXT_SCALAR:
        return _decode_array(payload)[()]
    if code == _EXT_COMPLEX:
        real, imag = msgpack.unpackb(payload)
        return complex(real, imag)
    return msgpack.ExtType(code, payload)


def _restore_chunks(tree: Any, source: str, scope: str = "") -> Any:
    if not isinstance(tree, dict):
        return tree
    if _CHUNKED in tree:
        chunks, shape = tree.get("chunks"), tree.get("shape")
        if not isinstance(chunks, dict) or not isinstance(shape, dict) or not chunks:
            raise CheckpointError(f"{source}: chunked array {scope or '/'} lacks its 'chunks' or 'shape' map")
        try:
            flat = np.concatenate([np.asarray(chunks[str(i)]).reshape(-1) for i in range(len(chunks))])
            return flat.reshape(tuple(int(shape[str(i)]) for i in range(len(shape))))
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{source}: chunked array {scope or '/'} is malformed ({type(error).__name__}: {error})") from None
    return {key: _restore_chunks(value, source, f"{scope}/{key}") for key, value in tree.items()}


def read_flax_msgpack(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Decode a flax msgpack checkpoint into nested dicts of numpy arrays.

    Raises ``CheckpointError`` naming the file if it is truncated, not msgpack, or not a map.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except msgpack.ExtraData:
        raise CheckpointError(f"{path}: not a flax msgpack checkpoint (trailing data after the first object)") from None
    except (ValueError, msgpack.UnpackException, TypeError) as error:
        # msgpack raises ValueError("Unpack failed: incomplete input") for a truncated file.
        raise CheckpointError(f"{path}: not a readable flax msgpack checkpoint ({error}); is the file truncated?") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"{path}: expected a msgpack map at the top level, got {type(tree).__name__}")
    return _restore_chunks(tree, str(path))


def _encode_array(array: np.ndarray) -> msgpack.ExtType:
    array = np.ascontiguousarray(array)
    payload = msgpack.packb((array.shape, array.dtype.name, array.tobytes()), use_bin_type=True)
    return msgpack.ExtType(_EXT_NDARRAY, payload)


def _chunk(tree: Any, max_chunk_bytes: int) -> Any:
    if isinstance(tree, Mapping):
        return {key: _chunk(value, max_chunk_bytes) for key, value in tree.items()}
    if isinstance(tree, np.generic):
        return tree  # numpy scalars keep their own ext type
    array = np.asarray(tree)
    if array.nbytes <= max_chunk_bytes:
        return array
    flat = array.reshape(-1)
    per_chunk = max(1, max_chunk_bytes // array.itemsize)
    chunks = [flat[i : i + per_chunk] for i in range(0, flat.size, per_chunk)]
    return {
        _CHUNKED: True,
        "shape": {str(i): size for i, size in enumerate(array.shape)},
        "chunks": {str(i): chunk for i, chunk in enumerate(chunks)},
    }


def write_flax_msgpack(
    tree: Mapping[str, Any], path: str | os.PathLike[str], *, max_chunk_bytes: int = _MAX_CHUNK_BYTES
) -> None:
    """Write nested dicts of arrays in the official format (what ``flax.serialization.to_bytes``
    writes), atomically. ``max_chunk_bytes`` is flax's chunking threshold."""
    from maskgit.io import atomic_write_bytes

    def default(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return _encode_array(value)
        if isinstance(value, np.generic):
            return msgpack.ExtType(_EXT_SCALAR, _encode_array(np.asarray(value)).data)
        raise TypeError(f"cannot serialise {type(value).__name__}")

    atomic_write_bytes(path, msgpack.packb(_chunk(tree, max_chunk_bytes), default=default, use_bin_type=True))


def flatten_tree(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested scopes → ``{"encoder/Conv_0/kernel": array}``."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten_tree(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *scopes, leaf = name.split("/")
        node = tree
        for scope in scopes:
            node = node.setdefault(scope, {})
        node[leaf] = value
    return tree
