"""training/recipe.py: the recipe follows the data and the machine, overrides follow the config
rules, and a budget becomes fixed step counts."""

from __future__ import annotations

import pytest

from maskgit.config_base import ConfigError
from maskgit.training.recipe import (
    MIN_STAGE_STEPS,
    TOKENIZER_SHARE,
    DataFacts,
    Recipe,
    StepTimes,
    apply_overrides,
    derive_recipe,
    estimate_seconds,
    fit_budget,
    fit_intervals,
    format_duration,
    parse_budget,
    refit_budget,
)

COLOUR_32 = DataFacts(32, True, 270, 30, ("a", "b", "c"))


def test_parse_budget_units_and_bounds():
    assert parse_budget("90s") == 90
    assert parse_budget("30m") == 1800
    assert parse_budget("2h") == 7200
    assert parse_budget("1h30m") == 5400
    assert parse_budget(" 1.5h ") == 5400
    for bad in ("30", "m", "10x", "-5m", "0s", "31d", "45d", "1h 30", "1000h"):
        with pytest.raises(ValueError, match="--budget"):
            parse_budget(bad)


def test_format_duration():
    assert format_duration(12.4) == "12 s"
    assert format_duration(250) == "4 min 10 s"
    assert format_duration(3720) == "1 h 02 min"


def test_recipe_follows_image_size_colour_and_count():
    small = derive_recipe(COLOUR_32, precision="fp32")
    tokenizer, transformer = small.tokenizer.model, small.transformer.model
    assert (tokenizer.image_size, tokenizer.latent_size, tokenizer.codebook_size) == (32, 8, 512)
    assert tokenizer.channel_multipliers == (1, 2, 2) and tokenizer.filters == 32
    assert (transformer.latent_size, transformer.codebook_size, transformer.num_classes) == (8, 512, 3)
    assert transformer.null_class and small.transformer.class_dropout > 0  # guidance works by default
    assert (transformer.hidden_size, transformer.num_layers) == (128, 4)
    assert small.tokens.flips and small.stages == ("tokenizer", "tokens", "transformer")
    assert small.tokenizer.precision == small.transformer.precision == "fp32"
    # Batches never exceed the data.
    assert small.tokenizer.batch_size <= 270 and small.transformer.batch_size <= 540

    grey = derive_recipe(DataFacts(32, False, 270, 30, ("a", "b")), precision="bf16")
    assert grey.tokenizer.model.codebook_size == 256 and grey.transformer.precision == "bf16"

    big = derive_recipe(DataFacts(128, True, 50_000, 1000, tuple(map(str, range(20)))), precision="fp32")
    assert big.tokenizer.model.latent_size == 16 and big.tokenizer.model.downsample_factor == 8
    assert big.tokenizer.model.codebook_size == 1024 and big.transformer.model.hidden_size == 512
    assert big.transformer.model.latent_size == 16 and big.transformer.model.num_classes == 20

    tiny_data = derive_recipe(DataFacts(16, True, 14, 2, ("x",)), precision="fp32", world_size=2)
    assert tiny_data.tokenizer.batch_size == 14 and tiny_data.tokenizer.model.latent_size == 8
    assert tiny_data.transformer.batch_size % 2 == 0


def test_fashion_mnist_gets_the_shipped_recipe():
    recipe = derive_recipe(DataFacts(32, False, 60_000, 10_000, tuple(map(str, range(10))), builtin="fashion-mnist"),
                           precision="bf16")
    assert recipe.stages == ("tokenizer", "decoder", "tokens", "transformer")
    tokenizer = recipe.tokenizer
    assert (tokenizer.model.latent_size, tokenizer.model.codebook_size, tokenizer.steps, tokenizer.batch_size) == (8, 512, 11000, 32)
    assert recipe.decoder.decoder_only and recipe.decoder.reconstruction_loss == "l1" and recipe.decoder.steps == 4200
    assert not recipe.tokens.flips  # the shoes all point one way
    assert (recipe.transformer.steps, recipe.transformer.batch_size, recipe.transformer.model.hidden_size) == (2700, 128, 256)
    assert recipe.transformer.model.null_class


def test_overrides_use_the_config_rules():
    recipe, fixed = apply_overrides(derive_recipe(COLOUR_32, precision="fp32"),
                                    ["tokenizer.model.codebook_size=1024", "transformer.learning_rate=3e-4",
                                     "sampler.guidance=3", "seed=7", "tokens.flips=false"], COLOUR_32)
    assert recipe.tokenizer.model.codebook_size == 1024
    assert recipe.transformer.model.codebook_size == 1024  # follows the tokenizer
    assert recipe.decoder.model == recipe.tokenizer.model
    assert recipe.transformer.learning_rate == 3e-4 and recipe.sampler.guidance == 3 and recipe.seed == 7
    assert not recipe.tokens.flips
    assert fixed == {"tokenizer.model.codebook_size", "transformer.learning_rate", "sampler.guidance", "seed", "tokens.flips"}
    base = derive_recipe(COLOUR_32, precision="fp32")
    with pytest.raises(ConfigError, match=r"unknown key 'lerning_rate'.*valid keys are \[.*'learning_rate'"):
        apply_overrides(base, ["transformer.lerning_rate=1"], COLOUR_32)
    with pytest.raises(ConfigError, match=r"unknown key 'nonsense.x'.*valid keys are \[.*'sampler'"):
        apply_overrides(base, ["nonsense.x=1"], COLOUR_32)
    with pytest.raises(ConfigError, match="steps must be int"):
        apply_overrides(base, ["tokenizer.steps=many"], COLOUR_32)
    with pytest.raises(ConfigError, match="follows from tokenizer.model.codebook_size"):
        apply_overrides(base, ["transformer.model.codebook_size=64"], COLOUR_32)
    with pytest.raises(ConfigError, match="--image-size"):
        apply_overrides(base, ["tokenizer.model.image_size=64"], COLOUR_32)
    with pytest.raises(ConfigError, match="needs --init"):
        apply_overrides(base, ["tokenizer.train=decoder"], COLOUR_32)
    with pytest.raises(ConfigError, match="train must be"):
        apply_overrides(base, ["tokenizer.train=most"], COLOUR_32)
    with pytest.raises(ConfigError, match="guidance must be"):
        apply_overrides(base, ["sampler.guidance=-1"], COLOUR_32)
    no_guidance, _ = apply_overrides(base, ["transformer.class_dropout=0"], COLOUR_32)
    assert not no_guidance.transformer.model.null_class


