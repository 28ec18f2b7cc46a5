"""Atomic writes: the target appears whole or not at all, with the usual permissions."""

from __future__ import annotations

import os

import pytest

from maskgit.io import atomic_path, atomic_write_bytes, atomic_write_text


def test_writes_create_folders_and_replace_the_target(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "first ✓")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.txt"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            assert temp.parent == target.parent and temp.name.startswith(".out.bin.")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
