"""Training both MaskGIT stages: the VQGAN tokenizer and the masked transformer.

``TokenizerTrainer`` and ``TransformerTrainer`` run one process or many under ``torchrun`` and
resume exactly from their checkpoints; ``load_train_config`` reads presets, YAML/JSON files and
overrides; ``maskgit.training.metrics`` evaluates a transformer (a tokenizer:
``maskgit.evaluation.evaluate_tokenizer``); ``maskgit.training.classifier_trainer`` trains the
evaluator's Fashion-MNIST classifier.
"""

from maskgit.training.checkpoint import find_latest_checkpoint, read_checkpoint_config
from maskgit.training.config import (
    TOKENIZER_TRAIN_PRESETS,
    TRANSFORMER_TRAIN_PRESETS,
    TokenizerTrainConfig,
    TransformerTrainConfig,
    load_train_config,
)
from maskgit.training.metrics import evaluate_transformer
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
    "evaluate_transformer",
]
