"""Every ordinary mistake on the command line: a one-line ``maskgit CMD: error: ...`` naming the
input and the problem, exit status 2, and an untouched ``--out``; a true bug keeps its traceback.

The cases are those of issue 12 (bad devices, wrong-type, read-only and full outputs, malformed
files, limits, output folders that must not lie, downloads aside: see test_hub.py, training).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TRANSFORMER_MSGPACK
from maskgit import MaskGIT
from maskgit.checkpoints.flax_msgpack import read_flax_msgpack, write_flax_msgpack
from maskgit.cli import main, user_error_message

# -- helpers ----------------------------------------------------------------------------------------


def snapshot(path):
    """Everything under ``path`` (None when it does not exist), to check that it is untouched."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def fails(capsys, command: str, *args, fragments=()) -> str:
    """Run ``maskgit command args``; assert exit 2 and exactly one error line (no traceback) that
    contains every fragment; return that line."""
    code = main([command, *map(str, args)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("maskgit ")]
    assert len(lines) == 1 and lines[0].startswith(f"maskgit {command}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """An image folder with one subfolder per class (extract-tokens, training, reconstruct)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for label in ("cats", "dogs"):
        (root / label).mkdir()
        for index in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / label / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from maskgit.configs import TokenizerConfig
    from maskgit.models import VQGAN
    from maskgit.training import load_train_config

    torch.manual_seed(0)
    config = load_train_config("tokenizer", "tiny").model
    folder = tmp_path_factory.mktemp("tokenizer")
    VQGAN(TokenizerConfig(**{k: v for k, v in config.to_dict().items() if k != "model_type"})).save_pretrained(folder)
    return folder


def command_line(command, model_dir, photo, image_folder, tokenizer_dir, out):
    mask = photo.parent / "mask.png"
    if not mask.exists():
        Image.fromarray(np.full((40, 48), 255, np.uint8)).save(mask)
    return {
        "generate": ["--model", model_dir, "--class", "1", "--steps", "2", "--out", out],
        "reconstruct": ["--model", model_dir, "--images", image_folder, "--out", out],
        "edit": ["--model", model_dir, "--image", photo, "--box", "0,0,16,16", "--class", "1", "--steps", "2",
                 "--start-step", "0", "--out", out],
        "inpaint": ["--model", model_dir, "--image", photo, "--mask", mask, "--class", "1", "--steps", "2", "--out", out],
        "outpaint": ["--model", model_dir, "--image", photo, "--extend", "16,0,0,0", "--class", "1", "--steps", "2",
                     "--out", out],
        "extract-tokens": ["--tokenizer", tokenizer_dir, "--data", image_folder, "--image-size", "16", "--quiet",
                           "--out", out / "tokens.bin"],
        "train-tokenizer": ["--config", "tiny", "--data", image_folder, "--steps", "1", "--no-progress", "--out", out],
        "train-transformer": ["--config", "tiny", "--data", image_folder, "--tokenizer", tokenizer_dir, "--steps", "1",
                              "--no-progress", "--out", out],
    }[command]


ALL_WITH_DEVICE = ("generate", "reconstruct", "edit", "inpaint", "outpaint", "extract-tokens", "train-tokenizer",
                   "train-transformer")


# -- devices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ALL_WITH_DEVICE)
def test_an_unknown_device_is_refused_before_any_work(capsys, tmp_path, command, model_dir, photo, image_folder,
                                                     tokenizer_dir):
    out = tmp_path / "out"
    args = command_line(command, model_dir, photo, image_folder, tokenizer_dir, out)
    fails(capsys, command, *args, "--device", "potato", fragments=["unknown device 'potato'", "cuda:N"])
    assert snapshot(out) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ALL_WITH_DEVICE)
def test_cuda_on_a_cpu_only_machine_is_refused(capsys, tmp_path, command, model_dir, photo, image_folder, tokenizer_dir):
    out = tmp_path / "out"
    args = command_line(command, model_dir, photo, image_folder, tokenizer_dir, out)
    fails(capsys, command, *args, "--device", "cuda:1", fragments=["device 'cuda:1': CUDA is not available"])
    assert snapshot(out) is None


def test_device_auto_is_accepted_by_generate(tmp_path, model_dir):
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model_dir), "--class", "1", "--steps", "2", "--device", "auto",
                 "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["device"] in ("cpu", "cuda")


