"""training/metrics.py: the transformer's masked-token loss and accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from maskgit import MaskGITTransformer, TransformerConfig
from maskgit.training.metrics import evaluate_transformer
from training_helpers import RandomTokens


def test_transformer_evaluation_is_repeatable_and_scores_a_perfect_predictor():
    config = TransformerConfig(codebook_size=32, num_classes=3, hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, latent_size=4)
    torch.manual_seed(0)
    model = MaskGITTransformer(config)
    data = RandomTokens(12)
    first = evaluate_transformer(model, data, max_samples=8, batch_size=3)
    assert first == evaluate_transformer(model, data, max_samples=8, batch_size=3)  # same masks each time
    assert first["samples"] == 8 and first["chance_accuracy"] == 1 / 32 and 0 <= first["accuracy"] <= 1
    assert first["loss"] > 0

    class Oracle(torch.nn.Module):
        """Puts all its mass on one fixed grid, whatever it is shown."""

        def __init__(self, grid: torch.Tensor) -> None:
            super().__init__()
            self.config, self.grid, self.weight = config, grid.flatten(), torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            logits = torch.full((*tokens.shape, config.vocab_size), -50.0)
            logits[:, 1:].scatter_(-1, self.grid.expand(tokens.shape[0], -1)[..., None], 50.0)
            return logits

    grid = data.ids[0]  # not constant: a shift by the class slot would miss
    same = TensorDataset(grid.expand(8, -1, -1), data.labels[:8])
    perfect = evaluate_transformer(Oracle(grid), same, batch_size=4)
    assert perfect["accuracy"] == 1.0 and perfect["loss"] < 1e-6
    assert evaluate_transformer(Oracle(data.ids[1]), same, batch_size=4)["accuracy"] < 1.0
    images = TensorDataset(torch.rand(2, 3, 16, 16), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="yields images; pass the tokenizer"):
        evaluate_transformer(model, images)
    assert math.isfinite(evaluate_transformer(model, data)["loss"])
