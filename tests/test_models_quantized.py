"""int8 on CPUs (maskgit.models.quantized and its modules in maskgit.models.inference): the quantizers,
the kernel against the same arithmetic written out in float, the run-time decision where int8 runs
(both branches, by replacing the detection), the prepared transformer, the pipeline and the CLI."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

import maskgit.models.quantized as quantized
from conftest import load_npz
from maskgit import MaskGIT, MaskGITTransformer
from maskgit.configs import ConfigError
from maskgit.models.inference import (
    FusedLayer,
    FusedLinear,
    Int8Layer,
    Int8Linear,
    Int8Weight,
    prepare_transformer,
)
from maskgit.models.quantized import (
    Int8Support,
    check_int8,
    int8_linear,
    int8_support,
    quantize_activations,
    quantize_weight,
)
from maskgit.models.transformer import TransformerLayer
from maskgit.sampling import ConfidenceSampler

# How far int8 logits may be from float32 ones, as a relative RMS error. Each linear layer rounds its
# input to 1 of 254 (8 bits) or 126 (7 bits) steps over the tensor's range and its weights to 1 of
# 254 per row: about 1 % error a layer at 8 bits. The LayerNorms renormalise after every residual
# add, so the errors do not compound; the logits come out a few per cent off, and twice as far at 7
# bits. The bounds leave room above that and stay far below what a wrong scale, zero point,
# transposed weight or dropped bias gives (errors of order 100 %).
LOGITS_TOLERANCE = {256: 0.05, 128: 0.10}


def _support(levels: int = 128) -> Int8Support:
    """This machine's int8 support; skips where int8 does not run, or not on ``levels`` codes (8-bit
    activations saturate on a CPU without VNNI)."""
    support = int8_support()
    if isinstance(support, str):
        pytest.skip(support)
    if levels > support.levels:
        pytest.skip(f"this CPU's int8 kernel runs on {support.levels} activation levels, not {levels}")
    return support


def _ids() -> torch.Tensor:
    return torch.from_numpy(load_npz("transformer_small_io.npz")["input_ids"]).long()


def _relative_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# -- quantizers ------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(low=st.floats(-50, 0), high=st.floats(0, 50), levels=st.sampled_from([256, 128]), seed=st.integers(0, 2**16))
@example(low=-1.401298464324817e-45, high=0.0, levels=256, seed=0)  # a subnormal range: 1 / scale overflowed
@example(low=0.0, high=3e-39, levels=128, seed=1)
def test_activation_codes_cover_the_range_and_round_to_the_nearest_step(low, high, levels, seed):
    x = torch.rand(7, 33, generator=torch.Generator().manual_seed(seed)) * (high - low) + low
    x[0, 0], x[0, 1] = low, high  # the extremes are in the tensor
    codes, scale, zero_point = quantize_activations(x, levels)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert int(codes.max()) <= levels - 1 and 0 <= zero_point <= levels - 1
    restored = scale * (codes.float() - zero_point)
    assert (restored - x).abs().max() <= 0.5 * scale * (1 + 1e-4) + 1e-6  # the nearest step
    zero = quantize_activations(torch.tensor([low, 0.0, high]), levels)
    assert zero[0][1] == zero[2]  # zero is exact: padding and masked values stay zero


def test_activations_of_zeros_and_non_finite_activations():
    codes, scale, zero_point = quantize_activations(torch.zeros(3, 4))
    assert scale == 1.0 and zero_point == 0 and not codes.any()
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="inf or NaN"):
            quantize_activations(torch.tensor([1.0, bad]))


def test_weights_are_quantized_per_output_channel_to_the_nearest_step():
    _support()
    torch.manual_seed(0)
    weight = torch.randn(12, 40) * torch.logspace(-3, 1, 12)[:, None]  # rows of very different sizes
    quantized_weight = quantize_weight(weight, torch.arange(12.0))
    torch.testing.assert_close(quantized_weight.scales, weight.abs().amax(1) / 127)
    assert not quantized_weight.zero_points.any() and torch.equal(quantized_weight.bias, torch.arange(12.0))


# -- the kernel --------------------------------------------------------------------------------------


def _written_out(x, weight, bias, levels):
    """The int8 arithmetic in float: the dequantized input times the dequantized weights."""
    codes, scale, zero_point = quantize_activations(x, levels)
    scales = weight.abs().amax(1) / 127
    weight_codes = torch.round(weight / scales[:, None]).clamp(-127, 127)
    return F.linear(scale * (codes.double() - zero_point), (weight_codes * scales[:, None]).double(), bias.double())


@pytest.mark.parametrize("levels", [256, 128])
def test_int8_linear_computes_the_quantized_product_with_bias_gelu_and_residual(levels):
    _support(levels)
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 9, 48) * 3, torch.randn(20, 48) * 0.1, torch.randn(20)
    residual = torch.randn(2, 9, 20)
    expected = _written_out(x, weight, bias, levels)
    packed = quantize_weight(weight, bias)
    # The integer products are exact: what is left is float32 rounding of the scales and sums.
    torch.testing.assert_close(int8_linear(x, packed, levels).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(int8_linear(x, packed, levels, gelu=True).double(),
                               F.gelu(expected, approximate="tanh"), rtol=1e-5, atol=1e-5)
    kept = residual.clone()
    torch.testing.assert_close(int8_linear(x, packed, levels, residual=residual).double(),
                               expected + residual.double(), rtol=1e-5, atol=1e-5)
    assert torch.equal(residual, kept)  # the residual is read, not written
    # ... and it is close to the float32 product.
    assert _relative_rms(int8_linear(x, packed, levels), F.linear(x, weight, bias)) < LOGITS_TOLERANCE[levels] / 2


# -- where int8 runs ---------------------------------------------------------------------------------


def test_int8_is_refused_off_the_cpu_and_on_cpus_without_fast_int8_kernels(monkeypatch):
    cuda = int8_support("cuda")
    assert isinstance(cuda, str) and "CPUs only" in cuda and "bf16 or fp16" in cuda
    assert "use fp32" in int8_support("mps")
    monkeypatch.setattr(quantized, "_probe_levels", lambda: 256)
    for capability in ("DEFAULT", "SVE256", "VSX"):  # x86 below AVX2, Arm, POWER
        monkeypatch.setattr(quantized, "_cpu_capability", lambda capability=capability: capability)
        reason = int8_support("cpu")
        assert isinstance(reason, str) and "AVX2 or newer" in reason and capability in reason and "\n" not in reason
        with pytest.raises(ValueError, match="AVX2 or newer"):
            check_int8("cpu")
    monkeypatch.setattr(quantized, "_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(quantized, "_probe_levels", lambda: None)  # a build without the kernel
    with pytest.raises(ValueError, match="no working oneDNN int8 linear kernel"):
        check_int8("cpu")


@pytest.mark.parametrize(("capability", "levels"), [("AVX2", 128), ("AVX512", 128), ("AVX512", 256)])
def test_int8_runs_on_avx2_and_avx512_with_the_levels_the_kernel_supports(monkeypatch, capability, levels):
    monkeypatch.setattr(quantized, "_cpu_capability", lambda: capability)
    monkeypatch.setattr(quantized, "_probe_levels", lambda: levels)
    assert check_int8("cpu") == Int8Support(levels) == int8_support(torch.device("cpu"))


def _pair_sums(saturate: bool):
    """codes @ weight.T as a CPU without VNNI computes it (pairs of products summed in int16,
    saturating) or with VNNI (exact)."""

    def multiply(codes, weight):
        products = codes.long()[:, None, :] * weight.long()[None, :, :]
        pairs = products[..., 0::2] + products[..., 1::2]
        if saturate:
            pairs = pairs.clamp(-(2**15), 2**15 - 1)
        return pairs.sum(-1).float()

    return multiply


def test_the_probe_finds_the_activation_bits_that_do_not_saturate():
    assert quantized._exact_levels(_pair_sums(saturate=False)) == 256
    assert quantized._exact_levels(_pair_sums(saturate=True)) == 128
    assert quantized._exact_levels(lambda codes, weight: torch.zeros(4, 16)) is None
    levels = quantized._probe_levels()  # this machine's kernel
    assert levels in (None, 128, 256)


# -- the prepared transformer ----------------------------------------------------------------------------


def test_int8_swaps_in_int8_layers_that_share_the_parameters(small_transformer):
    support = _support()
    transformer = copy.deepcopy(small_transformer).eval()
    parameters, plain_layers = dict(transformer.named_parameters()), list(transformer.layers)
    prepare_transformer(transformer, "int8")
    for plain, layer in zip(plain_layers, transformer.layers):
        assert type(layer) is Int8Layer and layer.attention is plain.attention and not layer.training
        assert layer.qkv.levels == support.levels
        linears = [layer.attention.query, layer.attention.key, layer.attention.value, layer.attention.out,
                   layer.mlp_intermediate, layer.mlp_output]
        assert all(type(linear) is Int8Linear for linear in linears)
    # The head stays float32: its dense layer is fused where oneDNN runs, the logits are plain.
    assert type(transformer.mlm_dense) is (FusedLinear if FusedLinear.available(torch.float32) else torch.nn.Linear)
    assert list(dict(transformer.named_parameters())) == list(parameters)
    assert all(parameter is parameters[name] for name, parameter in transformer.named_parameters())
    assert {p.dtype for p in transformer.parameters()} == {torch.float32}


@pytest.mark.parametrize("levels", [256, 128])
def test_int8_logits_are_close_to_float32(small_transformer, monkeypatch, levels):
    _support(levels)
    monkeypatch.setattr(quantized, "_probe_levels", lambda: levels)  # 7 bits run on every int8 CPU
    transformer = copy.deepcopy(small_transformer).eval()
    prepare_transformer(transformer, "int8")
    ids = _ids()
    with torch.inference_mode():
        int8, exact = transformer.codebook_logits(ids), small_transformer.codebook_logits(ids)
    assert int8.dtype == torch.float32 and not torch.equal(int8, exact)
    assert _relative_rms(int8, exact) < LOGITS_TOLERANCE[levels]
    assert (int8.argmax(-1) == exact.argmax(-1)).float().mean() > 0.9


def test_an_int8_layers_plain_forward_runs_its_int8_linear_submodules(small_transformer, monkeypatch):
    """A forward that calls the layer's linear layers as modules (the plain one) computes in int8
    too, and gives the fused forward's values."""
    import maskgit.models.inference as inference

    _support()
    transformer = copy.deepcopy(small_transformer).eval()
    prepare_transformer(transformer, "int8")
    layer, x = transformer.layers[0], torch.randn(2, 17, transformer.config.hidden_size)
    calls = []
    kernel = inference.int8_linear
    monkeypatch.setattr(inference, "int8_linear", lambda *args, **kwargs: calls.append(1) or kernel(*args, **kwargs))
    with torch.inference_mode():
        fused = layer(x)
        assert len(calls) == 4  # query, key and value stacked; attention out; the MLP's two
        plain = TransformerLayer.forward(layer, x)
        assert len(calls) == 4 + 6
        exact = small_transformer.layers[0](x)
    torch.testing.assert_close(plain, fused, rtol=1e-5, atol=1e-5)
    assert not torch.equal(plain, exact)