# -- output paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["generate", "edit", "reconstruct", "train-tokenizer", "train-transformer"])
def test_an_existing_file_as_the_output_folder_is_refused_first(capsys, tmp_path, command, model_dir, photo,
                                                               image_folder, tokenizer_dir):
    out = tmp_path / "taken.txt"
    out.write_text("mine")
    args = command_line(command, model_dir, photo, image_folder, tokenizer_dir, out)
    fails(capsys, command, *args, "--device", "cpu", fragments=[f"{out}: exists and is not a folder"])
    assert out.read_text() == "mine"


def test_convert_into_an_existing_file_is_refused(capsys, tmp_path):
    out = tmp_path / "taken.txt"
    out.write_text("mine")
    fails(capsys, "convert", TRANSFORMER_MSGPACK, out, fragments=[f"{out}: exists and is not a folder"])
    assert out.read_text() == "mine"


def test_an_output_below_a_file_is_refused(capsys, tmp_path, model_dir):
    (tmp_path / "file").write_text("x")
    fails(capsys, "generate", "--model", model_dir, "--class", "1", "--out", tmp_path / "file" / "sub",
          fragments=["is a file, not a folder"])


def test_extract_tokens_into_an_existing_folder_is_refused_first(capsys, tmp_path, image_folder, tokenizer_dir):
    out = tmp_path / "folder"
    out.mkdir()
    fails(capsys, "extract-tokens", "--tokenizer", tokenizer_dir, "--data", image_folder, "--out", out,
          fragments=[f"{out}: is a folder; give a file path"])
    assert snapshot(out) == {}


def test_a_read_only_output_is_refused_before_any_work(capsys, read_only_dir, model_dir):
    out = read_only_dir / "out"
    fails(capsys, "generate", "--model", model_dir, "--class", "1", "--out", out,
          fragments=[str(out), "Read-only file system"])
    fails(capsys, "convert", TRANSFORMER_MSGPACK, out, fragments=[str(out), "Read-only file system"])
    assert snapshot(out) is None


def test_a_full_disk_during_generation_is_one_line_and_leaves_nothing(capsys, full_disk, model_dir):
    out = full_disk / "out"
    fails(capsys, "generate", "--model", model_dir, "--class", "1", "--num", "2", "--steps", "2", "--out", out,
          fragments=[str(out), "No space left on device"])
    assert snapshot(out) is None
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # no temporary files either


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line(capsys, full_disk, image_folder):
    out = full_disk / "run"
    fails(capsys, "train-tokenizer", "--config", "tiny", "--data", image_folder, "--steps", "1", "--no-progress",
          "--out", out, fragments=["No space left on device"])
    assert not list(full_disk.rglob("*.tmp"))


# -- malformed files --------------------------------------------------------------------------------


@pytest.mark.parametrize("names, shown", [(5, "got 5"), (list(range(10)), "a list with 0")])
def test_bad_class_names_in_model_index(capsys, tmp_path, model_dir, names, shown):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "class_names": names}))
    fails(capsys, "generate", "--model", folder, "--class", "1", "--out", tmp_path / "out",
          fragments=["model_index.json: class_names must be a list of non-empty strings", shown])
    assert snapshot(tmp_path / "out") is None


def test_a_chunked_array_without_its_chunks(capsys, tmp_path):
    tree = read_flax_msgpack(TRANSFORMER_MSGPACK)
    tree["params"]["Embed_0"]["word_embeddings"]["embedding"] = {"__msgpack_chunked_array__": True, "shape": {"0": 2}}
    broken = tmp_path / "broken.msgpack"
    write_flax_msgpack(tree, broken)
    fails(capsys, "convert", broken, tmp_path / "out",
          fragments=[str(broken), "chunked array /params/Embed_0/word_embeddings/embedding lacks its 'chunks'"])
    assert snapshot(tmp_path / "out") is None


