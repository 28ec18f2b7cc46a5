"""Output folders that tell the truth: what ``manifest.json`` lists is what the folder holds, made
with the settings it records.

``OutputFolder`` is what the generation commands write through. Entering it:

- refuses a folder that another process is writing (a lock file, ``.maskgit.lock``);
- with ``resume``, refuses a folder whose manifest records other settings, and lists them;
- without ``resume``, refuses a folder that already holds files, unless ``overwrite``, which first
  deletes the files its manifest lists (and nothing else);
- removes temporary files that a killed run left, and writes the manifest (marked incomplete)
  before the first image, so that a killed run can be resumed.

``finish`` rewrites the manifest as complete. The manifest's format and the settings it records
are ``maskgit.runs.manifest``'s; settings that do not change the images (the device, the batch
size) are not compared.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from maskgit.config_base import differences
from maskgit.io import atomic_write_text, check_output_dir, file_lock, remove_temp_files
from maskgit.runs.manifest import MANIFEST, Manifest, RunSettings, manifest_data

__all__ = ["OutputFolder", "LOCK"]

LOCK = ".maskgit.lock"


class OutputFolder:
    """One run's output folder (see the module docstring). ``settings`` are what the manifest
    records; ``files`` (relative paths) are every file the run will write, ``outputs`` the images
    among them."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        settings: RunSettings,
        outputs: Sequence[str],
        files: Sequence[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        if resume and overwrite:
            raise ValueError("--resume keeps the images already written and --overwrite deletes them: give one")
        self.path = Path(path)
        self.settings = settings
        self.outputs = list(outputs)
        self.files = list(dict.fromkeys([*files, MANIFEST]))
        self.resume = resume
        self.overwrite = overwrite

    @contextmanager
    def open(self) -> Iterator[OutputFolder]:
        """Check, lock and prepare the folder; the lock is released (and its file removed) on exit.
        A run that fails before writing any of its files leaves no manifest, and a folder it
        created is removed again; one that fails later leaves its manifest marked incomplete, so
        that ``resume`` can finish it."""
        created = not self.path.exists()
        check_output_dir(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK
        try:
            with ExitStack() as stack:
                stack.enter_context(file_lock(lock, wait=False, holder=str(self.path)))
                stack.callback(lock.unlink, missing_ok=True)
                self._prepare()
                try:
                    yield self
                except BaseException:
                    # Failed before its first file: leave no manifest of a run that made nothing.
                    if not any((self.path / name).exists() for name in self.files if name != MANIFEST):
                        (self.path / MANIFEST).unlink(missing_ok=True)
                    raise
        finally:
            if created and self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()

    def _prepare(self) -> None:
        remove_temp_files(self.path, recursive=True)
        manifest = self._read_manifest()
        present = [item for item in self.path.iterdir() if item.name != LOCK]
        if self.resume:
            if manifest is None and present:
                raise ValueError(f"{self.path}: cannot --resume, there is no {MANIFEST} to say what made the files there")
            if manifest is not None:
                changed = differences(manifest.get("settings", {}), self.settings.to_dict(),
                                      ignore=self.settings.uncompared())
                if changed:
                    raise ValueError(
                        f"{self.path}: --resume needs the settings of the run there; these differ (then -> now): "
                        + "; ".join(changed)
                    )
        elif present:
            if not self.overwrite:
                raise ValueError(
                    f"{self.path} is not empty; use --resume to continue the run there, --overwrite to replace "
                    "it, or another --out"
                )
            if manifest is None:
                raise ValueError(f"{self.path}: --overwrite deletes only what a {MANIFEST} lists, and there is none")
            self._clear(manifest)
        self._write_manifest(complete=False)

    def _read_manifest(self) -> dict[str, Any] | None:
        """The earlier run's manifest, as written (any version of it), or None when there is none."""
        return manifest_data(self.path) if (self.path / MANIFEST).is_file() else None

    def _clear(self, manifest: dict[str, Any]) -> None:
        """Delete the files an earlier run listed (never anything outside the folder), then the
        subfolders that this leaves empty."""
        listed = manifest.get("files") or [*manifest.get("outputs", []), MANIFEST]
        root = self.path.resolve()
        folders = set()
        for name in listed:
            target = (self.path / str(name)).resolve()
            if root not in target.parents:
                continue
            target.unlink(missing_ok=True)
            folders.update(parent for parent in target.parents if root in parent.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def _write_manifest(self, *, complete: bool) -> None:
        from maskgit import __version__

        manifest = Manifest(settings=self.settings, outputs=tuple(self.outputs), files=tuple(self.files),
                            complete=complete, maskgit_version=__version__,
                            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_text(self.path / MANIFEST, json.dumps(manifest.to_dict(), indent=2) + "\n")

    def finish(self) -> None:
        """Mark the manifest complete: every file it lists has been written."""
        self._write_manifest(complete=True)
