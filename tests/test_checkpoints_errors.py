"""maskgit.checkpoints.errors: the error types callers catch, and the short lists in messages."""

from __future__ import annotations

import pytest

from maskgit.checkpoints.errors import CheckpointError, DownloadError, sample_names


def test_checkpoint_errors_are_value_errors_and_download_errors_are_checkpoint_errors():
    # The CLI turns ValueError into a one-line message with exit status 2: both must be caught there.
    assert issubclass(CheckpointError, ValueError) and issubclass(DownloadError, CheckpointError)
    with pytest.raises(ValueError, match="offline"):
        raise DownloadError("offline")


def test_sample_names_lists_at_most_the_limit_and_says_how_many_more():
    assert sample_names(["a", "b"]) == "a, b"
    names = [f"p{i}" for i in range(11)]
    text = sample_names(names, limit=3)
    assert text == "p0, p1, p2 (and 8 more)"