def test_int8_safetensors_weights(capsys, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    fails_out = tmp_path / "out"
    main(["convert", str(TRANSFORMER_MSGPACK), str(folder)])
    state = load_file(folder / "model.safetensors")
    save_file({k: v.to(torch.int8) for k, v in state.items()}, folder / "model.safetensors")
    fails(capsys, "convert", folder, fails_out, fragments=[str(folder), "dtype torch.int8; weights must be floating point"])
    assert snapshot(fails_out) is None


def test_reconstruct_reads_every_image_before_writing_any(capsys, tmp_path, model_dir, photo):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(photo, images / f"{name}.png")
    (images / "z.png").write_bytes(open(photo, "rb").read()[:200])  # truncated, in the last batch
    out = tmp_path / "out"
    fails(capsys, "reconstruct", "--model", model_dir, "--images", images, "--batch-size", "1", "--out", out,
          fragments=["z.png: cannot read image"])
    assert snapshot(out) is None


# -- limits -----------------------------------------------------------------------------------------


def test_reconstruct_image_size_is_bounded(capsys, tmp_path, model_dir, image_folder):
    out = tmp_path / "out"
    fails(capsys, "reconstruct", "--model", model_dir, "--images", image_folder, "--image-size", "100000",
          "--out", out, fragments=["--image-size of 100000x100000", "over the limit of 4,194,304", "--max-pixels"])
    fails(capsys, "reconstruct", "--model", model_dir, "--images", image_folder, "--image-size", "80",
          "--max-pixels", "4096", "--out", out, fragments=["--image-size of 80x80"])
    assert snapshot(out) is None
    # Raised (here: lowered) limits are limits like any other: 64 x 64 fits in 4096 pixels.
    assert main(["reconstruct", "--model", str(model_dir), "--images", str(image_folder), "--image-size", "64",
                 "--max-pixels", "4096", "--out", str(out)]) == 0


def test_generate_count_is_bounded_before_the_job_list(capsys, tmp_path, model_dir):
    out = tmp_path / "out"
    fails(capsys, "generate", "--model", model_dir, "--class", "1", "--num", "1000000000000", "--out", out,
          fragments=["1,000,000,000,000 images is over the limit of 100,000", "--max-images"])
    fails(capsys, "generate", "--model", model_dir, "--class", "1,2,3", "--num", "2", "--max-images", "5",
          "--out", out, fragments=["6 images is over the limit of 5"])
    assert snapshot(out) is None


def test_outpaint_canvas_and_input_pixels_are_bounded(capsys, tmp_path, model_dir, photo):
    out = tmp_path / "out"
    fails(capsys, "outpaint", "--model", model_dir, "--image", photo, "--extend", "100000,0,0,0", "--class", "1",
          "--out", out, fragments=["outpainting canvas", "--max-pixels"])
    fails(capsys, "edit", "--model", model_dir, "--image", photo, "--box", "0,0,16,16", "--class", "1",
          "--max-input-pixels", "1000", "--out", out, fragments=["48x40 = 1,920 pixels", "--max-input-pixels"])
    assert snapshot(out) is None


def test_the_work_of_one_image_is_bounded_before_any_work(capsys, tmp_path, photo):
    # The shipped 32 px model: 100,000 px to the right pass the pixel limit (3.2 megapixels), but
    # each image would take 6,250 windows of 8x8 tokens, 12 steps each (11 of them guided).
    out = tmp_path / "out"
    fails(capsys, "outpaint", "--model", "fashion-mnist", "--image", photo, "--extend", "0,100000,0,0", "--class", "1",
          "--out", out, fragments=["one image takes 6,250 window(s) x 23 transformer passes x 65 tokens = 9,343,750 "
                                   "token passes, over the limit of 2,097,152", "raise it with --max-token-passes"])
    fails(capsys, "generate", "--model", "fashion-mnist", "--class", "1", "--steps", "40000", "--out", out,
          fragments=["1 window(s) x 79,999 transformer passes", "--max-token-passes"])
    fails(capsys, "sample", "--model", "fashion-mnist", "--max-token-passes", "1000", "--out", out,
          fragments=["x 31 transformer passes x 65 tokens = 2,015 token passes, over the limit of 1,000"])
    assert snapshot(out) is None


def test_extract_tokens_image_size_is_bounded(capsys, tmp_path, image_folder, tokenizer_dir):
    fails(capsys, "extract-tokens", "--tokenizer", tokenizer_dir, "--data", image_folder, "--image-size", "100000",
          "--out", tmp_path / "t.bin", fragments=["--image-size of 100000x100000", "--max-pixels"])


@pytest.mark.parametrize("error", [MemoryError(), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")])
def test_running_out_of_memory_is_one_line(capsys, tmp_path, model_dir, monkeypatch, error):
    def generate(*args, **kwargs):
        raise error

    monkeypatch.setattr(MaskGIT, "generate", generate)
    fails(capsys, "generate", "--model", model_dir, "--class", "1", "--out", tmp_path / "out",
          fragments=["out of memory", "--batch-size"])
    assert snapshot(tmp_path / "out") is None


# -- a bug is not a user error ----------------------------------------------------------------------


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    import maskgit.cli.convert

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setattr(maskgit.cli.convert, "run", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["convert", str(TRANSFORMER_MSGPACK), str(tmp_path / "out")])


def test_worker_tracebacks_become_their_last_line():
    message = ("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
               '  File "x.py", line 1, in f\nValueError: images/z.png: cannot read image (broken)\n')
    assert user_error_message(ValueError(message)) == "images/z.png: cannot read image (broken)"
    assert user_error_message(KeyError("x")) is None
    assert user_error_message(OSError(28, "No space left on device", "out/a.png")) == "out/a.png: No space left on device"


def test_a_corrupt_image_in_a_worker_is_one_line(capsys, tmp_path, image_folder, tokenizer_dir):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    (data / "dogs" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    fails(capsys, "extract-tokens", "--tokenizer", tokenizer_dir, "--data", data, "--image-size", "16",
          "--num-workers", "1", "--quiet", "--out", tmp_path / "tokens.bin", fragments=["1.png: cannot read image"])
    assert not (tmp_path / "tokens.bin").exists()


# -- generation output folders ---------------------------------------------------------------------
# The folder's rules (resume, overwrite, locks, killed runs) are OutputFolder's and Run's
# (test_runs_folder.py, test_runs_run.py); here, that a refusal is one line that leaves the folder as it was.


def test_a_non_empty_output_is_refused_and_left_as_it_was(capsys, tmp_path, model_dir):
    out = tmp_path / "out"
    assert main(["generate", "--model", str(model_dir), "--steps", "2", "--class", "1", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("not ours")
    before = snapshot(out)
    fails(capsys, "generate", "--model", model_dir, "--class", "2", "--out", out,
          fragments=[f"{out} is not empty", "--resume", "--overwrite"])
    fails(capsys, "generate", "--model", model_dir, "--class", "1", "--steps", "3", "--resume", "--out", out,
          fragments=["--resume needs the settings of the run there", "sampler.num_steps: 2 -> 3"])
    assert snapshot(out) == before


# -- training ---------------------------------------------------------------------------------------


def _train(out, image_folder, *args):
    return main(["train-tokenizer", "--data", str(image_folder), "--no-progress", "--out", str(out), *map(str, args)])


@pytest.mark.slow
def test_training_resume_with_the_same_command(capsys, tmp_path, image_folder):
    from maskgit.training import read_checkpoint_config

    out = tmp_path / "run"
    start = ("--config", "tiny", "--steps", "2", "--seed", "7", "--set", "checkpoint_every=1")
    assert _train(out, image_folder, *start) == 0
    assert read_checkpoint_config(out).seed == 7
    capsys.readouterr()
    # The command that started the run, with --resume added: accepted.
    assert _train(out, image_folder, *start, "--resume") == 0
    # Another config: refused, with the differences.
    fails(capsys, "train-tokenizer", "--data", image_folder, "--no-progress", "--out", out, *start,
          "--set", "learning_rate=0.5", "--resume",
          fragments=["does not match the run in", "learning_rate: 0.001 -> 0.5", "drop --config"])

    # The newest checkpoint is damaged and a kill left a temporary file: resume falls back and cleans up.
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000001.pt", "step_00000002.pt"]
    (checkpoints / "step_00000002.pt").write_bytes(b"half a checkpoint")
    (checkpoints / ".step_00000003.pt.abcd.tmp").write_bytes(b"stale")
    assert _train(out, image_folder, "--resume") == 0
    err = capsys.readouterr().err
    assert "skipping an unreadable checkpoint: " in err and "step_00000002.pt: not a readable training checkpoint" in err
    assert f"resuming from {checkpoints / 'step_00000001.pt'}" in err
    assert not list(checkpoints.glob("*.tmp"))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_00000001.pt", "step_00000002.pt"]


@pytest.mark.slow
def test_a_corrupt_image_in_a_training_worker_is_one_line(capsys, tmp_path, image_folder):
    data = tmp_path / "data"
    shutil.copytree(image_folder, data)
    (data / "cats" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    fails(capsys, "train-tokenizer", "--config", "tiny", "--data", data, "--steps", "1", "--no-progress",
          "--set", "num_workers=1", "--out", tmp_path / "run", fragments=["0.png: cannot read image"])


@pytest.mark.parametrize("flag", ["--softmax-temperature", "--schedule", "--steps", "--model"])
def test_a_dash_dash_value_is_a_usage_error(capsys, tmp_path, flag):
    # Python 3.11's argparse turns `--flag=--` into an empty list that skips the flag's type; the
    # parser refuses it as it refuses a flag with no value.
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--class", "1", "--out", str(tmp_path / "out"), f"{flag}=--"])
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected one argument, got '--'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # After a bare `--`, tokens are positional, so the check leaves them to argparse.
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--class", "1", "--out", str(tmp_path / "out"), "--", f"{flag}=--"])
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
