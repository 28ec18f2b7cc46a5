"""Exception types for checkpoints: unreadable or mismatched files, and downloads that failed."""

from __future__ import annotations

__all__ = ["CheckpointError", "DownloadError", "sample_names"]


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model. The message names the file and the
    offending key or shape."""


class DownloadError(CheckpointError):
    """A checkpoint file could not be downloaded (no network, server error, wrong size or hash).
    The message names the URL and the local path, so the file can be fetched by hand instead."""


def sample_names(names: list[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, and how many more there are: for error messages."""
    shown = ", ".join(names[:limit])
    return f"{shown} (and {len(names) - limit} more)" if len(names) > limit else shown
