"""runs/manifest.py: the typed settings a manifest records, read back as written, and clear errors
for a manifest this version does not write."""

from __future__ import annotations

import json

import pytest

from maskgit.config_base import ConfigError
from maskgit.runs import read_manifest
from maskgit.runs.manifest import (
    MANIFEST,
    EditSettings,
    GenerateSettings,
    InpaintSettings,
    Manifest,
    OutpaintSettings,
    ReconstructSettings,
    SampleSettings,
    settings_from_dict,
)
from maskgit.sampling import HaltonSampler

SAMPLED = dict(model="fashion-mnist", seed=3, sampler=HaltonSampler(num_steps=8).to_dict(), classes=(7,), per_class=2,
               class_names=("Sneaker",))
ALL = [
    GenerateSettings(**SAMPLED, device="cuda:0", batch_size=16),
    SampleSettings(**SAMPLED, npz="set.npz"),
    EditSettings(**SAMPLED, image="in.png", box=(0, 8, 16, 16), start_step=2),
    InpaintSettings(**SAMPLED, image="in.png", keep_size=True, mask="mask.png"),
    OutpaintSettings(**SAMPLED, image="in.png", extend=(0, 16, 0, 0)),
    ReconstructSettings(model="imagenet256", precision="bf16", images="photos", image_size=256, write_inputs=True),
]


@pytest.mark.parametrize("settings", ALL, ids=lambda s: s.command)
def test_every_kind_of_run_round_trips_through_json_tagged_by_its_command(settings):
    data = json.loads(json.dumps(settings.to_dict()))
    assert data["command"] == settings.command
    assert settings_from_dict(data) == settings


def test_what_a_resumed_run_may_change_is_marked_in_the_schema():
    assert GenerateSettings.uncompared() == {"device", "batch_size"}
    assert SampleSettings.uncompared() == {"device", "batch_size", "npz"}


@pytest.mark.parametrize("changes, message", [
    ({"sampler": {"sampler": "zigzag"}}, "sampler: unknown sampler 'zigzag'"),
    ({"sampler": {"sampler": "halton", "num_steps": 0}}, "sampler: num_steps must be at least 1"),
    ({"class_names": ("Sneaker", "Bag")}, "2 class_names for 1 classes"),
    ({"per_class": 0}, "per_class must be >= 1"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"classes": "7"}, "classes must be tuple"),
])
def test_bad_settings_are_refused_by_name(changes, message):
    with pytest.raises(ConfigError, match=message):
        GenerateSettings(**{**SAMPLED, **changes})


def test_unknown_commands_and_keys_are_refused():
    with pytest.raises(ConfigError, match="not the settings of a maskgit run \\(command 'train'\\)"):
        settings_from_dict({"command": "train", "model": "m"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['num'\] for GenerateSettings"):
        settings_from_dict({**ALL[0].to_dict(), "num": 2})


def _write(folder, data) -> None:
    folder.mkdir(exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(data))


def test_read_manifest_gives_what_was_written_or_says_why_not(tmp_path):
    manifest = Manifest(settings=ALL[2], outputs=("edit_0000.png", "edit_0001.png"),
                        files=("edit_0000.png", "edit_0001.png", "grid.png", MANIFEST), complete=True,
                        maskgit_version="0.1.0", created="2026-01-01T00:00:00+0000")
    _write(tmp_path / "run", manifest.to_dict())
    assert read_manifest(tmp_path / "run") == manifest
    # A manifest of the settings as flags once wrote them (``num`` and friends) is refused by name.
    old = {**manifest.to_dict(), "settings": {"command": "generate", "model": "m", "num": 2, "classes": [1]}}
    _write(tmp_path / "old", old)
    with pytest.raises(ValueError, match=r"old/manifest.json: not a manifest of this maskgit version \(.*'num'"):
        read_manifest(tmp_path / "old")
    _write(tmp_path / "partial", {"settings": ALL[0].to_dict()})
    with pytest.raises(ValueError, match=r"partial/manifest.json: not a manifest of this maskgit version \(no 'outputs'"):
        read_manifest(tmp_path / "partial")
    (tmp_path / "broken" / MANIFEST).parent.mkdir()
    (tmp_path / "broken" / MANIFEST).write_text("{")
    with pytest.raises(ValueError, match="broken/manifest.json: not valid JSON"):
        read_manifest(tmp_path / "broken")
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "absent")
