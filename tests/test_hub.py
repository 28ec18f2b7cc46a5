"""Checkpoint downloads against a local HTTP server on 127.0.0.1 (never any other address)."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maskgit.checkpoints.errors import CheckpointError, DownloadError
from maskgit.checkpoints.hub import (
    OFFICIAL_BASE_URL,
    checkpoint_dir,
    checkpoint_names,
    default_cache_dir,
    download_file,
    fetch_official,
    get_checkpoint,
)

PAYLOAD = np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.honour_range = True
        self.drop_after: int | None = None  # the next response sends this many body bytes, then hangs up


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state: _State = self.server.state  # type: ignore[attr-defined]
        requested_range = self.headers.get("Range")
        state.requests.append((self.path, requested_range))
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if requested_range and state.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested_range).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drop_after is not None:
            body, state.drop_after = body[: state.drop_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment would send requests for 127.0.0.1 elsewhere.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv("MASKGIT_BASE_URL", raising=False)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State()  # type: ignore[attr-defined]
    httpd.state.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.state  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_full_download(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "sub" / "a.bin"
    assert download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5) == destination
    assert destination.read_bytes() == PAYLOAD
    assert server.requests == [("/a.bin", None)]
    assert sorted(p.name for p in destination.parent.iterdir() if not p.name.endswith(".lock")) == ["a.bin"]


def test_resume_after_interruption_continues_with_a_range_request(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.drop_after = 100_000
    destination = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match=r"interrupted after 100000 of 300000 bytes.*kept.*resumes"):
        download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5)
    assert not destination.exists()
    assert (tmp_path / "a.bin.part").stat().st_size == 100_000

    download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5)
    assert server.requests == [("/a.bin", None), ("/a.bin", "bytes=100000-")]
    assert destination.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()


def test_server_without_range_support_restarts_from_scratch(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.honour_range = False
    destination = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 1000)  # not a prefix of the file: must be discarded
    download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5)
    assert server.requests == [("/a.bin", "bytes=1000-")]
    assert destination.read_bytes() == PAYLOAD


def test_a_complete_part_is_finished_when_the_server_says_nothing_is_left(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)  # e.g. a crash between the download and the rename
    download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5)
    assert server.requests == [("/a.bin", f"bytes={len(PAYLOAD)}-")]
    assert destination.read_bytes() == PAYLOAD


def test_a_part_longer_than_the_servers_file_is_restarted(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD + b"stale")
    download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5)
    assert server.requests == [("/a.bin", f"bytes={len(PAYLOAD) + 5}-"), ("/a.bin", None)]
    assert destination.read_bytes() == PAYLOAD


def test_size_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match=r"has 300000 bytes, expected 299999"):
        download_file(f"{server.url}/a.bin", destination, expected_size=len(PAYLOAD) - 1, progress=False, timeout=5)
    assert not destination.exists()
    assert not (tmp_path / "a.bin.part").exists()


def test_sha256_is_checked(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="SHA-256"):
        download_file(f"{server.url}/a.bin", destination, sha256="0" * 64, progress=False, timeout=5)
    assert not destination.exists() and not (tmp_path / "a.bin.part").exists()
    digest = hashlib.sha256(PAYLOAD).hexdigest().upper()
    download_file(f"{server.url}/a.bin", destination, sha256=digest, expected_size=len(PAYLOAD), progress=False)
    assert destination.read_bytes() == PAYLOAD


def test_http_error_names_the_status_and_url(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing.bin: the server answered HTTP 404"):
        download_file(f"{server.url}/missing.bin", tmp_path / "m.bin", progress=False, timeout=5)
    assert not (tmp_path / "m.bin").exists()


def test_existing_destination_is_kept_without_a_request(server, tmp_path):
    destination = tmp_path / "a.bin"
    destination.write_bytes(b"local copy")
    assert download_file(f"{server.url}/a.bin", destination, progress=False) == destination
    assert destination.read_bytes() == b"local copy"
    with pytest.raises(CheckpointError, match=r"has 10 bytes, expected 11; delete it"):
        download_file(f"{server.url}/a.bin", destination, expected_size=11, progress=False)
    assert server.requests == []


def test_progress_bar_goes_to_stderr(server, tmp_path, capsys):
    server.files["/a.bin"] = PAYLOAD
    download_file(f"{server.url}/a.bin", tmp_path / "a.bin", progress=True, timeout=5)
    assert "a.bin" in capsys.readouterr().err


def test_only_http_urls_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="http"):
        download_file("file:///etc/passwd", tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="http"):
        fetch_official("imagenet256", cache_dir=tmp_path, base_url="ftp://127.0.0.1/x", progress=False)


def test_concurrent_download_waits_and_then_reuses_the_finished_file(server, tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="the download lock is POSIX only")

    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "a.bin"
    results: list[Path] = []
    with open(tmp_path / "a.bin.lock", "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # another process downloading the same file
        worker = threading.Thread(
            target=lambda: results.append(download_file(f"{server.url}/a.bin", destination, progress=False, timeout=5))
        )
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and server.requests == []
        destination.write_bytes(b"finished by the other process")
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    worker.join(timeout=5)
    assert results == [destination]
    assert destination.read_bytes() == b"finished by the other process"
    assert server.requests == []


def test_registry_has_the_official_files():
    assert checkpoint_names() == ("imagenet256", "imagenet512")
    for size in (256, 512):
        checkpoint = get_checkpoint(f"imagenet{size}")
        urls = {file.role: checkpoint.url(file) for file in checkpoint.files}
        assert urls == {
            "tokenizer": f"https://storage.googleapis.com/maskgit-public/checkpoints/tokenizer_imagenet{size}_checkpoint",
            "transformer": f"https://storage.googleapis.com/maskgit-public/checkpoints/maskgit_imagenet{size}_checkpoint",
        }
        assert checkpoint.base_url == OFFICIAL_BASE_URL
    mirrored = get_checkpoint("imagenet256")
    assert mirrored.url(mirrored.files[0], "http://127.0.0.1:1/m/") == "http://127.0.0.1:1/m/tokenizer_imagenet256_checkpoint"
    with pytest.raises(CheckpointError, match=r"unknown checkpoint 'imagenet1024'; available: imagenet256, imagenet512"):
        get_checkpoint("imagenet1024")


def test_cache_dir_comes_from_maskgit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home"
    assert checkpoint_dir("imagenet512") == tmp_path / "home" / "downloads" / "imagenet512"
    assert checkpoint_dir("imagenet512", tmp_path / "c") == tmp_path / "c" / "downloads" / "imagenet512"
    monkeypatch.delenv("MASKGIT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_cache_dir() == tmp_path / "user" / ".cache" / "maskgit"


def test_fetch_official_downloads_from_a_mirror_into_the_cache(server, tmp_path, monkeypatch):
    server.files["/mirror/tokenizer_imagenet256_checkpoint"] = PAYLOAD[:1000]
    server.files["/mirror/maskgit_imagenet256_checkpoint"] = PAYLOAD[1000:]
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKGIT_BASE_URL", f"{server.url}/mirror/")
    paths = fetch_official("imagenet256", progress=False)
    folder = tmp_path / "cache" / "downloads" / "imagenet256"
    assert paths == {
        "tokenizer": folder / "tokenizer_imagenet256_checkpoint",
        "transformer": folder / "maskgit_imagenet256_checkpoint",
    }
    assert paths["tokenizer"].read_bytes() == PAYLOAD[:1000]
    assert paths["transformer"].read_bytes() == PAYLOAD[1000:]
    assert len(server.requests) == 2

    # Second call: everything is cached, so no request at all (even with a reachable server).
    assert fetch_official("imagenet256", progress=False) == paths
    assert len(server.requests) == 2


def test_fetch_official_reuses_local_files_without_network(server, tmp_path):
    folder = tmp_path / "downloads" / "imagenet512"
    folder.mkdir(parents=True)
    (folder / "tokenizer_imagenet512_checkpoint").write_bytes(b"tok")
    (folder / "maskgit_imagenet512_checkpoint").write_bytes(b"trans")
    paths = fetch_official("imagenet512", cache_dir=tmp_path, base_url=server.url, progress=False)
    assert paths["tokenizer"].read_bytes() == b"tok" and paths["transformer"].read_bytes() == b"trans"
    assert server.requests == []


def test_offline_error_says_which_urls_to_put_where(tmp_path, closed_port):
    mirror = f"http://127.0.0.1:{closed_port}/m"
    folder = tmp_path / "downloads" / "imagenet512"
    with pytest.raises(DownloadError) as error:
        fetch_official("imagenet512", cache_dir=tmp_path, base_url=mirror, progress=False, timeout=5)
    assert isinstance(error.value, CheckpointError)
    message = str(error.value)
    assert "could not download checkpoint 'imagenet512'" in message
    for filename in ("tokenizer_imagenet512_checkpoint", "maskgit_imagenet512_checkpoint"):
        assert f"  {mirror}/{filename}\n    -> {folder / filename}" in message
    assert not folder.exists() or not any(folder.glob("*_checkpoint"))

    # With the tokenizer already copied in, only the transformer is listed.
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer_imagenet512_checkpoint").write_bytes(b"tok")
    with pytest.raises(DownloadError) as error:
        fetch_official("imagenet512", cache_dir=tmp_path, base_url=mirror, progress=False, timeout=5)
    message = str(error.value)
    assert "maskgit_imagenet512_checkpoint" in message
    assert "tokenizer_imagenet512_checkpoint" not in message


def test_fetch_keeps_the_finished_file_when_the_second_fails(server, tmp_path):
    server.files["/tokenizer_imagenet256_checkpoint"] = PAYLOAD[:500]  # the transformer is missing: 404
    with pytest.raises(DownloadError, match=r"HTTP 404") as error:
        fetch_official("imagenet256", cache_dir=tmp_path, base_url=server.url, progress=False, timeout=5)
    folder = tmp_path / "downloads" / "imagenet256"
    assert (folder / "tokenizer_imagenet256_checkpoint").read_bytes() == PAYLOAD[:500]
    assert str(folder / "maskgit_imagenet256_checkpoint") in str(error.value)
    assert f"-> {folder / 'tokenizer_imagenet256_checkpoint'}" not in str(error.value)
