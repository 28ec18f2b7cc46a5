"""Training configs for both stages: the model config plus optimisation, losses, data and logging.

A config comes from a named preset, a YAML/JSON file, or both (a file may name a ``preset`` to start
from), and then from ``key=value`` overrides with dotted keys (``model.filters=64``). Every key is
checked: an unknown key is an error that names it and lists the valid ones, and every value is
checked against the field's type. The final config is stored inside every checkpoint, so a run can
be resumed from the checkpoint alone.

Defaults are the official recipes (spec §1.6 for the tokenizer, §2.3 for the transformer); the
presets ``tiny`` (seconds on a CPU, for tests) and ``fashion-mnist`` (a 2-core CPU in 30 minutes)
change what a small problem needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from maskgit.config_base import Config, ConfigError, differences, parse_override, read_config_file
from maskgit.configs import (
    TokenizerConfig,
    TransformerConfig,
    tokenizer_preset,
    transformer_preset,
)

__all__ = [
    "TrainConfig",
    "TokenizerTrainConfig",
    "TransformerTrainConfig",
    "TOKENIZER_TRAIN_PRESETS",
    "TRANSFORMER_TRAIN_PRESETS",
    "load_train_config",
    "parse_override",
    "ConfigError",
]

@dataclass(frozen=True)
class TrainConfig(Config):
    """What both stages share: data, batch, schedule, EMA, precision, logging and checkpoints.

    ``batch_size`` is the *global* batch of one optimizer step, split over the processes and the
    ``grad_accum_steps`` micro-steps; it must divide evenly. ``data``/``eval_data`` are source
    strings understood by ``maskgit.data.build_dataset`` (``"fashion-mnist"``, ``"mnist:/dir"``, an
    image folder) or, for the transformer, a token file.

    ``max_batch_pixels`` bounds what one micro-step allocates, checked before anything is built:
    ``batch_size / grad_accum_steps`` times the pixels of an image (the tokenizer) or times 64 per
    token of a sequence (the transformer). The default, 2**28, allows e.g. 256 images of 1024x1024;
    ``--set max_batch_pixels=N`` raises it.

    ``init_from`` is a saved model folder (a tokenizer for the tokenizer stage, a transformer for
    the transformer stage) whose weights start the run instead of a random initialisation: a
    fine-tuning. Its config must equal the run's model config. Optimizer, EMA and schedule start
    fresh (``--resume`` is what continues a run exactly).
    """

    tag_key: ClassVar[str] = "stage"
    stage: ClassVar[str]

    data: str | None = None
    eval_data: str | None = None
    eval_split: str = "test"
    steps: int = 1_000_000
    batch_size: int = 256
    grad_accum_steps: int = 1
    num_workers: int = 0
    seed: int = 0
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    lr_decay: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    ema_decay: float = 0.999
    precision: str = "auto"
    compile: bool = False
    log_every: int = 50
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2
    sample_every: int = 5000
    eval_every: int = 0
    max_batch_pixels: int = 1 << 28
    eval_images: int = 2000
    tensorboard: bool = False
    init_from: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        self._check_at_least(1, "steps", "batch_size", "grad_accum_steps", "log_every", "keep_checkpoints", "eval_images")
        self._check_at_least(
            0, "num_workers", "warmup_steps", "checkpoint_every", "sample_every", "eval_every", note=" (0 turns it off)"
        )
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(
                f"{name}: batch_size {self.batch_size} is not divisible by grad_accum_steps {self.grad_accum_steps}"
            )
        self._check_at_least(1, "max_batch_pixels")
        if self.learning_rate <= 0:
            raise ConfigError(f"{name}: learning_rate must be > 0, got {self.learning_rate}")
        self._check_choice("lr_decay", ("constant", "cosine", "linear"))
        self._check_interval("min_lr_ratio", 0.0, 1.0, include_high=True)
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"{name}: grad_clip must be > 0 or null (off), got {self.grad_clip}")
        self._check_interval("ema_decay", 0.0, 1.0, include_high=False)
        if self.precision == "int8":
            raise ConfigError(f"{name}: precision int8 is an inference precision (generation with --precision int8); "
                              "training computes in fp32 or bf16")
        self._check_choice("precision", ("auto", "fp32", "bf16"))

    @classmethod
    def describe(cls) -> str:
        return f"a {cls.stage} training config"

    @classmethod
    def preset(cls, name: str) -> Any:
        """The named training preset of this stage (``tiny``, ``fashion-mnist``, ``imagenet256``)."""
        return _preset(cls.stage, name)


    def _check_batch_pixels(self, per_sample: int, what: str) -> None:
        """ConfigError when one micro-step's ``per_sample`` x micro-batch exceeds ``max_batch_pixels``."""
        micro = self.batch_size // self.grad_accum_steps
        if micro * per_sample > self.max_batch_pixels:
            raise ConfigError(
                f"{type(self).__name__}: a micro-batch of {micro} {what} is {micro * per_sample:,} pixels, over "
                f"max_batch_pixels {self.max_batch_pixels:,}; lower batch_size, raise grad_accum_steps, or "
                f"--set max_batch_pixels=N if you have the memory"
            )


