"""data/idx.py: idx files (plain or gzip) and the MNIST / Fashion-MNIST loaders, with errors that
name the file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from data_helpers import idx_bytes, write_idx, write_mnist_folder
from maskgit.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    IdxImages,
    build_dataset,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5) * 8
    result = read_idx(write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array))
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    np.testing.assert_array_equal(result, array)
    result[0, 0, 0] = 1  # writable copy, not a view of the file bytes


def test_read_idx_detects_gzip_by_content(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"  # gzip data without a .gz name
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


def _bad_idx_cases():
    good = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    return {
        "wrong magic": (b"\x01\x00" + good[2:], "not an idx file"),
        "PNG, not idx": (b"\x89PNG\r\n\x1a\n" + good, "not an idx file"),
        "unknown dtype code": (good[:2] + b"\x07" + good[3:], "unknown idx dtype code 0x07"),
        "zero dimensions": (b"\x00\x00\x08\x00", "0 dimensions"),
        "too short": (b"\x00\x00", "too short"),
        "truncated header": (good[:9], "truncated idx header"),
        "truncated data": (good[:-1], "truncated"),
        "trailing bytes": (good + b"\x00", "trailing bytes"),
        "corrupt gzip": (gzip.compress(good)[:-6], "corrupt gzip"),
        "gzip of garbage": (b"\x1f\x8b" + b"\x00" * 30, "corrupt gzip"),
    }


@pytest.mark.parametrize("case", list(_bad_idx_cases()))
def test_read_idx_rejects_bad_files_naming_them(tmp_path, case):
    data, message = _bad_idx_cases()[case]
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_written_files(tmp_path, gz):
    arrays = write_mnist_folder(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_mnist(tmp_path, split)
        assert isinstance(data, IdxImages)
        np.testing.assert_array_equal(data.images, arrays[prefix][0])
        np.testing.assert_array_equal(data.labels, arrays[prefix][1])
        assert data.labels.dtype == np.int64 and len(data) == len(arrays[prefix][1])
        assert data.class_names == tuple("0123456789")


def test_load_fashion_mnist_from_written_files(tmp_path):
    write_mnist_folder(tmp_path, gz=True)
    data = load_fashion_mnist(tmp_path, "test")
    assert len(data) == 5 and data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_idx_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_mnist(tmp_path / "absent", "train")
    write_mnist_folder(tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist(tmp_path, "val")
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))  # 5 images
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 10, 3], dtype=np.uint8))
    with pytest.raises(ValueError, match="label 10 out of range"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 images \(N, H, W\)"):
        load_mnist(tmp_path, "train")


def test_missing_fashion_mnist_says_how_to_install(monkeypatch, tmp_path):
    import maskgit.data.idx as idx

    monkeypatch.setattr(idx, "FASHION_MNIST_ROOT", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        idx.load_fashion_mnist(str(tmp_path / "absent"))


@pytest.mark.skipif(
    not Path(FASHION_MNIST_ROOT, "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_ROOT} (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    for split, count in (("train", 60000), ("test", 10000)):
        data = load_fashion_mnist(split=split)
        assert data.images.shape == (count, 28, 28) and data.images.dtype == np.uint8
        assert data.class_names == FASHION_MNIST_CLASSES and len(data.class_names) == 10
        # Fashion-MNIST is balanced: every class has a tenth of each split.
        np.testing.assert_array_equal(np.bincount(data.labels, minlength=10), np.full(10, count // 10))
        assert data.images.max() == 255 and data.images.min() == 0
    dataset = build_dataset("fashion-mnist", split="test", image_size=32, train=False)
    image, label = dataset[0]
    assert image.shape == (3, 32, 32) and label == int(data.labels[0])
    np.testing.assert_array_equal((image[0, 2:30, 2:30] * 255).round().numpy().astype(np.uint8), data.images[0])
