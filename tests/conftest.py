"""Shared test fixtures. The official parity fixtures live in ../shared beside the checkout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared").resolve()
OFFICIAL = SHARED / "fixtures" / "official"
MASKGIT_TORCH = SHARED / "fixtures" / "maskgit-torch"

TOKENIZER_MSGPACK = OFFICIAL / "tokenizer_small128_checkpoint.msgpack"
TRANSFORMER_MSGPACK = OFFICIAL / "maskgit_small128_checkpoint.msgpack"
TOKENIZER_CKPT = MASKGIT_TORCH / "maskgit_torch_tokenizer_small128.ckpt"
TRANSFORMER_CKPT = MASKGIT_TORCH / "maskgit_torch_transformer_small128.ckpt"


def load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(OFFICIAL / name) as data:
        return {key: data[key] for key in data.files}


def nhwc_to_nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


def nchw_to_nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="session")
def small_tokenizer():
    from maskgit import VQGAN

    return VQGAN.from_pretrained(TOKENIZER_MSGPACK)


@pytest.fixture(scope="session")
def small_transformer():
    from maskgit import MaskGITTransformer

    return MaskGITTransformer.from_pretrained(TRANSFORMER_MSGPACK)


@pytest.fixture(scope="session")
def small_pipeline(small_tokenizer, small_transformer):
    from maskgit.pipeline import MaskGIT

    return MaskGIT(small_tokenizer, small_transformer)


@pytest.fixture(autouse=True)
def _single_thread():
    # The test models are tiny: a second intra-op thread only adds hand-off cost, which on a
    # loaded 2-core machine made many-small-step tests up to 10x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
