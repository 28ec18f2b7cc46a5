"""maskgit.data: idx files, the Fashion-MNIST/MNIST loaders, transforms, image folders, build_dataset."""

from __future__ import annotations

import gzip
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskgit.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    IdxImages,
    ImageFolder,
    build_dataset,
    eval_transform,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    train_transform,
)
from maskgit.data.transforms import center_crop, center_pad, resize_crop_mask, resize_short_side

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding, written independently of the reader under test."""
    code = IDX_CODES[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist_folder(root: Path, train: int = 12, test: int = 5, gz: bool = False, seed: int = 0) -> dict:
    """Four idx files in the MNIST layout with random 28x28 digits; returns the arrays."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[prefix] = (images, labels)
    return arrays


def coordinate_image(width: int, height: int) -> Image.Image:
    """RGB image whose red channel is x and green channel is y, so a crop reveals its offset."""
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    array = np.stack([x, y, np.full_like(x, 7)], axis=-1).astype(np.uint8)
    return Image.fromarray(array)


def random_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode)


# -- idx files ---------------------------------------------------------------------------------


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


# -- transforms --------------------------------------------------------------------------------


def maskgit_torch_resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """The official/maskgit-torch evaluation preprocessing, restated for parity, with the one fix
    documented in transforms.py (the short side is exactly ``size``)."""
    w, h = image.size
    scale = float(size) / min(w, h)
    rw, rh = int(scale * w), int(scale * h)
    rw, rh = (size, rh) if w <= h else (rw, size)
    image = image.resize((rw, rh), Image.Resampling.BICUBIC)
    top, left = (rh - size) // 2, (rw - size) // 2
    return image.crop((left, top, left + size, top + size))


@pytest.mark.parametrize("width,height,size", [(300, 200, 64), (375, 500, 256), (64, 64, 64), (20, 30, 32), (49, 70, 32)])
def test_eval_transform_matches_maskgit_torch(width, height, size):
    image = random_image(width, height, seed=width)
    expected = np.asarray(maskgit_torch_resize_and_crop(image, size), dtype=np.float32) / 255
    result = eval_transform(size)(image)
    assert result.shape == (3, size, size) and result.dtype == torch.float32
    np.testing.assert_array_equal(result.permute(1, 2, 0).numpy(), expected)


def test_resize_short_side_sizes():
    assert resize_short_side(Image.new("RGB", (300, 200)), 64).size == (96, 64)
    assert resize_short_side(Image.new("RGB", (375, 500)), 256).size == (256, 341)  # int(341.33)
    # int(32 / 49 * 49) == 31 in floating point; the short side must still be exactly 32.
    assert resize_short_side(Image.new("RGB", (49, 70)), 32).size == (32, 45)
    image = Image.new("RGB", (64, 80))
    assert resize_short_side(image, 64) is image  # already the right size: untouched


def test_centre_crop_offsets_on_non_square_image():
    crop = center_crop(coordinate_image(101, 60), 40)
    array = np.asarray(crop)
    assert array[0, 0, 0] == (101 - 40) // 2 == 30 and array[0, 0, 1] == (60 - 40) // 2 == 10
    # Through the eval transform with no resize (short side already S): offset (90 - 64) // 2 = 13.
    tensor = eval_transform(64)(coordinate_image(90, 64))
    assert round(float(tensor[0, 0, 0]) * 255) == 13 and round(float(tensor[1, 0, 0]) * 255) == 0
    assert round(float(tensor[0, 0, 63]) * 255) == 13 + 63
    with pytest.raises(ValueError, match="cannot centre-crop 40x40 from a 30x60 image"):
        center_crop(coordinate_image(30, 60), 40)


def test_eval_transform_converts_modes_to_rgb():
    for mode in ("L", "RGBA"):
        image = random_image(40, 40, seed=3, mode=mode)
        result = eval_transform(40)(image)
        if mode == "RGBA":  # transparency is shown over white, as a viewer would
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
        expected = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(result.permute(1, 2, 0).numpy(), expected)


