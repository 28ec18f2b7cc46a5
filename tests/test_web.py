"""The studio without a browser: the decoding strip, what each tab does (``Studio``), the command
lines it shows, its limits and messages, and the editor helpers of the Gradio app."""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before anything imports gradio

import json
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.cli import build_parser
from maskgit.cli.generate import sampler_from_args
from maskgit.data.transforms import eval_transform
from maskgit.imageio import load_image, to_uint8
from maskgit.pipeline import MaskGIT
from maskgit.sampling import MASK_ID
from maskgit.sampling.editing import Box
from maskgit.web.strip import StripRecorder, checker_overlay
from maskgit.web.studio import Limits, Studio


@pytest.fixture(scope="module")
def pipeline():
    return MaskGIT.from_pretrained("fashion-mnist")


@pytest.fixture
def studio(pipeline, tmp_path):
    return Studio(pipeline, "fashion-mnist", tmp_path / "runs", Limits(max_images=4, max_runs_kept=3))


def _sampler(studio, name="confidence", **changes):
    form = dict(num_steps=8, schedule="cosine", choice_temperature=4.5, softmax_temperature=(1.0, 1.0), top_k=0,
                guidance=0.0, guidance_schedule="constant")
    return studio.sampler(name, **{**form, **changes})


def _photo(tmp_path, size=(48, 40), name="photo.png"):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name)
    return tmp_path / name


# -- the strip ------------------------------------------------------------------------------------


def test_checker_overlay_covers_masked_tokens_only():
    images = torch.rand(2, 3, 8, 8)
    masked = torch.zeros(2, 4, 4, dtype=torch.bool)
    masked[0, 1, 2] = True
    covered = checker_overlay(images, masked)
    assert torch.equal(covered[1], images[1])
    assert torch.equal(covered[0, :, 2:4, 4:6], torch.full((3, 2, 2), 0.58))  # (1 + 2) odd: the lighter grey
    keep = torch.ones(8, 8, dtype=torch.bool)
    keep[2:4, 4:6] = False
    assert torch.equal(covered[0][:, keep], images[0][:, keep])


def test_strip_records_every_step_and_ends_fully_decoded(pipeline):
    seen = []
    recorder = StripRecorder(lambda ids: pipeline.tokenizer.decode_ids(ids), on_step=lambda d, t: seen.append((d, t)))
    images = pipeline.generate([3, 5], sampler=pipeline.default_sampler().replace(num_steps=6), seed=1,
                               callback=recorder)
    assert seen == [(k, 6) for k in range(1, 7)]
    masked_counts = [int(masked.sum()) for _, masked in recorder.frames]
    assert masked_counts == sorted(masked_counts, reverse=True) and masked_counts[0] > 0 and masked_counts[-1] == 0
    strip = recorder.render(min_side=64, gap=4)
    assert strip.dtype == np.uint8 and strip.shape == (64, 6 * 68 - 4, 3)
    # The last frame is the first image itself, scaled up 2x (nearest).
    last = strip[:, -64:][::2, ::2]
    np.testing.assert_allclose(last.astype(int), to_uint8(images[0]).astype(int), atol=1)
    # The first frame shows the checker where tokens are still masked.
    first_ids, first_masked = recorder.frames[0]
    assert (first_ids != MASK_ID).all()  # masked positions are decoded from the step's guess
    row, column = map(int, first_masked.nonzero()[0])
    assert set(np.unique(strip[row * 4 : row * 4 + 4, column * 4 : column * 4 + 4])) <= {107, 148}


def test_strip_without_steps_is_an_error(pipeline):
    with pytest.raises(ValueError, match="no decoding steps"):
        StripRecorder(pipeline.tokenizer.decode_ids).render()


# -- the studio -----------------------------------------------------------------------------------


def test_generate_matches_the_library_and_the_command_line_it_shows(studio, pipeline, tmp_path):
    sampler = _sampler(studio, softmax_temperature=(1.2, 0.8), top_k=50)
    steps = []
    result = studio.generate(7, 3, sampler, seed=11, progress=lambda done, total: steps.append(done))
    assert steps == list(range(1, 9))
    expected = pipeline.generate([7] * 3, sampler=sampler, seed=11)
    for path, image in zip(result.images, expected):
        np.testing.assert_array_equal(to_uint8(load_image(path)), to_uint8(image))
    assert all(path.is_relative_to(tmp_path / "runs") for path in result.files)
    settings = json.loads(next(p for p in result.files if p.name == "settings.json").read_text())
    assert settings["seed"] == 11 and settings["sampler"] == sampler.to_dict()
    # The command shown parses with the real CLI into the same request and the same sampler.
    words = shlex.split(settings["command"])
    assert words[0] == "maskgit" and settings["command"] in result.settings
    args = build_parser().parse_args(words[1:])
    assert (args.model, args.classes, args.num, args.seed) == ("fashion-mnist", ["7"], 3, 11)
    assert sampler_from_args(args, pipeline.default_sampler()) == sampler


