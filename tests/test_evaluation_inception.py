"""The FID Inception-v3: the standard state dict loads with every name mapped, through every path,
and the download goes through a server on 127.0.0.1 only (no real weights exist offline)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading

import pytest
import torch

from evaluation_helpers import random_inception_state_dict
from maskgit.checkpoints.errors import CheckpointError, DownloadError
from maskgit.evaluation.inception import (
    WEIGHTS_FILENAME,
    FIDInceptionV3,
    fetch_inception_weights,
    inception_weights_path,
    load_inception,
)


@pytest.fixture(scope="module")
def standard_state_dict() -> dict[str, torch.Tensor]:
    return random_inception_state_dict()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 255


def test_the_standard_file_has_472_entries_and_every_one_maps(standard_state_dict):
    assert len(standard_state_dict) == 94 * 5 + 2
    model = FIDInceptionV3.from_state_dict(standard_state_dict)
    loaded = model.state_dict()
    for key, value in standard_state_dict.items():
        assert torch.equal(loaded[key], value), key
    unmapped = [k for k in loaded if k not in standard_state_dict and not k.endswith("num_batches_tracked")]
    assert unmapped == []


@pytest.mark.slow
def test_every_loading_path_gives_identical_features(standard_state_dict, images, tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    torch.save(standard_state_dict, path)
    cache = tmp_path / "home"
    cached = inception_weights_path(cache)
    assert cached == cache / "downloads" / "fid-inception" / WEIGHTS_FILENAME
    cached.parent.mkdir(parents=True)
    torch.save(standard_state_dict, cached)
    monkeypatch.setenv("MASKGIT_HOME", str(cache))

    reference = load_inception(standard_state_dict)(images)
    assert reference.features.shape == (2, 2048) and reference.logits.shape == (2, 1008)
    assert torch.isfinite(reference.features).all() and reference.features.std() > 0
    for model in (load_inception(path), load_inception(), load_inception(cache_dir=cache, download=False)):
        output = model(images)
        assert torch.equal(output.features, reference.features)
        assert torch.equal(output.logits, reference.logits)
    # The logits are pool3 @ W without the classifier bias (the Inception Score convention).
    expected = reference.features.double() @ standard_state_dict["fc.weight"].double().T
    torch.testing.assert_close(reference.logits.double(), expected, rtol=1e-4, atol=1e-4)
    # Images are scored independently of their batch.
    single = load_inception(standard_state_dict)(images[1:])
    torch.testing.assert_close(single.features, reference.features[1:], rtol=1e-4, atol=1e-5)


def test_num_batches_tracked_entries_are_accepted(standard_state_dict):
    with_counters = dict(standard_state_dict, **{"Conv2d_1a_3x3.bn.num_batches_tracked": torch.tensor(0)})
    FIDInceptionV3.from_state_dict(with_counters)


def test_missing_unexpected_and_misshapen_keys_are_clear_errors(standard_state_dict, tmp_path):
    missing = {k: v for k, v in standard_state_dict.items() if k != "Mixed_7c.branch_pool.bn.running_var"}
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\) \[Mixed_7c\.branch_pool\.bn\.running_var\], 0 unexpected"):
        FIDInceptionV3.from_state_dict(missing)
    extra = dict(standard_state_dict, **{"AuxLogits.fc.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\) \[AuxLogits\.fc\.weight\]"):
        FIDInceptionV3.from_state_dict(extra)
    wrong = dict(standard_state_dict, **{"fc.weight": torch.zeros(1000, 2048)})
    with pytest.raises(CheckpointError, match=r"fc\.weight has shape \(1000, 2048\), expected \(1008, 2048\)"):
        FIDInceptionV3.from_state_dict(wrong)
    prefixed = {f"module.{k}": v for k, v in standard_state_dict.items()}
    with pytest.raises(CheckpointError, match="472 missing key"):
        FIDInceptionV3.from_state_dict(prefixed)

    with pytest.raises(FileNotFoundError, match=r"nothing\.pth: no such Inception weights file"):
        load_inception(tmp_path / "nothing.pth")
    with pytest.raises(FileNotFoundError, match=rf"not found at .*{WEIGHTS_FILENAME}: download https://"):
        load_inception(cache_dir=tmp_path / "empty", download=False)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.pth: cannot read the Inception weights"):
        load_inception(tmp_path / "junk.pth")

    torch.save({"x": _Opaque()}, tmp_path / "pickled.pth")  # weights_only refuses arbitrary objects
    with pytest.raises(CheckpointError, match=r"pickled\.pth: cannot read"):
        load_inception(tmp_path / "pickled.pth")


class _Opaque:
    """An arbitrary object: ``torch.load(weights_only=True)`` must refuse to unpickle it."""


@pytest.fixture
def weights_server(tmp_path, standard_state_dict, monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    torch.save(standard_state_dict, served / WEIGHTS_FILENAME)
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{WEIGHTS_FILENAME}", served / WEIGHTS_FILENAME
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_into_the_cache_checks_the_hash_prefix(weights_server, tmp_path, standard_state_dict):
    url, served = weights_server
    prefix = hashlib.sha256(served.read_bytes()).hexdigest()[:8]
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="does not start with 00000000; the file was deleted"):
        fetch_inception_weights(cache, url=url, sha256_prefix="00000000", progress=False, timeout=5)
    assert not inception_weights_path(cache).exists()
    path = fetch_inception_weights(cache, url=url, sha256_prefix=prefix, progress=False, timeout=5)
    assert path == inception_weights_path(cache) and path.read_bytes() == served.read_bytes()
    served.unlink()  # a cached file is used without the network
    assert fetch_inception_weights(cache, url=url, progress=False, timeout=5) == path
    model = load_inception(cache_dir=cache)
    assert torch.equal(model.fc.weight, standard_state_dict["fc.weight"])


def test_offline_message_says_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError) as caught:
        fetch_inception_weights(tmp_path, url=f"http://127.0.0.1:{port}/{WEIGHTS_FILENAME}", progress=False, timeout=5)
    message = str(caught.value)
    assert f"put it at {inception_weights_path(tmp_path)}" in message and "--inception-weights" in message


def test_the_graphs_pooling_quirks_are_kept():
    from maskgit.evaluation.inception import _tf_avg_pool

    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    pooled = _tf_avg_pool(x)
    # TF's SAME average pool divides by the real neighbours only: 4 at a corner, 6 on an edge.
    assert pooled[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4
    assert pooled[0, 0, 0, 1] == (0 + 1 + 2 + 4 + 5 + 6) / 6
    model = FIDInceptionV3()
    assert [model.Mixed_7b.max_pool, model.Mixed_7c.max_pool] == [False, True]  # the graph's last block max-pools
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match=r"must be \(B, 3, 299, 299\), got \(1, 3, 256, 256\)"):
        model(torch.zeros(1, 3, 256, 256))
