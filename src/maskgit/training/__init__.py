"""Training both MaskGIT stages: the VQGAN tokenizer and the masked transformer.

``TokenizerTrainer`` and ``TransformerTrainer`` run one process or many under ``torchrun`` and
resume exactly from their checkpoints; ``load_train_config`` reads presets, YAML/JSON files and
overrides; ``maskgit.training.metrics`` evaluates the results.
"""

from maskgit.training.checkpoint import find_latest_checkpoint, read_checkpoint_config
from maskgit.training.config import (
    TOKENIZER_TRAIN_PRESETS,
    TRANSFORMER_TRAIN_PRESETS,
    TokenizerTrainConfig,
    TransformerTrainConfig,
    load_train_config,
)
from maskgit.training.metrics import evaluate_tokenizer, evaluate_transformer, psnr
from maskgit.training.tokenizer_trainer import TokenizerTrainer
from maskgit.training.transformer_trainer import TransformerTrainer

__all__ = [
    "TokenizerTrainConfig",
    "TransformerTrainConfig",
    "TOKENIZER_TRAIN_PRESETS",
    "TRANSFORMER_TRAIN_PRESETS",
    "load_train_config",
    "TokenizerTrainer",
    "TransformerTrainer",
    "find_latest_checkpoint",
    "read_checkpoint_config",
    "evaluate_tokenizer",
    "evaluate_transformer",
    "psnr",
]