@dataclass(frozen=True)
class TokenizerTrainConfig(TrainConfig):
    """VQGAN training (spec §1.4, §1.6): L2 (or L1) reconstruction + commitment + codebook entropy +
    optional perceptual loss + a StyleGAN2 discriminator (non-saturating loss, R1 penalty,
    optional LeCAM) that switches on at ``discriminator_start``; Adam β = (0, 0.99); EMA.

    ``perceptual_weights`` names the perceptual loss's network (``maskgit.training.perceptual``): a
    VGG16 safetensors file, or a classifier folder from ``maskgit train-classifier``; the trainer
    refuses ``perceptual_weight > 0`` without it (set the weight to 0 to train without the loss). The discriminator's width at resolution ``r`` is
    ``min(discriminator_max_channels, discriminator_channel_base // r)`` (the official table is
    base 16384, max 512). ``dead_code_reinit_every`` > 0 re-initialises codes unused for that many
    steps from the current encoder outputs. ``reconstruction_loss`` is ``"l2"`` (the official
    recipe: mean squared error) or ``"l1"`` (mean absolute error, as in taming-transformers' VQGAN):
    L1's optimum is the conditional median rather than the mean, so flat regions such as a black
    background come out exactly flat instead of hazy.
    """

    stage: ClassVar[str] = "tokenizer"

    model: TokenizerConfig = field(default_factory=lambda: tokenizer_preset("imagenet256"))
    betas: tuple[float, float] = (0.0, 0.99)
    reconstruction_loss: str = "l2"
    reconstruction_weight: float = 1.0
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1
    entropy_temperature: float = 0.01
    perceptual_weight: float = 0.1
    perceptual_weights: str | None = None
    adversarial_weight: float = 0.1
    discriminator_start: int = 20_000
    discriminator_learning_rate: float = 1e-4
    discriminator_channel_base: int = 16384
    discriminator_max_channels: int = 512
    r1_weight: float = 10.0
    r1_every: int = 1
    lecam_weight: float = 0.0
    lecam_decay: float = 0.99
    dead_code_reinit_every: int = 0
    decoder_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(1, "r1_every")
        self._check_choice("reconstruction_loss", ("l2", "l1"))
        if self.decoder_only and self.init_from is None:
            raise ConfigError("TokenizerTrainConfig: decoder_only needs init_from (the tokenizer whose decoder is fine-tuned)")
        if self.decoder_only and self.dead_code_reinit_every:
            raise ConfigError(
                "TokenizerTrainConfig: decoder_only keeps the codebook frozen, so dead_code_reinit_every must be 0, "
                f"got {self.dead_code_reinit_every}"
            )
        if self.model.image_size < 8:
            raise ConfigError(
                f"TokenizerTrainConfig: the discriminator needs model.image_size >= 8, got {self.model.image_size}"
            )
        if self.model.image_size & (self.model.image_size - 1):
            raise ConfigError(
                f"TokenizerTrainConfig: the discriminator needs a power-of-two model.image_size, got {self.model.image_size}"
            )
        self._check_at_least(0, "discriminator_start", "dead_code_reinit_every")
        self._check_batch_pixels(self.model.image_size**2, f"images of {self.model.image_size}x{self.model.image_size}")
        self._check_interval("lecam_decay", 0.0, 1.0, include_high=False)


