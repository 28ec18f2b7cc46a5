"""Parity with the official fixtures on an accelerator: the models, plain and prepared for fp32
inference, on each device of ``MASKGIT_TEST_DEVICES`` (comma-separated, e.g. ``cuda``; by default
``cuda`` where torch sees one), compared with the official outputs at the CPU tests' tolerances.
Without a device to test, the module is skipped. ``tools/gpu_check.sh`` runs it on a GPU machine;
``MASKGIT_TEST_DEVICES=cpu`` runs it here.

TF32 is turned off for these tests: the official outputs are float32, and TF32 matmuls and
convolutions (cuDNN's default for convolutions) round inputs to 10 mantissa bits.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from conftest import load_npz, nchw_to_nhwc, nhwc_to_nchw
from maskgit.sampling import decode
from test_decode import FIXTURES, _replay_noise
from test_tokenizer import IMAGE_TOL, LATENT_TOL
from test_transformer import LOGIT_TOL


def _devices() -> list[str]:
    listed = os.environ.get("MASKGIT_TEST_DEVICES")
    if listed is not None:
        return [name.strip() for name in listed.split(",") if name.strip()]
    return ["cuda"] if torch.cuda.is_available() else []


DEVICES = _devices()
pytestmark = pytest.mark.skipif(not DEVICES, reason="no accelerator: set MASKGIT_TEST_DEVICES (e.g. cuda)")


@pytest.fixture(scope="module", params=[(device, form) for device in DEVICES for form in ("plain", "fused")],
                ids=lambda param: "-".join(param))
def on_device(request, small_tokenizer, small_transformer):
    """(tokenizer, transformer) on the device, plain or prepared for fp32 inference, with TF32 off."""
    from maskgit.models.inference import prepare_tokenizer, prepare_transformer

    device, form = request.param
    tokenizer = copy.deepcopy(small_tokenizer).to(device)
    transformer = copy.deepcopy(small_transformer).to(device)
    if form == "fused":
        prepare_tokenizer(tokenizer, "fp32")
        prepare_transformer(transformer, "fp32")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield tokenizer, transformer
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def test_the_tokenizer_encodes_quantizes_and_decodes_as_the_official_one(on_device):
    tokenizer, _ = on_device
    io = load_npz("tokenizer_small_io.npz")
    images = nhwc_to_nchw(io["images"]).to(_device_of(tokenizer))
    with torch.no_grad():
        latents = tokenizer.encode(images)
        ids = tokenizer.encode_to_ids(images)
        decoded = tokenizer.decode_ids(torch.from_numpy(io["rand_ids"]).to(images.device))
    assert latents.device.type == images.device.type
    np.testing.assert_allclose(nchw_to_nhwc(latents.cpu()), io["latents"], **LATENT_TOL)
    np.testing.assert_array_equal(ids.cpu().numpy(), io["ids"])
    np.testing.assert_allclose(nchw_to_nhwc(decoded.float().cpu()), io["rand_decoded"], **IMAGE_TOL)


def test_the_transformer_gives_the_official_logits(on_device):
    _, transformer = on_device
    io = load_npz("transformer_small_io.npz")
    with torch.no_grad():
        logits = transformer(torch.from_numpy(io["input_ids"]).to(_device_of(transformer)))
    np.testing.assert_allclose(logits.cpu().numpy(), io["logits"], **LOGIT_TOL)


@pytest.mark.parametrize("name", FIXTURES)
def test_replayed_noise_reproduces_the_official_decoding(on_device, name):
    _, transformer = on_device
    data = load_npz(name)
    device = _device_of(transformer)
    noise, _ = _replay_noise(data)  # official noise, on the CPU: the engine moves it to the logits
    records: list = []
    final = decode(transformer, torch.from_numpy(data["input_tokens"]).to(device), num_steps=int(data["num_iter"]),
                   start_step=int(data["start_iter"]), choice_temperature=float(data["choice_temperature"]),
                   noise=noise, callback=records.append)
    assert final.device.type == records[0].logits.device.type == device.type
    np.testing.assert_array_equal(final.cpu().numpy(), data["final_seqs_official"])
