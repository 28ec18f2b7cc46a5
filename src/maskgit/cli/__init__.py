"""The ``maskgit`` command line. Each command group lives in its own module with a
``register(subparsers)`` function; the commands only parse arguments, call the library and report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from maskgit.checkpoints.errors import CheckpointError
from maskgit.configs import ConfigError

__all__ = ["main", "build_parser", "CLIError"]


class CLIError(Exception):
    """A user error found by a command; printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from maskgit import __version__
    from maskgit.cli import convert, extract_tokens, generate, metrics, sample, train

    parser = argparse.ArgumentParser(prog="maskgit", description="MaskGIT in PyTorch.")
    parser.add_argument("--version", action="version", version=f"maskgit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (generate, convert, extract_tokens, train, metrics, sample):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CLIError, CheckpointError, ConfigError, ValueError, FileNotFoundError) as error:
        print(f"maskgit {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"maskgit {args.command}: interrupted", file=sys.stderr)
        return 130