@dataclass(frozen=True)
class TransformerTrainConfig(TrainConfig):
    """Masked-token transformer training (spec §2.3): per-sample mask ratio from the cosine
    schedule, cross-entropy with label smoothing on masked tokens only, AdamW β = (0.9, 0.96),
    weight decay 0.045, warmup then decay, gradient clipping, EMA.

    ``data`` is a token file (``maskgit extract-tokens``) or an image source, in which case
    ``tokenizer`` (a saved VQGAN folder) encodes each batch. ``tokenizer`` is also what the exported
    pipeline is built with. ``class_dropout`` > 0 replaces the class token by the null class token
    for that fraction of samples, for classifier-free guidance (the model gets ``null_class``). The
    model's ``codebook_size``, ``latent_size``, ``num_classes`` and ``null_class`` are set from the
    data, the tokenizer and ``class_dropout``.
    """

    stage: ClassVar[str] = "transformer"

    model: TransformerConfig = field(default_factory=lambda: transformer_preset("imagenet256"))
    tokenizer: str | None = None
    betas: tuple[float, float] = (0.9, 0.96)
    weight_decay: float = 0.045
    label_smoothing: float = 0.1
    class_dropout: float = 0.0
    warmup_steps: int = 5000
    lr_decay: str = "cosine"
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        tokens = self.model.latent_size**2 + 1
        self._check_batch_pixels(64 * tokens, f"sequences of {tokens} tokens (64 per token)")
        self._check_interval("label_smoothing", 0.0, 1.0, include_high=False)
        self._check_interval("class_dropout", 0.0, 1.0, include_high=True)
        self._check_at_least(0, "weight_decay")


# -- presets ----------------------------------------------------------------------------------

TOKENIZER_TRAIN_PRESETS: dict[str, TokenizerTrainConfig] = {
    # The official recipe (spec §1.6) for 8+ GPUs; discriminator_start is our choice (unpublished).
    "imagenet256": TokenizerTrainConfig(eval_split="val", num_workers=8),
    # Seconds on a CPU: 16 px images, 4x4 tokens; the discriminator starts at step 2 so tests see it.
    "tiny": TokenizerTrainConfig(
        model=TokenizerConfig(
            filters=8, channel_multipliers=(1, 2, 2), num_res_blocks=1, embedding_dim=8,
            codebook_size=32, norm_groups=4, image_size=16,
        ),
        steps=6,
        batch_size=4,
        learning_rate=1e-3,
        discriminator_learning_rate=1e-3,
        discriminator_start=2,
        discriminator_channel_base=128,
        discriminator_max_channels=16,
        perceptual_weight=0.0,
        ema_decay=0.9,
        log_every=1,
        checkpoint_every=0,
        sample_every=0,
        eval_images=16,
    ),
    # 32 px (28 px zero-padded), 8x8 tokens (4x downsampling) from 512 codes, so that a transformer
    # step costs 65 tokens instead of 257. Smaller and faster than the recipe: Adam β1 = 0.9 and a
    # weaker entropy term (0.02) reconstruct better in few steps; the discriminator joins for the
    # last quarter with a small network and lazy R1. bf16 autocast: about 210 images/s before the
    # discriminator joins on a free 2-core CPU. The shipped run took 54 min on a 2-core CPU that
    # also ran other work, and reached 25.0 dB test PSNR (EMA, 2000 test images) with all 512 codes
    # in use (perplexity 495).
    "fashion-mnist": TokenizerTrainConfig(
        data="fashion-mnist",
        eval_data="fashion-mnist",
        model=TokenizerConfig(
            filters=32, channel_multipliers=(1, 2, 2), num_res_blocks=1, embedding_dim=32,
            codebook_size=512, norm_groups=8, image_size=32,
        ),
        steps=11000,
        batch_size=32,
        learning_rate=1e-3,
        betas=(0.9, 0.99),
        warmup_steps=200,
        lr_decay="cosine",
        min_lr_ratio=0.1,
        entropy_weight=0.02,
        discriminator_learning_rate=1e-4,
        discriminator_start=8250,
        discriminator_channel_base=512,
        discriminator_max_channels=32,
        r1_every=4,
        perceptual_weight=0.0,
        dead_code_reinit_every=500,
        precision="bf16",
        log_every=50,
        checkpoint_every=1000,
        sample_every=2750,
        eval_every=2750,
        eval_images=2000,
    ),
}

# Fine-tunes the decoder of the "fashion-mnist" tokenizer (init_from: where the model card's first
# command writes it) with its encoder and codebook frozen, so the tokens, and the transformer
# trained on them, stay valid. That preset ends with its discriminator on, but that
# discriminator never learned: with R1 at the official weight (10, made for 256 px images in
# [-1, 1]) its loss stayed at 2 ln 2 for all 2,750 steps. Here R1 is 0.1, so the discriminator
# learns, and its term is weak (0.01). 1,200 steps cut the reconstructions' classifier-feature
# FID on 1000 training images from 2.35 to 1.77. Measured alternatives, same steps: adversarial
# weight 0.03 gave 2.2 and 0.1 gave 8.3 (unstable); plain L2 for 2,400 steps gave 4.26, blurrier
# (higher PSNR, 25.2 dB, and a worse FID).
TOKENIZER_TRAIN_PRESETS["fashion-mnist-decoder"] = replace(
    TOKENIZER_TRAIN_PRESETS["fashion-mnist"],
    init_from="runs/fmnist-tokenizer/tokenizer",
    decoder_only=True,
    dead_code_reinit_every=0,
    steps=1200,
    learning_rate=2e-4,
    warmup_steps=50,
    adversarial_weight=0.01,
    discriminator_learning_rate=3e-4,
    discriminator_start=0,
    r1_weight=0.1,
    log_every=100,
    checkpoint_every=0,
    sample_every=0,
    eval_every=0,
)

