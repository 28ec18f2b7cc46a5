"""runs/folder.py: an output folder's manifest, lock, ``resume`` with the same settings only, and
``overwrite`` that deletes what the manifest lists and nothing else."""

from __future__ import annotations

import json

import pytest

from maskgit.io import TEMP_SUFFIX, file_lock
from maskgit.runs import OutputFolder, read_manifest
from maskgit.runs.folder import LOCK
from maskgit.runs.manifest import MANIFEST, GenerateSettings

SETTINGS = GenerateSettings(model="fashion-mnist", seed=3, sampler={"sampler": "confidence", "num_steps": 8},
                            classes=(1,), per_class=2, class_names=("Trouser",))
OUTPUTS = ["images/0.png", "images/1.png"]


def _folder(path, settings=SETTINGS, **flags) -> OutputFolder:
    return OutputFolder(path, settings, OUTPUTS, [*OUTPUTS, "grid.png"], **flags)


def _manifest(path) -> dict:
    return json.loads((path / MANIFEST).read_text())


def _write_run(path, settings=SETTINGS) -> None:
    """A complete run: every listed file written, the manifest marked complete."""
    folder = _folder(path, settings)
    with folder.open():
        for name in [*OUTPUTS, "grid.png"]:
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_bytes(name.encode())
        folder.finish()


def test_a_new_run_writes_an_incomplete_manifest_first_and_holds_the_lock(tmp_path):
    out = tmp_path / "out"
    folder = _folder(out)
    with folder.open() as opened:
        assert opened is folder and (out / LOCK).is_file()
        manifest = _manifest(out)
        assert manifest["complete"] is False  # before the first image: a killed run can be resumed
        assert manifest["settings"] == SETTINGS.to_dict() and manifest["outputs"] == OUTPUTS
        assert manifest["files"] == [*OUTPUTS, "grid.png", MANIFEST]
        assert read_manifest(out).settings == SETTINGS  # read back as written, typed
        with pytest.raises(BlockingIOError, match="being written by another process"):
            with _folder(out).open():
                pass
        (out / "images").mkdir()
        (out / OUTPUTS[0]).write_bytes(b"png")
        folder.finish()
    assert _manifest(out)["complete"] is True
    assert not (out / LOCK).exists()  # the lock file goes with the lock


def test_a_folder_locked_by_another_writer_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with file_lock(out / LOCK):
        with pytest.raises(BlockingIOError, match="locked: .*out is being written by another process"):
            with _folder(out).open():
                pass
    assert not (out / MANIFEST).exists()


def test_resume_needs_the_same_settings_and_keeps_the_files(tmp_path):
    out = tmp_path / "out"
    _write_run(out)
    # The device and the batch size do not change the images: not compared.
    same = SETTINGS.replace(device="cuda", batch_size=64)
    with _folder(out, same, resume=True).open():
        assert (out / OUTPUTS[0]).read_bytes() == OUTPUTS[0].encode()
        assert _manifest(out)["complete"] is False
    changed = SETTINGS.replace(seed=4, sampler={"sampler": "confidence", "num_steps": 12})
    with pytest.raises(ValueError, match="--resume needs the settings of the run there") as error:
        with _folder(out, changed, resume=True).open():
            pass
    assert "sampler.num_steps: 8 -> 12; seed: 3 -> 4" in str(error.value)
    # Resuming into an empty or missing folder is simply a new run.
    with _folder(tmp_path / "fresh", resume=True).open():
        assert (tmp_path / "fresh" / MANIFEST).is_file()


def test_a_non_empty_folder_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "out"
    _write_run(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty; use --resume .*, --overwrite .*, or another --out"):
        with _folder(out).open():
            pass
    with pytest.raises(ValueError, match="give one"):
        _folder(out, resume=True, overwrite=True)
    # --overwrite deletes the files the manifest lists, and the folders that leaves empty; not notes.txt.
    with _folder(out, overwrite=True).open():
        assert sorted(p.name for p in out.iterdir()) == sorted([LOCK, MANIFEST, "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"


def test_files_without_a_manifest_are_never_resumed_or_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").write_bytes(b"someone else's")
    with pytest.raises(ValueError, match=f"cannot --resume, there is no {MANIFEST}"):
        with _folder(out, resume=True).open():
            pass
    with pytest.raises(ValueError, match=f"--overwrite deletes only what a {MANIFEST} lists, and there is none"):
        with _folder(out, overwrite=True).open():
            pass
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]
    (out / MANIFEST).write_text("{broken")
    with pytest.raises(ValueError, match=f"{MANIFEST}: not valid JSON"):
        with _folder(out, resume=True).open():
            pass
    (out / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a maskgit manifest"):
        with _folder(out, resume=True).open():
            pass


def test_an_overwrite_never_deletes_outside_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("keep")
    (out / MANIFEST).write_text(json.dumps({"files": ["../precious.txt", "a.png"], "settings": {}}))
    (out / "a.png").write_bytes(b"x")
    with _folder(out, overwrite=True).open():
        assert not (out / "a.png").exists()
    assert (tmp_path / "precious.txt").read_text() == "keep"


def test_a_failed_run_leaves_no_manifest_before_its_first_file_and_an_incomplete_one_after(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with _folder(out).open():
            raise RuntimeError("the model failed")
    assert not out.exists()  # the folder it created is removed again
    with pytest.raises(RuntimeError):
        with _folder(out).open():
            (out / "grid.png").write_bytes(b"x")
            raise RuntimeError("failed later")
    assert _manifest(out)["complete"] is False and (out / "grid.png").is_file()


def test_temporary_files_of_a_killed_run_are_removed(tmp_path):
    out = tmp_path / "out"
    _write_run(out)
    leftover = out / "images" / f".0.png.abcd{TEMP_SUFFIX}"
    leftover.write_bytes(b"half")
    with _folder(out, resume=True).open():
        assert not leftover.exists()
