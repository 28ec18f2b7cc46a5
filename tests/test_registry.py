"""Model names: listing, descriptions and class names without any download, and where names resolve."""

from __future__ import annotations

import pytest

import maskgit
from maskgit import CheckpointError, MaskGIT
from maskgit.class_names import imagenet_class_names
from maskgit.data import FASHION_MNIST_CLASSES
from maskgit.registry import DEFAULT_MODEL, known_models, list_models, model_class_names, model_info, resolve_pretrained


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MASKGIT_BASE_URL", raising=False)


def test_list_models_names_every_loadable_model_shipped_first():
    assert maskgit.list_models is list_models
    assert list_models() == ("fashion-mnist", "imagenet256", "imagenet512")
    assert DEFAULT_MODEL == "fashion-mnist"


def test_shipped_model_is_described_from_its_configs():
    info = model_info("fashion-mnist")
    assert info.source == "shipped"
    assert info.description == "10 classes, 32x32 images, 8x8 tokens of 512 codes"
    assert (info.location / "model_index.json").is_file()
    assert info.urls == () and info.cached


def test_registered_model_points_at_its_downloads_and_cache(tmp_path, monkeypatch):
    info = model_info("imagenet512")
    assert info.source == "registered"
    assert "ImageNet 512x512" in info.description
    assert info.location == tmp_path / "home" / "models" / "imagenet512"
    assert info.urls == (
        "https://storage.googleapis.com/maskgit-public/checkpoints/tokenizer_imagenet512_checkpoint",
        "https://storage.googleapis.com/maskgit-public/checkpoints/maskgit_imagenet512_checkpoint",
    )
    assert not info.cached

    monkeypatch.setenv("MASKGIT_BASE_URL", "http://127.0.0.1:1/mirror/")
    info.location.mkdir(parents=True)
    (info.location / "model_index.json").write_text("{}")
    again = model_info("imagenet512")
    assert again.cached
    assert again.urls[0] == "http://127.0.0.1:1/mirror/tokenizer_imagenet512_checkpoint"


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(CheckpointError, match="unknown model 'imagenet1024'.*fashion-mnist, imagenet256, imagenet512"):
        model_info("imagenet1024")
    with pytest.raises(CheckpointError, match="imagenet1024: no such folder, and not a known model name"):
        resolve_pretrained("imagenet1024")


def test_known_models_say_where_the_weights_come_from():
    assert known_models() == {
        "fashion-mnist": "shipped in the package",
        "imagenet256": "official checkpoint, downloaded and converted on first use",
        "imagenet512": "official checkpoint, downloaded and converted on first use",
    }
    assert resolve_pretrained("fashion-mnist") == model_info("fashion-mnist").location


def test_class_names_of_shipped_registered_and_saved_models(tmp_path, small_tokenizer, small_transformer):
    assert model_class_names("fashion-mnist") == FASHION_MNIST_CLASSES
    # Registered checkpoints are named with the built-in ImageNet names; nothing is downloaded.
    assert model_class_names("imagenet256") == imagenet_class_names()
    assert not (tmp_path / "home").exists()

    names = tuple(f"kind {i}" for i in range(small_transformer.config.num_classes))
    MaskGIT(small_tokenizer, small_transformer, names).save_pretrained(tmp_path / "saved")
    assert model_class_names(tmp_path / "saved") == names
    with pytest.raises(CheckpointError, match="not a known model name"):
        model_class_names(tmp_path / "missing")
