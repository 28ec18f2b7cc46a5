"""Checkpoint formats: the official msgpack reader, the name mapping (small and full size),
maskgit-torch files, our safetensors folders, `maskgit convert`, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import msgpack
import numpy as np
import pytest
import torch

from conftest import (
    MASKGIT_TORCH,
    OFFICIAL,
    TOKENIZER_CKPT,
    TOKENIZER_MSGPACK,
    TRANSFORMER_CKPT,
    TRANSFORMER_MSGPACK,
    load_npz,
)
from maskgit import VQGAN, CheckpointError, MaskGITTransformer, TokenizerConfig, TransformerConfig
from maskgit.checkpoints.config_inference import infer_tokenizer_config
from maskgit.checkpoints.flax_msgpack import flatten_tree, read_flax_msgpack, unflatten_tree, write_flax_msgpack
from maskgit.checkpoints.formats import detect_format
from maskgit.checkpoints.maskgit_torch import _port_tokenizer_path
from maskgit.checkpoints.official import official_to_state_dict, parameter_entries, state_dict_to_official
from maskgit.cli import main
from maskgit.configs import TOKENIZER_PRESETS, TRANSFORMER_PRESETS
from maskgit.models import load_model


def _official_flat(path):
    return flatten_tree(read_flax_msgpack(path)["params"])


def _write_params(flat, path):
    write_flax_msgpack({"params": unflatten_tree(flat)}, path)


# -- msgpack reader -------------------------------------------------------------------------------


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


def test_integer_weights_are_refused_in_every_format(tmp_path, small_tokenizer):
    from safetensors.torch import load_file, save_file

    small_tokenizer.save_pretrained(tmp_path / "tok")
    weights = tmp_path / "tok" / "model.safetensors"
    save_file({k: v.to(torch.int8) for k, v in load_file(weights).items()}, weights)
    with pytest.raises(CheckpointError, match=r"tok: .* has dtype torch.int8; weights must be floating point"):
        VQGAN.from_pretrained(tmp_path / "tok")
    tree = read_flax_msgpack(TRANSFORMER_MSGPACK)
    tree["params"]["MlmLayer_0"]["mlm_bias"]["bias"] = tree["params"]["MlmLayer_0"]["mlm_bias"]["bias"].astype(np.int8)
    write_flax_msgpack(tree, tmp_path / "int8.msgpack")
    with pytest.raises(CheckpointError, match=r"params/MlmLayer_0/mlm_bias/bias has dtype int8"):
        MaskGITTransformer.from_pretrained(tmp_path / "int8.msgpack")


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


def test_missing_params_collection_is_reported(tmp_path):
    path = tmp_path / "ckpt"
    write_flax_msgpack({"opt_state": {"x": np.zeros(2, np.float32)}}, path)
    with pytest.raises(CheckpointError, match="no 'params'"):
        VQGAN.from_pretrained(path)


def test_other_top_level_collections_are_ignored(tmp_path, small_tokenizer):
    tree = read_flax_msgpack(TOKENIZER_MSGPACK)
    tree["state"] = {"step": np.zeros((), np.int32)}
    path = tmp_path / "ckpt"
    write_flax_msgpack(tree, path)
    model = VQGAN.from_pretrained(path)
    for (name, a), b in zip(model.state_dict().items(), small_tokenizer.state_dict().values()):
        assert torch.equal(a, b), name


# -- strict mapping errors ------------------------------------------------------------------------


def test_transformer_checkpoint_given_to_the_tokenizer():
    with pytest.raises(CheckpointError, match="holds a MaskGIT transformer.*VQGAN needs a VQGAN tokenizer"):
        VQGAN.from_pretrained(TRANSFORMER_MSGPACK)
    with pytest.raises(CheckpointError, match="holds a VQGAN tokenizer.*maskgit-torch"):
        MaskGITTransformer.from_pretrained(TOKENIZER_CKPT)


def test_missing_key_is_named(tmp_path):
    flat = _official_flat(TOKENIZER_MSGPACK)
    del flat["decoder/ResBlock_4/Conv_2/kernel"]
    _write_params(flat, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="missing parameter.*decoder/ResBlock_4/Conv_2/kernel"):
        VQGAN.from_pretrained(tmp_path / "ckpt", config=TOKENIZER_PRESETS["small128"])


def test_unexpected_key_is_named(tmp_path):
    flat = _official_flat(TRANSFORMER_MSGPACK)
    flat["MlmLayer_0/extra/kernel"] = np.zeros((2, 2), np.float32)
    _write_params(flat, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="unexpected parameter.*MlmLayer_0/extra/kernel"):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt")


def test_wrong_shape_is_named(tmp_path):
    flat = _official_flat(TRANSFORMER_MSGPACK)
    flat["TransformerLayer_1/Mlp_0/layer_output/kernel"] = np.zeros((128, 32), np.float32)
    _write_params(flat, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"layer_output/kernel has shape \(128, 32\).*layers.1.mlp_output.weight"):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt")


def test_wrong_shape_against_an_explicit_config(tmp_path):
    config = TRANSFORMER_PRESETS["small128"].replace(intermediate_size=96)
    with pytest.raises(CheckpointError, match="intermediate_output/kernel has shape"):
        MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK, config=config)


def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": subprocess.Popen}, path)
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        VQGAN.from_pretrained(path)


# -- full-size listings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listing, preset, num_params",
    [
        ("tokenizer_imagenet256_params.json", "imagenet256", 54_515_587),
        ("tokenizer_imagenet512_params.json", "imagenet256", 54_515_587),  # the tokenizer is size-agnostic
        ("transformer_imagenet256_params.json", "imagenet256", 172_457_193),
        ("transformer_imagenet512_params.json", "imagenet512", 173_047_017),
    ],
)
def test_every_official_path_maps_to_exactly_one_parameter(listing, preset, num_params):
    params = json.loads((OFFICIAL / listing).read_text())["params"]
    shapes = {path.removeprefix("params/"): tuple(v["shape"]) for path, v in params.items()}
    is_tokenizer = listing.startswith("tokenizer")
    cls = VQGAN if is_tokenizer else MaskGITTransformer
    config = (TOKENIZER_PRESETS if is_tokenizer else TRANSFORMER_PRESETS)[preset]
    if is_tokenizer:
        assert infer_tokenizer_config({k: np.empty(s, np.float32) for k, s in shapes.items()}) == config
    with torch.device("meta"):
        model = cls(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert sum(np.prod(s) for s in expected.values()) == num_params

    entries = parameter_entries(config)
    assert sorted(e.official for e in entries) == sorted(shapes)  # each path once, none left over
    assert sorted(e.ours for e in entries) == sorted(expected)  # each parameter once
    for entry in entries:  # layout: the transposed official shape is our shape
        assert entry.to_torch(np.empty(shapes[entry.official], np.float32)).shape == expected[entry.ours], entry


def test_mapping_round_trips_through_official_layout(small_transformer):
    config = small_transformer.config
    state = small_transformer.state_dict()
    flat = state_dict_to_official(state, config)
    back = official_to_state_dict(flat, config, {k: tuple(v.shape) for k, v in state.items()})
    assert all(torch.equal(back[k], state[k]) for k in state)
    original = _official_flat(TRANSFORMER_MSGPACK)
    assert all(np.array_equal(flat[k], original[k]) for k in original)


def test_config_inferred_from_a_custom_architecture(tmp_path):
    config = TokenizerConfig(filters=32, channel_multipliers=(1, 2, 3), num_res_blocks=1, embedding_dim=8,
                             codebook_size=40, image_size=256)
    torch.manual_seed(0)
    model = VQGAN(config)
    _write_params(state_dict_to_official(model.state_dict(), config), tmp_path / "ckpt")
    loaded = VQGAN.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == config
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(images), model.eval().reconstruct(images), rtol=0, atol=0)


def test_transformer_without_a_preset_needs_a_config(tmp_path):
    config = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                               intermediate_size=64, latent_size=4)
    model = MaskGITTransformer(config)
    _write_params(state_dict_to_official(model.state_dict(), config), tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="codebook size.*pass config="):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt")
    loaded = MaskGITTransformer.from_pretrained(tmp_path / "ckpt", config=config)
    ids = torch.randint(0, 16, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model.eval()(ids), rtol=0, atol=0)



def test_the_tokenizer_codebook_size_completes_the_inference(tmp_path, monkeypatch):
    config = TransformerConfig(codebook_size=16, num_classes=3, hidden_size=32, num_layers=1, num_heads=2,
                               intermediate_size=64, latent_size=4)
    _write_params(state_dict_to_official(MaskGITTransformer(config).state_dict(), config), tmp_path / "ckpt")
    assert MaskGITTransformer.from_pretrained(tmp_path / "ckpt", codebook_size=16).config == config
    with pytest.raises(CheckpointError, match="vocabulary of 20 ids leaves no class ids beside 19 codes"):
        MaskGITTransformer.from_pretrained(tmp_path / "ckpt", codebook_size=19)
    # A maskgit-torch file does not store the head count, so without a preset it still needs a config.
    monkeypatch.delitem(TRANSFORMER_PRESETS, "small128")
    with pytest.raises(CheckpointError, match=r"\.ckpt: the head count cannot be read.*pass config="):
        MaskGITTransformer.from_pretrained(TRANSFORMER_CKPT, codebook_size=64)


# -- maskgit-torch --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, official, port", [(VQGAN, TOKENIZER_MSGPACK, TOKENIZER_CKPT),
                                                 (MaskGITTransformer, TRANSFORMER_MSGPACK, TRANSFORMER_CKPT)])
def test_maskgit_torch_files_load_the_official_weights_exactly(cls, official, port):
    assert detect_format(port) == "maskgit-torch" and detect_format(official) == "official"
    a, b = cls.from_pretrained(official), cls.from_pretrained(port)
    assert a.config == b.config
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_maskgit_torch_tokenizer_names_follow_the_listing():
    listing = json.loads((MASKGIT_TORCH / "state_dict_listing.json").read_text())["files"]
    state = listing["maskgit_torch_tokenizer_small128.ckpt"]["state_dict"]
    for name, info in state.items():
        official = info["from_official"].replace(".", "/")
        assert _port_tokenizer_path(name, num_levels=5) == official, name


def test_maskgit_torch_transformer_reproduces_official_logits():
    model = MaskGITTransformer.from_pretrained(TRANSFORMER_CKPT)
    io = load_npz("transformer_small_io.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(io["input_ids"]))
    np.testing.assert_allclose(logits.numpy(), io["logits"], atol=5e-5, rtol=1e-5)


# -- our format and convert -----------------------------------------------------------------------


def test_save_and_load_our_format(tmp_path, small_tokenizer):
    small_tokenizer.save_pretrained(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VQGAN.from_pretrained(tmp_path / "tok")
    assert loaded.config == small_tokenizer.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), small_tokenizer.state_dict().values()))
    with pytest.raises(CheckpointError, match="holds a VQGAN tokenizer"):
        MaskGITTransformer.from_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        VQGAN.from_pretrained(tmp_path / "tok")


def test_bad_config_in_our_folder(tmp_path, small_transformer):
    small_transformer.save_pretrained(tmp_path / "t")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    config["num_experts"] = 4
    (tmp_path / "t" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown key.*num_experts"):
        MaskGITTransformer.from_pretrained(tmp_path / "t")


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "maskgit.cli", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("source", [TOKENIZER_MSGPACK, TOKENIZER_CKPT, TRANSFORMER_MSGPACK, TRANSFORMER_CKPT])
def test_convert_reproduces_the_original_outputs(tmp_path, source):
    assert main(["convert", str(source), str(tmp_path / "out")]) == 0
    converted, original = load_model(tmp_path / "out"), load_model(source)
    with torch.no_grad():
        if isinstance(original, VQGAN):
            images = torch.from_numpy(load_npz("tokenizer_small_io.npz")["images"]).permute(0, 3, 1, 2)
            torch.testing.assert_close(converted.reconstruct(images), original.reconstruct(images), rtol=0, atol=0)
        else:
            ids = torch.from_numpy(load_npz("transformer_small_io.npz")["input_ids"])
            torch.testing.assert_close(converted(ids), original(ids), rtol=0, atol=0)


def test_convert_reports_errors_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x81\xa6params")  # a msgpack map cut short
    result = _run_cli("convert", bad, tmp_path / "out")
    assert result.returncode == 2
    assert "bad" in result.stderr and "truncated" in result.stderr
    assert not (tmp_path / "out").exists()
