"""The recipe of a ``maskgit train`` run: every setting of every stage, chosen from the data and the
machine, overridable key by key, and saved as ``RUN/recipe.json``.

A ``Recipe`` is a typed config (``maskgit.config_base.Config``) with one section per stage:

- ``tokenizer``: the VQGAN's training config (``TokenizerTrainConfig``) plus ``train``: ``all``
  (from scratch), ``decoder`` (fine-tune the decoder of the ``--init`` model's tokenizer; its
  encoder and codebook stay frozen, so the token ids stay the same) or ``none`` (keep it);
  ``then_decoder`` adds a decoder fine-tuning (the ``decoder`` section) after training all of it;
- ``decoder``: the decoder fine-tuning's config (used by ``train=decoder`` and ``then_decoder``);
- ``tokens``: token extraction (``flips``: also encode each image's mirror image);
- ``transformer``: the transformer's training config (``TransformerTrainConfig``);
- ``sampler``: the default sampler recorded in the exported pipeline;
- and ``seed``, ``eval_images`` (held-out images scored at the end), ``grid_per_class`` and
  ``threads`` (CPU threads per process; 0 lets the run measure 1 against all and take the faster:
  on a CPU that other work shares, one thread can be several times faster than two that wait on
  each other).

``derive_recipe`` chooses the values (the rules are in its docstring); ``apply_overrides`` applies
``--set section.key=value`` (``tokenizer.model.filters=64``) with the config rules: an unknown key
is an error listing the valid ones, a value of the wrong type is an error, and keys that follow
from others (the transformer's codebook size follows the tokenizer's) say what to set instead.
``fit_budget`` turns a wall-time budget into fixed step counts, from measured step times, so that
a resumed run trains exactly the steps the first one planned.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from maskgit.config_base import Config, ConfigError, parse_override
from maskgit.configs import TokenizerConfig, TransformerConfig
from maskgit.training.config import (
    TOKENIZER_TRAIN_PRESETS,
    TRANSFORMER_TRAIN_PRESETS,
    TokenizerTrainConfig,
    TransformerTrainConfig,
)

__all__ = [
    "TokenizerStage",
    "TokensStage",
    "SamplerSettings",
    "Recipe",
    "DataFacts",
    "StepTimes",
    "parse_budget",
    "format_duration",
    "derive_recipe",
    "apply_overrides",
    "fit_budget",
    "fit_intervals",
    "refit_budget",
    "estimate_seconds",
    "MAX_BUDGET_SECONDS",
]

#: The longest ``--budget`` (30 days): a bound on what one mistyped number can ask for.
MAX_BUDGET_SECONDS = 30 * 24 * 3600
# The fewest optimizer steps a budget may leave a stage: fewer would train nothing useful.
MIN_STAGE_STEPS = 20
# What share of a budget's training time each stage gets (the rest of the budget pays for the
# calibration, the token extraction and the final evaluation, estimated from measured times).
# The tokenizer gets half: how sharp the shapes come out is decided there (the transformer of the
# benchmark's three classes learns them in fewer steps than the tokenizer needs).
TOKENIZER_SHARE, DECODER_SHARE = 0.5, 0.1
# About how often a stage saves a checkpoint, and logs (seconds of training).
CHECKPOINT_SECONDS, LOG_SECONDS = 120.0, 5.0
_BUDGET_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smh])")
_UNITS = {"s": 1, "m": 60, "h": 3600}


# -- the sections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerStage(TokenizerTrainConfig):
    """The tokenizer section: a ``TokenizerTrainConfig`` plus what to train (``train``: ``all``,
    ``decoder`` or ``none``) and whether the decoder is fine-tuned after training all of it
    (``then_decoder``, with the ``decoder`` section's settings)."""

    train: str = "all"
    then_decoder: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_choice("train", ("all", "decoder", "none"))

    def trainer_config(self) -> TokenizerTrainConfig:
        """The plain training config (what the trainer and its checkpoints hold)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(TokenizerTrainConfig)}
        return TokenizerTrainConfig(**values)


@dataclass(frozen=True)
class TokensStage(Config):
    """Token extraction: ``flips`` also encodes each training image's mirror image (twice the
    sequences; leave it off for data with one orientation, such as digits); ``batch_size`` images
    are encoded at a time."""

    tag_key: ClassVar[str] = "stage"
    stage: ClassVar[str] = "tokens"

    flips: bool = True
    batch_size: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(1, "batch_size")


@dataclass(frozen=True)
class SamplerSettings(Config):
    """The default sampler the exported pipeline records (``model_index.json``): one of the
    samplers of ``maskgit.sampling`` with its steps, mask schedule and guidance; the choice
    temperature applies to the ``confidence`` sampler only."""

    tag_key: ClassVar[str] = "part"
    part: ClassVar[str] = "sampler"

    name: str = "confidence"
    num_steps: int = 16
    schedule: str = "cosine"
    guidance: float = 2.0
    guidance_schedule: str = "linear"
    choice_temperature: float = 4.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.to_sampler()  # every value checked by the sampler itself

    def to_sampler(self) -> Any:
        """The ``maskgit.sampling.Sampler`` these settings describe."""
        from maskgit.sampling import sampler_from_dict

        data: dict[str, Any] = {"sampler": self.name, "num_steps": self.num_steps, "schedule": self.schedule,
                                "guidance": self.guidance, "guidance_schedule": self.guidance_schedule}
        if self.name == "confidence":
            data["choice_temperature"] = self.choice_temperature
        try:
            return sampler_from_dict(data)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"sampler: {error}") from None


@dataclass(frozen=True)
class Recipe(Config):
    """Everything a ``maskgit train`` run trains with (see the module docstring)."""

    tag_key: ClassVar[str] = "format"
    format: ClassVar[str] = "maskgit-train-recipe"

    seed: int = 0
    eval_images: int = 500
    grid_per_class: int = 8
    threads: int = 0
    tokenizer: TokenizerStage = field(default_factory=TokenizerStage)
    decoder: TokenizerTrainConfig = field(
        default_factory=lambda: dataclasses.replace(TOKENIZER_TRAIN_PRESETS["fashion-mnist-decoder"], init_from="tokenizer")
    )
    tokens: TokensStage = field(default_factory=TokensStage)
    transformer: TransformerTrainConfig = field(default_factory=TransformerTrainConfig)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(1, "eval_images", "grid_per_class")
        self._check_at_least(0, "threads")
        if self.grid_per_class > 64:
            raise ConfigError(f"Recipe: grid_per_class must be <= 64, got {self.grid_per_class}")

    @classmethod
    def describe(cls) -> str:
        return "a maskgit train recipe"

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages this recipe runs, in order (``init`` prepares an ``--init`` model)."""
        order: list[str] = []
        if self.transformer.init_from is not None:
            order.append("init")
        if self.tokenizer.train == "all":
            order.append("tokenizer")
        if self.tokenizer.train == "decoder" or (self.tokenizer.train == "all" and self.tokenizer.then_decoder):
            order.append("decoder")
        return (*order, "tokens", "transformer")


