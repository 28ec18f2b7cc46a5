"""The diffusers-style surface of MaskGIT: pipe(...) and its output types, PIL inputs and the
image-size rule of the editing modes, the step callback and progress bar, seeds, torch_dtype, the
short repr, and loading two official files without a config."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TOKENIZER_CKPT, TOKENIZER_MSGPACK, TRANSFORMER_CKPT, TRANSFORMER_MSGPACK
from maskgit import CheckpointError, MaskGIT, MaskGITTransformer
from maskgit.configs import TRANSFORMER_PRESETS
from maskgit.data.transforms import to_tensor
from maskgit.imageio import to_uint8
from maskgit.registry import shipped_model_dir
from maskgit.sampling import ConfidenceSampler, HaltonSampler

THREE = ConfidenceSampler(num_steps=3)


@pytest.fixture
def pipe(small_tokenizer, small_transformer):
    names = [f"thing{i}" for i in range(10)]
    pipeline = MaskGIT(small_tokenizer, small_transformer, names, sampler=THREE)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# -- pipe(...) ------------------------------------------------------------------------------------


def test_every_output_type_holds_the_same_images(pipe):
    reference = pipe.generate(["thing4", 7], seed=5)
    pt = pipe(["thing4", 7], seed=5, output_type="pt")
    np_out = pipe([4, "thing7"], seed=5, output_type="np")
    pil = pipe(["thing4", 7], seed=5)
    assert pt.class_ids == np_out.class_ids == pil.class_ids == [4, 7]
    torch.testing.assert_close(pt.images, reference, rtol=0, atol=0)
    assert isinstance(np_out.images, np.ndarray) and np_out.images.dtype == np.float32
    assert np_out.images.shape == (2, 128, 128, 3)
    np.testing.assert_array_equal(np_out.images, reference.permute(0, 2, 3, 1).numpy())
    assert isinstance(pil.images, list) and len(pil.images) == 2
    assert all(image.mode == "RGB" and image.size == (128, 128) for image in pil.images)
    for image, tensor in zip(pil.images, reference):
        np.testing.assert_array_equal(np.asarray(image), to_uint8(tensor))
    assert pil.seed == pt.seed == 5 and pil.sampler == THREE


def test_the_call_options(pipe):
    out = pipe("thing2", num_inference_steps=2, num_images_per_label=3, seed=1, output_type="pt")
    assert out.class_ids == [2, 2, 2] and out.sampler == THREE.replace(num_steps=2)
    assert not torch.equal(out.images[0], out.images[1])  # three different images of one class
    torch.testing.assert_close(out.images, pipe.generate([2, 2, 2], sampler=THREE.replace(num_steps=2), seed=1))
    halton = HaltonSampler(num_steps=4)
    out = pipe([1], sampler=halton, num_inference_steps=2, seed=0, output_type="pt")
    assert out.sampler == HaltonSampler(num_steps=2)
    with pytest.raises(ValueError, match="output_type must be one of pil, np, pt"):
        pipe([1], output_type="tensor")
    with pytest.raises(ValueError, match="num_images_per_label"):
        pipe([1], num_images_per_label=0)
    with pytest.raises(ValueError, match="num_steps must be at least 1"):
        pipe([1], num_inference_steps=0)
    with pytest.raises(ValueError, match="nope"):
        pipe(["nope"])


def test_a_call_without_a_seed_draws_one_and_reports_it(pipe):
    first, second = pipe([3], output_type="pt"), pipe([3], output_type="pt")
    assert isinstance(first.seed, int) and first.seed != second.seed
    again = pipe([3], seed=first.seed, output_type="pt")
    torch.testing.assert_close(again.images, first.images, rtol=0, atol=0)
    with_generator = pipe([3], generator=torch.Generator().manual_seed(0), output_type="pt")
    assert with_generator.seed is None
    with pytest.raises(ValueError, match="one source of randomness"):
        pipe([3], seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="non-negative integer"):
        pipe.generate([3], seed=-1)


def test_the_callback_sees_every_step_of_every_batch(pipe):
    steps = []
    pipe([1, 2, 3], batch_size=2, seed=0, callback=steps.append)
    assert [(s.step, s.next_ids.shape[0]) for s in steps] == [(0, 2), (1, 2), (2, 2), (0, 1), (1, 1), (2, 1)]


# -- progress bar ---------------------------------------------------------------------------------


def _bar_output(pipe, call, **config) -> str:
    stream = io.StringIO()
    pipe.set_progress_bar_config(file=stream, mininterval=0, **config)
    call()
    return stream.getvalue()


def test_the_progress_bar_counts_the_steps_of_the_whole_call(pipe):
    text = _bar_output(pipe, lambda: pipe([1, 2, 3], batch_size=2, seed=0), desc="sampling")
    assert "sampling" in text and "6/6" in text and "3/3" not in text
    # A canvas of 12x8 tokens with new rows at both ends takes two windows of 12 editing steps,
    # planned before the first: the bar's total is right from the start.
    text = _bar_output(pipe, lambda: pipe.outpaint(torch.rand(3, 128, 128), (32, 0, 32, 0), 1, seed=0))
    assert "0/24" in text and "24/24" in text and "/12" not in text
    assert _bar_output(pipe, lambda: pipe([1], seed=0), disable=True) == ""


def test_counting_steps_computes_no_step_probabilities(pipe, monkeypatch):
    from maskgit.sampling import engine

    calls = []
    original = engine.selected_probs
    monkeypatch.setattr(engine, "selected_probs", lambda *args: calls.append(1) or original(*args))
    _bar_output(pipe, lambda: pipe([1, 2], seed=0))
    assert calls == []  # the bar counts steps; the softmax of DecodeStep.selected_probs is never run
    seen = []
    pipe([1, 2], seed=0, callback=lambda step: seen.append(step.selected_probs))
    assert len(calls) == 3 and seen[0].shape == (2, 65) and seen[0].dtype == torch.float32


# -- the editing inputs ---------------------------------------------------------------------------


def _picture(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_pil_inputs_are_the_same_as_tensors(pipe):
    picture = _picture(128, 128)
    tensor = to_tensor(picture)
    mask = np.zeros((128, 128), np.uint8)
    mask[40:70, 10:50] = 255
    mask_picture = Image.fromarray(mask)
    mask_tensor = torch.from_numpy(mask > 0)
    for method, args in ((pipe.edit, ((32, 32, 32, 32), 1)), (pipe.inpaint, (None, 2)), (pipe.outpaint, ((0, 16, 0, 0), 3))):
        pil_args = (mask_picture, *args[1:]) if method == pipe.inpaint else args
        tensor_args = (mask_tensor, *args[1:]) if method == pipe.inpaint else args
        from_pil = method(picture, *pil_args, seed=4)
        from_tensor = method(tensor, *tensor_args, seed=4)
        torch.testing.assert_close(from_pil, from_tensor, rtol=0, atol=0)


def test_the_editing_modes_resize_to_the_model_size_unless_keep_size(pipe):
    picture = _picture(150, 200)
    mask = np.zeros((150, 200), np.uint8)
    mask[:, 100:] = 255  # the right half
    out = pipe.inpaint(picture, Image.fromarray(mask), 1, seed=0)
    assert out.shape == (1, 3, 128, 128)
    # Resized to 128 px high and centre-cropped: the right half of the crop starts at column 64.
    from maskgit.inputs import prepare_image

    prepared = prepare_image(picture, 128, factor=16)
    torch.testing.assert_close(out[0, :, :, :60], prepared[:, :, :60], rtol=0, atol=0)
    assert not torch.allclose(out[0, :, :, 70:], prepared[:, :, 70:])

    small = torch.rand(3, 64, 64)
    assert pipe.edit(small, (16, 16, 16, 16), 1, seed=0).shape == (1, 3, 128, 128)
    assert pipe.edit(small, (16, 16, 16, 16), 1, seed=0, keep_size=True).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="multiples of the token size 16"):
        pipe.outpaint(torch.rand(3, 60, 64), (16, 0, 0, 0), 1, keep_size=True)
    with pytest.raises(ValueError, match="mask is 150x200 but the image is 64x64"):
        pipe.inpaint(small, Image.fromarray(mask), 1)


# -- loading --------------------------------------------------------------------------------------


def test_torch_dtype_maps_to_the_precision():
    folder = shipped_model_dir("fashion-mnist")
    bf16 = MaskGIT.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert bf16.precision == "bf16" and bf16.transformer.mlm_dense.weight.dtype == torch.bfloat16
    fp32 = MaskGIT.from_pretrained(folder, torch_dtype=torch.float32)
    assert fp32.precision == "fp32" and fp32.transformer.mlm_dense.weight.dtype == torch.float32
    assert MaskGIT.from_pretrained(folder, precision="bf16", torch_dtype=torch.bfloat16).precision == "bf16"
    two_files = MaskGIT.from_pretrained(tokenizer=TOKENIZER_MSGPACK, transformer=TRANSFORMER_MSGPACK,
                                        torch_dtype=torch.bfloat16)
    assert two_files.precision == "bf16" and two_files.transformer.mlm_dense.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="torch.float64 is not supported"):
        MaskGIT.from_pretrained(folder, torch_dtype=torch.float64)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            MaskGIT.from_pretrained(folder, torch_dtype=torch.float16)
    with pytest.raises(ValueError, match="contradicts"):
        MaskGIT.from_pretrained(folder, precision="fp32", torch_dtype=torch.bfloat16)


def test_the_repr_is_a_short_summary():
    pipe = MaskGIT.from_pretrained("fashion-mnist")
    text = repr(pipe)
    assert len(text) < 600 and len(text.splitlines()) <= 6
    sampler = f"{type(pipe.sampler).__name__}(num_steps={pipe.sampler.num_steps}"
    for part in ("image_size=32", "device=cpu", "precision=fp32", "512 codes", "6 layers x 256", "8x8 tokens",
                 "classes=10 (T-shirt/top, Trouser, Pullover, Dress, ...)", sampler):
        assert part in text


def test_two_official_files_load_without_a_config(monkeypatch, small_pipeline):
    # Without the preset the transformer alone cannot be read: its vocabulary does not say how
    # many of its ids are codes. Beside its tokenizer it loads, with the same weights and outputs.
    monkeypatch.delitem(TRANSFORMER_PRESETS, "small128")
    with pytest.raises(CheckpointError, match="the codebook size cannot be read.*beside its tokenizer"):
        MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK)
    pipe = MaskGIT.from_pretrained(tokenizer=TOKENIZER_MSGPACK, transformer=TRANSFORMER_MSGPACK)
    config = pipe.transformer.config
    assert (config.codebook_size, config.num_classes, config.num_heads, config.latent_size) == (64, 10, 4, 8)
    assert pipe.class_names == tuple(f"class_{i}" for i in range(10)) and not pipe.training
    for ours, reference in zip(pipe.state_dict().values(), small_pipeline.state_dict().values()):
        assert torch.equal(ours, reference)
    named = MaskGIT.from_pretrained(tokenizer=TOKENIZER_MSGPACK, transformer=TRANSFORMER_MSGPACK,
                                    class_names=[f"c{i}" for i in range(10)])
    assert named.class_names[3] == "c3"


def test_two_file_loading_checks_its_arguments_and_the_codebook():
    pipe = MaskGIT.from_pretrained(tokenizer=TOKENIZER_CKPT, transformer=TRANSFORMER_CKPT)
    assert pipe.image_size == 128
    shipped = shipped_model_dir("fashion-mnist")
    with pytest.raises(CheckpointError, match="75 ids leaves no class ids beside 512 codes"):
        MaskGIT.from_pretrained(tokenizer=shipped / "tokenizer", transformer=TRANSFORMER_MSGPACK)
    with pytest.raises(CheckpointError, match="a codebook of 512 codes, but the tokenizer has 64"):
        MaskGIT.from_pretrained(tokenizer=TOKENIZER_MSGPACK, transformer=shipped / "transformer")
    with pytest.raises(ValueError, match="both tokenizer= and transformer="):
        MaskGIT.from_pretrained(tokenizer=TOKENIZER_MSGPACK)
    with pytest.raises(ValueError, match="not both"):
        MaskGIT.from_pretrained("fashion-mnist", tokenizer=TOKENIZER_MSGPACK)
