"""The official checkpoints by name, downloaded once into a local cache.

Files are kept as ``<cache>/downloads/<name>/<file name on the server>``, where ``<cache>`` is
``$MASKGIT_HOME`` or ``~/.cache/maskgit``. A file that is already there is used without any network
access, so an offline machine works once the files are copied in by hand; when a download fails the
error says which URLs to fetch and where to put them.

Downloads go to ``<file>.part`` first and are renamed into place only when complete: of the size
the server announced, at least the registry's minimum size, of the registry's hash when it knows
one, and readable as a checkpoint of the expected kind (tokenizer or transformer). A download cut
short resumes from the ``.part`` file with an HTTP Range request; anything that is not the
checkpoint (an HTML error page, a file of the wrong kind) is deleted with a message that says so.
``$MASKGIT_BASE_URL`` (or ``base_url=``) points every download at a mirror that serves the same
file names.

This module only moves files: ``pipeline_folder.convert_official`` turns them into our folder format.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from maskgit.checkpoints.errors import CheckpointError, DownloadError
from maskgit.io import file_lock

__all__ = [
    "RemoteFile",
    "RegisteredCheckpoint",
    "REGISTRY",
    "OFFICIAL_BASE_URL",
    "checkpoint_names",
    "get_checkpoint",
    "default_cache_dir",
    "checkpoint_dir",
    "download_file",
    "fetch_official",
]

OFFICIAL_BASE_URL = "https://storage.googleapis.com/maskgit-public/checkpoints"
HOME_ENV = "MASKGIT_HOME"
BASE_URL_ENV = "MASKGIT_BASE_URL"
DEFAULT_TIMEOUT = 60.0  # seconds without progress before a connection or a read gives up

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "maskgit-checkpoint-download (python-urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a registered checkpoint: its ``role`` (``"tokenizer"`` or ``"transformer"``), its
    name on the server and in the cache, and what we know of its size: the exact ``size`` and
    SHA-256 hex digest when published, else ``min_size``, a lower bound (the bytes of its float32
    weights)."""

    role: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    min_size: int | None = None


@dataclass(frozen=True)
class RegisteredCheckpoint:
    """A named set of files downloaded together from ``base_url`` (unless a mirror is given)."""

    name: str
    description: str
    base_url: str
    files: tuple[RemoteFile, ...]

    def url(self, file: RemoteFile, base_url: str | None = None) -> str:
        """The URL of ``file``, under ``base_url`` when given (a mirror), else under ``self.base_url``."""
        base = (base_url or self.base_url).rstrip("/")
        return f"{base}/{urllib.parse.quote(file.filename)}"


# Parameter counts of the official checkpoints, from the listings of every parameter path and shape
# that the official JAX code wrote (../shared/fixtures/official/*_imagenet*_params.json); all float32.
_OFFICIAL_PARAMETERS = {
    ("tokenizer", 256): 54_515_587,
    ("tokenizer", 512): 54_515_587,
    ("transformer", 256): 172_457_193,
    ("transformer", 512): 173_047_017,
}


def _official(image_size: int) -> RegisteredCheckpoint:
    # The official release (google-research/maskgit README) publishes neither sizes nor hashes, and
    # no trustworthy published size was found; the files may hold collections besides "params". So
    # the registry records a lower bound (4 bytes per float32 parameter), the server's
    # Content-Length is the exact size check, and a finished file must parse as the right model.
    return RegisteredCheckpoint(
        name=f"imagenet{image_size}",
        description=f"official class-conditional ImageNet {image_size}x{image_size} tokenizer and transformer",
        base_url=OFFICIAL_BASE_URL,
        files=tuple(
            RemoteFile(role, f"{prefix}_imagenet{image_size}_checkpoint", min_size=4 * _OFFICIAL_PARAMETERS[role, image_size])
            for role, prefix in (("tokenizer", "tokenizer"), ("transformer", "maskgit"))
        ),
    )


REGISTRY: dict[str, RegisteredCheckpoint] = {entry.name: entry for entry in (_official(256), _official(512))}


def checkpoint_names() -> tuple[str, ...]:
    """The registered checkpoint names, sorted."""
    return tuple(sorted(REGISTRY))