def _crop_offset_and_flip(tensor: torch.Tensor) -> tuple[int, int, bool]:
    x = (tensor[0] * 255).round().long()
    y = (tensor[1] * 255).round().long()
    flipped = bool(x[0, 0] > x[0, -1])
    return int(x[0].min()), int(y[:, 0].min()), flipped


def test_train_transform_is_a_random_crop_with_flips_from_torch_rng():
    size = 16
    transform = train_transform(size)
    image = coordinate_image(40, size)  # short side already S: crops are exact coordinate windows
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(200)]
    offsets, flips = set(), []
    for output in outputs:
        assert output.shape == (3, size, size) and output.dtype == torch.float32
        assert 0.0 <= float(output.min()) and float(output.max()) <= 1.0
        left, top, flipped = _crop_offset_and_flip(output)
        expected = torch.arange(left, left + size, dtype=torch.float32) / 255
        row = output[0, 0].flip(-1) if flipped else output[0, 0]
        torch.testing.assert_close(row, expected, rtol=0, atol=1e-6)  # a contiguous window, maybe mirrored
        assert top == 0 and 0 <= left <= 40 - size
        offsets.add(left)
        flips.append(flipped)
    assert len(offsets) > 15  # 25 possible offsets, 200 draws
    assert 0.35 < np.mean(flips) < 0.65
    # Seeding torch reproduces the stream exactly; Python's random module plays no part.
    torch.manual_seed(0)
    random.seed(123)
    again = [transform(image) for _ in range(200)]
    assert all(torch.equal(a, b) for a, b in zip(outputs, again))
    generator = torch.Generator().manual_seed(5)
    first = [transform(image, generator=generator) for _ in range(5)]
    generator.manual_seed(5)
    assert all(torch.equal(a, transform(image, generator=generator)) for a in first)


def test_train_transform_resizes_short_side_before_cropping():
    image = random_image(60, 30, seed=1)
    resized = resize_short_side(image, 20)
    assert resized.size == (40, 20)
    torch.manual_seed(1)
    output = train_transform(20)(image)
    candidates = []
    for left in range(0, 21):
        crop = torch.from_numpy(np.asarray(resized.crop((left, 0, left + 20, 20)), dtype=np.float32) / 255)
        crop = crop.permute(2, 0, 1)
        candidates += [crop, crop.flip(-1)]
    assert any(torch.equal(output, candidate) for candidate in candidates)


def test_transforms_pickle_for_dataloader_workers():
    for transform in (train_transform(32), eval_transform(32)):
        clone = pickle.loads(pickle.dumps(transform))
        assert repr(clone) == repr(transform)


def test_center_pad():
    padded = np.asarray(center_pad(Image.fromarray(np.full((28, 28), 200, np.uint8)), 32))
    assert padded.shape == (32, 32)
    assert (padded[2:30, 2:30] == 200).all() and padded.sum() == 200 * 28 * 28


def test_resize_crop_mask_follows_the_eval_transform():
    # 40x80 → short side 20 (20x40) → centre crop at column 10: original columns 20..40 → 0..10.
    mask = torch.zeros(40, 80, dtype=torch.bool)
    mask[:, 20:40] = True
    fitted = resize_crop_mask(mask, 20)
    assert fitted.dtype == torch.bool and fitted.shape == (20, 20)
    assert fitted[:, :10].all() and not fitted[:, 10:].any()
    # The same geometry as the image transform: a white stripe lands where the mask does.
    stripe = Image.fromarray(mask.numpy().astype(np.uint8) * 255).convert("RGB")
    assert ((eval_transform(20)(stripe)[0] > 0.5) == fitted).float().mean() > 0.9
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        resize_crop_mask(torch.zeros(1, 4, 4, dtype=torch.bool), 2)


# -- build_dataset on idx sources --------------------------------------------------------------


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


def test_build_dataset_source_errors(tmp_path):
    with pytest.raises(ValueError, match="mnist needs the folder"):
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


# -- image folders -----------------------------------------------------------------------------


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
