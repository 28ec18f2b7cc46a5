"""The typed config base shared by model and training configs: types, keys, overrides, files."""

from __future__ import annotations

import json

import pytest

from maskgit.config_base import ConfigError, differences, parse_override, read_config_file
from maskgit.configs import TOKENIZER_PRESETS, TokenizerConfig, TransformerConfig
from maskgit.training.config import TOKENIZER_TRAIN_PRESETS, TokenizerTrainConfig, TransformerTrainConfig


def test_model_configs_check_types_at_construction():
    with pytest.raises(ConfigError, match="TokenizerConfig: filters must be int, got '64'"):
        TokenizerConfig(filters="64")
    with pytest.raises(ConfigError, match="TransformerConfig: num_layers must be int, got True"):
        TransformerConfig(num_layers=True)
    with pytest.raises(ConfigError, match=r"channel_multipliers\[1\] must be int, got 2.5"):
        TokenizerConfig(channel_multipliers=(1, 2.5))
    with pytest.raises(ConfigError, match="TransformerConfig: dropout must be float, got 'none'"):
        TransformerConfig(dropout="none")


def test_values_are_normalised_to_the_field_types():
    config = TransformerConfig(dropout=0)
    assert isinstance(config.dropout, float) and config.dropout == 0.0
    tokenizer = TokenizerConfig(channel_multipliers=[1, 2], filters=32, image_size=64)
    assert tokenizer.channel_multipliers == (1, 2)
    assert tokenizer == TokenizerConfig(channel_multipliers=(1, 2), filters=32, image_size=64)
    training = TokenizerTrainConfig(betas=[0, 1], learning_rate=1)
    assert training.betas == (0.0, 1.0) and isinstance(training.learning_rate, float)


def test_from_dict_names_the_source_key_and_type(tmp_path):
    with pytest.raises(ConfigError, match="cfg.json: filters must be int, got '64'"):
        TokenizerConfig.from_dict({"filters": "64"}, source="cfg.json")
    with pytest.raises(ConfigError, match="model_type is 'transformer', expected 'vqgan'"):
        TokenizerConfig.from_dict(TransformerConfig().to_dict())
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['depth'\] for TransformerConfig; valid keys are"):
        TransformerConfig.from_dict({"depth": 3})
    # Keys left out take the defaults.
    assert TransformerConfig.from_dict({"num_layers": 3}) == TransformerConfig(num_layers=3)


def test_updated_reaches_nested_configs_by_dotted_key_dict_or_preset():
    tiny = TOKENIZER_TRAIN_PRESETS["tiny"]
    changed = tiny.updated({"model.filters": 16, "steps": 9})
    assert (changed.model.filters, changed.steps) == (16, 9)
    assert changed.model.replace(filters=8) == tiny.model
    assert tiny.updated({"model": {"filters": 16}}) == changed.updated({"steps": tiny.steps})
    assert tiny.updated({"model": "small128"}).model == TOKENIZER_PRESETS["small128"]
    with pytest.raises(ConfigError, match="given both as a preset name and as model.filters"):
        tiny.updated({"model": "small128", "model.filters": 16})
    with pytest.raises(ConfigError, match="given both as a preset name and as model.<key>"):
        tiny.updated({"model.filters": 16, "model": "small128"})
    assert tiny.updated({"model": {"filters": 16}, "model.embedding_dim": 4}).model.embedding_dim == 4
    with pytest.raises(ConfigError, match="'model' must be a mapping of its config keys or a preset name"):
        tiny.updated({"model": 3})
    with pytest.raises(ConfigError, match="unknown key 'steps.x'; only '<nested config>.<key>' may be dotted"):
        tiny.updated({"steps.x": 1})
    with pytest.raises(ConfigError, match="unknown tokenizer preset 'huge'"):
        tiny.updated({"model": "huge"})
    assert TokenizerTrainConfig.preset("tiny") is tiny
    with pytest.raises(ConfigError, match="unknown transformer training preset 'huge'"):
        TransformerTrainConfig.preset("huge")
    # Model configs take overrides the same way.
    assert TokenizerConfig().updated({"filters": 64}).filters == 64
    with pytest.raises(ConfigError, match="unknown key 'filterz' for TokenizerConfig; valid keys are"):
        TokenizerConfig().updated({"filterz": 64})


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_every_config_saves_and_loads_as_json_or_yaml(tmp_path, suffix):
    configs = [TOKENIZER_PRESETS["small128"], TransformerConfig(num_classes=10), TOKENIZER_TRAIN_PRESETS["fashion-mnist"],
               TransformerTrainConfig(class_dropout=0.1)]
    for i, config in enumerate(configs):
        path = tmp_path / f"config{i}{suffix}"
        config.save(path)
        assert type(config).load(path) == config
        assert read_config_file(path) == json.loads(config.to_json())


def test_read_config_file_errors_name_the_file(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    assert read_config_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        read_config_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="nope.json: config file not found"):
        TokenizerConfig.load(tmp_path / "nope.json")


def test_parse_override_reads_yaml_values():
    assert parse_override("learning_rate=1e-4") == ("learning_rate", "1e-4")  # YAML 1.1; the float field reads it
    assert TOKENIZER_TRAIN_PRESETS["tiny"].updated(dict([parse_override("learning_rate=1e-4")])).learning_rate == 1e-4
    assert parse_override(" model.filters = 8") == ("model.filters", 8)


def test_differences_flatten_nested_settings_and_skip_ignored_keys():
    before = {"seed": 1, "sampler": {"num_steps": 8, "top_k": None}, "device": "cpu"}
    after = {"seed": 1, "sampler": {"num_steps": 12}, "device": "cuda", "guidance": 2.0}
    assert differences(before, after, ignore=frozenset({"device"})) == [
        "guidance: None -> 2.0", "sampler.num_steps: 8 -> 12"]
    assert differences(before, before) == []
    assert differences({"a": {"b": 1}}, {"a": 1}) == ["a: None -> 1", "a.b: 1 -> None"]
