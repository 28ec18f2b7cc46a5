"""Evaluation during training: PSNR, the tokenizer's reconstruction and codebook use, the
transformer's masked-token loss and accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from maskgit import VQGAN, MaskGITTransformer, TokenizerConfig, TransformerConfig
from maskgit.training.metrics import evaluate_tokenizer, evaluate_transformer, psnr
from training_helpers import RandomImages, RandomTokens


def test_psnr_is_ten_log10_of_one_over_the_mse_per_image():
    targets = torch.zeros(2, 3, 4, 4)
    images = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 2.0)])  # the second clips to 1
    torch.testing.assert_close(psnr(images, targets), torch.tensor([20.0, 0.0]))
    assert psnr(targets, targets).tolist() == pytest.approx([100.0, 100.0])  # identical images: the 1e-10 cap


def _tokenizer() -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(TokenizerConfig(filters=8, channel_multipliers=(1, 2), num_res_blocks=1, embedding_dim=4,
                                 codebook_size=16, norm_groups=4, image_size=16))


def test_tokenizer_evaluation_counts_codes_and_averages_psnr_over_the_first_images():
    tokenizer = _tokenizer().train()
    images = RandomImages(10).images
    scores = evaluate_tokenizer(tokenizer, TensorDataset(images, torch.zeros(10)), max_images=6, batch_size=4)
    assert tokenizer.training  # the training flag is restored
    images = images[:6]
    with torch.no_grad():
        ids = tokenizer.eval().encode_to_ids(images)
        expected = psnr(tokenizer.decode_ids(ids), images).mean().item()
    assert scores["images"] == 6 and scores["psnr"] == pytest.approx(expected, rel=1e-5)
    used = ids.unique().numel()
    assert scores["codebook_usage_percent"] == pytest.approx(100 * used / 16)
    assert 1 <= scores["codebook_perplexity"] <= used + 1e-4
    with pytest.raises(ValueError, match="empty"):
        evaluate_tokenizer(tokenizer, RandomImages(0))


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
