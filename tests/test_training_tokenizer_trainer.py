"""training/tokenizer_trainer.py end to end on tiny synthetic images: the discriminator switch,
dead-code re-initialisation, the perceptual and L1 losses, the metrics and the export."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from maskgit import VQGAN
from maskgit.checkpoints import CheckpointError
from maskgit.configs import ConfigError
from maskgit.evaluation.reconstruction import evaluate_tokenizer
from maskgit.training import TokenizerTrainer, load_train_config
from training_helpers import RandomImages, make_trainer, metrics_log, write_vgg_weights


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
    log = metrics_log(tmp_path)
    assert [("d_loss" in r, "g_adversarial" in r, "r1" in r) for r in log] == [(False,) * 3] * 2 + [(True,) * 3]
    for record in log:
        assert 0 < record["codebook_usage_percent"] <= 100 and record["codebook_perplexity"] >= 1
        assert record["images_per_second"] > 0 and record["psnr"] > 0
    assert (tmp_path / "samples" / "step_00000003.png").is_file()
    # A log window averages each metric over the steps that have it: with one line for all three
    # steps, d_loss is step 3's alone, not diluted by the two steps without a discriminator.
    windowed = make_trainer("tokenizer", tmp_path / "windowed", {"steps": 3, "discriminator_start": 2, "log_every": 3})
    windowed.train()
    (line,) = metrics_log(tmp_path / "windowed")
    assert line["d_loss"] == pytest.approx(log[2]["d_loss"], rel=1e-6)
    assert line["loss"] == pytest.approx(sum(r["loss"] for r in log) / 3, rel=1e-6)
    exported = VQGAN.from_pretrained(tmp_path / "tokenizer")
    for name, value in trainer.ema.model.state_dict().items():
        assert torch.equal(exported.state_dict()[name], value), name
    assert exported.config == trainer.config.model


def test_the_evaluation_is_the_one_tokenizer_evaluation_of_the_ema_model(tmp_path):
    held_out = TensorDataset(RandomImages(6, seed=7).images, torch.zeros(6, dtype=torch.long))
    config = load_train_config("tokenizer", "tiny", {"steps": 1, "eval_images": 5})
    trainer = TokenizerTrainer(config, tmp_path, dataset=RandomImages(12), eval_dataset=held_out, progress=False)
    trainer.train()
    logged = json.loads((tmp_path / "eval.json").read_text())
    expected = evaluate_tokenizer(trainer.ema.model, held_out, max_images=5).as_dict()
    assert logged == {"step": 1, **expected} and set(expected) == {
        "images", "psnr", "ssim", "codebook_usage_percent", "codebook_perplexity"}
    assert expected["images"] == 5 and expected["psnr"] > 0


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
    assert metrics_log(tmp_path)[-1]["reinitialised_codes"] == len(replaced)


def test_perceptual_loss_plugs_in_from_a_weights_file(tmp_path):
    write_vgg_weights(tmp_path / "vgg.safetensors", with_lin=True)
    trainer = make_trainer(
        "tokenizer", tmp_path / "run",
        {"steps": 1, "perceptual_weight": 0.1, "perceptual_weights": str(tmp_path / "vgg.safetensors")},
    )
    trainer.train()
    assert metrics_log(tmp_path / "run")[0]["perceptual"] > 0
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        make_trainer("tokenizer", tmp_path / "other", {"perceptual_weights": str(tmp_path / "missing.safetensors")})
    # A weight without a file would train without the loss: refused, naming both settings.
    with pytest.raises(ConfigError, match="perceptual_weight is 0.1 but perceptual_weights is not set"):
        make_trainer("tokenizer", tmp_path / "none", {"perceptual_weight": 0.1})
    assert not (tmp_path / "none").exists()


def test_perceptual_loss_plugs_in_from_a_classifier_folder(tmp_path):
    from maskgit.models.classifier import ClassifierConfig, ImageClassifier

    torch.manual_seed(0)
    ImageClassifier(ClassifierConfig(image_size=16, channels=(4, 8, 8), feature_size=16)).save_pretrained(tmp_path / "clf")
    run = {"steps": 2, "perceptual_weights": str(tmp_path / "clf")}
    with_loss = make_trainer("tokenizer", tmp_path / "with", {**run, "perceptual_weight": 0.5})
    with_loss.train()
    without = make_trainer("tokenizer", tmp_path / "without", {**run, "perceptual_weight": 0.0})
    without.train()
    assert all(record["perceptual"] > 0 for record in metrics_log(tmp_path / "with"))
    assert "perceptual" not in metrics_log(tmp_path / "without")[0]
    # The loss reaches the decoder: the same seeded run without it ends elsewhere.
    decoder = "decoder.conv_out.weight"
    assert not torch.equal(with_loss.model.state_dict()[decoder], without.model.state_dict()[decoder])
    # A classifier for other image sizes is refused when the run is set up, naming both sizes.
    ImageClassifier(ClassifierConfig(image_size=32, channels=(4, 8, 8), feature_size=16)).save_pretrained(tmp_path / "clf32")
    with pytest.raises(ConfigError, match="the classifier takes 32 px images, the tokenizer 16 px"):
        make_trainer("tokenizer", tmp_path / "mismatch", {"perceptual_weights": str(tmp_path / "clf32")})
    assert not (tmp_path / "mismatch").exists()


def test_decoder_fine_tuning_keeps_every_images_ids(tmp_path):
    first = make_trainer("tokenizer", tmp_path / "first", {"steps": 2})
    first.train()
    start = VQGAN.from_pretrained(tmp_path / "first" / "tokenizer")
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    trainer = make_trainer(
        "tokenizer", tmp_path / "tuned",
        {"steps": 3, "discriminator_start": 1, "init_from": str(tmp_path / "first" / "tokenizer"), "decoder_only": True},
    )
    # The run starts from the saved weights, its EMA too.
    for name, value in start.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name
        assert torch.equal(trainer.ema.model.state_dict()[name], value), name
    trainer.train()
    tuned = VQGAN.from_pretrained(tmp_path / "tuned" / "tokenizer")
    state = tuned.state_dict()
    # Encoder and codebook untouched, so the ids of any image are too; the decoder moved.
    for name, value in start.state_dict().items():
        if name.startswith(("encoder.", "quantizer.")):
            assert torch.equal(state[name], value), name
    assert any(not torch.equal(state[n], v) for n, v in start.state_dict().items() if n.startswith("decoder."))
    assert torch.equal(tuned.encode_to_ids(images), start.encode_to_ids(images))
    assert not torch.equal(tuned.reconstruct(images), start.reconstruct(images))
    log = metrics_log(tmp_path / "tuned")
    assert all("commitment" not in record and "reconstruction" in record for record in log)
    assert "d_loss" in log[-1]


def test_reconstruction_loss_picks_the_absolute_or_the_squared_error(tmp_path):
    # Same seed, so the same initial weights and first batch: the first step's logged
    # reconstruction term is E|e| with "l1" and E[e^2] with "l2", of the same errors e, so
    # Jensen's E[e^2] >= (E|e|)^2 holds; it fails if the two are swapped, and equality would
    # mean that one loss serves both.
    first = {}
    for loss in ("l1", "l2"):
        make_trainer("tokenizer", tmp_path / loss, {"steps": 1, "reconstruction_loss": loss}).train()
        first[loss] = metrics_log(tmp_path / loss)[0]["reconstruction"]
    assert first["l1"] ** 2 <= first["l2"] and first["l1"] != first["l2"]
    with pytest.raises(ConfigError, match="reconstruction_loss"):
        make_trainer("tokenizer", tmp_path / "bad", {"reconstruction_loss": "l3"})


def test_init_from_and_decoder_only_are_checked(tmp_path):
    first = make_trainer("tokenizer", tmp_path / "first", {"steps": 1})
    first.train()
    saved = str(tmp_path / "first" / "tokenizer")
    with pytest.raises(ConfigError, match="decoder_only needs init_from"):
        make_trainer("tokenizer", tmp_path / "a", {"decoder_only": True})
    with pytest.raises(ConfigError, match="dead_code_reinit_every must be 0, got 5"):
        make_trainer("tokenizer", tmp_path / "b", {"decoder_only": True, "init_from": saved, "dead_code_reinit_every": 5})
    with pytest.raises(ConfigError, match=f"init_from {saved}: its tokenizer config .* differs"):
        make_trainer("tokenizer", tmp_path / "c", {"init_from": saved, "model.codebook_size": 64})
    with pytest.raises(CheckpointError, match="nowhere: no such file or folder"):
        make_trainer("tokenizer", tmp_path / "d", {"init_from": str(tmp_path / "nowhere")})
    assert not any((tmp_path / name).exists() for name in "abcd")  # refused before anything is written
