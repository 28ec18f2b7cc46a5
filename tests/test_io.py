"""Atomic writes, output-path checks, locks and temporary-file clean-up, on real failing disks."""

from __future__ import annotations

import errno

import pytest
import torch

from maskgit.io import (
    atomic_torch_save,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    file_lock,
    remove_temp_files,
)


def test_atomic_writes_leave_only_the_target(tmp_path):
    atomic_write_text(tmp_path / "a" / "b.txt", "hello")
    atomic_torch_save(tmp_path / "c.pt", {"x": torch.arange(3)})
    assert (tmp_path / "a" / "b.txt").read_text() == "hello"
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["x"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.txt", "c.pt"]


def test_a_full_disk_is_an_os_error_naming_the_target(full_disk):
    # torch.save alone would say "unexpected pos" (or "basic_ios::clear"): the disk is named here.
    with pytest.raises(OSError) as error:
        atomic_torch_save(full_disk / "step.pt", {"x": torch.zeros(100_000)})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(full_disk / "step.pt")
    with pytest.raises(OSError, match="No space left on device") as error:
        atomic_write_text(full_disk / "m.json", "x" * 100_000)
    assert error.value.filename == str(full_disk / "m.json")
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def test_output_checks(tmp_path, read_only_dir):
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "sub")
    with pytest.raises(IsADirectoryError, match="is a folder; give a file path"):
        check_output_file(tmp_path)
    assert check_output_file(tmp_path / "x" / "t.bin") == tmp_path / "x" / "t.bin"
    with pytest.raises(OSError, match="Read-only file system") as error:
        check_output_dir(read_only_dir / "out")
    assert error.value.filename == str(read_only_dir / "out")
    with pytest.raises(OSError, match="Read-only file system"):
        check_output_file(read_only_dir / "t.bin")


def test_a_lock_refuses_a_second_holder(tmp_path):
    lock = tmp_path / "out" / ".lock"
    with file_lock(lock, holder="out"):
        with pytest.raises(BlockingIOError, match="locked: out is being written by another process"):
            with file_lock(lock, wait=False, holder="out"):
                pass
    with file_lock(lock, wait=False):  # released
        pass


def test_remove_temp_files_removes_only_ours(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in (".a.png.x1.tmp", "sub/.b.pt.y2.tmp", "keep.tmp", "a.png"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in remove_temp_files(tmp_path)] == [".a.png.x1.tmp"]
    assert [p.name for p in remove_temp_files(tmp_path, recursive=True)] == [".b.pt.y2.tmp"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "keep.tmp", "sub"]
