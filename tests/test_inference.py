"""Inference preparation: weights in the compute dtype with the sensitive layers in float32, the
channels-last tokenizer, the fused modules swapped in for plain ones (sharing their parameters),
codebook-only logits, compilation, and the fast fp32 path's parity."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import TOKENIZER_MSGPACK, TRANSFORMER_MSGPACK, load_npz
from maskgit import VQGAN, MaskGIT, MaskGITTransformer, TokenizerConfig
from maskgit.models.inference import (
    CastingConv2d,
    CastingGroupNorm,
    CompiledLogits,
    FusedLayer,
    FusedLinear,
    InferenceResBlock,
    InferenceUpsampleConv,
    prepare_for_inference,
    prepare_tokenizer,
    prepare_transformer,
    tanh_gelu_,
)
from maskgit.models.tokenizer import ResBlock, UpsampleConv
from maskgit.models.transformer import TransformerLayer
from maskgit.sampling import ConfidenceSampler


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    MaskGIT(VQGAN.from_pretrained(TOKENIZER_MSGPACK), MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK)
            ).save_pretrained(folder)
    return folder


def test_codebook_logits_are_the_first_rows_of_the_full_logits(small_transformer):
    ids = torch.from_numpy(load_npz("transformer_small_io.npz")["input_ids"]).long()
    with torch.no_grad():
        full = small_transformer(ids)
        codebook = small_transformer.codebook_logits(ids)
    size = small_transformer.config.codebook_size
    assert codebook.shape == (*ids.shape, size)
    torch.testing.assert_close(codebook, full[..., :size], rtol=0, atol=1e-6)


def test_bf16_keeps_the_quantizer_and_output_layers_in_float32(fixture_folder):
    pipe = MaskGIT.from_pretrained(fixture_folder, precision="bf16")
    transformer_dtypes = {p.dtype for p in pipe.transformer.parameters()}
    assert transformer_dtypes == {torch.bfloat16}
    tokenizer = pipe.tokenizer
    assert tokenizer.quantizer.codebook.weight.dtype == torch.float32
    for part in (tokenizer.encoder, tokenizer.decoder):
        assert part.conv_in.weight.dtype == torch.bfloat16
        assert part.norm_out.weight.dtype == part.conv_out.weight.dtype == torch.float32
        # The borders between the dtypes cast: float32 inputs into the body, its output into the norm.
        assert isinstance(part.conv_in, CastingConv2d) and isinstance(part.norm_out, CastingGroupNorm)
    assert tokenizer.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    images = pipe.generate([1, 2], sampler=ConfidenceSampler(num_steps=4), seed=0)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    # Encoding quantizes float32 latents: bf16 ids agree with fp32 ids on most tokens.
    fp32 = MaskGIT.from_pretrained(fixture_folder)
    with torch.no_grad():
        ids32 = fp32.tokenizer.encode_to_ids(images)
        ids16 = pipe.tokenizer.encode_to_ids(images)
    assert (ids32 == ids16).float().mean() > 0.8


def test_fast_fp32_path_gives_the_official_tokens_and_images(fixture_folder):
    # from_pretrained prepares fp32 models too (channels-last tokenizer, inference mode,
    # codebook-only logits): with the official noise replayed, the official run comes out.
    from test_pipeline import IMAGE_TOL, replay

    pipe = MaskGIT.from_pretrained(fixture_folder)
    assert pipe.tokenizer.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    trace = load_npz("decode_small_generate.npz")
    tokens = []
    images = pipe.generate([int(trace["label"])] * 2, sampler=ConfidenceSampler(num_steps=16), noise=replay(trace),
                           callback=lambda step: tokens.append(step.sampled_ids))
    np.testing.assert_array_equal(tokens[-1].numpy(), trace["final_seqs_official"][:, -1])
    expected = np.clip(trace["images"], 0, 1).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(images.numpy(), expected, **IMAGE_TOL)
    images[0, 0, 0, 0] = 0.5  # results are ordinary tensors, not inference-mode ones


def test_fp16_needs_cuda_and_unknown_precisions_are_refused(fixture_folder, small_tokenizer, small_transformer):
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        MaskGIT.from_pretrained(fixture_folder, precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, int8"):
        MaskGIT(small_tokenizer, small_transformer, precision="int4")
    # The fp16 conversion itself (the CUDA path) keeps the whole tokenizer in float32.
    tokenizer, transformer = VQGAN(small_tokenizer.config), MaskGITTransformer(small_transformer.config)
    prepare_for_inference(tokenizer, transformer, "fp16")
    assert {p.dtype for p in transformer.parameters()} == {torch.float16}
    assert {p.dtype for p in tokenizer.parameters()} == {torch.float32}


@pytest.mark.slow
def test_compiled_transformer_gives_the_same_tokens(fixture_folder):
    pipe = MaskGIT.from_pretrained(fixture_folder)
    sampler = ConfidenceSampler(num_steps=3)
    eager = []
    pipe.generate([3, 4], sampler=sampler, seed=1, callback=lambda s: eager.append(s.sampled_ids))
    assert isinstance(pipe.compile()._logits_model, CompiledLogits)
    compiled = []
    pipe.generate([3, 4], sampler=sampler, seed=1, callback=lambda s: compiled.append(s.sampled_ids))
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)


def test_a_compiled_step_runs_context_reuse_uncompiled(fixture_folder, monkeypatch):
    pipe = MaskGIT.from_pretrained(fixture_folder)
    sampler = ConfidenceSampler(num_steps=4, context_reuse=1)
    eager = pipe.generate([3, 4], sampler=sampler, seed=1)
    compiled = pipe.compile()._logits_model

    def refuse(ids):
        raise AssertionError("the compiled step ran a step of context reuse")

    monkeypatch.setattr(compiled, "compiled", refuse)  # every step is full with a cache, or cheap
    assert torch.equal(pipe.generate([3, 4], sampler=sampler, seed=1), eager)


def _needs_onednn(dtype: torch.dtype = torch.bfloat16):
    if not FusedLinear.available(dtype):
        pytest.skip(f"no oneDNN {dtype} linear primitive in this torch build or on this CPU")


def _ids():
    return torch.from_numpy(load_npz("transformer_small_io.npz")["input_ids"]).long()


def test_bf16_on_cpu_fuses_the_layers_without_changing_the_state_dict(small_transformer, small_tokenizer):
    _needs_onednn()
    transformer = MaskGITTransformer(small_transformer.config).eval()
    transformer.load_state_dict(small_transformer.state_dict())
    plain = MaskGITTransformer(small_transformer.config).eval()
    plain.load_state_dict(small_transformer.state_dict())
    plain.to(torch.bfloat16)
    prepare_for_inference(VQGAN(small_tokenizer.config), transformer, "bf16")
    assert all(type(layer) is FusedLayer and not layer.training for layer in transformer.layers)
    assert isinstance(transformer.mlm_dense, FusedLinear) and transformer.mlm_dense.gelu
    assert not transformer.mlm_dense.training
    assert list(transformer.state_dict()) == list(plain.state_dict())
    ids = _ids()
    with torch.inference_mode():
        fused, plain_bf16 = transformer.codebook_logits(ids).float(), plain.codebook_logits(ids).float()
        exact = small_transformer.codebook_logits(ids)
    # Both are bf16 computations of the same function: the fused one is as close to float32.
    fused_error, plain_error = (fused - exact).abs(), (plain_bf16 - exact).abs()
    assert fused_error.max() <= 2 * plain_error.max() and fused_error.mean() <= 1.5 * plain_error.mean()
    assert not torch.equal(fused, plain_bf16)  # the fused primitives did run
    # With autograd (oneDNN's primitives have none), the plain path, and gradients that flow.
    logits = transformer.codebook_logits(ids)
    assert torch.equal(logits.detach(), plain.codebook_logits(ids).detach())
    logits.float().sum().backward()
    assert transformer.layers[0].attention.query.weight.grad is not None
    with torch.inference_mode():  # training mode takes the plain path (same seed: same dropout)
        torch.manual_seed(0)
        trained = transformer.train().codebook_logits(ids)
        torch.manual_seed(0)
        assert torch.equal(trained, plain.train().codebook_logits(ids))


def test_fused_layers_follow_weights_loaded_after_preparation(small_transformer, small_tokenizer):
    """The packed weights are a cache: a load_state_dict after preparation must refresh them, and a
    deepcopy must compute the same values."""
    _needs_onednn()
    config = small_transformer.config
    prepared = MaskGITTransformer(config).eval()  # random weights, then the fixture's loaded in
    prepare_for_inference(VQGAN(small_tokenizer.config), prepared, "bf16")
    ids = _ids()
    with torch.inference_mode():
        before = prepared.codebook_logits(ids)
    prepared.load_state_dict(small_transformer.state_dict())
    fresh = MaskGITTransformer(config).eval()
    fresh.load_state_dict(small_transformer.state_dict())
    prepare_for_inference(VQGAN(small_tokenizer.config), fresh, "bf16")
    with torch.inference_mode():
        after, expected = prepared.codebook_logits(ids), fresh.codebook_logits(ids)
        copied = copy.deepcopy(prepared).codebook_logits(ids)
    assert not torch.equal(before, after)
    assert torch.equal(after, expected)
    assert torch.equal(copied, expected)


def test_fp32_on_cpu_fuses_the_layers_and_keeps_the_logits(small_transformer):
    _needs_onednn(torch.float32)
    transformer = MaskGITTransformer(small_transformer.config).eval()
    transformer.load_state_dict(small_transformer.state_dict())
    layers, parameters = list(transformer.layers), dict(transformer.named_parameters())
    prepare_transformer(transformer, "fp32")
    # New modules in the plain ones' places; the plain objects are left as they were, and the new
    # ones hold the very same parameters (no copies) under the same names.
    assert all(type(layer) is TransformerLayer for layer in layers)
    for plain, fused in zip(layers, transformer.layers):
        assert type(fused) is FusedLayer and fused.attention is plain.attention and fused.mlp_output is plain.mlp_output
    assert all(parameter is parameters[name] for name, parameter in transformer.named_parameters())
    assert list(dict(transformer.named_parameters())) == list(parameters)
    prepare_transformer(transformer, "fp32")  # preparing again keeps what is swapped in
    assert all(type(fused) is FusedLayer and fused.attention is plain.attention for plain, fused in zip(layers, transformer.layers))
    ids = _ids()
    with torch.inference_mode():
        fused, exact = transformer.codebook_logits(ids), small_transformer.codebook_logits(ids)
    assert fused.dtype == torch.float32 and not torch.equal(fused, exact)  # the fused primitives ran
    torch.testing.assert_close(fused, exact, rtol=0, atol=1e-5)


def test_fp32_fuses_on_a_cpu_without_onednn_bf16_and_bf16_there_runs_the_plain_forward(small_transformer, monkeypatch):
    # An AVX2 CPU: oneDNN runs fp32 there but has no bf16 kernels.
    _needs_onednn(torch.float32)
    monkeypatch.setattr(FusedLinear, "available", staticmethod(lambda dtype: dtype == torch.float32))
    transformer = MaskGITTransformer(small_transformer.config).eval()
    transformer.load_state_dict(small_transformer.state_dict())
    prepare_transformer(transformer, "fp32")
    assert all(type(layer) is FusedLayer for layer in transformer.layers)
    assert type(transformer.mlm_dense) is FusedLinear
    plain_bf16 = copy.deepcopy(small_transformer)
    prepare_transformer(plain_bf16, "bf16")
    assert all(type(layer) is TransformerLayer for layer in plain_bf16.layers)
    prepare_transformer(transformer, "bf16")  # the fused modules stay, and fall back to the plain forward
    ids = _ids()
    with torch.inference_mode():
        # The fused bf16 path would use the erf GELU and oneDNN's rounding: equality shows it did not run.
        assert torch.equal(transformer.codebook_logits(ids), plain_bf16.codebook_logits(ids))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_preparing_draws_nothing_from_the_global_generator(small_transformer, small_tokenizer, precision):
    # A seeded program gives the same numbers whether or not it prepared a model on the way.
    tokenizer, transformer = VQGAN(small_tokenizer.config), MaskGITTransformer(small_transformer.config).eval()
    torch.manual_seed(0)
    prepare_for_inference(tokenizer, transformer, precision)
    after_preparing = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after_preparing, torch.rand(4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=64))
@example([0.0, -0.0, 1e-30, -1e-30, 2.7, -2.7, 5.5, -5.5, 30.0, -30.0, 3.4e38, -3.4e38])
def test_tanh_gelu_is_the_official_tanh_gelu_and_finite_wherever_its_input_is(values):
    x = torch.tensor(values, dtype=torch.float32)
    exact = torch.nn.functional.gelu(x.double(), approximate="tanh")
    out = tanh_gelu_(x.clone())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # Within a few float32 roundings of the exact function at every magnitude.
    assert ((out.double() - exact).abs() <= 1e-6 + 1e-6 * exact.abs()).all()
    y = x.clone()
    assert tanh_gelu_(y) is y  # in place: the result is the input's storage


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_tanh_gelu_covers_every_element_of_a_tensor_larger_than_its_slice(layout, monkeypatch):
    # Contiguous tensors run slice by slice: a small slice size and a length that is not a
    # multiple of it check that every slice, the short last one included, is computed once.
    from maskgit.models import inference

    monkeypatch.setattr(inference, "_GELU_SLICE", 1000)
    torch.manual_seed(0)
    x = torch.randn(37, 123) * 3
    if layout == "transposed":
        x = x.t()
    exact = torch.nn.functional.gelu(x.double(), approximate="tanh")
    y = x.clone() if layout == "contiguous" else x.clone().t().contiguous().t()
    out = tanh_gelu_(y)
    assert out is y and out.is_contiguous() == (layout == "contiguous")
    assert ((out.double() - exact).abs() <= 1e-6 + 1e-6 * exact.abs()).all()


@pytest.mark.parametrize("fuse", [True, False])
def test_fp32_gelu_after_the_linear_call_is_the_fused_one_within_rounding(fuse, monkeypatch):
    # Where oneDNN's tanh GELU is slow (AVX2) it runs after the linear call; both give the official form.
    from maskgit.models import inference

    _needs_onednn(torch.float32)
    monkeypatch.setattr(inference, "_fuse_tanh_gelu", lambda: fuse)
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 256).eval()
    x = torch.randn(32, 64) * 2
    with torch.inference_mode():
        out = FusedLinear(plain, gelu=True)(x).double()
        exact = torch.nn.functional.gelu(torch.nn.functional.linear(x.double(), plain.weight.double(),
                                                                    plain.bias.double()), approximate="tanh")
    torch.testing.assert_close(out, exact, rtol=0, atol=2e-6)


def test_fused_gelu_is_the_official_tanh_form_in_fp32_and_the_erf_form_in_bf16():
    _needs_onednn()
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 256).eval()
    x = torch.randn(32, 64) * 2
    with torch.inference_mode():
        pre = plain(x).double()
        fp32 = FusedLinear(plain, gelu=True)(x)
        torch.testing.assert_close(fp32.double(), torch.nn.functional.gelu(pre, approximate="tanh"), rtol=0, atol=2e-6)
        bf16_linear = FusedLinear(copy.deepcopy(plain).to(torch.bfloat16), gelu=True)
        bf16 = bf16_linear(x.bfloat16()).double()
        exact = torch.nn.functional.linear(x.bfloat16().double(), bf16_linear.weight.double(), bf16_linear.bias.double())
    erf, tanh = torch.nn.functional.gelu(exact), torch.nn.functional.gelu(exact, approximate="tanh")
    # Within bf16 rounding of the erf form, and the two forms differ by at most 4.7e-4.
    torch.testing.assert_close(bf16, erf, rtol=2**-8, atol=1e-6)
    assert (erf - tanh).abs().max() <= 4.8e-4
    assert (bf16 - erf).abs().mean() < (bf16 - tanh).abs().mean()


def _small_vqgan() -> VQGAN:
    return VQGAN(TokenizerConfig(filters=32, channel_multipliers=(1, 2), embedding_dim=8, codebook_size=16,
                                 image_size=32))


def test_tokenizer_blocks_are_swapped_for_inference_blocks_that_share_their_layers():
    tokenizer = _small_vqgan()
    blocks, parameters = list(tokenizer.modules()), dict(tokenizer.named_parameters())
    plain_blocks = [block for block in blocks if isinstance(block, ResBlock)]
    prepare_tokenizer(tokenizer, "fp32")
    assert all(type(block) is ResBlock for block in plain_blocks)  # the plain objects are left as they were
    swapped = [block for block in tokenizer.modules() if isinstance(block, ResBlock)]
    assert len(swapped) == len(plain_blocks) and all(type(block) is InferenceResBlock for block in swapped)
    for plain, fast in zip(plain_blocks, swapped):
        assert (fast.norm1, fast.conv1, fast.norm2, fast.conv2, fast.shortcut) == (
            plain.norm1, plain.conv1, plain.norm2, plain.conv2, plain.shortcut)
    assert all(parameter is parameters[name] for name, parameter in tokenizer.named_parameters())
    assert list(dict(tokenizer.named_parameters())) == list(parameters)
    assert tokenizer.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert type(tokenizer.decoder.conv_in) is torch.nn.Conv2d  # float32 needs no casts


def test_the_decoders_upsampling_is_swapped_for_one_that_shares_its_parameters():
    tokenizer = _small_vqgan()
    plain = list(tokenizer.decoder.upsample_convs)
    assert plain and all(type(conv) is UpsampleConv for conv in plain)
    parameters = dict(tokenizer.named_parameters())
    prepare_tokenizer(tokenizer, "fp32")
    for old, new in zip(plain, tokenizer.decoder.upsample_convs):
        assert type(new) is InferenceUpsampleConv and new.weight is old.weight and new.bias is old.bias
    assert list(dict(tokenizer.named_parameters())) == list(parameters)


@pytest.mark.parametrize("size", [(5, 5), (4, 7), (1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsampling_without_the_upsampled_copy_is_the_same_function(size, channels_last):
    torch.manual_seed(0)
    conv = UpsampleConv(6)
    fast = InferenceUpsampleConv(conv)
    x = torch.randn(2, 6, *size) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = conv(x)  # the plain one: upsample, then convolve
    with torch.no_grad():
        out = fast(x)
        bf16 = InferenceUpsampleConv(copy.deepcopy(conv).bfloat16())(x.bfloat16())
    assert out.shape == (2, 6, 2 * size[0], 2 * size[1]) and out.dtype == torch.float32
    if size != (1, 1):  # a 1x1 input is both layouts at once
        assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    # Every pixel, borders included, within float32 rounding of the summed kernel taps.
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), expected, rtol=0, atol=3e-2 * expected.abs().max().item())
    output = fast(x)  # with autograd: the plain forward, gradients and all
    output.sum().backward()
    assert conv.weight.grad is not None
    assert torch.equal(output, expected)


@pytest.mark.parametrize("index", [0, 2])  # a plain block, and one with the shortcut conv
def test_inference_blocks_without_autograd_write_in_place_and_give_the_same_values(index):
    block = _small_vqgan().encoder.res_blocks[index]
    fast = InferenceResBlock(block)
    x = torch.randn(2, block.norm1.num_channels, 8, 8)
    kept = x.clone()
    expected = block(x)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=0)
    assert torch.equal(x, kept)  # the input is never written
    output = fast(x)  # with autograd: the plain forward, gradients and all
    output.sum().backward()
    assert block.conv1.weight.grad is not None
    torch.testing.assert_close(output, expected, rtol=0, atol=0)


def test_what_a_hook_on_an_inference_block_sees_is_never_written_afterwards():
    tokenizer = _small_vqgan().eval()
    prepare_tokenizer(tokenizer, "fp32")
    seen = []
    hooks = [block.register_forward_hook(lambda module, args, output: seen.append((output, output.clone())))
             for block in tokenizer.decoder.res_blocks]
    with torch.no_grad():
        tokenizer.decode_ids(torch.randint(0, 16, (2, 8, 8)))
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(tokenizer.decoder.res_blocks)
    assert all(torch.equal(output, copy) for output, copy in seen)


def test_bf16_resblocks_add_their_residual_inside_the_convolution(small_tokenizer, monkeypatch):
    import maskgit.models.inference as inference

    if not InferenceResBlock.conv_add_available():
        pytest.skip("no oneDNN bf16 convolution with a fused add in this torch build or on this CPU")
    fused = copy.deepcopy(small_tokenizer).eval()
    prepare_tokenizer(fused, "bf16")
    blocks = [m for m in fused.modules() if isinstance(m, ResBlock)]
    assert blocks and all(isinstance(block, InferenceResBlock) for block in blocks)
    assert any(block.shortcut is not None for block in blocks)  # both kinds of residual are covered
    ids = torch.randint(0, small_tokenizer.config.codebook_size, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    fused_calls = []
    conv_add = inference._conv_add
    monkeypatch.setattr(inference, "_conv_add", lambda *args: fused_calls.append(1) or conv_add(*args))
    with torch.inference_mode():
        exact, exact_latents = small_tokenizer.decode_ids(ids), small_tokenizer.encoder(images)
        decoded, latents = fused.decode_ids(ids), fused.encoder(images)
        assert fused_calls
        # The same blocks adding in a pass of their own: the plain bf16 sums.
        with monkeypatch.context() as patch:
            patch.setattr(InferenceResBlock, "conv_add_available", staticmethod(lambda: False))
            plain_decoded, plain_latents = fused.decode_ids(ids), fused.encoder(images)
    # The fused convolutions ran, and rounding once instead of twice is no further from float32.
    assert not torch.equal(decoded, plain_decoded) and not torch.equal(latents, plain_latents)
    assert (decoded - exact).abs().mean() <= 1.2 * (plain_decoded - exact).abs().mean()
    assert (latents - exact_latents).abs().mean() <= 1.2 * (plain_latents - exact_latents).abs().mean()
    # Converted back to float32 (as ``to_precision("fp32")`` does), the blocks sum as plain ones.
    fused_calls.clear()
    prepare_tokenizer(fused, "fp32")
    with torch.inference_mode():
        assert fused.decode_ids(ids).dtype == torch.float32
    assert not fused_calls


def test_the_parity_fixtures_fused_form_runs_the_fused_modules(fused_tokenizer, fused_transformer, fused_pipeline):
    # tests/conftest.py's "fused" form, on which every fixture parity test runs as well.
    for tokenizer in (fused_tokenizer, fused_pipeline.tokenizer):
        assert any(isinstance(m, InferenceResBlock) for m in tokenizer.modules())
    if FusedLinear.available(torch.float32):
        for transformer in (fused_transformer, fused_pipeline.transformer):
            assert all(isinstance(layer, FusedLayer) for layer in transformer.layers)
