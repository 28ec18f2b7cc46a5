"""``maskgit convert``: every source format to our folder with identical outputs; bad input is exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import TOKENIZER_CKPT, TOKENIZER_MSGPACK, TRANSFORMER_CKPT, TRANSFORMER_MSGPACK, load_npz
from maskgit import VQGAN
from maskgit.cli import main
from maskgit.models import load_model


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "maskgit.cli", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("source", [TOKENIZER_MSGPACK, TOKENIZER_CKPT, TRANSFORMER_MSGPACK, TRANSFORMER_CKPT])
def test_convert_reproduces_the_original_outputs(tmp_path, source):
    assert main(["convert", str(source), str(tmp_path / "out")]) == 0
    converted, original = load_model(tmp_path / "out"), load_model(source)
    with torch.no_grad():
        if isinstance(original, VQGAN):
            images = torch.from_numpy(load_npz("tokenizer_small_io.npz")["images"]).permute(0, 3, 1, 2)
            torch.testing.assert_close(converted.reconstruct(images), original.reconstruct(images), rtol=0, atol=0)
        else:
            ids = torch.from_numpy(load_npz("transformer_small_io.npz")["input_ids"])
            torch.testing.assert_close(converted(ids), original(ids), rtol=0, atol=0)


def test_convert_reports_errors_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x81\xa6params")  # a msgpack map cut short
    result = _run_cli("convert", bad, tmp_path / "out")
    assert result.returncode == 2
    assert "bad" in result.stderr and "truncated" in result.stderr
    assert not (tmp_path / "out").exists()


def test_convert_prints_what_it_read_and_a_saved_folder_converts_to_itself(tmp_path, capsys, small_transformer):
    assert main(["convert", str(TRANSFORMER_MSGPACK), str(tmp_path / "a")]) == 0
    parameters = sum(p.numel() for p in small_transformer.parameters())
    assert capsys.readouterr().out.strip() == (
        f"converted {TRANSFORMER_MSGPACK} (official, transformer, {parameters:,} parameters) -> {tmp_path / 'a'} (fp32)")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "model.safetensors"]
    assert main(["convert", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "(maskgit, transformer," in capsys.readouterr().out
    assert (tmp_path / "a" / "config.json").read_text() == (tmp_path / "b" / "config.json").read_text()
    first, second = load_model(tmp_path / "a").state_dict(), load_model(tmp_path / "b").state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_missing_source_is_exit_2_and_writes_nothing(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "absent.msgpack"), str(tmp_path / "out")]) == 2
    assert "maskgit convert: error: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:  # no destination: argparse's usage error
        main(["convert", str(TRANSFORMER_MSGPACK)])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("dtype, stored", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_convert_stores_half_precision_weights_that_load_as_float32(tmp_path, capsys, dtype, stored, small_tokenizer):
    from safetensors.torch import load_file

    assert main(["convert", str(TOKENIZER_MSGPACK), str(tmp_path / "half"), "--dtype", dtype]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"({dtype})")
    assert {tensor.dtype for tensor in load_file(tmp_path / "half" / "model.safetensors").values()} == {stored}
    loaded = load_model(tmp_path / "half")
    for name, tensor in small_tokenizer.state_dict().items():
        assert loaded.state_dict()[name].dtype == torch.float32
        torch.testing.assert_close(loaded.state_dict()[name], tensor.to(stored).float(), rtol=0, atol=0)
