"""The one exception type for unreadable or mismatched checkpoints."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model. The message names the file and the
    offending key or shape."""