def test_int8_with_autograd_or_in_training_runs_the_float32_weights(small_transformer):
    _support()
    transformer = copy.deepcopy(small_transformer).eval()
    prepare_transformer(transformer, "int8")
    ids = _ids()
    logits = transformer.codebook_logits(ids)
    torch.testing.assert_close(logits, small_transformer.codebook_logits(ids), rtol=0, atol=1e-5)
    logits.sum().backward()
    assert transformer.layers[0].attention.query.weight.grad is not None


def test_int8_copies_follow_weights_loaded_after_preparation_and_deepcopies(small_transformer):
    _support()
    prepared = MaskGITTransformer(small_transformer.config).eval()  # random weights, then the fixture's
    prepare_transformer(prepared, "int8")
    ids = _ids()
    with torch.inference_mode():
        before = prepared.codebook_logits(ids)
    prepared.load_state_dict(small_transformer.state_dict())
    fresh = copy.deepcopy(small_transformer).eval()
    prepare_transformer(fresh, "int8")
    with torch.inference_mode():
        after, expected = prepared.codebook_logits(ids), fresh.codebook_logits(ids)
        copied = copy.deepcopy(prepared).codebook_logits(ids)
    assert not torch.equal(before, after)
    assert torch.equal(after, expected) and torch.equal(copied, expected)
    assert isinstance(copy.deepcopy(prepared).layers[0].qkv, Int8Weight)


