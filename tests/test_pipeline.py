"""The MaskGIT pipeline: official generation and box editing replayed with the official noise, the
editing modes' invariants, seeds, saving and loading, and registered names."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import pytest
import torch

from conftest import TOKENIZER_MSGPACK, TRANSFORMER_MSGPACK, load_npz, nhwc_to_nchw
from maskgit import CheckpointError, MaskGIT
from maskgit.checkpoints import hub
from maskgit.sampling import ConfidenceSampler, HaltonSampler, RandomSampler
from maskgit.sampling.editing import Box, composite_mask, latent_box_mask, token_mask_from_pixels

IMAGE_TOL = dict(atol=3e-4, rtol=1e-4)


def replay(trace: dict[str, np.ndarray]):
    """A decode noise function that returns the official per-step Gumbel noise."""
    start = int(trace["start_iter"])

    def noise(step: int, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        key = "trace_gumbel_sample" if kind == "sample" else "trace_gumbel_choice"
        value = torch.from_numpy(trace[key][step - start])
        assert tuple(value.shape) == tuple(shape)
        return value

    return noise


def test_generate_replays_the_official_run(pipeline_form):
    trace = load_npz("decode_small_generate.npz")
    images = pipeline_form.generate([int(trace["label"])] * 2, sampler=ConfidenceSampler(num_steps=16), noise=replay(trace))
    expected = np.clip(trace["images"], 0, 1).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(images.numpy(), expected, **IMAGE_TOL)


def test_edit_inputs_match_the_official_demo(tokenizer_form):
    trace = load_npz("decode_small_edit.npz")
    box = Box.parse(str(trace["bbox_top_left_height_width"]))
    mask = latent_box_mask(box, 128, 128)
    np.testing.assert_array_equal(mask.numpy(), trace["latent_mask"][0].astype(bool))
    with torch.no_grad():
        ids = tokenizer_form.encode_to_ids(nhwc_to_nchw(trace["edit_image"][None]))
    sequence = torch.where(mask, -1, ids).reshape(1, -1)
    np.testing.assert_array_equal(sequence[0].numpy(), trace["input_tokens"][0, 1:])
    np.testing.assert_array_equal(composite_mask(mask, 128, 128).numpy(), trace["composite_mask"][..., 0])


def test_edit_replays_the_official_run(pipeline_form):
    trace = load_npz("decode_small_edit.npz")
    image = nhwc_to_nchw(trace["edit_image"][None])
    box = Box.parse(str(trace["bbox_top_left_height_width"]))
    edited = pipeline_form.edit(image, box, int(trace["label"]), num_samples=2, noise=replay(trace))
    alpha = torch.from_numpy(trace["composite_mask"][..., 0])
    generated = torch.from_numpy(np.clip(trace["images"], 0, 1)).permute(0, 3, 1, 2)
    expected = generated * alpha + image * (1 - alpha)
    np.testing.assert_allclose(edited.numpy(), expected.numpy(), **IMAGE_TOL)


def test_same_seed_same_images_and_independent_of_batching(small_pipeline):
    a = small_pipeline.generate([1, 2, 3], sampler=ConfidenceSampler(num_steps=4), seed=7)
    b = small_pipeline.generate([1, 2, 3], sampler=ConfidenceSampler(num_steps=4), seed=7, batch_size=2)
    c = small_pipeline.generate([3], sampler=ConfidenceSampler(num_steps=4), seed=7, image_indices=[2])
    d = small_pipeline.generate([1, 2, 3], sampler=ConfidenceSampler(num_steps=4), seed=8)
    assert a.shape == (3, 3, 128, 128) and a.min() >= 0 and a.max() <= 1
    # The same tokens; the decoder's convolutions round differently per batch size (~1e-5).
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    torch.testing.assert_close(a[2:], c, rtol=0, atol=1e-4)
    assert (a - d).abs().max() > 0.1


def test_generator_gives_reproducible_runs(small_pipeline):
    a = small_pipeline.generate([0, 0], sampler=ConfidenceSampler(num_steps=3), generator=torch.Generator().manual_seed(1))
    b = small_pipeline.generate([0, 0], sampler=ConfidenceSampler(num_steps=3), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])


def test_unknown_class_id_is_rejected(small_pipeline):
    with pytest.raises(ValueError, match=r"class id 10 is outside \[0, 10\)"):
        small_pipeline.generate([10])


def test_inpaint_keeps_pixels_outside_the_mask(small_pipeline):
    torch.manual_seed(0)
    image = torch.rand(3, 128, 128)
    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[20:50, 70:75] = True  # touches tokens (1..3, 4)
    out = small_pipeline.inpaint(image, mask, 3, num_samples=2, seed=0)
    assert out.shape == (2, 3, 128, 128)
    torch.testing.assert_close(out[:, :, ~mask], image[None].expand(2, -1, -1, -1)[:, :, ~mask], rtol=0, atol=0)
    assert not torch.allclose(out[:, :, mask], image[:, mask][None].expand(2, -1, -1))
    expected_tokens = torch.zeros(8, 8, dtype=torch.bool)
    expected_tokens[1:4, 4] = True
    assert torch.equal(token_mask_from_pixels(mask, 16), expected_tokens)


@pytest.mark.parametrize("mask, message", [
    (torch.zeros(128, 128, dtype=torch.bool), "empty"),
    (torch.ones(64, 128, dtype=torch.bool), "64x128 but the image is 128x128"),
])
def test_bad_inpaint_masks(small_pipeline, mask, message):
    with pytest.raises(ValueError, match=message):
        small_pipeline.inpaint(torch.rand(3, 128, 128), mask, 0)


def test_edit_rejects_a_box_outside_the_image(small_pipeline):
    with pytest.raises(ValueError, match="outside the 128x128 image"):
        small_pipeline.edit(torch.rand(3, 128, 128), (100, 0, 40, 20), 1)


def test_edit_only_changes_the_blended_box(small_pipeline):
    image = torch.rand(3, 128, 128)
    out = small_pipeline.edit(image, (64, 64, 16, 16), 2, seed=1)
    alpha = composite_mask(latent_box_mask(Box(64, 64, 16, 16), 128, 128), 128, 128)
    untouched = alpha == 0
    torch.testing.assert_close(out[0][:, untouched], image[:, untouched], rtol=0, atol=0)
    assert not torch.allclose(out[0][:, alpha == 1], image[:, alpha == 1])


def test_outpaint_extends_by_whole_tokens_and_keeps_the_original(small_pipeline):
    image = torch.rand(3, 128, 128)
    out = small_pipeline.outpaint(image, (10, 0, 0, 32), 4, num_samples=1, seed=3)
    # 10 px rounds up to one 16-px token; 32 px is two tokens: a 9x10-token canvas, two windows.
    assert out.shape == (1, 3, 144, 160)
    torch.testing.assert_close(out[0, :, 16:, 32:], image, rtol=0, atol=0)


def test_outpaint_of_a_small_image_pads_the_window(small_pipeline):
    image = torch.rand(3, 64, 64)
    out = small_pipeline.outpaint(image, (0, 16, 0, 0), 4, seed=3, keep_size=True)
    assert out.shape == (1, 3, 64, 80)
    torch.testing.assert_close(out[0, :, :, :64], image, rtol=0, atol=0)


def test_outpaint_needs_some_extension(small_pipeline):
    with pytest.raises(ValueError, match="at least one pixel"):
        small_pipeline.outpaint(torch.rand(3, 128, 128), (0, 0, 0, 0), 1)


def test_save_and_load_round_trip(tmp_path, small_pipeline):
    small_pipeline.save_pretrained(tmp_path / "model")
    loaded = MaskGIT.from_pretrained(tmp_path / "model")
    assert loaded.class_names == small_pipeline.class_names and loaded.image_size == 128
    two_steps = ConfidenceSampler(num_steps=2)
    # The loaded pipeline is prepared for inference (maskgit.models.inference), the fixture's is
    # plain: the same tokens, and the decoder's rounding differs by about 1e-5.
    torch.testing.assert_close(loaded.generate([5], sampler=two_steps, seed=0),
                               small_pipeline.generate([5], sampler=two_steps, seed=0), rtol=0, atol=1e-4)
    with pytest.raises(CheckpointError, match="no model_index.json"):
        MaskGIT.from_pretrained(tmp_path / "model" / "tokenizer")


def test_bf16_precision_runs_the_models_in_bf16(small_pipeline):
    bf16 = MaskGIT(small_pipeline.tokenizer, small_pipeline.transformer, precision="bf16")
    dtypes = []
    hooks = [pipe.transformer.mlm_dense.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
             for pipe in (bf16, small_pipeline)]
    try:
        images = bf16.generate([1, 2], sampler=ConfidenceSampler(num_steps=2), seed=0)
        small_pipeline.generate([1], sampler=ConfidenceSampler(num_steps=1), seed=0)
    finally:
        for hook in hooks:
            hook.remove()
    assert dtypes == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert images.dtype == torch.float32 and images.shape == (2, 3, 128, 128)
    # The bf16 pipeline has its own copies: the modules it was built from stay float32.
    assert small_pipeline.transformer.mlm_dense.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        MaskGIT(small_pipeline.tokenizer, small_pipeline.transformer, precision="fp8")


@pytest.fixture
def fixture_server():
    """Serves the official small checkpoints from 127.0.0.1 under registry file names."""
    files = {"/tokenizer_small128_checkpoint": TOKENIZER_MSGPACK.read_bytes(),
             "/maskgit_small128_checkpoint": TRANSFORMER_MSGPACK.read_bytes()}
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()


def test_registered_name_is_downloaded_and_converted_once(tmp_path, monkeypatch, fixture_server):
    url, requests = fixture_server
    entry = hub.RegisteredCheckpoint(
        name="small128", description="test", base_url=url,
        files=(hub.RemoteFile("tokenizer", "tokenizer_small128_checkpoint"),
               hub.RemoteFile("transformer", "maskgit_small128_checkpoint")),
    )
    monkeypatch.setitem(hub.REGISTRY, "small128", entry)
    for name in ("http_proxy", "HTTP_PROXY", "MASKGIT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "cache"))
    first = MaskGIT.from_pretrained("small128")
    assert sorted(requests) == ["/maskgit_small128_checkpoint", "/tokenizer_small128_checkpoint"]
    assert (tmp_path / "cache" / "models" / "small128" / "model_index.json").is_file()
    second = MaskGIT.from_pretrained("small128")
    assert len(requests) == 2  # converted folder reused, no new download
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_editing_takes_one_image_at_a_time(small_pipeline):
    with pytest.raises(ValueError, match=r"one \(3, H, W\) image at a time"):
        small_pipeline.inpaint(torch.rand(2, 3, 128, 128), torch.ones(128, 128, dtype=torch.bool), 0)


@pytest.mark.parametrize("sampler", [
    ConfidenceSampler(num_steps=4),
    HaltonSampler(num_steps=4, roll=True),
    RandomSampler(num_steps=4, softmax_temperature=(1.5, 0.8), top_k=20),
], ids=lambda s: s.name)
def test_image_i_depends_only_on_seed_and_i_for_every_sampler(small_pipeline, sampler):
    tokens = []

    def keep_final(step):
        if step.step == step.num_steps - 1:
            tokens.append(step.sampled_ids)

    small_pipeline.generate([1, 2, 3, 4], sampler=sampler, seed=9, callback=keep_final)
    small_pipeline.generate([1, 2, 3, 4], sampler=sampler, seed=9, batch_size=3, callback=keep_final)
    small_pipeline.generate([4, 2], sampler=sampler, seed=9, image_indices=[3, 1], callback=keep_final)
    whole, (first, rest), split = tokens[0], tokens[1:3], tokens[3]
    assert torch.equal(torch.cat([first, rest]), whole)
    assert torch.equal(split, whole[[3, 1]])
    small_pipeline.generate([1, 2, 3, 4], sampler=sampler, seed=10, callback=keep_final)
    assert not torch.equal(tokens[-1], whole)


@pytest.mark.parametrize("mode", ["edit", "inpaint", "outpaint"])
def test_an_editing_sample_depends_only_on_seed_and_its_index(small_pipeline, mode):
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[32:64, 16:80] = True
    region = {"edit": (Box(32, 16, 32, 64),), "inpaint": (mask,), "outpaint": ((0, 32, 0, 0),)}[mode]
    tokens = []

    def keep_final(step):
        if step.step == step.num_steps - 1:
            tokens.append(step.sampled_ids)

    call = getattr(small_pipeline, mode)
    options = dict(sampler=ConfidenceSampler(num_steps=4), seed=5, callback=keep_final)
    call(image, *region, 3, num_samples=3, **options)
    call(image, *region, 3, num_samples=2, image_indices=[2, 0], **options)
    assert torch.equal(tokens[1], tokens[0][[2, 0]])
    with pytest.raises(ValueError, match="1 image_indices for num_samples=2"):
        call(image, *region, 3, num_samples=2, image_indices=[1], **options)


def test_class_names_and_ids_are_both_accepted(small_tokenizer, small_transformer):
    names = [f"thing{i}" for i in range(10)]
    pipe = MaskGIT(small_tokenizer, small_transformer, names)
    assert pipe.class_ids(["thing7", 3, "thing0"]) == [7, 3, 0]
    assert pipe.class_ids("thing2") == [2] and pipe.class_ids(torch.tensor([1, 2])) == [1, 2]
    one = ConfidenceSampler(num_steps=1)
    torch.testing.assert_close(pipe.generate(["thing7", 3], sampler=one, seed=1), pipe.generate([7, 3], sampler=one, seed=1))
    for bad, message in [([1.7], "integers or class names"), ([True], "integers or class names"),
                         (torch.tensor([1.0]), "must be integers"), (["nope"], "nope"), ([], "no class ids")]:
        with pytest.raises(ValueError, match=message):
            pipe.generate(bad, sampler=one, seed=0)


def test_the_default_sampler_is_saved_with_the_model_and_used(tmp_path, small_tokenizer, small_transformer):
    sampler = HaltonSampler(num_steps=3, softmax_temperature=(1.2, 0.9))
    MaskGIT(small_tokenizer, small_transformer, sampler=sampler).save_pretrained(tmp_path / "model")
    loaded = MaskGIT.from_pretrained(tmp_path / "model")
    assert loaded.sampler == sampler
    assert loaded.default_sampler(editing=True) == sampler.replace(num_steps=12)
    steps = []
    loaded.generate([0], seed=0, callback=steps.append)
    assert [s.step for s in steps] == [0, 1, 2]
    steps.clear()
    loaded.inpaint(torch.rand(3, 128, 128), torch.ones(128, 128, dtype=torch.bool), 0, seed=0, callback=steps.append)
    assert len(steps) == 12
    assert MaskGIT(small_tokenizer, small_transformer).sampler == ConfidenceSampler()
    index = tmp_path / "model" / "model_index.json"
    index.write_text(index.read_text().replace('"halton"', '"zigzag"'))
    with pytest.raises(CheckpointError, match="bad sampler.*zigzag"):
        MaskGIT.from_pretrained(tmp_path / "model")


def test_large_batches_are_decoded_in_chunks_with_the_same_images(small_pipeline, monkeypatch):
    import maskgit.pipeline

    sampler = ConfidenceSampler(num_steps=2)
    whole = small_pipeline.generate([1, 2, 3, 4, 5], sampler=sampler, seed=3)
    half = MaskGIT(small_pipeline.tokenizer, small_pipeline.transformer, precision="bf16")  # copies the models
    decoded_batches = []
    decode_ids = small_pipeline.tokenizer.decode_ids
    monkeypatch.setattr(small_pipeline.tokenizer, "decode_ids", lambda ids: decoded_batches.append(len(ids)) or decode_ids(ids))
    monkeypatch.setattr(maskgit.pipeline, "DECODE_PIXELS", 4 * 128 * 128)  # two 128 px images in float32
    chunked = small_pipeline.generate([1, 2, 3, 4, 5], sampler=sampler, seed=3)
    assert decoded_batches == [2, 2, 1]
    ids = torch.randint(0, small_pipeline.tokenizer.config.codebook_size, (3, 8, 8))
    images = small_pipeline.decode(ids)
    assert decoded_batches[3:] == [2, 1] and images.dtype == torch.float32 and images.shape == (3, 3, 128, 128)
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(ValueError, match=r"ids must be a \(B, h, w\) tensor of token ids, got \(8,\)"):
        small_pipeline.decode(ids[0, 0])
    with pytest.raises(ValueError, match="token ids must be in"):
        small_pipeline.decode(ids + 10_000)
    with torch.no_grad():
        torch.testing.assert_close(images, small_pipeline.tokenizer.decode_ids(ids).clamp(0, 1), rtol=0, atol=1e-4)
    # The same tokens; the decoder's convolutions round differently per batch size (~1e-5).
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-4)
    # A bf16 decoder's activations are half the size: twice the images per chunk.
    bf16_batches = []
    bf16_decode_ids = half.tokenizer.decode_ids
    monkeypatch.setattr(half.tokenizer, "decode_ids", lambda ids: bf16_batches.append(len(ids)) or bf16_decode_ids(ids))
    half.decode(ids.repeat(2, 1, 1))
    assert bf16_batches == [4, 2]


@pytest.mark.parametrize("sampler", [
    ConfidenceSampler(num_steps=5, context_reuse=1),
    ConfidenceSampler(num_steps=5, context_reuse=2, reuse_group=True),
    HaltonSampler(num_steps=5, roll=True, context_reuse=2),
    RandomSampler(num_steps=5, context_reuse=3),
], ids=lambda s: s.name + ("-group" if s.chooses_groups else ""))
def test_context_reuse_runs_every_mode_with_every_noise_source(pipeline_form, sampler):
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[32:64, 16:80] = True
    tokens = []

    def keep_final(step):
        if step.step == step.num_steps - 1:
            tokens.append(step.sampled_ids)

    # Generation: image i still depends only on (seed, i), whatever the batch.
    generated = pipeline_form.generate([1, 2, 3], sampler=sampler, seed=4, callback=keep_final)
    pipeline_form.generate([3, 1], sampler=sampler, seed=4, image_indices=[2, 0], batch_size=1, callback=keep_final)
    assert torch.equal(torch.cat(tokens[1:3]), tokens[0][[2, 0]])
    assert generated.shape == (3, 3, 128, 128)
    # The editing modes keep what they must, from a later start step too.
    edited = pipeline_form.edit(image, (64, 64, 16, 16), 2, sampler=sampler, start_step=2,
                                generator=torch.Generator().manual_seed(1))
    alpha = composite_mask(latent_box_mask(Box(64, 64, 16, 16), 128, 128), 128, 128)
    torch.testing.assert_close(edited[0][:, alpha == 0], image[:, alpha == 0], rtol=0, atol=0)
    inpainted = pipeline_form.inpaint(image, mask, 3, sampler=sampler, num_samples=2, seed=0)
    torch.testing.assert_close(inpainted[:, :, ~mask], image[None].expand(2, -1, -1, -1)[:, :, ~mask], rtol=0, atol=0)
    extended = pipeline_form.outpaint(image, (0, 32, 0, 0), 4, sampler=sampler,
                                      noise=lambda step, kind, shape: torch.zeros(shape))
    assert extended.shape == (1, 3, 128, 160)
    torch.testing.assert_close(extended[0, :, :, :128], image, rtol=0, atol=0)



@pytest.fixture(scope="module")
def guided_transformer(small_transformer):
    """A random transformer for the fixture tokenizer, with a null class (guidance) and weights
    large enough that the context changes the logits."""
    import dataclasses

    from maskgit import MaskGITTransformer

    torch.manual_seed(0)
    model = MaskGITTransformer(dataclasses.replace(small_transformer.config, dropout=0.0, null_class=True)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.2)
    return model


class EvaluationLog:
    """Records each evaluation that decoding asks of a pipeline's transformer: (rows, cache,
    positions or None for a full evaluation)."""

    def __init__(self, transformer) -> None:
        self.codebook_logits_of = transformer.codebook_logits
        self.calls: list[tuple[int, object, torch.Tensor | None]] = []

    def __call__(self, ids, *, cache=None, positions=None):
        self.calls.append((ids.shape[0], cache, positions))
        return self.codebook_logits_of(ids, cache=cache, positions=positions)

    def take(self) -> list[tuple[int, object, torch.Tensor | None]]:
        calls, self.calls = self.calls, []
        return calls


def _check_reused(calls, plan: tuple[bool, ...], rows: int, guided: list[bool]) -> int:
    """Check the evaluations of a decoding run (of one or more windows) against the sampler's plan:
    each window follows the plan; a full evaluation fills a fresh cache that the cheap steps after
    it reuse; a guided step evaluates both halves, each computing the same positions in its own
    rows. Returns the number of windows."""
    assert calls and len(calls) % len(plan) == 0
    for window in range(len(calls) // len(plan)):
        cache = None
        for (batch, step_cache, positions), full, step_guided in zip(calls[window * len(plan):], plan, guided):
            assert batch == (2 if step_guided else 1) * rows
            assert (positions is None) == full
            if full:
                assert step_cache is not None and step_cache is not cache
                cache = step_cache
            else:
                assert step_cache is cache
                if step_guided:
                    assert torch.equal(positions[:rows], positions[rows:])
    return len(calls) // len(plan)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("sampler", [
    ConfidenceSampler(num_steps=6, guidance=2.0, guidance_schedule="linear", context_reuse=2),
    ConfidenceSampler(num_steps=6, guidance=2.0, guidance_schedule="linear", context_reuse=2, reuse_group=True),
    HaltonSampler(num_steps=6, guidance=1.5, context_reuse=1),
], ids=lambda s: s.name + ("-group" if s.chooses_groups else ""))
def test_context_reuse_runs_every_mode_with_guidance_in_every_precision(small_tokenizer, guided_transformer,
                                                                        precision, sampler, monkeypatch):
    import copy

    pipe = MaskGIT(copy.deepcopy(small_tokenizer), copy.deepcopy(guided_transformer), precision=precision)
    assert pipe.transformer.word_embeddings.weight.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    log = EvaluationLog(pipe.transformer)
    monkeypatch.setattr(pipe.transformer, "codebook_logits", log)
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0))

    def guided(start_step: int) -> list[bool]:
        return [bool(sampler.guidance_at(step)) for step in range(start_step, sampler.num_steps)]

    assert not all(sampler.evaluation_plan()) and any(guided(0))
    generated = pipe.generate([1, 2], sampler=sampler, seed=4)
    assert generated.shape == (2, 3, 128, 128) and bool(torch.isfinite(generated).all())
    assert _check_reused(log.take(), sampler.evaluation_plan(), 2, guided(0)) == 1

    box = Box(32, 48, 48, 32)
    edited = pipe.edit(image, box, 3, sampler=sampler, start_step=2, num_samples=2, seed=1)
    assert _check_reused(log.take(), sampler.evaluation_plan(2), 2, guided(2)) == 1
    alpha = composite_mask(latent_box_mask(box, 128, 128), 128, 128)
    torch.testing.assert_close(edited[:, :, alpha == 0], image[None].expand(2, -1, -1, -1)[:, :, alpha == 0],
                               rtol=0, atol=0)

    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[64:, 16:112] = True
    inpainted = pipe.inpaint(image, mask, 5, sampler=sampler, seed=2)
    assert _check_reused(log.take(), sampler.evaluation_plan(), 1, guided(0)) == 1
    torch.testing.assert_close(inpainted[0][:, ~mask], image[:, ~mask], rtol=0, atol=0)

    # Extended by a whole window: decoded in several windows, each with its own context.
    extended = pipe.outpaint(image, (0, 128, 0, 0), 6, sampler=sampler, seed=3)
    assert _check_reused(log.take(), sampler.evaluation_plan(), 1, guided(0)) >= 2
    assert extended.shape == (1, 3, 128, 256) and bool(torch.isfinite(extended).all())
    torch.testing.assert_close(extended[0, :, :, :128], image, rtol=0, atol=0)
