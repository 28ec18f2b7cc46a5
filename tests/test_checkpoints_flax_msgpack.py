"""checkpoints/flax_msgpack.py: the official msgpack reader and writer (arrays, scalars, chunks,
bfloat16), tree flattening, and errors that name the file."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from conftest import TRANSFORMER_MSGPACK
from maskgit import VQGAN, CheckpointError, MaskGITTransformer
from maskgit.checkpoints.flax_msgpack import flatten_tree, read_flax_msgpack, unflatten_tree, write_flax_msgpack


def test_reader_handles_scalars_chunks_and_bfloat16(tmp_path):
    big = np.arange(1000, dtype=np.float32).reshape(10, 100)
    tree = {"params": {"a": {"kernel": big}, "step": np.int32(7)}}
    path = tmp_path / "ckpt"
    write_flax_msgpack(tree, path, max_chunk_bytes=1024)  # forces __msgpack_chunked_array__
    raw = msgpack.unpackb(path.read_bytes(), raw=False, ext_hook=lambda c, d: c)
    assert "__msgpack_chunked_array__" in raw["params"]["a"]["kernel"]
    assert raw["params"]["step"] == 3  # ext type 3: numpy scalar
    loaded = read_flax_msgpack(path)
    np.testing.assert_array_equal(loaded["params"]["a"]["kernel"], big)
    assert loaded["params"]["step"] == 7

    bf16_bits = (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    payload = msgpack.packb(([2], "bfloat16", bf16_bits.tobytes()), use_bin_type=True)
    path.write_bytes(msgpack.packb({"params": {"w": msgpack.ExtType(1, payload)}}, use_bin_type=True))
    np.testing.assert_array_equal(read_flax_msgpack(path)["params"]["w"], [1.5, -2.0])


@pytest.mark.parametrize("chunked, message", [
    ({"__msgpack_chunked_array__": True, "shape": {"0": 4}}, "lacks its 'chunks' or 'shape' map"),
    ({"__msgpack_chunked_array__": True, "chunks": {"0": np.zeros(4, np.float32)}}, "lacks its 'chunks' or 'shape' map"),
    ({"__msgpack_chunked_array__": True, "shape": {"0": 5}, "chunks": {"0": np.zeros(4, np.float32)}}, "is malformed"),
    ({"__msgpack_chunked_array__": True, "shape": {"0": 4}, "chunks": {"1": np.zeros(4, np.float32)}}, "is malformed"),
])
def test_malformed_chunked_arrays_are_checkpoint_errors(tmp_path, chunked, message):
    path = tmp_path / "ckpt"
    write_flax_msgpack({"params": {"a": {"kernel": chunked}}}, path)
    with pytest.raises(CheckpointError, match=f"ckpt: chunked array /params/a/kernel {message}"):
        read_flax_msgpack(path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "truncated"
    path.write_bytes(TRANSFORMER_MSGPACK.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        MaskGITTransformer.from_pretrained(path)


def test_non_msgpack_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="notes.txt"):
        VQGAN.from_pretrained(path)


def test_write_then_read_round_trips_dtypes_and_nested_scopes(tmp_path):
    tree = {
        "params": {
            "encoder": {"Conv_0": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "bias": np.ones(4, np.float16)}},
            "counts": np.array([[1, -2], [3, 4]], np.int32),
        },
        "step": np.float64(0.25),
    }
    path = tmp_path / "ckpt"
    write_flax_msgpack(tree, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # atomic: no temporary file left beside it
    loaded = read_flax_msgpack(path)
    flat, expected = flatten_tree(loaded), flatten_tree(tree)
    assert flat.keys() == expected.keys()
    for name, array in expected.items():
        assert np.asarray(flat[name]).dtype == np.asarray(array).dtype, name
        np.testing.assert_array_equal(flat[name], array)


def test_flatten_and_unflatten_are_inverse():
    tree = {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "f": 4}
    flat = flatten_tree(tree)
    assert flat == {"a/b/c": 1, "a/b/d": 2, "a/e": 3, "f": 4}
    assert unflatten_tree(flat) == tree
    assert flatten_tree({"x": {}}) == {}  # an empty scope holds no parameter


@pytest.mark.parametrize("payload, message", [
    (msgpack.packb([1, 2, 3]), "expected a msgpack map at the top level, got list"),
    (msgpack.packb({"params": {}}) + msgpack.packb({"params": {}}), "trailing data after the first object"),
])
def test_valid_msgpack_that_is_not_one_checkpoint_is_refused(tmp_path, payload, message):
    path = tmp_path / "odd.msgpack"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=f"odd.msgpack: .*{message}"):
        read_flax_msgpack(path)
