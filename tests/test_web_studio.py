"""web/studio.py: what each tab of the studio does without a browser, the command lines it shows
(which make the same images), its limits and its messages."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.cli import build_parser
from maskgit.cli.options import sampler_from_args
from maskgit.data.transforms import eval_transform
from maskgit.imageio import load_image, to_uint8
from maskgit.runs.manifest import GenerateSettings, settings_from_dict
from maskgit.sampling.editing import Box
from maskgit.sampling.samplers import HaltonSampler
from maskgit.web.studio import Limits, Studio


def _sampler(studio, name="confidence", **changes):
    form = dict(num_steps=8, schedule="cosine", choice_temperature=4.5, softmax_temperature=(1.0, 1.0), top_k=0,
                guidance=0.0, guidance_schedule="constant")
    return studio.sampler(name, **{**form, **changes})


def _photo(tmp_path, size=(48, 40), name="photo.png"):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name)
    return tmp_path / name


def test_generate_matches_the_library_and_the_command_line_it_shows(studio, shipped_pipeline, tmp_path):
    sampler = _sampler(studio, softmax_temperature=(1.2, 0.8), top_k=50, context_reuse=2, reuse_group=True)
    assert sampler.context_reuse == 2 and sampler.chooses_groups
    # A sampler without the option drops it, as it drops the choice temperature.
    assert _sampler(studio, "halton", context_reuse=2, reuse_group=True) == HaltonSampler(num_steps=8, context_reuse=2)
    steps = []
    result = studio.generate(7, 3, sampler, seed=11, progress=lambda done, total: steps.append(done))
    assert steps == list(range(1, 9))
    expected = shipped_pipeline.generate([7] * 3, sampler=sampler, seed=11)
    for path, image in zip(result.images, expected):
        np.testing.assert_array_equal(to_uint8(load_image(path)), to_uint8(image))
    assert all(path.is_relative_to(tmp_path / "runs") for path in result.files)
    record = json.loads(next(p for p in result.files if p.name == "settings.json").read_text())
    # The run's settings, as a manifest of `maskgit generate` records them.
    assert settings_from_dict(record["settings"]) == GenerateSettings(
        model="fashion-mnist", batch_size=3, seed=11, sampler=sampler.to_dict(), classes=(7,), per_class=3,
        class_names=("Sneaker",))
    # The command shown parses with the real CLI into the same request and the same sampler.
    words = shlex.split(record["command_line"])
    assert words[0] == "maskgit" and record["command_line"] in result.settings
    args = build_parser().parse_args(words[1:])
    assert (args.model, args.classes, args.num, args.seed) == ("fashion-mnist", ["7"], 3, 11)
    assert sampler_from_args(args, shipped_pipeline.default_sampler()) == sampler


def test_random_seed_is_drawn_and_shown(studio):
    result = studio.generate(0, 1, _sampler(studio, num_steps=2), seed=None)
    seed = json.loads(result.files[-1].read_text())["settings"]["seed"]
    assert f"**seed** {seed}" in result.settings and f"--seed {seed}" in result.settings


def test_sampler_form_errors_and_fields(studio):
    halton = _sampler(studio, "halton", choice_temperature=9.0)  # not a Halton field: left out
    assert halton.to_dict()["sampler"] == "halton" and "choice_temperature" not in halton.to_dict()
    with pytest.raises(ValueError, match="steps must be between 1 and 64, got 0"):
        _sampler(studio, num_steps=0)
    with pytest.raises(ValueError, match="fill in the sampler's guidance"):
        _sampler(studio, guidance=None)
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        _sampler(studio, "nope")
    with pytest.raises(ValueError, match="fill in the sampler's context reuse"):
        _sampler(studio, context_reuse=None)
    with pytest.raises(ValueError, match="context_reuse must be an integer from 0 to 64, got 65"):
        _sampler(studio, context_reuse=65)


def test_upload_is_fitted_and_says_so(studio, tmp_path):
    upload = studio.load_image(_photo(tmp_path, (48, 40)))
    assert upload.image.shape == (3, 32, 32) and upload.source_size == (40, 48)
    assert upload.note == "photo.png: 48x40 resized (short side to 32) and centre-cropped to 32x32, the model's size."
    assert torch.equal(upload.image, eval_transform(32)(Image.open(tmp_path / "photo.png")))
    assert "used as it is" in studio.load_image(_photo(tmp_path, (32, 32), "exact.png")).note
    assert "resized to 32x32" in studio.load_image(_photo(tmp_path, (64, 64), "square.png")).note


def test_bad_uploads_get_messages_that_name_the_file_not_the_folder(shipped_pipeline, tmp_path):
    studio = Studio(shipped_pipeline, "fashion-mnist", tmp_path, Limits(max_upload_bytes=20000, max_upload_pixels=2000))
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ValueError, match=r"^notes.png: cannot read image"):
        studio.load_image(tmp_path / "notes.png")
    with pytest.raises(ValueError, match=r"^photo.png: 48x48 = 2,304 pixels is over the limit of 2,000 for an input image$"):
        studio.load_image(_photo(tmp_path, (48, 48)))
    with pytest.raises(ValueError, match=r"^big.png: [\d,]+ bytes is over the limit of 20,000$"):
        studio.load_image(_photo(tmp_path, (90, 90), "big.png"))


def test_mask_follows_the_upload_or_is_the_model_size(studio, tmp_path):
    upload = studio.load_image(_photo(tmp_path, (64, 32)))  # centre crop keeps columns 16..48
    mask = np.zeros((32, 64), np.uint8)
    mask[:, 16:24] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    fitted = studio.load_mask(tmp_path / "mask.png", upload)
    assert fitted.shape == (32, 32) and fitted[:, :8].all() and not fitted[:, 8:].any()
    Image.fromarray(mask[:, :32]).save(tmp_path / "model.png")
    assert studio.load_mask(tmp_path / "model.png", upload)[:, 16:24].all()
    Image.fromarray(mask[:20]).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match=r"odd.png: the mask is 64x20; it must be the image's size \(64x32\) or the model's"):
        studio.load_mask(tmp_path / "odd.png", upload)


def test_editing_modes_change_only_their_region(studio, tmp_path):
    upload = studio.load_image(_photo(tmp_path))
    source = to_uint8(upload.image)
    sampler = _sampler(studio, num_steps=4)

    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4:12, 20:30] = True
    result = studio.inpaint(upload, mask, 2, 2, sampler, seed=0)
    for path in result.images:
        filled = to_uint8(load_image(path))
        np.testing.assert_array_equal(filled[~mask.numpy()], source[~mask.numpy()])
    assert "--mask mask.png" in result.settings and {p.name for p in result.files} >= {"input.png", "mask.png"}

    seen = []
    result = studio.outpaint(upload, (1, 0, 2, 0), 2, 1, sampler, seed=0, progress=lambda *done: seen.append(done))
    assert seen == [(done, 8) for done in range(1, 9)]  # two windows of 4 steps, the total known from the start
    wider = to_uint8(load_image(result.images[0]))
    assert wider.shape == (44, 32, 3) and "--extend 4,0,8,0" in result.settings  # 4 px tokens
    np.testing.assert_array_equal(wider[4:36], source)

    result = studio.edit(upload, Box(8, 8, 6, 6), 2, 1, sampler, seed=0)
    assert "--box 8,8,6,6" in result.settings and load_image(result.images[0]).shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["edit", "inpaint", "outpaint"])
def test_the_command_shown_makes_the_same_images(studio, tmp_path, monkeypatch, mode):
    from maskgit.cli import main

    upload = studio.load_image(_photo(tmp_path))
    sampler = _sampler(studio, "halton" if mode == "outpaint" else "confidence", num_steps=5,
                       softmax_temperature=(1.5, 0.5), top_k=40, context_reuse=1)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[3:9, 5:20] = True
    run = {"edit": lambda: studio.edit(upload, Box(6, 4, 10, 12), 5, 2, sampler, seed=3),
           "inpaint": lambda: studio.inpaint(upload, mask, 5, 2, sampler, seed=3),
           "outpaint": lambda: studio.outpaint(upload, (0, 2, 1, 0), 5, 2, sampler, seed=3)}[mode]
    result = run()
    command = json.loads(result.files[-1].read_text())["command_line"]
    words = shlex.split(command)
    words[words.index("--out") + 1] = str(tmp_path / "cli")
    monkeypatch.chdir(result.images[0].parent)  # where input.png and mask.png were written
    assert main(words[1:]) == 0
    for path in result.images:
        np.testing.assert_array_equal(to_uint8(load_image(tmp_path / "cli" / path.name)), to_uint8(load_image(path)))


def test_editing_errors(studio, tmp_path):
    upload = studio.load_image(_photo(tmp_path))
    sampler = _sampler(studio, num_steps=4)
    with pytest.raises(ValueError, match="the mask is empty"):
        studio.inpaint(upload, torch.zeros(32, 32, dtype=torch.bool), 0, 1, sampler, seed=0)
    with pytest.raises(ValueError, match="add at least one token"):
        studio.outpaint(upload, (0, 0, 0, 0), 0, 1, sampler, seed=0)
    with pytest.raises(ValueError, match="between 0 and 8"):
        studio.outpaint(upload, (0, 17, 0, 0), 0, 1, sampler, seed=0)
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        studio.edit(upload, Box(30, 30, 8, 8), 0, 1, sampler, seed=0)
    with pytest.raises(ValueError, match="between 1 and 4, got 5"):
        studio.generate(0, 5, sampler, seed=0)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        studio.generate(0, 1, sampler, seed=-1)
    with pytest.raises(ValueError, match="pick a class"):
        studio.generate(None, 1, sampler, seed=0)


def test_old_runs_are_deleted(studio, tmp_path):
    sampler = _sampler(studio, num_steps=1)
    for _ in range(5):
        studio.generate(0, 1, sampler, seed=0)
    assert len(list((tmp_path / "runs").iterdir())) == 3
