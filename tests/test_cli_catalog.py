"""`maskgit models` and `maskgit classes`."""

from __future__ import annotations

import json

import pytest

from maskgit import MaskGIT
from maskgit.cli import main


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MASKGIT_BASE_URL", raising=False)


def test_models_lists_each_name_with_its_source_and_location(tmp_path, capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[::2]] == [
        ["fashion-mnist", "shipped"], ["imagenet256", "registered"], ["imagenet512", "registered"]
    ]
    assert "in the package:" in lines[1] and lines[1].rstrip().endswith("fashion-mnist")
    assert lines[3].split()[:4] == ["downloaded", "on", "first", "use:"]
    assert str(tmp_path / "home" / "models" / "imagenet256") in lines[3]
    assert "maskgit_imagenet256_checkpoint" in lines[3]


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == ["fashion-mnist", "imagenet256", "imagenet512"]
    assert entries[1]["source"] == "registered" and entries[1]["cached"] is False and len(entries[1]["urls"]) == 2


def test_classes_default_to_the_shipped_model(capsys):
    assert main(["classes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "0  T-shirt/top"
    assert lines[7] == "7  Sneaker"
    assert len(lines) == 10


def test_classes_of_a_registered_model_align_ids_without_downloading(tmp_path, capsys):
    assert main(["classes", "--model", "imagenet256"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1000
    assert lines[0] == "  0  tench, Tinca tinca"
    assert lines[90] == " 90  lorikeet"
    assert not (tmp_path / "home").exists()


def test_classes_of_a_saved_folder_as_json(tmp_path, capsys, small_tokenizer, small_transformer):
    names = [f"kind {i}" for i in range(small_transformer.config.num_classes)]
    MaskGIT(small_tokenizer, small_transformer, names).save_pretrained(tmp_path / "saved")
    assert main(["classes", "--model", str(tmp_path / "saved"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == names


def test_classes_of_an_unknown_model_is_a_one_line_error(capsys):
    assert main(["classes", "--model", "imagenet1024"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "maskgit classes: error: imagenet1024: no such folder, and not a known model name "
        "(fashion-mnist, imagenet256, imagenet512)"
    )
