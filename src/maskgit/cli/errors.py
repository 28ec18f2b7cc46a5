"""The error a command raises for a user's mistake (``maskgit.cli.main`` prints it as one line)."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user error found by a command; printed without a traceback, exit status 2."""
