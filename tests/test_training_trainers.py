"""Both trainers end to end on tiny synthetic data: what they log, change, write and export."""

from __future__ import annotations

import json

import pytest
import torch

from maskgit import VQGAN, MaskGITTransformer
from maskgit.configs import ConfigError
from maskgit.training import TransformerTrainer, load_train_config
from training_helpers import RandomImages, RandomTokens, make_trainer



def _log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tokenizer_training_switches_the_discriminator_on_at_its_step(tmp_path):
    trainer = make_trainer("tokenizer", tmp_path, {"steps": 3, "discriminator_start": 2, "sample_every": 3})
    discriminator = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    model = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train(stop_at=2)
    # Two generator-only steps: the VQGAN moved, the discriminator did not.
    assert any(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in model.items())
    assert all(torch.equal(v, trainer.discriminator.state_dict()[k]) for k, v in discriminator.items())
    trainer.train()
    assert any(not torch.equal(v, trainer.discriminator.state_dict()[k]) for k, v in discriminator.items())
    log = _log(tmp_path)
    assert [("d_loss" in r, "g_adversarial" in r, "r1" in r) for r in log] == [(False,) * 3] * 2 + [(True,) * 3]
    for record in log:
        assert 0 < record["codebook_usage_percent"] <= 100 and record["codebook_perplexity"] >= 1
        assert record["images_per_second"] > 0 and record["psnr"] > 0
    assert (tmp_path / "samples" / "step_00000003.png").is_file()
    # A log window averages each metric over the steps that have it: with one line for all three
    # steps, d_loss is step 3's alone, not diluted by the two steps without a discriminator.
    windowed = make_trainer("tokenizer", tmp_path / "windowed", {"steps": 3, "discriminator_start": 2, "log_every": 3})
    windowed.train()
    (line,) = _log(tmp_path / "windowed")
    assert line["d_loss"] == pytest.approx(log[2]["d_loss"], rel=1e-6)
    assert line["loss"] == pytest.approx(sum(r["loss"] for r in log) / 3, rel=1e-6)
    exported = VQGAN.from_pretrained(tmp_path / "tokenizer")
    for name, value in trainer.ema.model.state_dict().items():
        assert torch.equal(exported.state_dict()[name], value), name
    assert exported.config == trainer.config.model


def test_dead_codes_are_reinitialised_from_encoder_outputs(tmp_path):
    # 64 codes for 16 vectors per step: most codes are unused after two steps.
    trainer = make_trainer("tokenizer", tmp_path, {"steps": 2, "dead_code_reinit_every": 2, "model.codebook_size": 64})
    captured = []
    trainer.autoencode.register_forward_hook(lambda module, args, output: captured.append(output[1].detach()))
    before = trainer.model.quantizer.codebook.weight.detach().clone()
    trainer.train()
    after = trainer.model.quantizer.codebook.weight.detach()
    replaced = [i for i in range(64) if not torch.allclose(before[i], after[i], atol=1e-2)]
    assert len(replaced) > 20
    vectors = captured[-1].permute(0, 2, 3, 1).reshape(-1, after.shape[1])
    for index in replaced:
        assert (vectors - after[index]).abs().amax(1).min() < 1e-6  # an encoder output of the step
    assert torch.equal(trainer.ema.model.quantizer.codebook.weight[replaced], after[replaced])
    assert _log(tmp_path)[-1]["reinitialised_codes"] == len(replaced)


def test_transformer_learns_patterned_tokens(tmp_path):
    config = load_train_config(
        "transformer", "tiny",
        {"steps": 60, "batch_size": 8, "learning_rate": 3e-3, "warmup_steps": 5, "log_every": 10, "model.dropout": 0.0},
    )
    trainer = TransformerTrainer(config, tmp_path, dataset=RandomTokens(64), eval_dataset=RandomTokens(16, seed=9), progress=False)
    results = trainer.train()
    log = _log(tmp_path)
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


@pytest.mark.parametrize(
    "stage,overrides",
    [("tokenizer", {"steps": 2, "discriminator_start": 1}), ("transformer", {"steps": 2})],
)
def test_bf16_autocast_keeps_float32_weights_and_finite_losses(tmp_path, stage, overrides):
    # On CUDA "auto" means bf16; the same code path runs on the CPU when asked.
    trainer = make_trainer(stage, tmp_path, {**overrides, "precision": "bf16"})
    assert trainer.autocast_dtype == torch.bfloat16
    trainer.train()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    for record in _log(tmp_path):
        assert all(v == v and abs(v) != float("inf") for v in record.values() if isinstance(v, float))
    assert "r1" in _log(tmp_path)[-1] or stage == "transformer"


def test_perceptual_loss_plugs_in_from_a_weights_file(tmp_path):
    from test_training_discriminator import _vgg_weights

    _vgg_weights(tmp_path / "vgg.safetensors", with_lin=True)
    trainer = make_trainer(
        "tokenizer", tmp_path / "run",
        {"steps": 1, "perceptual_weight": 0.1, "perceptual_weights": str(tmp_path / "vgg.safetensors")},
    )
    trainer.train()
    assert _log(tmp_path / "run")[0]["perceptual"] > 0
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        make_trainer("tokenizer", tmp_path / "other", {"perceptual_weights": str(tmp_path / "missing.safetensors")})
    # A weight without a file would train without the loss: refused, naming both settings.
    with pytest.raises(ConfigError, match="perceptual_weight is 0.1 but perceptual_weights is not set"):
        make_trainer("tokenizer", tmp_path / "none", {"perceptual_weight": 0.1})
    assert not (tmp_path / "none").exists()
