"""Training configs: presets, files, overrides and clear errors."""

from __future__ import annotations

import json

import pytest

from maskgit.configs import ConfigError, TokenizerConfig
from maskgit.training.config import (
    TOKENIZER_TRAIN_PRESETS,
    TRANSFORMER_TRAIN_PRESETS,
    config_from_dict,
    load_train_config,
    parse_override,
)


def test_defaults_are_the_official_recipes():
    tokenizer = load_train_config("tokenizer", None)
    assert tokenizer.model == TokenizerConfig()  # the ImageNet 256 architecture
    assert (tokenizer.betas, tokenizer.learning_rate, tokenizer.batch_size) == ((0.0, 0.99), 1e-4, 256)
    assert (tokenizer.commitment_weight, tokenizer.entropy_weight, tokenizer.entropy_temperature) == (0.25, 0.1, 0.01)
    assert (tokenizer.adversarial_weight, tokenizer.r1_weight, tokenizer.ema_decay) == (0.1, 10.0, 0.999)
    transformer = load_train_config("transformer", None)
    assert (transformer.betas, transformer.weight_decay, transformer.label_smoothing) == ((0.9, 0.96), 0.045, 0.1)
    assert (transformer.warmup_steps, transformer.learning_rate, transformer.class_dropout) == (5000, 1e-4, 0.0)


@pytest.mark.parametrize("stage,presets", [("tokenizer", TOKENIZER_TRAIN_PRESETS), ("transformer", TRANSFORMER_TRAIN_PRESETS)])
def test_every_preset_round_trips_through_a_dict(stage, presets):
    assert {"tiny", "fashion-mnist", "imagenet256"} <= set(presets)
    for name, config in presets.items():
        assert load_train_config(stage, name) == config
        assert config_from_dict(stage, json.loads(config.to_json())) == config, name


def test_yaml_and_json_files_with_a_preset_base_and_overrides(tmp_path):
    pytest.importorskip("yaml")  # PyYAML is what reads YAML configs
    (tmp_path / "broken.yaml").write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_train_config("tokenizer", tmp_path / "broken.yaml")
    (tmp_path / "run.yaml").write_text(
        "preset: tiny\nsteps: 12\nlearning_rate: 3e-4\nbetas: [0.5, 0.9]\nmodel:\n  filters: 16\n  codebook_size: 64\n"
    )
    config = load_train_config("tokenizer", tmp_path / "run.yaml", {"model.embedding_dim": 4, "grad_clip": 1})
    assert (config.steps, config.learning_rate, config.betas, config.grad_clip) == (12, 3e-4, (0.5, 0.9), 1.0)
    assert (config.model.filters, config.model.codebook_size, config.model.embedding_dim) == (16, 64, 4)
    assert config.model.image_size == TOKENIZER_TRAIN_PRESETS["tiny"].model.image_size
    (tmp_path / "run.json").write_text(json.dumps({"stage": "transformer", "preset": "tiny", "class_dropout": 0.1}))
    assert load_train_config("transformer", tmp_path / "run.json").class_dropout == 0.1
    with pytest.raises(ConfigError, match="is a 'transformer' training config, expected 'tokenizer'"):
        load_train_config("tokenizer", tmp_path / "run.json")


def test_unknown_keys_are_named_with_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'stepz'.*valid keys are \\[.*'steps'"):
        load_train_config("tokenizer", "tiny", {"stepz": 3})
    with pytest.raises(ConfigError, match="unknown key\\(s\\) \\['filterz'\\].*'filters'"):
        load_train_config("tokenizer", "tiny", {"model.filterz": 3})
    (tmp_path / "bad.json").write_text(json.dumps({"preset": "tiny", "label_smoothing": 0.2}))
    with pytest.raises(ConfigError, match="bad.json: unknown key 'label_smoothing'"):
        load_train_config("tokenizer", tmp_path / "bad.json")


def test_bad_values_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="steps must be int, got 'many'"):
        load_train_config("tokenizer", "tiny", {"steps": "many"})
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        load_train_config("tokenizer", "tiny", {"steps": 0})
    with pytest.raises(ConfigError, match="lr_decay must be"):
        load_train_config("transformer", "tiny", {"lr_decay": "exponential"})
    with pytest.raises(ConfigError, match="power-of-two model.image_size"):
        load_train_config("tokenizer", "tiny", {"model.image_size": 24, "model.channel_multipliers": [1, 2]})
    with pytest.raises(ConfigError, match="neither a tokenizer training preset .*'tiny'.* nor a config file"):
        load_train_config("tokenizer", "tiniest")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_train_config("tokenizer", tmp_path / "missing.yaml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="list.json: expected a mapping"):
        load_train_config("tokenizer", tmp_path / "list.json")


def test_parse_override():
    assert parse_override("model.channel_multipliers=[1, 2, 2]") == ("model.channel_multipliers", [1, 2, 2])
    assert parse_override("grad_clip=null") == ("grad_clip", None)
    assert parse_override("data=/some/folder") == ("data", "/some/folder")
    assert parse_override("compile=true") == ("compile", True)
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_override("steps")


@pytest.mark.parametrize("stage, overrides, message", [
    ("tokenizer", {"model.image_size": 65536}, "32 images of 65536x65536 is 137,438,953,472 pixels"),
    ("transformer", {"model.latent_size": 4096}, "sequences of 16777217 tokens"),
])
def test_a_micro_batch_is_bounded_before_anything_is_built(stage, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(stage, "fashion-mnist", overrides)
    # The bound is a setting: raising it (or accumulating gradients) accepts the same size.
    big = load_train_config(stage, "fashion-mnist", {**overrides, "max_batch_pixels": 1 << 40})
    assert big.max_batch_pixels == 1 << 40
    for preset in ("fashion-mnist", "imagenet256", "tiny"):
        load_train_config(stage, preset)