def test_setting_steps_rescales_the_schedule_unless_set_too():
    base = derive_recipe(COLOUR_32, precision="fp32")
    recipe, _ = apply_overrides(base, ["tokenizer.steps=100", "transformer.steps=40"], COLOUR_32)
    tokenizer = recipe.tokenizer
    assert tokenizer.steps == 100 and tokenizer.discriminator_start == 75 and tokenizer.warmup_steps <= 10
    assert recipe.transformer.warmup_steps <= 4
    kept, _ = apply_overrides(base, ["tokenizer.steps=100", "tokenizer.discriminator_start=10"], COLOUR_32)
    assert kept.tokenizer.discriminator_start == 10


def test_a_budget_becomes_fixed_steps_that_fit_it():
    recipe = derive_recipe(COLOUR_32, precision="fp32")
    times = StepTimes(tokenizer=0.1, tokenizer_with_discriminator=0.2, transformer=0.05, encode_image=0.001,
                      forward_sequence=0.001)
    fitted = fit_budget(recipe, COLOUR_32, times, 600.0, fixed=set())
    estimates = estimate_seconds(fitted, COLOUR_32, times)
    assert sum(estimates.values()) == pytest.approx(600.0, rel=0.02)
    assert estimates["tokenizer"] == pytest.approx(TOKENIZER_SHARE * (600 - estimates["tokens"] - estimates["finish"]), rel=0.02)
    assert fitted.tokenizer.discriminator_start == round(fitted.tokenizer.steps * 3 / 4)
    # A step count the user set stays, and its time comes off first.
    fixed = fit_budget(recipe.replace(tokenizer=recipe.tokenizer.replace(steps=1000)), COLOUR_32, times, 600.0,
                       fixed={"tokenizer.steps"})
    assert fixed.tokenizer.steps == 1000 and fixed.tokenizer.discriminator_start == recipe.tokenizer.discriminator_start
    assert sum(estimate_seconds(fixed, COLOUR_32, times).values()) == pytest.approx(600.0, rel=0.02)
    with pytest.raises(ValueError, match=r"budget is too short.*at least --budget"):
        fit_budget(recipe, COLOUR_32, times, MIN_STAGE_STEPS * 0.1, fixed=set())


def test_intervals_follow_the_step_time():
    recipe = derive_recipe(COLOUR_32, precision="fp32")
    times = StepTimes(tokenizer=0.5, tokenizer_with_discriminator=0.5, transformer=2.0)
    fitted = fit_intervals(recipe, times, {"transformer.log_every"})
    assert fitted.tokenizer.checkpoint_every == 240 and fitted.tokenizer.log_every == 10
    assert fitted.transformer.checkpoint_every == 60 and fitted.transformer.log_every == recipe.transformer.log_every


def test_recipe_round_trips_through_json():
    recipe = derive_recipe(COLOUR_32, precision="bf16")
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_refit_uses_the_time_left_at_the_pace_measured_so_far():
    recipe = derive_recipe(COLOUR_32, precision="fp32")
    times = StepTimes(tokenizer=0.1, tokenizer_with_discriminator=0.1, transformer=0.05, encode_image=0.001,
                      forward_sequence=0.001)
    planned = fit_budget(recipe, COLOUR_32, times, 600.0, fixed=set())
    estimates = estimate_seconds(planned, COLOUR_32, times)
    # The tokenizer ran 1.5 times as slowly as measured: the transformer gets the time left at that pace.
    done = {"tokenizer": 1.5 * estimates["tokenizer"], "tokens": estimates["tokens"]}
    left = 600.0 - sum(done.values())
    refitted = refit_budget(planned, COLOUR_32, times, left, done=done, fixed=set())
    assert refitted.tokenizer == planned.tokenizer
    slow = StepTimes(**{key: 1.5 * value for key, value in times.to_dict().items()})
    assert refitted.transformer.steps < planned.transformer.steps
    assert estimate_seconds(refitted, COLOUR_32, slow)["transformer"] + 1.5 * estimates["finish"] == pytest.approx(
        left, rel=0.02)
    # At the measured pace nothing changes; with no time left it says so.
    same = refit_budget(planned, COLOUR_32, times, 600.0 - estimates["tokenizer"] - estimates["tokens"],
                        done={"tokenizer": estimates["tokenizer"], "tokens": estimates["tokens"]}, fixed=set())
    assert abs(same.transformer.steps - planned.transformer.steps) <= 1
    with pytest.raises(ValueError, match="too short"):
        refit_budget(planned, COLOUR_32, times, 1.0, done=done, fixed=set())
