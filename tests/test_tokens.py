"""maskgit.data.tokens (token files, TokenDataset, extract_tokens) and ``maskgit extract-tokens``."""

from __future__ import annotations

import argparse
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TOKENIZER_MSGPACK
from maskgit.data import TokenDataset, build_dataset, extract_tokens, write_token_file
from maskgit.data.tokens import TokenFileWriter


def random_ids(count: int, height: int, width: int, codebook_size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, codebook_size, (count, height, width))


# -- the file format ---------------------------------------------------------------------------


def test_round_trip_memory_mapped(tmp_path):
    ids = random_ids(5, 3, 4, 1000)
    labels = np.array([0, 2, 1, 2, 0])
    path = tmp_path / "tokens.bin"
    write_token_file(path, torch.from_numpy(ids), labels, ["a", "b", "c"], codebook_size=1024, metadata={"k": 1})
    tokens = TokenDataset(path)
    assert len(tokens) == 5 and tokens.grid == (3, 4) and tokens.latent_size == 3
    assert tokens.codebook_size == 1024 and tokens.class_names == ("a", "b", "c")
    assert tokens.metadata == {"k": 1}
    assert isinstance(tokens.ids, np.memmap) and not tokens.ids.flags.writeable
    assert tokens.ids.dtype == np.dtype("<u2")  # 2 bytes per id for codebooks up to 65536
    for index in range(5):
        item_ids, label = tokens[index]
        assert item_ids.dtype == torch.int64 and item_ids.shape == (3, 4)
        np.testing.assert_array_equal(item_ids.numpy(), ids[index])
        assert label == labels[index] and isinstance(label, int)
    np.testing.assert_array_equal(tokens[-1][0].numpy(), ids[-1])
    batch_ids, batch_labels = next(iter(torch.utils.data.DataLoader(tokens, batch_size=5)))
    np.testing.assert_array_equal(batch_ids.numpy(), ids)
    np.testing.assert_array_equal(batch_labels.numpy(), labels)


def test_layout_is_as_documented(tmp_path):
    """Read the file with nothing but the module docstring's description."""
    ids = random_ids(7, 2, 2, 50, seed=1)
    labels = np.arange(7) % 3
    path = tmp_path / "tokens.bin"
    write_token_file(path, ids, labels, ["x", "y", "z"], codebook_size=50)
    raw = path.read_bytes()
    magic, header_length = struct.unpack("<8sQ", raw[:16])
    assert magic == b"MGTOKENS"
    header = json.loads(raw[16 : 16 + header_length])
    assert header["format"] == "maskgit-tokens" and header["version"] == 1
    assert header["count"] == 7 and header["grid"] == [2, 2] and header["codebook_size"] == 50
    data_start = -(-(16 + header_length) // 64) * 64
    start = data_start + header["ids_offset"]
    stored = np.frombuffer(raw, dtype=header["ids_dtype"], count=28, offset=start).reshape(7, 2, 2)
    np.testing.assert_array_equal(stored, ids)
    assert (data_start + header["labels_offset"]) % 64 == 0
    stored_labels = np.frombuffer(raw, dtype="<i8", count=7, offset=data_start + header["labels_offset"])
    np.testing.assert_array_equal(stored_labels, labels)
    assert len(raw) == data_start + header["labels_offset"] + 7 * 8


def test_large_codebook_and_inferred_codebook_size(tmp_path):
    ids = np.array([[[0, 70000]], [[65536, 3]]])
    write_token_file(tmp_path / "big.bin", ids, [0, 0], ["only"], codebook_size=100000)
    tokens = TokenDataset(tmp_path / "big.bin")
    assert tokens.ids.dtype == np.dtype("<i4")
    np.testing.assert_array_equal(np.stack([tokens[i][0].numpy() for i in range(2)]), ids)
    write_token_file(tmp_path / "inferred.bin", ids, [0, 0], ["only"])
    assert TokenDataset(tmp_path / "inferred.bin").codebook_size == 70001


def test_code_usage(tmp_path):
    ids = np.array([[[1, 1], [3, 0]], [[3, 3], [3, 1]]])
    write_token_file(tmp_path / "t.bin", ids, [0, 1], ["a", "b"], codebook_size=6)
    np.testing.assert_array_equal(TokenDataset(tmp_path / "t.bin").code_usage(), [1, 3, 0, 4, 0, 0])


def test_pickles_by_reopening(tmp_path):
    write_token_file(tmp_path / "t.bin", random_ids(1000, 4, 4, 64), np.zeros(1000, int), ["a"], codebook_size=64)
    tokens = TokenDataset(tmp_path / "t.bin")
    blob = pickle.dumps(tokens)
    assert len(blob) < 1000  # the path, not a copy of the ids
    clone = pickle.loads(blob)
    assert torch.equal(clone[999][0], tokens[999][0]) and clone.class_names == ("a",)


@pytest.mark.parametrize(
    "ids,labels,names,codebook_size,message",
    [
        (np.zeros((2, 3), dtype=int), [0, 0], ["a"], 8, r"ids must be \(N, h, w\)"),
        (np.zeros((2, 3, 3), dtype=np.float32), [0, 0], ["a"], 8, "ids must be integers"),
        (np.full((2, 3, 3), 8), [0, 0], ["a"], 8, r"token ids must be in \[0, 8\)"),
        (np.full((2, 3, 3), -1), [0, 0], ["a"], 8, r"token ids must be in \[0, 8\)"),
        (np.zeros((2, 3, 3), dtype=int), [0, 1], ["a"], 8, r"labels must be in \[0, 1\)"),
        (np.zeros((2, 3, 3), dtype=int), [0], ["a"], 8, r"labels must be \(2,\)"),
        (np.zeros((0, 3, 3), dtype=int), [], ["a"], 8, "at least one record"),
        (np.zeros((2, 3, 3), dtype=int), [0, 0], [], 8, "class_names must not be empty"),
    ],
)
def test_write_rejects_bad_input_and_leaves_nothing(tmp_path, ids, labels, names, codebook_size, message):
    path = tmp_path / "t.bin"
    with pytest.raises(ValueError, match=message):
        write_token_file(path, ids, np.asarray(labels, dtype=int), names, codebook_size=codebook_size)
    assert list(tmp_path.iterdir()) == []


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "t.bin"
    write_token_file(path, np.ones((1, 1, 1), int), [0], ["a"], codebook_size=2)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="1 records written, 2 declared"):
        with TokenFileWriter(path, count=2, grid=(1, 1), codebook_size=2, class_names=["a"]) as writer:
            writer.write(np.zeros((1, 1, 1), int), [0])
    with pytest.raises(RuntimeError, match="interrupted"):
        with TokenFileWriter(path, count=1, grid=(1, 1), codebook_size=2, class_names=["a"]) as writer:
            writer.write(np.zeros((1, 1, 1), int), [0])
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before  # the old file survives both failures
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]  # no temporary files left


