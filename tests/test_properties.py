"""Property-based tests (Hypothesis): the argument parsers (classes, boxes, extends, masks,
schedules, temperatures) and the image and checkpoint readers, on random text, random bytes and
truncated real files. Each example must end in a correct result or a clean error (ValueError, or
its subclass CheckpointError), never in any other exception.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import TOKENIZER_CKPT, TRANSFORMER_MSGPACK
from maskgit.checkpoints.errors import CheckpointError
from maskgit.checkpoints.flax_msgpack import read_flax_msgpack
from maskgit.class_names import imagenet_class_names, parse_class_list
from maskgit.cli import build_parser
from maskgit.data import FASHION_MNIST_CLASSES
from maskgit.imageio import load_image, load_mask
from maskgit.models import VQGAN, MaskGITTransformer
from maskgit.sampling.editing import Box, Extend, latent_box_mask
from maskgit.sampling.schedules import canonical_schedule

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
READERS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what people type: digits, commas, names, brackets, odd spaces.
typed = st.lists(st.sampled_from(list("0123456789,_-+ )(.xeE\té") + ["tench", "ox", "bag", "Bag"]), max_size=12).map("".join)


_SCRATCH = tempfile.TemporaryDirectory()  # removed at exit; each example overwrites its file


def _temporary(data: bytes, suffix: str) -> Path:
    path = Path(_SCRATCH.name) / f"input{suffix}"
    path.write_bytes(data)
    return path


# -- parsers ------------------------------------------------------------------------------------------


@FAST
@given(st.lists(st.one_of(typed, st.text(max_size=20)), min_size=1, max_size=3))
def test_class_lists_resolve_to_valid_indices_or_fail_cleanly(values):
    for names in (FASHION_MNIST_CLASSES, imagenet_class_names()):
        try:
            classes = parse_class_list(values, names)
        except ValueError as error:
            assert str(error)
        else:
            assert classes and all(isinstance(c, int) and 0 <= c < len(names) for c in classes)


@FAST
@given(st.lists(st.integers(0, 999), min_size=1, max_size=5))
def test_class_indices_round_trip(indices):
    assert parse_class_list([",".join(map(str, indices))], imagenet_class_names()) == indices


@FAST
@given(typed, st.integers(1, 64), st.integers(1, 64))
def test_boxes_parse_and_check_or_fail_cleanly(text, height, width):
    try:
        box = Box.parse(text)
        box.check_inside(height * 16, width * 16)
    except ValueError as error:
        assert str(error)
        return
    mask = latent_box_mask(box, height * 16, width * 16)
    assert mask.shape == (height, width) and mask.any()


@FAST
@given(st.tuples(*[st.integers(-5, 10_000)] * 4), st.sampled_from([8, 16]))
def test_extends_round_up_to_whole_tokens_or_fail_cleanly(sides, factor):
    try:
        tokens = Extend.parse(",".join(map(str, sides))).in_tokens(factor)
    except ValueError as error:
        assert min(sides) < 0 or sum(sides) == 0, error
        return
    for pixels, count in zip(sides, (tokens.top, tokens.right, tokens.bottom, tokens.left)):
        assert count * factor >= pixels > (count - 1) * factor or pixels == count == 0


@FAST
@given(typed)
def test_extend_text_parses_or_fails_cleanly(text):
    try:
        extend = Extend.parse(text)
    except ValueError:
        return
    assert all(isinstance(v, int) for v in (extend.top, extend.right, extend.bottom, extend.left))


@FAST
@given(st.text(max_size=12))
def test_schedule_names_are_canonical_or_refused(name):
    try:
        canonical = canonical_schedule(name)
    except ValueError:
        return
    assert canonical_schedule(canonical) == canonical


temperature_text = st.text(alphabet=st.sampled_from(list("0123456789.,-+eEinfa ")), min_size=1, max_size=12)


@FAST
@given(temperature_text, temperature_text)
@example("--", "0")  # Python 3.11's argparse made `--flag=--` an empty list (found by this test)
def test_temperature_flags_build_a_valid_sampler_or_fail_cleanly(softmax, choice):
    from maskgit.cli import CLIError
    from maskgit.cli.options import sampler_from_args
    from maskgit.sampling import ConfidenceSampler

    parser = build_parser()
    try:
        args = parser.parse_args(["generate", "--class", "1", "--out", "o", f"--softmax-temperature={softmax}",
                                  f"--temperature={choice}"])
    except SystemExit as exit:  # argparse: --temperature is not a number
        assert exit.code == 2
        return
    try:
        sampler = sampler_from_args(args, ConfidenceSampler())
    except CLIError as error:
        assert "temperature" in str(error)
        return
    values = sampler.softmax_temperature if isinstance(sampler.softmax_temperature, tuple) else (sampler.softmax_temperature,)
    assert all(np.isfinite(v) and v > 0 for v in values)
    assert sampler.choice_temperature == float(choice)


@FAST
@given(st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=2, max_size=4), st.sampled_from(["L", "1", "RGB"]))
def test_masks_read_back_exactly(rows, mode):
    pixels = np.array(rows, dtype=bool)
    picture = Image.fromarray((pixels * 255).astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    assert torch.equal(load_mask(_temporary(buffer.getvalue(), ".png")), torch.from_numpy(pixels))


# -- readers on random and truncated bytes ------------------------------------------------------------


def _image_bytes(format: str) -> bytes:
    buffer = io.BytesIO()
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(buffer, format=format)
    return buffer.getvalue()


IMAGE_FILES = {name: _image_bytes(name) for name in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")}


def _check_image_or_value_error(path: Path) -> None:
    try:
        image = load_image(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    assert image.dtype == torch.float32 and image.dim() == 3 and image.shape[0] == 3
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


@READERS
@given(st.binary(max_size=300))
def test_random_bytes_are_not_an_image(data):
    _check_image_or_value_error(_temporary(data, ".png"))


@READERS
@given(st.sampled_from(sorted(IMAGE_FILES)), st.data())
def test_truncated_or_damaged_images_fail_cleanly(name, data):
    content = IMAGE_FILES[name]
    cut = data.draw(st.integers(0, len(content)))
    flip = data.draw(st.integers(0, len(content) - 1))
    damaged = bytearray(content[:cut])
    if data.draw(st.booleans()) and flip < len(damaged):
        damaged[flip] ^= 0xFF
    _check_image_or_value_error(_temporary(bytes(damaged), "." + name.lower()))


TRANSFORMER_BYTES = TRANSFORMER_MSGPACK.read_bytes()
TOKENIZER_CKPT_BYTES = TOKENIZER_CKPT.read_bytes()


@READERS
@given(st.binary(max_size=400))
def test_random_bytes_are_not_a_checkpoint(data):
    path = _temporary(data, "")
    for reader in (read_flax_msgpack, MaskGITTransformer.from_pretrained, VQGAN.from_pretrained):
        try:
            reader(path)
        except CheckpointError as error:
            assert str(path) in str(error)


@READERS
@given(st.integers(0, len(TRANSFORMER_BYTES) - 1), st.integers(0, len(TRANSFORMER_BYTES) - 1), st.booleans())
def test_truncated_or_damaged_official_checkpoints_fail_cleanly(cut, flip, damage):
    data = bytearray(TRANSFORMER_BYTES[:cut] if not damage else TRANSFORMER_BYTES)
    if damage:
        data[flip] ^= 0xFF
    path = _temporary(bytes(data), ".msgpack")
    try:
        model = MaskGITTransformer.from_pretrained(path)
    except CheckpointError as error:
        assert str(path) in str(error)
    else:
        # A flipped byte inside a weight's data still reads (as another value): shapes must hold.
        assert damage and model.config.num_classes == 10


@READERS
@given(st.integers(0, len(TOKENIZER_CKPT_BYTES) - 1))
def test_truncated_maskgit_torch_checkpoints_fail_cleanly(cut):
    path = _temporary(TOKENIZER_CKPT_BYTES[:cut], ".ckpt")
    with pytest.raises(CheckpointError, match=str(path)):
        VQGAN.from_pretrained(path)


@READERS
@given(st.binary(max_size=200), st.integers(0, 2**20))
def test_random_safetensors_fail_cleanly(data, header_size):
    folder = Path(_SCRATCH.name) / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "vqgan"}')
    (folder / "model.safetensors").write_bytes(header_size.to_bytes(8, "little") + data)
    with pytest.raises(CheckpointError):
        VQGAN.from_pretrained(folder)
