"""The ``maskgit`` command line. Each command group lives in its own module with a
``register(subparsers)`` function; the commands only parse arguments, call the library and report.

``main`` is the one error boundary: every expected failure (a bad flag value, a missing, unreadable
or malformed file, an unwritable output, a full disk, a device that does not exist, memory running
out) is printed as one line, ``maskgit COMMAND: error: ...``, with exit status 2. Anything else is
a bug and keeps its traceback, so that it gets reported.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Sequence

from maskgit.checkpoints.errors import CheckpointError
from maskgit.cli.errors import CLIError
from maskgit.configs import ConfigError

__all__ = ["main", "run", "build_parser", "CLIError", "user_error_message"]


# OS errors that come from the user's paths, disks and permissions rather than from our code.
_USER_ERRNOS = {
    errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
    errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EWOULDBLOCK, errno.EFBIG, errno.ELOOP,
    errno.ENOTEMPTY, errno.EXDEV, errno.EIO,
}
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
# A DataLoader worker re-raises its error with the worker's whole traceback in the message.
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"
_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default in ``--help``, unless its help text already states it or there
    is nothing to show (no default, a plain switch). Descriptions and epilogs keep their paragraphs
    (blank lines) and their indented lines (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            lines = paragraph.splitlines()
            if lines and all(line.startswith("  ") for line in lines[1:]) and lines[0].endswith(":"):
                paragraphs.append("\n".join(indent + line for line in lines))  # a heading and its examples
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default in (None, False, argparse.SUPPRESS)
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """Refuses ``--flag=--`` as argparse refuses a flag without its value (exit 2). Python 3.11's
    argparse makes that value an empty list instead of the text ``--``, without calling the flag's
    type, so it would reach a command unchecked."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        tokens = sys.argv[1:] if args is None else list(args)
        for token in tokens:
            if token == "--":  # everything after it is positional
                break
            flag, equals, value = token.partition("=")
            if token.startswith("-") and equals and value == "--":
                self.error(f"argument {flag}: expected one argument, got '--'")
        return super().parse_known_args(tokens, namespace)


def build_parser() -> argparse.ArgumentParser:
    from maskgit import __version__
    from maskgit.cli import (
        catalog,
        convert,
        edit,
        evaluate,
        extract_tokens,
        generate,
        metrics,
        reconstruct,
        sample,
        serve,
        train,
        train_run,
    )

    parser = ArgumentParser(prog="maskgit", description="MaskGIT in PyTorch.")
    parser.add_argument("--version", action="version", version=f"maskgit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (generate, reconstruct, edit, convert, train_run, extract_tokens, train, evaluate, serve, metrics,
                   sample, catalog):
        module.register(subparsers)
    for command in subparsers.choices.values():
        command.formatter_class = HelpFormatter
    return parser


def user_error_message(error: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug (which keeps its traceback)."""
    import torch

    if isinstance(error, (CLIError, CheckpointError, ConfigError, ValueError)):  # DataError and RunError too
        return _without_worker_traceback(str(error))
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        detail = str(error).split("\n")[0].strip()
        return "out of memory" + (f" ({detail})" if detail else "") + "; lower --batch-size or the image size"
    if isinstance(error, OSError):
        if error.errno is None:
            return str(error) if isinstance(error, _PATH_ERRORS) else None
        if error.errno in _USER_ERRNOS:
            reason = error.strerror or str(error)
            return f"{error.filename}: {reason}" if error.filename else reason
    return None


def _without_worker_traceback(message: str) -> str:
    if _WORKER_TRACEBACK not in message:
        return message
    lines = [line for line in message.splitlines() if line.strip()]
    return _EXCEPTION_PREFIX.sub("", lines[-1].strip()) if lines else message


def run() -> int:
    """The ``maskgit`` executable (and ``python -m maskgit``): ``main`` in a process of its own,
    which keeps freed memory for reuse (``maskgit.reuse_freed_memory``); ``main`` alone, as tests
    and other programs call it, leaves the caller's ``malloc`` as it is."""
    from maskgit import reuse_freed_memory

    reuse_freed_memory()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    from maskgit.devices import resolve_device

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "device"):  # validated before any work; stored as text for manifests
            args.device = str(resolve_device(args.device))
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"maskgit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        print(f"maskgit {args.command}: error: {message}", file=sys.stderr)
        return 2