def test_random_seed_is_drawn_and_shown(studio):
    result = studio.generate(0, 1, _sampler(studio, num_steps=2), seed=None)
    seed = json.loads(result.files[-1].read_text())["seed"]
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


def test_upload_is_fitted_and_says_so(studio, tmp_path):
    upload = studio.load_image(_photo(tmp_path, (48, 40)))
    assert upload.image.shape == (3, 32, 32) and upload.source_size == (40, 48)
    assert upload.note == "photo.png: 48x40 resized (short side to 32) and centre-cropped to 32x32, the model's size."
    assert torch.equal(upload.image, eval_transform(32)(Image.open(tmp_path / "photo.png")))
    assert "used as it is" in studio.load_image(_photo(tmp_path, (32, 32), "exact.png")).note
    assert "resized to 32x32" in studio.load_image(_photo(tmp_path, (64, 64), "square.png")).note


def test_bad_uploads_get_messages_that_name_the_file_not_the_folder(pipeline, tmp_path):
    studio = Studio(pipeline, "fashion-mnist", tmp_path, Limits(max_upload_bytes=20000, max_upload_pixels=2000))
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

    result = studio.outpaint(upload, (1, 0, 2, 0), 2, 1, sampler, seed=0)
    wider = to_uint8(load_image(result.images[0]))
    assert wider.shape == (38, 32, 3) and "--extend 2,0,4,0" in result.settings
    np.testing.assert_array_equal(wider[2:34], source)

    result = studio.edit(upload, Box(8, 8, 6, 6), 2, 1, sampler, seed=0)
    assert "--box 8,8,6,6" in result.settings and load_image(result.images[0]).shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["edit", "inpaint", "outpaint"])
def test_the_command_shown_makes_the_same_images(studio, tmp_path, monkeypatch, mode):
    from maskgit.cli import main

    upload = studio.load_image(_photo(tmp_path))
    sampler = _sampler(studio, num_steps=5, softmax_temperature=(1.5, 0.5), top_k=40)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[3:9, 5:20] = True
    run = {"edit": lambda: studio.edit(upload, Box(6, 4, 10, 12), 5, 2, sampler, seed=3),
           "inpaint": lambda: studio.inpaint(upload, mask, 5, 2, sampler, seed=3),
           "outpaint": lambda: studio.outpaint(upload, (0, 2, 1, 0), 5, 2, sampler, seed=3)}[mode]
    result = run()
    command = json.loads(result.files[-1].read_text())["command"]
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
    with pytest.raises(ValueError, match="between 0 and 16"):
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


# -- the Gradio app's editor helpers --------------------------------------------------------------


def test_painted_layer_becomes_a_mask_and_a_box(studio, tmp_path):
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    scale = app._display_scale(studio)  # 32 px shown at 256
    layer = np.zeros((32 * scale, 32 * scale, 4), np.uint8)
    layer[5 * scale + 3 : 9 * scale, 10 * scale : 12 * scale + 1, 3] = 255  # strokes on a transparent layer
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    mask = app._painted_mask({"layers": [str(tmp_path / "layer.png")]}, studio)
    assert mask.nonzero()[:, 0].unique().tolist() == [5, 6, 7, 8]
    assert mask.nonzero()[:, 1].unique().tolist() == [10, 11, 12]
    assert app._box_of(mask) == Box(5, 10, 4, 3)
    assert not app._painted_mask({"layers": []}, studio).any()
    with pytest.raises(ValueError, match="no box: paint over the part to edit"):
        app._box_of(torch.zeros(32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="the painted layer is not the editor's size"):
        Image.new("RGBA", (257, 256)).save(tmp_path / "huge.png")
        app._painted_mask({"layers": [str(tmp_path / "huge.png")]}, studio)


def test_runs_share_one_queue_slot(studio):
    app = pytest.importorskip("maskgit.web.app", reason="needs the web extra (gradio)")
    demo = app.build_app(studio)
    runs = [fn for fn in demo.fns.values() if fn.name.startswith("do_")]
    assert sorted(fn.name for fn in runs) == ["do_edit", "do_generate", "do_inpaint", "do_outpaint"]
    assert {fn.concurrency_id for fn in runs} == {"model"}
    assert {fn.concurrency_limit for fn in runs} == {"default"} and demo._queue.default_concurrency_limit == 1


def test_serve_refuses_a_bad_port_or_device(capsys):
    from maskgit.cli import main

    assert main(["serve", "--port", "0"]) == 2
    assert "--port must be in [1, 65535], got 0" in capsys.readouterr().err
    assert main(["serve", "--device", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
