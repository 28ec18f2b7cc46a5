"""Output files: atomic writes, checks that an output path can be written before any work starts,
a lock so that two processes never write one output folder, and clean-up of temporary files that a
killed process left behind.

Every output and checkpoint is written to a temp file beside its target and renamed into place, so a
crash or a bad input never leaves a half-written file. A failed write (full disk, read-only folder)
raises OSError with ``filename`` set to the target, not to the temporary name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere locks are not taken
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_torch_save",
    "check_output_dir",
    "check_output_file",
    "file_lock",
    "remove_temp_files",
    "TEMP_SUFFIX",
]

TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched; an OSError from
    the write names ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as error:
        raise _naming(error, target, None) from None
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temp, target)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise _naming(error, target, temp) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _naming(error: OSError, target: Path, temp: Path | None) -> OSError:
    """The same error, but naming the target when it named nothing or only our temporary file
    (``temp`` None: the temporary file was being created)."""
    if error.errno is None or (temp is not None and error.filename is not None and str(error.filename) != str(temp)):
        return error
    return type(error)(error.errno, error.strerror, str(target))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class _RecordingWriter:
    """A file wrapper that remembers the OSError of a failed write: torch's zip writer turns it into
    an opaque RuntimeError ("unexpected pos ..."), which would hide a full disk."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically; a full disk raises OSError naming ``path``."""
    import torch

    with atomic_path(path) as temp, open(temp, "wb") as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(obj, writer)  # type: ignore[arg-type]
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``path`` can be an output folder: it is a folder or can be
    created as one, and files can be written there. Nothing is left behind.

    Raises NotADirectoryError (an existing file, or a file on the way) or PermissionError / OSError
    (read-only, no permission), each naming ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(path))
    _check_writable(path, path)
    return path


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a file can be written at ``path``: it is not a folder, and its
    folder exists or can be created and is writable. Raises IsADirectoryError or an OSError naming
    ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file path", str(path))
    _check_writable(path.parent, path)
    return path


def _check_writable(folder: Path, named: Path) -> None:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a folder", str(named))
    # A real write is the only test that also holds for root and for read-only mounts.
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise type(error)(error.errno, f"cannot write in {existing} ({error.strerror})", str(named)) from None


@contextlib.contextmanager
def file_lock(lock_path: str | os.PathLike[str], *, wait: bool = True, holder: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if needed; POSIX ``flock``).

    ``wait=False`` raises BlockingIOError naming ``lock_path`` (and ``holder``, what it protects)
    when another process holds it, instead of waiting. The lock ends with the process, so a killed
    writer never leaves a stale lock.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "ab") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                what = f"{holder} is" if holder else "it is"
                raise BlockingIOError(
                    errno.EWOULDBLOCK, f"locked: {what} being written by another process; wait for it to finish", str(lock_path)
                ) from None
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_temp_files(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left in ``folder`` when its process was killed
    (``.NAME.XXXX.tmp``). Only call it while no other process writes there. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(f".*{TEMP_SUFFIX}") if recursive else folder.glob(f".*{TEMP_SUFFIX}")
    removed = [item for item in found if item.is_file()]
    for item in removed:
        item.unlink(missing_ok=True)
    return removed
