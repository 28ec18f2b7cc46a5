"""Checkpoint downloads against a local HTTP server on 127.0.0.1 (never any other address)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TOKENIZER_MSGPACK, TRANSFORMER_MSGPACK
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


def _serve(handler):
    """Run ``handler`` on 127.0.0.1 in a thread; yields its ``_State`` (with ``url``)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.state = _State()  # type: ignore[attr-defined]
    httpd.state.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.state  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def server():
    yield from _serve(_Handler)


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
    assert server.requests == []


def test_a_wrong_existing_file_is_replaced_by_a_fresh_download(server, tmp_path):
    # A bad file in the cache (left by an older version, or copied by hand) must not fail every run.
    server.files["/a.bin"] = PAYLOAD
    destination = tmp_path / "a.bin"
    destination.write_bytes(b"<html>nope</html>")
    with pytest.warns(UserWarning, match=r"has 17 bytes, expected 300000; deleting it"):
        download_file(f"{server.url}/a.bin", destination, expected_size=len(PAYLOAD), progress=False, timeout=5)
    assert destination.read_bytes() == PAYLOAD


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


# -- downloads that are not the checkpoint ------------------------------------------------------


class _NoLengthHandler(http.server.BaseHTTPRequestHandler):
    """Sends its body with no Content-Length (HTTP/1.0, the end of the body is the end of the
    connection), so a body cut short looks complete; ignores ranges."""

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state  # type: ignore[attr-defined]
        state.requests.append((self.path, self.headers.get("Range")))
        data = state.files[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if data.startswith(b"<") else "application/octet-stream")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def no_length_server():
    yield from _serve(_NoLengthHandler)