def get_checkpoint(name: str) -> RegisteredCheckpoint:
    """The registry entry called ``name``; CheckpointError listing the valid names if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise CheckpointError(f"unknown checkpoint {name!r}; available: {', '.join(checkpoint_names())}") from None


def default_cache_dir() -> Path:
    """``$MASKGIT_HOME`` when set, else ``~/.cache/maskgit``."""
    return Path(os.environ.get(HOME_ENV) or "~/.cache/maskgit").expanduser()


def checkpoint_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds the downloaded files of checkpoint ``name``: ``<cache>/downloads/<name>``."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / "downloads" / get_checkpoint(name).name


def fetch_official(
    name: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Path]:
    """Make sure the files of registered checkpoint ``name`` (e.g. ``"imagenet256"``) are in the cache,
    downloading what is missing, and return their paths by role: ``{"tokenizer": ..., "transformer": ...}``.

    Files already in ``<cache_dir>/downloads/<name>/`` are used as they are, with no network access.
    ``base_url`` (else ``$MASKGIT_BASE_URL``, else the official server) is where missing files come
    from. ``timeout`` is in seconds. Raises DownloadError, whose message lists each missing file's URL
    and the exact path to put it at, when a download fails; CheckpointError for an unknown name.
    """
    checkpoint = get_checkpoint(name)
    folder = checkpoint_dir(name, cache_dir)
    mirror = base_url or os.environ.get(BASE_URL_ENV) or None
    planned = [(file, checkpoint.url(file, mirror), folder / file.filename) for file in checkpoint.files]
    for _, url, _ in planned:
        _check_url(url)
    paths: dict[str, Path] = {}
    for file, url, path in planned:
        try:
            paths[file.role] = download_file(
                url, path, expected_size=file.size, min_size=file.min_size, sha256=file.sha256,
                verify=_official_checker(file.role), progress=progress, timeout=timeout,
            )
        except DownloadError as error:
            missing = [(other_url, other_path) for _, other_url, other_path in planned if not other_path.is_file()]
            raise DownloadError(_manual_instructions(checkpoint.name, error, missing)) from error
    return paths


_KINDS = {"tokenizer": "vqgan", "transformer": "transformer"}


def _official_checker(role: str) -> Callable[[Path, bool], None]:
    """``check(path, partial)``: a partial file must start like a flax msgpack map; a whole one must
    read as an official checkpoint of ``role``'s kind. Raises CheckpointError saying what it is."""

    def check(path: Path, partial: bool) -> None:
        from maskgit.checkpoints.formats import read_checkpoint

        with open(path, "rb") as handle:
            head = handle.read(64)
        # A msgpack map starts with 0x80-0x8f (fixmap), 0xde (map 16) or 0xdf (map 32).
        if not head or not (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
            raise CheckpointError(f"not a checkpoint: it starts with {head[:32]!r}")
        if partial:
            return
        raw = read_checkpoint(path)
        if raw.kind != _KINDS[role]:
            raise CheckpointError(f"holds a {raw.kind} checkpoint, expected the {role}")

    return check


def _manual_instructions(name: str, error: DownloadError, missing: list[tuple[str, Path]]) -> str:
    lines = [
        f"could not download checkpoint {name!r}: {error}",
        "To install it by hand (for example on a machine without network access), download each file below",
        "and put it at exactly the path shown; files found there are used without any network access:",
    ]
    for url, path in missing:
        lines += [f"  {url}", f"    -> {path}"]
    lines.append(f"(The cache folder is ${HOME_ENV}, or ~/.cache/maskgit when it is not set.)")
    return "\n".join(lines)


def download_file(
    url: str,
    destination: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    min_size: int | None = None,
    sha256: str | None = None,
    verify: Callable[[Path, bool], None] | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``url`` (http or https) to ``destination`` and return ``destination`` as a Path.

    ``min_size`` is a lower bound on the file's size; ``verify(path, partial)`` raises
    CheckpointError when the file at ``path`` is not what we want (``partial``: only its first
    bytes are there). A file shorter than ``min_size`` that ``verify`` accepts as a beginning is
    an interrupted download (kept as ``.part``, resumed next time); one it rejects is deleted.
    An existing ``destination`` that is too short or fails ``verify`` is deleted and downloaded
    again.

    An existing ``destination`` is returned as it is, with no network access (its size is checked
    against ``expected_size`` when given, CheckpointError if it differs; its hash is not re-read). Otherwise the bytes go to ``<destination>.part``: a ``.part``
    left by an interrupted download is continued with an HTTP Range request, or restarted when the
    server ignores ranges. The result must have the size the server announced (Content-Length or
    Content-Range), ``expected_size`` and ``sha256`` (hex) when given; only then is it renamed onto
    ``destination``, atomically. Concurrent calls for one destination wait for each other (POSIX).

    Raises DownloadError naming the URL: on a network or HTTP error, an interruption (the ``.part`` is
    kept so that the next call resumes), or a size or hash mismatch (the ``.part`` is deleted); after
    any of these ``destination`` does not exist. ValueError for a URL that is not http(s). ``progress`` shows a tqdm bar
    on stderr; ``timeout`` is in seconds.
    """
    _check_url(url)
    destination = Path(destination)
    if destination.is_file() and _usable_existing(destination, expected_size, min_size, verify):
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(destination.with_name(destination.name + ".lock")):
        # Another process may have finished it while we waited for the lock.
        if destination.is_file() and _usable_existing(destination, expected_size, min_size, verify):
            return destination
        part = destination.with_name(destination.name + ".part")
        _download_part(url, part, expected_size=expected_size, progress=progress, timeout=timeout)
        _verify(url, part, expected_size=expected_size, min_size=min_size, sha256=sha256, verify=verify)
        # The .part file is the temporary beside the target (like maskgit.io.atomic_path), but with a
        # fixed name so that an interrupted download can be resumed.
        os.replace(part, destination)
    return destination


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"download URL must be http:// or https:// with a host, got {url!r}")


def _usable_existing(
    path: Path, expected_size: int | None, min_size: int | None, verify: Callable[[Path, bool], None] | None
) -> bool:
    """True when a file already at ``path`` passes the checks; else it is deleted (with a warning),
    so that it is downloaded again rather than failing every later run."""
    size = path.stat().st_size
    problem = None
    if expected_size is not None and size != expected_size:
        problem = f"has {size} bytes, expected {expected_size}"
    elif min_size is not None and size < min_size:
        problem = f"has {size} bytes, fewer than the {min_size} of the real file"
    elif verify is not None:
        try:
            verify(path, False)
        except CheckpointError as error:
            problem = str(error).removeprefix(f"{path}: ")
    if problem is None:
        return True
    warnings.warn(f"{path} {problem}; deleting it to download it again", stacklevel=3)
    path.unlink(missing_ok=True)
    return False


def _download_part(url: str, part: Path, *, expected_size: int | None, progress: bool, timeout: float) -> None:
    """Bring ``part`` up to the whole remote file, resuming what is there when the server allows it."""
    offset = part.stat().st_size if part.is_file() else 0
    if expected_size is not None and offset >= expected_size:
        if offset == expected_size:
            return  # complete already (a crash between download and rename); _verify checks it
        part.unlink()  # longer than the file can be: stale
        offset = 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        total = _parse_content_range(error.headers.get("Content-Range"))[1]
        error.close()
        if error.code == 416 and offset:
            if total == offset:  # "nothing after byte N": the .part already is the whole file
                return
            # The server's file is shorter than our .part, so it has changed: start again.
            part.unlink()
            return _download_part(url, part, expected_size=expected_size, progress=progress, timeout=timeout)
        raise DownloadError(f"{url}: the server answered HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"could not connect to {url}: {reason}") from error

    with response:
        if response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)  # so that the next attempt asks for the whole file
                raise DownloadError(
                    f"{url}: asked for the bytes from {offset} on, the server sent a different range; "
                    "the partial file was deleted, try again"
                )
            mode = "ab"
        else:  # 200: the whole file, also when the server ignored our Range header
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server's file has {total} bytes, expected {expected_size}")
        _stream(url, response, part, mode=mode, offset=offset, total=total, progress=progress)


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    # identity: a compressed transfer would make the byte counts (and ranges) mean something else.
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes 100-199/200`` or ``bytes */200``; None where unknown."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


def _stream(url: str, response, part: Path, *, mode: str, offset: int, total: int | None, progress: bool) -> None:
    label = part.name.removesuffix(".part")
    bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress)
    try:
        with bar, open(part, mode) as out:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())  # the rename must never publish bytes still in the page cache only
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(_interrupted(url, part, total, error)) from error
    size = part.stat().st_size
    if total is not None and size < total:
        # http.client returns a short body without an error when the connection drops mid-file.
        raise DownloadError(_interrupted(url, part, total, "the connection closed early"))
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(f"{url}: received {size} bytes, more than the {total} the server announced")


def _interrupted(url: str, part: Path, total: int | None, reason: object) -> str:
    size = part.stat().st_size if part.is_file() else 0
    of_total = f" of {total}" if total is not None else ""
    return (
        f"download of {url} was interrupted after {size}{of_total} bytes ({reason}); "
        f"the partial file {part} is kept and the next attempt resumes it"
    )


def _verify(
    url: str,
    part: Path,
    *,
    expected_size: int | None,
    min_size: int | None,
    sha256: str | None,
    verify: Callable[[Path, bool], None] | None,
) -> None:
    """Check the finished ``part``. One cut short (shorter than ``min_size`` but a plausible
    beginning) is kept to be resumed; one that is not the file we want is deleted."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{url}: downloaded {size} bytes, expected {expected_size}; the file was deleted")
    if min_size is not None and size < min_size:
        try:
            if verify is not None:
                verify(part, True)
        except CheckpointError as error:
            part.unlink()
            raise DownloadError(f"{url}: the server sent {size} bytes that are {error}; the file was deleted") from None
        # Without a Content-Length a dropped connection looks like the end of the file.
        raise DownloadError(_interrupted(url, part, None, f"the real file has at least {min_size} bytes"))
    if sha256 is not None:
        digest = hashlib.sha256()
        with open(part, "rb") as handle:
            while block := handle.read(_CHUNK_BYTES):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            part.unlink()
            raise DownloadError(f"{url}: SHA-256 is {digest.hexdigest()}, expected {sha256.lower()}; the file was deleted")
    if verify is not None:
        try:
            verify(part, False)
        except CheckpointError as error:
            part.unlink()
            message = str(error).removeprefix(f"{part}: ")
            raise DownloadError(f"{url}: the downloaded file is not usable ({message}); the file was deleted") from None