def test_preparing_another_precision_turns_the_int8_modules_back(small_transformer):
    _support()
    transformer = copy.deepcopy(small_transformer).eval()
    fp32 = copy.deepcopy(small_transformer).eval()
    prepare_transformer(fp32, "fp32")
    ids = _ids()
    with torch.inference_mode():
        expected = fp32.codebook_logits(ids)
        prepare_transformer(transformer, "int8")
        int8 = transformer.codebook_logits(ids)
        prepare_transformer(transformer, "fp32")
        assert torch.equal(transformer.codebook_logits(ids), expected)  # the float32 weights were kept
        assert not any(isinstance(module, (Int8Layer, Int8Linear)) for module in transformer.modules())
        assert all(type(layer) is type(fp32.layers[0]) for layer in transformer.layers)
        assert all(type(m) is torch.nn.Linear for m in transformer.layers.modules() if isinstance(m, torch.nn.Linear))
        prepare_transformer(transformer, "int8")
        assert torch.equal(transformer.codebook_logits(ids), int8)
        prepare_transformer(transformer, "bf16")
        assert {p.dtype for p in transformer.parameters()} == {torch.bfloat16}
        assert all(type(layer) in (FusedLayer, TransformerLayer) for layer in transformer.layers)


# -- the pipeline and the CLI ---------------------------------------------------------------------------


