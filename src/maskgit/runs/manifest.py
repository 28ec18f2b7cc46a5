"""The manifest of an output folder: ``manifest.json``, and the typed settings it records.

``manifest.json`` holds ``settings`` (one of the ``RunSettings`` configs below, tagged by its
``command``), ``outputs`` (the images, relative paths), ``files`` (every file the run writes),
``complete`` (false until the last file is written), ``maskgit_version`` and ``created``.
``OutputFolder`` writes it; ``maskgit evaluate`` and ``--resume`` read it back through
``read_manifest``, so what they read is what was written, whatever the flags are called.

A setting marked ``compared=False`` (the device, the batch size, where an ``.npz`` goes) records how
a run ran, not what it made: a run may be resumed with another value.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from maskgit.config_base import Config, ConfigError
from maskgit.sampling.samplers import sampler_from_dict

__all__ = [
    "MANIFEST",
    "RunSettings",
    "ReconstructSettings",
    "SamplingSettings",
    "GenerateSettings",
    "SampleSettings",
    "EditingSettings",
    "EditSettings",
    "InpaintSettings",
    "OutpaintSettings",
    "Manifest",
    "manifest_data",
    "read_manifest",
    "settings_from_dict",
]

MANIFEST = "manifest.json"
_HOW = {"compared": False}  # a setting that does not change what a run makes


@dataclass(frozen=True, kw_only=True)
class RunSettings(Config):
    """What every run records: the model and how it ran. ``command`` tags the kind of run."""

    tag_key: ClassVar[str] = "command"
    command: ClassVar[str] = ""

    model: str
    precision: str = "fp32"
    compile: bool = False
    device: str = field(default="cpu", metadata=_HOW)
    batch_size: int = field(default=1, metadata=_HOW)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(1, "batch_size")

    @classmethod
    def uncompared(cls) -> frozenset[str]:
        """The settings that a resumed run may change (they do not change the images)."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("compared") is False)


@dataclass(frozen=True, kw_only=True)
class ReconstructSettings(RunSettings):
    """``maskgit reconstruct``: a folder tree of images through the tokenizer."""

    command: ClassVar[str] = "reconstruct"

    images: str
    image_size: int
    write_inputs: bool = False


@dataclass(frozen=True, kw_only=True)
class SamplingSettings(RunSettings):
    """A run that samples: ``per_class`` images of each of ``classes`` (``maskgit.runs.RunPlan``),
    made with ``sampler`` (``Sampler.to_dict``) and ``seed``; ``class_names`` names the classes."""

    seed: int
    sampler: dict[str, Any]
    classes: tuple[int, ...]
    per_class: int
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_at_least(0, "seed")
        self._check_at_least(1, "per_class")
        if len(self.class_names) != len(self.classes):
            raise ConfigError(
                f"{type(self).__name__}: {len(self.class_names)} class_names for {len(self.classes)} classes"
            )
        try:
            sampler_from_dict(self.sampler)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{type(self).__name__}: sampler: {error}") from None


@dataclass(frozen=True, kw_only=True)
class GenerateSettings(SamplingSettings):
    """``maskgit generate``."""

    command: ClassVar[str] = "generate"


@dataclass(frozen=True, kw_only=True)
class SampleSettings(SamplingSettings):
    """``maskgit sample``: a sample set for FID, and where its ADM ``.npz`` was packed."""

    command: ClassVar[str] = "sample"

    npz: str | None = field(default=None, metadata=_HOW)


@dataclass(frozen=True, kw_only=True)
class EditingSettings(SamplingSettings):
    """A run that edits ``image`` (a path), resized to the model's size unless ``keep_size``."""

    image: str
    keep_size: bool = False


@dataclass(frozen=True, kw_only=True)
class EditSettings(EditingSettings):
    """``maskgit edit``: ``box`` (top, left, height, width) regenerated from ``start_step``."""

    command: ClassVar[str] = "edit"

    box: tuple[int, int, int, int]
    start_step: int


@dataclass(frozen=True, kw_only=True)
class InpaintSettings(EditingSettings):
    """``maskgit inpaint``: the white pixels of ``mask`` (a path) regenerated."""

    command: ClassVar[str] = "inpaint"

    mask: str


@dataclass(frozen=True, kw_only=True)
class OutpaintSettings(EditingSettings):
    """``maskgit outpaint``: the image extended by (top, right, bottom, left) pixels."""

    command: ClassVar[str] = "outpaint"

    extend: tuple[int, int, int, int]


_KINDS: dict[str, type[RunSettings]] = {
    kind.command: kind
    for kind in (GenerateSettings, SampleSettings, EditSettings, InpaintSettings, OutpaintSettings, ReconstructSettings)
}


def settings_from_dict(data: Any, *, source: str = "settings") -> RunSettings:
    """The settings a manifest records, as the config of their ``command``; ConfigError naming
    ``source`` for anything else."""
    if not isinstance(data, dict) or data.get("command") not in _KINDS:
        command = data.get("command") if isinstance(data, dict) else data
        raise ConfigError(f"{source}: not the settings of a maskgit run (command {command!r})")
    return _KINDS[data["command"]].from_dict(data, source=source)


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json`` (see the module docstring)."""

    settings: RunSettings
    outputs: tuple[str, ...]
    files: tuple[str, ...]
    complete: bool
    maskgit_version: str
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {"maskgit_version": self.maskgit_version, "created": self.created, "complete": self.complete,
                "settings": self.settings.to_dict(), "outputs": list(self.outputs), "files": list(self.files)}


def manifest_data(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of an output folder's manifest as it was written, by any version of maskgit
    (``OutputFolder`` compares and clears by it). FileNotFoundError when there is none; ValueError
    naming the file when it is not a JSON object."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a maskgit manifest")
    return data


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """The manifest of an output folder, typed. Raises FileNotFoundError when there is none, and
    ValueError naming the file when it is not one that this version of maskgit writes."""
    data = manifest_data(folder)
    try:
        outputs, files = data["outputs"], data["files"]
        if not all(isinstance(name, str) for name in [*outputs, *files]):
            raise ValueError("outputs and files must be lists of paths")
        return Manifest(
            settings=settings_from_dict(data["settings"]), outputs=tuple(outputs), files=tuple(files),
            complete=data["complete"] is True, maskgit_version=str(data["maskgit_version"]),
            created=str(data["created"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        detail = f"no {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{Path(folder) / MANIFEST}: not a manifest of this maskgit version ({detail})") from None