# -- what the recipe is chosen from ---------------------------------------------------------------


@dataclass(frozen=True)
class DataFacts:
    """What the recipe needs to know of the data: the training image side, colour or grey, how
    many images train and are held out, the class names, and the built-in dataset's name (or
    None for a folder)."""

    image_size: int
    colour: bool
    train_images: int
    held_out_images: int
    class_names: tuple[str, ...]
    builtin: str | None = None


@dataclass(frozen=True)
class StepTimes:
    """Measured seconds: a tokenizer step without and with its discriminator, a decoder
    fine-tuning step, a transformer step, encoding one image, and one transformer forward pass
    of one sequence (for the sample grid). Zero where a stage does not run."""

    tokenizer: float = 0.0
    tokenizer_with_discriminator: float = 0.0
    decoder: float = 0.0
    transformer: float = 0.0
    encode_image: float = 0.0
    forward_sequence: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def parse_budget(text: str) -> float:
    """``"30m"``, ``"90s"``, ``"2h"``, ``"1h30m"`` or ``"1.5h"`` → seconds. Raises ValueError
    for anything else, for zero, or for more than 30 days."""
    spec = str(text).strip().lower().replace(" ", "")
    parts = _BUDGET_PART.findall(spec)
    if not spec or "".join(number + unit for number, unit in parts) != spec:
        raise ValueError(f"--budget {text!r}: give a duration such as 90s, 30m, 2h or 1h30m")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0 or seconds > MAX_BUDGET_SECONDS:
        raise ValueError(f"--budget {text!r}: must be more than 0 and at most 30 days")
    return seconds