def test_an_int8_pipeline_converts_round_trip_and_saves_its_float32_weights(small_pipeline, tmp_path):
    _support()
    sampler = ConfidenceSampler(num_steps=4)
    state = {name: tensor.clone() for name, tensor in small_pipeline.transformer.state_dict().items()}
    pipe = MaskGIT(small_pipeline.tokenizer, small_pipeline.transformer, precision="int8")
    assert pipe.precision == "int8" and "precision=int8" in repr(pipe)
    assert all(type(layer) is TransformerLayer for layer in small_pipeline.transformer.layers)  # not changed
    # The tokenizer stays float32 entirely.
    assert {p.dtype for p in pipe.tokenizer.parameters()} == {torch.float32}
    images = pipe.generate([1, 2], sampler=sampler, seed=0)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()
    pipe.save_pretrained(tmp_path / "saved")
    loaded = MaskGIT.from_pretrained(tmp_path / "saved")
    for name, tensor in loaded.transformer.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    again = MaskGIT.from_pretrained(tmp_path / "saved", precision="int8")
    assert torch.equal(again.generate([1, 2], sampler=sampler, seed=0), images)
    fp32 = small_pipeline.generate([1, 2], sampler=sampler, seed=0)
    assert torch.equal(pipe.to_precision("fp32").generate([1, 2], sampler=sampler, seed=0),
                       MaskGIT.from_pretrained(tmp_path / "saved").generate([1, 2], sampler=sampler, seed=0))
    assert pipe.precision == "fp32" and fp32.shape == images.shape
    assert torch.equal(pipe.to_precision("int8").generate([1, 2], sampler=sampler, seed=0), images)


def test_the_pipeline_refuses_int8_where_it_does_not_pay_and_with_compile(small_pipeline, monkeypatch):
    _support()
    with pytest.raises(ValueError, match="compile: precision int8"):
        MaskGIT(small_pipeline.tokenizer, small_pipeline.transformer, precision="int8").compile()
    with pytest.raises(ValueError, match="precision='int8'"):
        MaskGIT.from_pretrained("fashion-mnist", torch_dtype=torch.int8)
    monkeypatch.setattr(quantized, "_cpu_capability", lambda: "DEFAULT")
    with pytest.raises(ValueError, match="AVX2 or newer"):
        MaskGIT(small_pipeline.tokenizer, small_pipeline.transformer, precision="int8")
    with pytest.raises(ValueError, match="AVX2 or newer"):
        copy.deepcopy(small_pipeline).to_precision("int8")


def test_training_refuses_int8():
    from maskgit.training.config import TransformerTrainConfig

    with pytest.raises(ConfigError, match="int8 is an inference precision"):
        TransformerTrainConfig(precision="int8")


def test_cli_generates_in_int8_and_refuses_it_in_one_line_where_it_does_not_pay(model_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    from maskgit.cli import main

    _support()
    common = ["generate", "--model", str(model_dir), "--class", "1", "--num", "2", "--steps", "3", "--seed", "0",
              "--quiet", "--precision", "int8"]
    assert main([*common, "--out", str(tmp_path / "int8")]) == 0
    assert len(list((tmp_path / "int8" / "0001").glob("*.png"))) == 2
    assert json.loads((tmp_path / "int8" / "manifest.json").read_text())["settings"]["precision"] == "int8"
    capsys.readouterr()
    assert main([*common, "--compile", "--out", str(tmp_path / "compiled")]) == 2
    assert capsys.readouterr().err.strip() == (
        "maskgit generate: error: compile: precision int8 runs oneDNN's int8 kernels eagerly; compile fp32 or bf16 instead")
    monkeypatch.setattr(quantized, "_cpu_capability", lambda: "DEFAULT")
    assert main([*common, "--out", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("maskgit generate: error: precision int8 needs an x86 CPU with AVX2") and "\n" not in error
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