def test_reader_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.bin"):
        TokenDataset(tmp_path / "absent.bin")
    (tmp_path / "junk.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="junk.bin: not a maskgit token file"):
        TokenDataset(tmp_path / "junk.bin")
    write_token_file(tmp_path / "t.bin", random_ids(4, 2, 2, 8), [0, 0, 0, 0], ["a"], codebook_size=8)
    raw = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="cut.bin: .*truncated"):
        TokenDataset(tmp_path / "cut.bin")
    (tmp_path / "long.bin").write_bytes(raw + b"\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        TokenDataset(tmp_path / "long.bin")
    (tmp_path / "header.bin").write_bytes(raw[:20])
    with pytest.raises(ValueError, match="truncated token file header"):
        TokenDataset(tmp_path / "header.bin")
    header_length = struct.unpack("<Q", raw[8:16])[0]
    header = json.loads(raw[16 : 16 + header_length])
    header["version"] = 7  # same length as 1: the offsets stay valid
    patched = json.dumps(header).encode().ljust(header_length)
    (tmp_path / "future.bin").write_bytes(raw[:16] + patched + raw[16 + header_length :])
    with pytest.raises(ValueError, match="version 7, this reader needs 1"):
        TokenDataset(tmp_path / "future.bin")


# -- extract_tokens ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Six 64x64 images in two classes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(6):
        folder = root / ("cats" if index < 4 else "dogs")
        folder.mkdir(exist_ok=True)
        # Smooth images with a left-right asymmetry, so mirrors encode differently.
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((64, 64), Image.Resampling.BICUBIC)
        image.save(folder / f"{index}.png")
    return root


def test_extract_tokens_with_flips(tmp_path, small_tokenizer, image_folder):
    dataset = build_dataset(str(image_folder), image_size=64, train=False)
    tokens = extract_tokens(small_tokenizer, dataset, tmp_path / "t.bin", batch_size=4, progress=False)
    assert isinstance(tokens, TokenDataset)
    assert len(tokens) == 12 and tokens.grid == (4, 4) and tokens.latent_size == 4
    assert tokens.codebook_size == small_tokenizer.config.codebook_size == 64
    assert tokens.class_names == ("cats", "dogs")
    assert tokens.metadata["image_size"] == 64 and tokens.metadata["flips"] is True
    assert tokens.metadata["num_images"] == 6
    images = torch.stack([dataset[i][0] for i in range(6)])
    with torch.no_grad():
        expected = small_tokenizer.encode_to_ids(images)
        expected_mirrored = small_tokenizer.encode_to_ids(images.flip(-1))
    for index in range(6):
        assert torch.equal(tokens[2 * index][0], expected[index])
        assert torch.equal(tokens[2 * index + 1][0], expected_mirrored[index])
        assert tokens[2 * index][1] == tokens[2 * index + 1][1] == (0 if index < 4 else 1)
    # The mirror image is encoded, not the grid mirrored: the two differ for the trained tokenizer.
    assert not torch.equal(expected_mirrored, expected.flip(-1))
    assert not small_tokenizer.training

    plain = extract_tokens(small_tokenizer, dataset, tmp_path / "p.bin", batch_size=5, flips=False, progress=False)
    assert len(plain) == 6 and plain.metadata["flips"] is False
    assert all(torch.equal(plain[i][0], expected[i]) for i in range(6))


def test_extract_tokens_refuses_random_augmentation(tmp_path, small_tokenizer, image_folder):
    dataset = build_dataset(str(image_folder), image_size=64, train=True)
    with pytest.raises(ValueError, match="train=False"):
        extract_tokens(small_tokenizer, dataset, tmp_path / "t.bin", progress=False)
    dataset = build_dataset(str(image_folder), image_size=40, train=False)
    with pytest.raises(ValueError, match="image size 40 is not a multiple of .* 16"):
        extract_tokens(small_tokenizer, dataset, tmp_path / "t.bin", progress=False)
    assert not (tmp_path / "t.bin").exists()


# -- the CLI command ---------------------------------------------------------------------------


def run_command(argv: list[str]) -> int:
    from maskgit.cli import extract_tokens as command

    parser = argparse.ArgumentParser(prog="maskgit")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_extract_tokens(tmp_path, image_folder, capsys):
    out = tmp_path / "out" / "tokens.bin"
    argv = ["extract-tokens", "--tokenizer", str(TOKENIZER_MSGPACK), "--data", str(image_folder)]
    argv += ["--out", str(out), "--image-size", "64", "--batch-size", "4", "--device", "cpu", "--quiet"]
    assert run_command(argv) == 0
    printed = capsys.readouterr().out
    tokens = TokenDataset(out)
    used = int((tokens.code_usage() > 0).sum())
    assert f"12 token grids (6 images + mirrors), grid 4x4 from 64x64 images, {used}/64 codes used" in printed
    assert "2 classes" in printed and 0 < used <= 64

    argv = ["extract-tokens", "--tokenizer", str(TOKENIZER_MSGPACK), "--data", str(image_folder)]
    assert run_command(argv + ["--out", str(tmp_path / "n.bin"), "--image-size", "64", "--no-flips", "--quiet"]) == 0
    assert len(TokenDataset(tmp_path / "n.bin")) == 6


def test_cli_extract_tokens_from_pipeline_folder(tmp_path, small_pipeline, image_folder, capsys):
    small_pipeline.save_pretrained(tmp_path / "pipeline")
    out = tmp_path / "tokens.bin"
    argv = ["extract-tokens", "--tokenizer", str(tmp_path / "pipeline"), "--data", str(image_folder)]
    assert run_command(argv + ["--out", str(out), "--no-flips", "--quiet"]) == 0
    # Without --image-size the pipeline's own size is used: 8x8 tokens x 16 = 128 pixels.
    assert "grid 8x8 from 128x128 images" in capsys.readouterr().out
    assert TokenDataset(out).metadata["image_size"] == small_pipeline.image_size == 128


def test_cli_extract_tokens_errors(tmp_path, image_folder):
    from maskgit.checkpoints import CheckpointError
    from maskgit.cli import CLIError

    base = ["extract-tokens", "--data", str(image_folder), "--out", str(tmp_path / "t.bin"), "--quiet"]
    with pytest.raises(CheckpointError, match="absent"):
        run_command(base + ["--tokenizer", str(tmp_path / "absent")])
    with pytest.raises(CLIError, match="--batch-size must be positive"):
        run_command(base + ["--tokenizer", str(TOKENIZER_MSGPACK), "--batch-size", "0"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_command(["extract-tokens", "--tokenizer", str(TOKENIZER_MSGPACK), "--data", str(tmp_path / "nowhere"),
                     "--out", str(tmp_path / "t.bin"), "--quiet"])
    assert not (tmp_path / "t.bin").exists()