@pytest.fixture
def small_registry(monkeypatch):
    """The imagenet256 entry with the fixture checkpoints' sizes as its lower bounds; returns the
    bytes to serve for each official file name."""
    from maskgit.checkpoints import hub

    files = {"tokenizer_imagenet256_checkpoint": TOKENIZER_MSGPACK.read_bytes(),
             "maskgit_imagenet256_checkpoint": TRANSFORMER_MSGPACK.read_bytes()}
    entry = hub.REGISTRY["imagenet256"]
    small = dataclasses.replace(entry, files=tuple(
        dataclasses.replace(file, min_size=len(files[file.filename]) // 2) for file in entry.files))
    monkeypatch.setitem(hub.REGISTRY, "imagenet256", small)
    return files


def test_registry_records_a_lower_bound_for_every_official_file():
    # 4 bytes per float32 parameter of the official listings (fixture README); no exact size is published.
    sizes = {(name, file.role): file.min_size for name in checkpoint_names() for file in get_checkpoint(name).files}
    assert sizes == {
        ("imagenet256", "tokenizer"): 4 * 54_515_587, ("imagenet256", "transformer"): 4 * 172_457_193,
        ("imagenet512", "tokenizer"): 4 * 54_515_587, ("imagenet512", "transformer"): 4 * 173_047_017,
    }


def test_an_html_page_is_not_cached(no_length_server, small_registry, tmp_path):
    no_length_server.files["/tokenizer_imagenet256_checkpoint"] = b"<html>Service Unavailable</html>"[:27]
    with pytest.raises(DownloadError, match=r"sent 27 bytes that are not a checkpoint: it starts with b'<html>"):
        fetch_official("imagenet256", cache_dir=tmp_path, base_url=no_length_server.url, progress=False, timeout=5)
    folder = tmp_path / "downloads" / "imagenet256"
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == []


def test_a_short_body_without_content_length_stays_a_part_and_a_good_server_then_completes_it(
    no_length_server, server, small_registry, tmp_path
):
    tokenizer = small_registry["tokenizer_imagenet256_checkpoint"]
    no_length_server.files["/tokenizer_imagenet256_checkpoint"] = tokenizer[:1000]
    with pytest.raises(DownloadError, match=r"interrupted after 1000 bytes .*at least .*kept and the next attempt resumes"):
        fetch_official("imagenet256", cache_dir=tmp_path, base_url=no_length_server.url, progress=False, timeout=5)
    folder = tmp_path / "downloads" / "imagenet256"
    assert not (folder / "tokenizer_imagenet256_checkpoint").exists()
    assert (folder / "tokenizer_imagenet256_checkpoint.part").stat().st_size == 1000

    # A good server: the tokenizer resumes from byte 1000, both files end up whole and readable.
    for name, data in small_registry.items():
        server.files[f"/{name}"] = data
    paths = fetch_official("imagenet256", cache_dir=tmp_path, base_url=server.url, progress=False, timeout=5)
    assert paths["tokenizer"].read_bytes() == tokenizer
    assert ("/tokenizer_imagenet256_checkpoint", "bytes=1000-") in server.requests


def test_a_file_of_the_wrong_kind_is_deleted(server, small_registry, tmp_path, monkeypatch):
    from maskgit.checkpoints import hub

    # The transformer's file served under the tokenizer's name (lower bounds small enough to pass).
    entry = hub.REGISTRY["imagenet256"]
    monkeypatch.setitem(hub.REGISTRY, "imagenet256", dataclasses.replace(
        entry, files=tuple(dataclasses.replace(f, min_size=100) for f in entry.files)))
    server.files["/tokenizer_imagenet256_checkpoint"] = small_registry["maskgit_imagenet256_checkpoint"]
    with pytest.raises(DownloadError, match=r"not usable \(holds a transformer checkpoint, expected the tokenizer\); the file was deleted"):
        fetch_official("imagenet256", cache_dir=tmp_path, base_url=server.url, progress=False, timeout=5)
    folder = tmp_path / "downloads" / "imagenet256"
    assert [p.name for p in folder.iterdir() if p.name.startswith("tokenizer")] == ["tokenizer_imagenet256_checkpoint.lock"]


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


def test_fetch_official_downloads_from_a_mirror_into_the_cache(server, tmp_path, monkeypatch, small_registry):
    for name, data in small_registry.items():
        server.files[f"/mirror/{name}"] = data
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKGIT_BASE_URL", f"{server.url}/mirror/")
    paths = fetch_official("imagenet256", progress=False)
    folder = tmp_path / "cache" / "downloads" / "imagenet256"
    assert paths == {
        "tokenizer": folder / "tokenizer_imagenet256_checkpoint",
        "transformer": folder / "maskgit_imagenet256_checkpoint",
    }
    assert paths["tokenizer"].read_bytes() == small_registry["tokenizer_imagenet256_checkpoint"]
    assert paths["transformer"].read_bytes() == small_registry["maskgit_imagenet256_checkpoint"]
    assert len(server.requests) == 2

    # Second call: everything is cached, so no request at all (even with a reachable server).
    assert fetch_official("imagenet256", progress=False) == paths
    assert len(server.requests) == 2


def test_fetch_official_reuses_local_files_without_network(server, tmp_path, small_registry):
    folder = tmp_path / "downloads" / "imagenet256"
    folder.mkdir(parents=True)
    for name, data in small_registry.items():
        (folder / name).write_bytes(data)
    paths = fetch_official("imagenet256", cache_dir=tmp_path, base_url=server.url, progress=False)
    assert paths["tokenizer"].read_bytes() == small_registry["tokenizer_imagenet256_checkpoint"]
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
    from maskgit.checkpoints import hub

    entry = hub.REGISTRY["imagenet512"]
    hub_entry = dataclasses.replace(entry, files=tuple(dataclasses.replace(f, min_size=None) for f in entry.files))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer_imagenet512_checkpoint").write_bytes(TOKENIZER_MSGPACK.read_bytes())
    with pytest.MonkeyPatch.context() as patch, pytest.raises(DownloadError) as error:
        patch.setitem(hub.REGISTRY, "imagenet512", hub_entry)
        fetch_official("imagenet512", cache_dir=tmp_path, base_url=mirror, progress=False, timeout=5)
    message = str(error.value)
    assert "maskgit_imagenet512_checkpoint" in message
    assert "tokenizer_imagenet512_checkpoint" not in message


def test_fetch_keeps_the_finished_file_when_the_second_fails(server, tmp_path, small_registry):
    tokenizer = small_registry["tokenizer_imagenet256_checkpoint"]
    server.files["/tokenizer_imagenet256_checkpoint"] = tokenizer  # the transformer is missing: 404
    with pytest.raises(DownloadError, match=r"HTTP 404") as error:
        fetch_official("imagenet256", cache_dir=tmp_path, base_url=server.url, progress=False, timeout=5)
    folder = tmp_path / "downloads" / "imagenet256"
    assert (folder / "tokenizer_imagenet256_checkpoint").read_bytes() == tokenizer
    assert str(folder / "maskgit_imagenet256_checkpoint") in str(error.value)
    assert f"-> {folder / 'tokenizer_imagenet256_checkpoint'}" not in str(error.value)
