"""training/finetune.py and ``maskgit train --init``: the official weights fine-tuned on new classes."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TOKENIZER_MSGPACK, TRANSFORMER_MSGPACK
from maskgit.cli import main
from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.training.finetune import load_init_model, with_new_classes
from train_run_helpers import TINY_SETTINGS, assert_refused, set_flags

PAIR = f"{TOKENIZER_MSGPACK},{TRANSFORMER_MSGPACK}"
# The fixture models fix the architecture: only the schedule of the tiny recipe applies.
SCHEDULE = set_flags(setting for setting in TINY_SETTINGS if not setting.startswith(("tokenizer.model", "transformer.model")))


def test_new_class_table_keeps_the_image_tokens_and_the_mask(small_transformer):
    old = small_transformer.config
    new = with_new_classes(small_transformer, 3, null_class=True)
    assert new.config.num_classes == 3 and new.config.null_class and new.config.codebook_size == old.codebook_size
    assert new.config.vocab_size == old.codebook_size + 3 + 1 + 1
    for name in ("word_embeddings.weight", "mlm_bias"):
        before, after = small_transformer.state_dict()[name], new.state_dict()[name]
        assert torch.equal(after[: old.codebook_size], before[: old.codebook_size])  # image tokens
        assert torch.equal(after[new.config.mask_token_id], before[old.mask_token_id])  # the mask, last
        class_mean = before[old.codebook_size : old.codebook_size + old.num_classes].mean(0)
        for row in range(old.codebook_size, old.codebook_size + 3):
            assert torch.allclose(after[row], class_mean)
        assert torch.allclose(after[new.config.null_class_id], class_mean)
    for name, tensor in small_transformer.state_dict().items():
        if name not in ("word_embeddings.weight", "mlm_bias"):
            assert torch.equal(new.state_dict()[name], tensor), name
    # The new table starts class-neutral: every class (and no class) gives the same logits.
    ids = torch.randint(0, old.codebook_size, (1, 65)).repeat(4, 1)
    ids[:, 0] = torch.tensor([old.codebook_size, old.codebook_size + 1, old.codebook_size + 2, new.config.null_class_id])
    with torch.no_grad():
        logits = new.eval()(ids)[..., : old.codebook_size]
    assert torch.allclose(logits[1:], logits[:1].expand(3, -1, -1), atol=1e-5)
    # A model with a null class passes its null row on; the mask stays the last row.
    again = with_new_classes(new, 5, null_class=True)
    embeddings = new.word_embeddings.weight
    assert torch.equal(again.word_embeddings.weight[again.config.null_class_id], embeddings[new.config.null_class_id])
    assert torch.equal(again.word_embeddings.weight[-1], small_transformer.word_embeddings.weight[-1])


def test_load_init_model_reads_a_pair_and_a_folder(tmp_path, small_tokenizer, small_transformer):
    init = load_init_model(PAIR)
    assert init.image_size == 128 and init.transformer.config.num_classes == 10
    assert torch.equal(init.tokenizer.quantizer.codebook.weight, small_tokenizer.quantizer.codebook.weight)
    shipped = load_init_model("fashion-mnist")
    assert shipped.image_size == 32 and shipped.transformer.config.null_class
    with pytest.raises(Exception, match="absent"):
        load_init_model(tmp_path / "absent")



@pytest.mark.slow
def test_init_fine_tunes_the_official_checkpoints_on_new_classes(tmp_path, shapes, capsys):
    run = tmp_path / "run"
    assert main(["train", str(shapes), "--out", str(run), "--init", PAIR, "--quiet", *SCHEDULE]) == 0
    out = capsys.readouterr().out
    assert "resized (short side) and centre-cropped to 128x128" in out
    assert "its tokenizer is kept" in out
    stages = json.loads((run / "stages.json").read_text())["stages"]
    assert list(stages) == ["init", "tokens", "transformer", "finish"]
    official_tokenizer = VQGAN.from_pretrained(TOKENIZER_MSGPACK).state_dict()
    exported = load_file(run / "pipeline" / "tokenizer" / "model.safetensors")
    assert exported.keys() == official_tokenizer.keys()
    assert all(torch.equal(exported[name], tensor) for name, tensor in official_tokenizer.items())  # unchanged
    official = MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK)
    start = load_file(run / "init" / "transformer" / "model.safetensors")
    assert torch.equal(start["word_embeddings.weight"][:64], official.word_embeddings.weight[:64])
    trained = load_file(run / "pipeline" / "transformer" / "model.safetensors")
    assert trained["word_embeddings.weight"].shape[0] == 64 + 3 + 1 + 1
    assert not torch.equal(trained["word_embeddings.weight"], start["word_embeddings.weight"])  # it trained
    index = json.loads((run / "pipeline" / "model_index.json").read_text())
    assert index["class_names"] == ["green-square", "purple-triangle", "red-disc"]
    assert main(["generate", "--model", str(run / "pipeline"), "--class", "purple-triangle", "--guidance", "2",
                 "--num", "1", "--seed", "0", "--out", str(tmp_path / "samples"), "--quiet"]) == 0
    assert len(list((tmp_path / "samples").glob("*/*.png"))) == 1


@pytest.mark.slow
def test_init_with_decoder_training_keeps_the_token_ids(tmp_path, shapes):
    run = tmp_path / "run"
    flags = [*SCHEDULE, "--set", "tokenizer.train=decoder", "--set", "decoder.steps=2", "--set", "decoder.batch_size=2",
             "--set", "decoder.discriminator_channel_base=256", "--set", "decoder.discriminator_max_channels=8"]
    assert main(["train", str(shapes), "--out", str(run), "--init", PAIR, "--quiet", *flags]) == 0
    official = VQGAN.from_pretrained(TOKENIZER_MSGPACK)
    tuned = VQGAN.from_pretrained(run / "pipeline" / "tokenizer")
    for part in ("encoder", "quantizer"):
        for name, tensor in getattr(official, part).state_dict().items():
            assert torch.equal(getattr(tuned, part).state_dict()[name], tensor), f"{part}.{name}"
    assert any(not torch.equal(tuned.decoder.state_dict()[name], tensor)
               for name, tensor in official.decoder.state_dict().items())
    images = torch.rand(2, 3, 128, 128)
    assert torch.equal(tuned.encode_to_ids(images), official.encode_to_ids(images))


def test_init_refuses_what_it_cannot_do(tmp_path, shapes, capsys):
    assert_refused(capsys, shapes, tmp_path / "run", [
        (["--init", PAIR, "--image-size", "64"], "works at 128 px"),
        (["--init", PAIR, "--set", "tokenizer.train=all"], "keeps the tokenizer's token ids"),
        (["--init", PAIR, "--set", "transformer.model.hidden_size=32"], "fixes its architecture"),
    ])
