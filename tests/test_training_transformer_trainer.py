"""training/transformer_trainer.py end to end on tiny token grids and images: learning, evaluation,
the exports, fine-tuning from a saved transformer and refused token ids."""

from __future__ import annotations

import json

import pytest
import torch

from maskgit import VQGAN, MaskGITTransformer
from maskgit.configs import ConfigError
from maskgit.training import TransformerTrainer, load_train_config
from training_helpers import RandomImages, RandomTokens, make_trainer, metrics_log


def test_transformer_learns_patterned_tokens(tmp_path):
    config = load_train_config(
        "transformer", "tiny",
        {"steps": 60, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 5, "log_every": 10, "model.dropout": 0.0},
    )
    trainer = TransformerTrainer(config, tmp_path, dataset=RandomTokens(64), eval_dataset=RandomTokens(16, seed=9), progress=False)
    results = trainer.train()
    log = metrics_log(tmp_path)
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.8 * losses[0]
    assert results["accuracy"] > 5 * results["chance_accuracy"]
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == results["accuracy"]
    # The model config follows the data: 4x4 grids, 32 codes, 3 classes.
    assert (trainer.config.model.latent_size, trainer.config.model.codebook_size, trainer.config.model.num_classes) == (4, 32, 3)
    exported = MaskGITTransformer.from_pretrained(tmp_path / "transformer")
    assert torch.equal(exported.mlm_bias, trainer.ema.model.mlm_bias)
    assert not (tmp_path / "pipeline").exists()  # no tokenizer, no pipeline


def test_transformer_on_images_exports_a_loadable_pipeline(tmp_path):
    from maskgit.pipeline import MaskGIT

    torch.manual_seed(0)
    tokenizer = VQGAN(load_train_config("tokenizer", "tiny").model)
    config = load_train_config("transformer", "tiny", {"steps": 2, "sample_every": 2})
    images = RandomImages(8)
    trainer = TransformerTrainer(config, tmp_path, dataset=images, tokenizer=tokenizer, progress=False)
    trainer.train()
    pipeline = MaskGIT.from_pretrained(tmp_path / "pipeline")
    assert pipeline.class_names == images.class_names
    assert pipeline.image_size == 16
    assert torch.equal(pipeline.transformer.mlm_bias, trainer.ema.model.mlm_bias)
    assert torch.equal(pipeline.tokenizer.quantizer.codebook.weight, tokenizer.quantizer.codebook.weight)
    assert (tmp_path / "samples" / "step_00000002.png").is_file()


def test_token_ids_outside_the_codebook_are_refused(tmp_path):
    data = RandomTokens(8)
    data.ids[3, 0, 0] = 40  # the codebook has 32 codes
    trainer = TransformerTrainer(load_train_config("transformer", "tiny", {"batch_size": 8}), tmp_path, dataset=data, progress=False)
    with pytest.raises(ValueError, match="token ids must be in \\[0, 32\\)"):
        trainer.train()


def test_fine_tuning_starts_from_the_saved_transformer(tmp_path):
    make_trainer("transformer", tmp_path / "first", {"steps": 2}).train()
    saved = MaskGITTransformer.from_pretrained(tmp_path / "first" / "transformer")
    tuned = make_trainer("transformer", tmp_path / "tuned", {"steps": 2, "init_from": str(tmp_path / "first" / "transformer")})
    fresh = make_trainer("transformer", tmp_path / "fresh", {"steps": 2})
    # The model and its EMA start at the saved weights, not at the seeded initialisation.
    for name, value in saved.state_dict().items():
        assert torch.equal(tuned.model.state_dict()[name], value), name
        assert torch.equal(tuned.ema.model.state_dict()[name], value), name
    assert any(not torch.equal(fresh.model.state_dict()[n], v) for n, v in saved.state_dict().items())
    tuned.train()
    moved = MaskGITTransformer.from_pretrained(tmp_path / "tuned" / "transformer").state_dict()
    assert any(not torch.equal(moved[n], v) for n, v in saved.state_dict().items())
    with pytest.raises(ConfigError, match="init_from .*: its transformer config .* differs"):
        make_trainer("transformer", tmp_path / "wider", {"init_from": str(tmp_path / "first" / "transformer"), "model.hidden_size": 64})
    assert not (tmp_path / "wider").exists()  # refused before anything is written