TRANSFORMER_TRAIN_PRESETS: dict[str, TransformerTrainConfig] = {
    # The official recipe (spec §2.3) for 8+ GPUs, on a token file.
    "imagenet256": TransformerTrainConfig(steps=2_000_000, num_workers=4),
    "tiny": TransformerTrainConfig(
        model=TransformerConfig(
            codebook_size=32, num_classes=10, hidden_size=32, num_layers=2, num_heads=2,
            intermediate_size=64, latent_size=4, dropout=0.1,
        ),
        steps=6,
        batch_size=4,
        learning_rate=1e-3,
        warmup_steps=2,
        ema_decay=0.9,
        log_every=1,
        checkpoint_every=0,
        sample_every=0,
        eval_images=16,
    ),
    # A 2-core CPU in about 45 minutes (bf16 autocast, 110-130 sequences/s) on the tokens of the
    # fashion-mnist tokenizer (65-long sequences: 8x8 ids and the class): a 6-layer, 256-wide model
    # (4.8M parameters) for about 2.5 epochs of the mirrored training set, with 10 % class dropout
    # so that classifier-free guidance works. No dropout: masking, label smoothing and class dropout
    # regularise enough for so few epochs, and CPU dropout costs a fifth of a step. (The shipped
    # model's run started with steps=3400 and was resumed at step 1000 with steps=2300, so its
    # learning rate fell faster from there than this preset's does.)
    "fashion-mnist": TransformerTrainConfig(
        model=TransformerConfig(
            codebook_size=512, num_classes=10, hidden_size=256, num_layers=6, num_heads=8,
            intermediate_size=1024, latent_size=8, dropout=0.0,
        ),
        class_dropout=0.1,
        steps=2300,
        batch_size=128,
        learning_rate=1e-3,
        warmup_steps=200,
        min_lr_ratio=0.1,
        precision="bf16",
        log_every=25,
        checkpoint_every=500,
        sample_every=0,
        eval_every=500,
        eval_images=2000,
    ),
}

_PRESETS: dict[str, dict[str, Any]] = {
    "tokenizer": TOKENIZER_TRAIN_PRESETS,
    "transformer": TRANSFORMER_TRAIN_PRESETS,
}


def _preset(stage: str, name: str) -> Any:
    presets = _PRESETS[stage]
    if name not in presets:
        raise ConfigError(f"unknown {stage} training preset {name!r}; valid presets are {sorted(presets)}")
    return presets[name]


def config_from_dict(stage: str, data: dict[str, Any], *, source: str = "config") -> Any:
    """Build a stage config from a dict such as ``to_dict()`` writes (``stage`` and ``preset``
    keys are optional)."""
    data = dict(data)
    declared = data.pop("stage", stage)
    if declared != stage:
        raise ConfigError(f"{source}: is a {declared!r} training config, expected {stage!r}")
    preset = data.pop("preset", None)
    base = _preset(stage, preset) if preset is not None else _PRESETS[stage]["imagenet256"]
    return base.updated(data, source=source)


def load_train_config(
    stage: str,
    source: str | os.PathLike[str] | None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The config of a stage (``"tokenizer"`` or ``"transformer"``) from a preset name or a
    YAML/JSON file, then ``overrides`` (dotted keys allowed).

    Raises ConfigError naming the file, the key and the valid keys on any problem.
    """
    if stage not in _PRESETS:
        raise ConfigError(f"unknown training stage {stage!r}; expected 'tokenizer' or 'transformer'")
    if source is None:
        config = _PRESETS[stage]["imagenet256"]
    elif isinstance(source, str) and source in _PRESETS[stage]:
        config = _preset(stage, source)
    else:
        path = Path(source)
        if not path.suffix and not path.exists():
            raise ConfigError(
                f"{source!r} is neither a {stage} training preset ({sorted(_PRESETS[stage])}) nor a config file"
            )
        config = config_from_dict(stage, read_config_file(path), source=str(path))
    if overrides:
        config = config.updated(overrides, source="override")
    return config


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """One ``key: old -> new`` line per setting (dotted for model keys) that differs."""
    return differences(old.to_dict(), new.to_dict())
