"""checkpoints/pipeline_folder.py: the index of a pipeline folder, writing one, and converting a
registered official checkpoint into one."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TOKENIZER_MSGPACK, TRANSFORMER_MSGPACK, official_params, write_official_params
from maskgit import VQGAN, CheckpointError, MaskGITTransformer
from maskgit.checkpoints import DownloadError, hub
from maskgit.checkpoints.pipeline_folder import (
    PIPELINE_INDEX,
    TOKENIZER,
    TRANSFORMER,
    PipelineIndex,
    convert_official,
    converted_dir,
    is_pipeline_folder,
    read_index,
    write_pipeline,
)
from maskgit.class_names import imagenet_class_names
from maskgit.sampling import HaltonSampler


@pytest.fixture(scope="module")
def folder(tmp_path_factory, small_tokenizer, small_transformer):
    folder = tmp_path_factory.mktemp("pipe")
    names = tuple(f"kind {i}" for i in range(small_transformer.config.num_classes))
    write_pipeline(folder, (small_tokenizer.config, small_tokenizer.state_dict()),
                   (small_transformer.config, small_transformer.state_dict()),
                   PipelineIndex(names, HaltonSampler(num_steps=3)))
    return folder


def _with_index(folder, tmp_path, **changes):
    """A copy of ``folder`` whose index has ``changes`` (a value of None drops the key)."""
    copy = tmp_path / "copy"
    for part in (TOKENIZER, TRANSFORMER):
        (copy / part).mkdir(parents=True)
        for file in (folder / part).iterdir():
            (copy / part / file.name).write_bytes(file.read_bytes())
    index = json.loads((folder / PIPELINE_INDEX).read_text())
    index.update(changes)
    (copy / PIPELINE_INDEX).write_text(json.dumps({k: v for k, v in index.items() if v is not None}))
    return copy


def test_the_index_round_trips_and_the_models_load_from_their_folders(folder, small_tokenizer, small_transformer):
    assert is_pipeline_folder(folder) and not is_pipeline_folder(folder / TOKENIZER)
    index = read_index(folder)
    assert index == PipelineIndex(tuple(f"kind {i}" for i in range(10)), HaltonSampler(num_steps=3))
    assert json.loads((folder / PIPELINE_INDEX).read_text())["format"] == "maskgit-pipeline"
    for cls, part, model in ((VQGAN, TOKENIZER, small_tokenizer), (MaskGITTransformer, TRANSFORMER, small_transformer)):
        loaded = cls.from_pretrained(folder / part)
        assert loaded.config == model.config
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name


def test_absent_names_and_sampler_take_the_defaults(folder, tmp_path):
    index = read_index(_with_index(folder, tmp_path, class_names=None, sampler=None))
    assert index == PipelineIndex(tuple(f"class_{i}" for i in range(10)), None)


@pytest.mark.parametrize("names, message", [
    (5, "got 5"), ([1] * 10, "got a list with 1"), (["a"] * 9 + [" "], "got a list with ' '"), ("ab", "got 'ab'"),
])
def test_class_names_must_be_one_string_per_class(folder, tmp_path, names, message):
    with pytest.raises(CheckpointError, match=f"{PIPELINE_INDEX}: class_names must be a list of non-empty strings, {message}"):
        read_index(_with_index(folder, tmp_path, class_names=names))


def test_the_class_count_comes_from_the_transformer_config(folder, tmp_path):
    with pytest.raises(CheckpointError, match="3 class_names for a transformer with 10 classes"):
        read_index(_with_index(folder, tmp_path, class_names=["a", "b", "c"]))


@pytest.mark.parametrize("change, message", [
    (lambda copy: (copy / PIPELINE_INDEX).unlink(), "no model_index.json; not a saved MaskGIT pipeline folder"),
    (lambda copy: (copy / PIPELINE_INDEX).write_text("{"), "model_index.json: not valid JSON"),
    (lambda copy: (copy / PIPELINE_INDEX).write_text('{"format": "other"}'), "format is not 'maskgit-pipeline'"),
    (lambda copy: (copy / PIPELINE_INDEX).write_text('{"format": "maskgit-pipeline", "sampler": {"sampler": "zigzag"}}'),
     "model_index.json: bad sampler .*zigzag"),
    (lambda copy: (copy / TRANSFORMER / "config.json").unlink(), "transformer: no config.json"),
])
def test_a_broken_folder_is_named(folder, tmp_path, change, message):
    copy = _with_index(folder, tmp_path)
    change(copy)
    with pytest.raises(CheckpointError, match=message):
        read_index(copy)


@pytest.fixture
def registered(monkeypatch, tmp_path):
    """A registered checkpoint "small128" whose official files are already in the cache."""
    entry = hub.RegisteredCheckpoint(
        name="small128", description="test", base_url="http://127.0.0.1:1/unreachable",
        files=(hub.RemoteFile("tokenizer", "tokenizer_small128_checkpoint"),
               hub.RemoteFile("transformer", "maskgit_small128_checkpoint")),
    )
    monkeypatch.setitem(hub.REGISTRY, "small128", entry)
    downloads = tmp_path / "downloads" / "small128"
    downloads.mkdir(parents=True)
    (downloads / "tokenizer_small128_checkpoint").write_bytes(TOKENIZER_MSGPACK.read_bytes())
    (downloads / "maskgit_small128_checkpoint").write_bytes(TRANSFORMER_MSGPACK.read_bytes())
    return downloads


def test_an_official_checkpoint_converts_into_a_pipeline_folder_once(registered, tmp_path, small_tokenizer,
                                                                       small_transformer):
    folder = convert_official("small128", tmp_path)
    assert folder == converted_dir("small128", tmp_path) == tmp_path / "models" / "small128"
    assert read_index(folder) == PipelineIndex(tuple(f"class_{i}" for i in range(10)), None)
    for cls, part, model in ((VQGAN, TOKENIZER, small_tokenizer), (MaskGITTransformer, TRANSFORMER, small_transformer)):
        loaded = cls.from_pretrained(folder / part)
        assert loaded.config == model.config
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
    # Converted once: the official files are not read again.
    for file in registered.iterdir():
        file.write_bytes(b"gone")
    assert convert_official("small128", tmp_path) == folder
    assert [p.name for p in tmp_path.joinpath("models").iterdir()] == ["small128"]  # no temporary folder left


def test_a_thousand_classes_are_named_after_imagenet(registered, tmp_path, monkeypatch):
    from maskgit.configs import TRANSFORMER_PRESETS

    # The fixture transformer with its vocabulary grown to 1000 classes.
    config = TRANSFORMER_PRESETS["small128"].replace(num_classes=1000)
    flat = official_params(TRANSFORMER_MSGPACK)
    for name in ("Embed_0/word_embeddings/embedding", "MlmLayer_0/mlm_bias/bias"):
        flat[name] = flat[name][:1].repeat(config.vocab_size, 0)
    write_official_params(flat, registered / "maskgit_small128_checkpoint")
    monkeypatch.setitem(TRANSFORMER_PRESETS, "small128", config)
    folder = convert_official("small128", tmp_path)
    assert read_index(folder).class_names == imagenet_class_names()


def test_a_file_of_the_wrong_kind_converts_nothing(registered, tmp_path):
    # The download cache checks the kind of the files it hands out: this one is deleted and fetched again.
    (registered / "tokenizer_small128_checkpoint").write_bytes(TRANSFORMER_MSGPACK.read_bytes())
    with pytest.warns(UserWarning, match="holds a transformer checkpoint, expected the tokenizer"), \
            pytest.raises(DownloadError, match="could not download checkpoint 'small128'"):
        convert_official("small128", tmp_path)
    assert not converted_dir("small128", tmp_path).exists()


def test_a_misshapen_parameter_is_found_when_the_folder_loads(registered, tmp_path):
    flat = official_params(TOKENIZER_MSGPACK)
    flat["decoder/Conv_0/bias"] = flat["decoder/Conv_0/bias"][:-1]
    write_official_params(flat, registered / "tokenizer_small128_checkpoint")
    folder = convert_official("small128", tmp_path)
    with pytest.raises(CheckpointError, match=r"decoder.conv_in.bias has shape \(\d+,\), expected"):
        VQGAN.from_pretrained(folder / TOKENIZER)