def format_duration(seconds: float) -> str:
    """``"1 h 02 min"``, ``"4 min 10 s"`` or ``"12 s"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


# -- the rules ------------------------------------------------------------------------------------


def _tokenizer_model(image_size: int, colour: bool, train_images: int) -> TokenizerConfig:
    # 8x8 tokens up to 32 px, 16x16 above: the transformer's cost grows with the square of the
    # tokens, and 8x8 carry a 32 px image's detail (the shipped Fashion-MNIST model).
    latent = 8 if image_size <= 32 else 16
    levels = int(math.log2(image_size // latent)) + 1
    multipliers = {1: (1,), 2: (1, 2), 3: (1, 2, 2), 4: (1, 1, 2, 2), 5: (1, 1, 2, 2, 4)}.get(levels, (1, 1, 2, 2, 4, 4))
    filters = 32 if image_size <= 32 else 64 if image_size <= 128 else 128
    # Colour needs more codes than grey; more (and larger) images use more of them.
    codebook = 512 if colour else 256
    if train_images >= 20_000 or image_size >= 128:
        codebook *= 2
    return TokenizerConfig(
        filters=filters, channel_multipliers=multipliers, num_res_blocks=1 if image_size <= 64 else 2,
        embedding_dim=32 if image_size <= 64 else 64 if image_size <= 128 else 256,
        codebook_size=min(codebook, 1024), norm_groups=8 if filters <= 64 else 32, image_size=image_size,
    )


def _transformer_model(train_sequences: int, image_size: int) -> TransformerConfig:
    if train_sequences < 10_000 and image_size <= 64:
        hidden, layers, dropout = 128, 4, 0.1  # small data: small, regularised
    elif train_sequences < 200_000 and image_size <= 64:
        hidden, layers, dropout = 256, 6, 0.0
    else:
        hidden, layers, dropout = 512, 8, 0.0
    return TransformerConfig(hidden_size=hidden, num_layers=layers, num_heads=hidden // 32, intermediate_size=4 * hidden,
                             latent_size=8, dropout=dropout)


def _batch(preferred: int, available: int, world_size: int) -> int:
    """The largest batch up to ``preferred`` that ``available`` samples fill and the processes split."""
    batch = min(preferred, available)
    return max(world_size, batch - batch % world_size)


def _ema_decay(steps: int) -> float:
    # Average over about the last tenth of the run: the official 0.999 would average a
    # 1000-step run over its whole length, early weights included.
    return min(0.999, max(0.9, 1.0 - 10.0 / max(steps, 1)))


def _default_steps(samples: int, batch: int, epochs: int, low: int, high: int) -> int:
    return int(min(high, max(low, round(epochs * samples / batch))))


def derive_recipe(data: DataFacts, *, precision: str, world_size: int = 1, init: Any = None) -> Recipe:
    """The recipe for ``data`` on a machine computing in ``precision`` (``"bf16"`` or ``"fp32"``)
    with ``world_size`` processes; ``init`` is the ``--init`` model (a ``MaskGIT``) or None.

    From scratch: 8x8 tokens up to 32 px and 16x16 above; 512 codes for colour and 256 for grey,
    twice as many from 20,000 images or 128 px on (at most 1024); a VQGAN 32 wide up to 32 px,
    64 up to 128 px, 128 above; a transformer 128 wide with 4 layers and dropout for fewer than
    10,000 training sequences, 256 x 6 below 200,000, else 512 x 8; class dropout 0.1 (so that
    guidance works); mirrored tokens for folders, none for the built-in sets. Steps follow the
    number of images (``fit_budget`` replaces them for a ``--budget``). ``fashion-mnist`` gets
    the shipped model's recipe. With ``init``: its tokenizer is kept (``train=none``), its
    transformer is fine-tuned with a new class table (lower learning rate, short warmup).
    """
    if data.builtin == "fashion-mnist" and init is None:
        return _fashion_mnist_recipe(data, precision, world_size)
    flips = data.builtin is None
    sequences = data.train_images * (2 if flips else 1)
    if init is None:
        tokenizer_model = _tokenizer_model(data.image_size, data.colour, data.train_images)
        transformer_model = _transformer_model(sequences, data.image_size)
    else:
        tokenizer_model = init.tokenizer.config
        transformer_model = init.transformer.config
    # Few images: smaller batches, more updates in the same time (twice the steps of half the batch
    # reconstructed the benchmark's shapes better).
    tokenizer_batch = _batch(16 if data.image_size > 64 or data.train_images < 5000 else 32, data.train_images, world_size)
    tokenizer_steps = _default_steps(data.train_images, tokenizer_batch, 40, 1000, 20_000)
    transformer_batch = _batch({128: 64, 256: 128}.get(transformer_model.hidden_size, 32), sequences, world_size)
    transformer_steps = _default_steps(sequences, transformer_batch, 40, 1000, 100_000)
    size = tokenizer_model.image_size
    discriminator = {"discriminator_channel_base": 16 * size, "discriminator_max_channels": 32 if size <= 64 else 128}
    tokenizer = TokenizerStage(
        # The mean absolute error: on the benchmark's shapes it reconstructed sharper edges, purer
        # colours and a higher held-out PSNR than the squared error in as many steps.
        model=tokenizer_model, reconstruction_loss="l1", steps=tokenizer_steps, batch_size=tokenizer_batch,
        learning_rate=1e-3, betas=(0.9, 0.99),
        warmup_steps=min(200, tokenizer_steps // 10), lr_decay="cosine", min_lr_ratio=0.1, entropy_weight=0.02,
        # A weak adversarial term and a weak R1 for the last quarter: at the official R1 weight the
        # small discriminator of the shipped model never learned (MODEL_CARD.md). Not for small
        # data: there the run is short, and a step with the discriminator costs two to three
        # without, better spent on reconstruction.
        adversarial_weight=0.01 if data.train_images >= 5000 else 0.0, r1_weight=0.1, r1_every=4, discriminator_start=tokenizer_steps * 3 // 4,
        discriminator_learning_rate=1e-4, **discriminator, perceptual_weight=0.0,
        dead_code_reinit_every=max(50, tokenizer_steps // 20), ema_decay=_ema_decay(tokenizer_steps),
        precision=precision, log_every=50, checkpoint_every=1000, sample_every=0, eval_every=0,
        train="all" if init is None else "none",
    )
    decoder_steps = 1000
    decoder = TokenizerTrainConfig(
        model=tokenizer_model, init_from="tokenizer", decoder_only=True, steps=decoder_steps, batch_size=tokenizer_batch,
        learning_rate=1e-4, betas=(0.9, 0.99), warmup_steps=50, lr_decay="cosine", min_lr_ratio=0.1,
        adversarial_weight=0.01, r1_weight=0.1, r1_every=4, discriminator_start=0, discriminator_learning_rate=3e-4,
        **discriminator, perceptual_weight=0.0, ema_decay=_ema_decay(decoder_steps), precision=precision,
        log_every=50, checkpoint_every=500, sample_every=0, eval_every=0,
    )
    fine_tune = init is not None
    transformer = TransformerTrainConfig(
        model=transformer_model, class_dropout=0.1, steps=transformer_steps, batch_size=transformer_batch,
        learning_rate=1e-4 if fine_tune else 1e-3 if transformer_model.hidden_size <= 256 else 4e-4,
        warmup_steps=min(100 if fine_tune else 200, transformer_steps // 10), lr_decay="cosine", min_lr_ratio=0.1,
        ema_decay=_ema_decay(transformer_steps), precision=precision, log_every=25, checkpoint_every=500,
        sample_every=0, eval_every=0, init_from="init/transformer" if fine_tune else None,
    )
    recipe = Recipe(tokenizer=tokenizer, decoder=decoder, tokens=TokensStage(flips=flips), transformer=transformer)
    return _consistent(recipe, data)


def _fashion_mnist_recipe(data: DataFacts, precision: str, world_size: int) -> Recipe:
    """The shipped Fashion-MNIST model's recipe (MODEL_CARD.md) in one run: the ``fashion-mnist``
    tokenizer preset, its decoder fine-tuned with the mean absolute error (the second round's
    settings, for both rounds' steps), tokens without mirrors, and the ``fashion-mnist``
    transformer preset for both rounds' steps on those tokens."""
    tokenizer_preset = TOKENIZER_TRAIN_PRESETS["fashion-mnist"]
    tokenizer = TokenizerStage(
        **{f.name: getattr(tokenizer_preset, f.name) for f in dataclasses.fields(TokenizerTrainConfig)},
        then_decoder=True,
    )
    decoder = dataclasses.replace(
        TOKENIZER_TRAIN_PRESETS["fashion-mnist-decoder"], init_from="tokenizer", reconstruction_loss="l1",
        reconstruction_weight=0.1, steps=1200 + 3000, checkpoint_every=500,
    )
    transformer_preset = TRANSFORMER_TRAIN_PRESETS["fashion-mnist"]
    transformer = dataclasses.replace(transformer_preset, steps=2300 + 400)
    sections = {"tokenizer": tokenizer, "decoder": decoder, "transformer": transformer}
    for name, section in sections.items():
        batch = _batch(section.batch_size, data.train_images, world_size)
        sections[name] = section.replace(precision=precision, batch_size=batch, data=None, eval_data=None, sample_every=0,
                                         eval_every=0, eval_images=2000)
    recipe = Recipe(eval_images=2000, grid_per_class=8, tokens=TokensStage(flips=False), **sections)
    return _consistent(recipe, data)


# Keys that follow from others; --set names what to set instead.
_DERIVED = {
    "tokenizer.model.image_size": "--image-size",
    "decoder.model": "tokenizer.model.<key> (the decoder fine-tunes that tokenizer)",
    "decoder.init_from": "--init (or the run's own tokenizer)",
    "transformer.model.codebook_size": "tokenizer.model.codebook_size",
    "transformer.model.latent_size": "the tokenizer (image size / its downsampling)",
    "transformer.model.num_classes": "the data's classes",
    "transformer.model.null_class": "transformer.class_dropout (> 0 adds the null class)",
    "transformer.init_from": "--init",
    "transformer.tokenizer": "the run's tokenizer",
    "tokenizer.init_from": "--init",
    "tokenizer.data": "DATA",
    "tokenizer.eval_data": "DATA",
    "transformer.data": "DATA",
    "transformer.eval_data": "DATA",
    "decoder.data": "DATA",
    "decoder.eval_data": "DATA",
}


def _consistent(recipe: Recipe, data: DataFacts) -> Recipe:
    """Fill in the keys that follow from others (``_DERIVED``)."""
    tokenizer_model = recipe.tokenizer.model.replace(image_size=data.image_size)
    transformer = recipe.transformer
    model = transformer.model.replace(
        codebook_size=tokenizer_model.codebook_size, latent_size=tokenizer_model.latent_size,
        num_classes=len(data.class_names), null_class=transformer.class_dropout > 0,
    )
    return recipe.replace(
        tokenizer=recipe.tokenizer.replace(model=tokenizer_model, data=None, eval_data=None),
        decoder=recipe.decoder.replace(model=tokenizer_model, data=None, eval_data=None),
        transformer=transformer.replace(model=model, tokenizer=None, data=None, eval_data=None),
    )


def apply_overrides(recipe: Recipe, overrides: list[str], data: DataFacts, *, init: bool = False) -> tuple[Recipe, set[str]]:
    """``recipe`` with ``--set KEY=VALUE`` overrides applied (``section.key``, or
    ``section.model.key`` for the models' configs); returns it and the keys set.

    Raises ConfigError for an unknown key (listing the valid ones), a bad value, a key that
    follows from others, or, with ``init``, a model key that the ``--init`` model fixes.
    """
    before = recipe
    changes: dict[str, Any] = {}
    for text in overrides:
        key, value = parse_override(text)
        for derived, instead in _DERIVED.items():
            if key == derived or key.startswith(derived + "."):
                raise ConfigError(f"--set {key}: follows from {instead}; set that instead")
        if init and (key.startswith("tokenizer.model.") or key.startswith("transformer.model.")) and key != (
            "transformer.model.dropout"
        ):
            raise ConfigError(f"--set {key}: the --init model fixes its architecture")
        changes[key] = value
    for key, value in changes.items():
        head, dot, tail = key.partition(".")
        section = getattr(recipe, head, None) if head in Recipe.valid_keys() else None
        if dot and isinstance(section, Config):
            recipe = recipe.replace(**{head: section.updated({tail: value}, source=f"--set {key}")})
        else:
            recipe = recipe.updated({key: value}, source="--set")
    for stage in ("tokenizer", "decoder", "transformer"):
        config = getattr(recipe, stage)
        if f"{stage}.steps" in changes and config.steps != getattr(before, stage).steps:
            recipe = recipe.replace(**{stage: _rescaled(config, getattr(before, stage).steps, set(changes), stage)})
    if init and recipe.tokenizer.train == "all":
        raise ConfigError("--set tokenizer.train=all: --init keeps the tokenizer's token ids; use decoder or none")
    if not init and recipe.tokenizer.train != "all":
        raise ConfigError(f"--set tokenizer.train={recipe.tokenizer.train}: needs --init (a tokenizer to keep)")
    return _consistent(recipe, data), set(changes)


# -- budgets and estimates ------------------------------------------------------------------------


def _stage_step_seconds(recipe: Recipe, stage: str, times: StepTimes) -> float:
    """Average seconds per step of a training stage (the tokenizer's discriminator joins late)."""
    if stage == "tokenizer":
        config = recipe.tokenizer
        with_d = max(0, config.steps - config.discriminator_start) / config.steps if config.adversarial_weight > 0 else 0
        return (1 - with_d) * times.tokenizer + with_d * times.tokenizer_with_discriminator
    return times.decoder if stage == "decoder" else times.transformer


def overhead_seconds(recipe: Recipe, data: DataFacts, times: StepTimes) -> dict[str, float]:
    """Estimated seconds of what is not a training step: token extraction (training and
    held-out images) and the end of the run (evaluation and the sample grid)."""
    encode = times.encode_image * (data.train_images * (2 if recipe.tokens.flips else 1) + data.held_out_images)
    held_out = min(recipe.eval_images, data.held_out_images)
    grid = len(data.class_names[:100]) * recipe.grid_per_class
    passes = recipe.sampler.num_steps * (2 if recipe.sampler.guidance > 0 else 1)
    finish = held_out * (2 * times.encode_image + times.forward_sequence) + grid * passes * times.forward_sequence
    # The stages' own evaluations at their ends: reconstructions of the held-out images.
    finish += sum(2 * times.encode_image * held_out for stage in recipe.stages if stage in ("tokenizer", "decoder"))
    return {"tokens": encode, "finish": finish}


def estimate_seconds(recipe: Recipe, data: DataFacts, times: StepTimes) -> dict[str, float]:
    """Estimated wall seconds of every stage of ``recipe`` (and ``finish``)."""
    estimates = {}
    extra = overhead_seconds(recipe, data, times)
    for stage in recipe.stages:
        if stage in ("tokenizer", "decoder", "transformer"):
            config = getattr(recipe, stage)
            estimates[stage] = config.steps * _stage_step_seconds(recipe, stage, times)
        elif stage == "tokens":
            estimates[stage] = extra["tokens"]
        else:
            estimates[stage] = 0.0
    estimates["finish"] = extra["finish"]
    return estimates


def fit_budget(recipe: Recipe, data: DataFacts, times: StepTimes, seconds: float, *, fixed: set[str]) -> Recipe:
    """The recipe with the step counts that fit ``seconds`` of wall time (what is left of the
    budget after the survey and the calibration): the time for extraction and the end of the
    run is set aside, and the rest is split between the training stages (tokenizer 50 %, decoder
    fine-tuning 10 %, the transformer the rest, shares of the stages that run). Stages whose
    ``steps`` the user set (in ``fixed``) keep them and their time is taken off first. The
    schedule keys that scale with the steps (warmup, discriminator start, dead-code checks, EMA,
    checkpoint and log intervals) are rescaled. Raises ValueError when a stage would get fewer
    than ``MIN_STAGE_STEPS`` steps.
    """
    extra = overhead_seconds(recipe, data, times)
    left = seconds - extra["tokens"] - extra["finish"]
    training = [stage for stage in recipe.stages if stage in ("tokenizer", "decoder", "transformer")]
    shares = {"tokenizer": TOKENIZER_SHARE, "decoder": DECODER_SHARE}
    for stage in training:
        if f"{stage}.steps" in fixed:
            left -= getattr(recipe, stage).steps * _stage_step_seconds(recipe, stage, times)
    free = [stage for stage in training if f"{stage}.steps" not in fixed]
    weights = {stage: shares.get(stage, 1.0 - sum(shares[s] for s in free if s in shares)) for stage in free}
    total_weight = sum(weights.values()) or 1.0
    for stage in free:
        config = getattr(recipe, stage)
        # The tokenizer's step time depends on where its discriminator starts, which scales with the steps.
        per_step = _stage_step_seconds(recipe, stage, times)
        steps = int(max(0.0, left) * weights[stage] / total_weight / max(per_step, 1e-9))
        if steps < MIN_STAGE_STEPS:
            needed = MIN_STAGE_STEPS * per_step * total_weight / weights[stage] + (seconds - left)
            raise ValueError(
                f"the budget is too short for this data on this machine: the {stage} would get {steps} steps "
                f"({per_step:.2g} s each); give at least --budget {math.ceil(needed / 60)}m"
            )
        recipe = recipe.replace(**{stage: _rescaled(config.replace(steps=steps), config.steps, fixed, stage)})
    return recipe


def refit_budget(recipe: Recipe, data: DataFacts, times: StepTimes, seconds_left: float, *, done: dict[str, float],
                 fixed: set[str]) -> Recipe:
    """The recipe with the step counts of the training stages not started yet fitted to what is
    left of a budget (``seconds_left``), at the pace the finished stages (``done``: their wall
    seconds) actually ran, relative to the measured step times: a machine that other work slowed
    down (or stopped slowing down) after the calibration does not make the run overshoot (or
    leave time unused). The finished stages and the keys in ``fixed`` keep their values. Raises
    ValueError, as ``fit_budget``, when too little time is left."""
    planned = estimate_seconds(recipe, data, times)
    trained = [stage for stage in done if stage in ("tokenizer", "decoder", "transformer")]
    expected = sum(planned.get(stage, 0.0) for stage in trained)
    speed = sum(done[stage] for stage in trained) / expected if trained and expected > 0 else 1.0
    scaled = StepTimes(**{key: value * speed for key, value in times.to_dict().items()})
    scaled_planned = estimate_seconds(recipe, data, scaled)
    # fit_budget takes off the extraction and the fixed stages' time: give it back for those done.
    equivalent = seconds_left + sum(scaled_planned.get(stage, 0.0) for stage in done if stage != "finish")
    return fit_budget(recipe, data, scaled, equivalent, fixed=fixed | {f"{stage}.steps" for stage in done})


def _rescaled(config: Any, old_steps: int, fixed: set[str], stage: str) -> Any:
    """``config`` (with its new ``steps``) with the keys that scale with the steps rescaled from
    ``old_steps``: warmup, EMA, the discriminator's start and the dead-code checks (those not in
    ``fixed``, the keys the user set)."""
    steps = config.steps
    scaled: dict[str, Any] = {
        "warmup_steps": min(round(config.warmup_steps * steps / old_steps), steps // 10),
        "ema_decay": _ema_decay(steps),
    }
    if isinstance(config, TokenizerTrainConfig):
        scaled["discriminator_start"] = min(steps, round(config.discriminator_start * steps / old_steps))
        if config.dead_code_reinit_every:
            scaled["dead_code_reinit_every"] = max(10, round(config.dead_code_reinit_every * steps / old_steps))
    return config.replace(**{key: value for key, value in scaled.items() if f"{stage}.{key}" not in fixed})


def fit_intervals(recipe: Recipe, times: StepTimes, fixed: set[str]) -> Recipe:
    """Checkpoints about every 2 minutes and log lines about every 5 seconds of each training
    stage, from its measured step time (intervals the user set, in ``fixed``, are kept)."""
    for stage in ("tokenizer", "decoder", "transformer"):
        config, per_step = getattr(recipe, stage), _stage_step_seconds(recipe, stage, times)
        if per_step <= 0:
            continue
        intervals = {"checkpoint_every": max(1, min(config.steps, round(CHECKPOINT_SECONDS / per_step))),
                     "log_every": max(1, min(config.steps, round(LOG_SECONDS / per_step)))}
        recipe = recipe.replace(**{stage: config.replace(
            **{key: value for key, value in intervals.items() if f"{stage}.{key}" not in fixed})})
    return recipe
