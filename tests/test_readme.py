"""The README runs as written, offline, on the shipped model: its Python code, and every command in
it. The set-up commands that install are checked against what CI runs (.ci/run), and the `maskgit`
commands in them run here."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image

from maskgit.cli import build_parser, main
from train_run_helpers import tiny_flags

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
PYPROJECT = ROOT / "pyproject.toml"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def _commands(block: str) -> list[str]:
    """The commands of a bash block: comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", block)
    return [line.split(" # ")[0].strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _extras() -> set[str]:
    section = PYPROJECT.read_text().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^(\w+) = \[", section, re.M))


def _check_install(part: str) -> None:
    """`.venv/bin/pip install -q torch==2.13.0 -e SPEC [playwright]`: the extras it names exist."""
    words = shlex.split(part)
    assert words[:2] in (["pip", "install"], [".venv/bin/pip", "install"]), part
    spec = words[words.index("-e") + 1]
    assert spec.startswith("."), part
    named = set(re.findall(r"\w+", spec.partition("[")[2]))
    assert named <= _extras(), f"{part}: no such extra: {named - _extras()}"


def _make_photos(folder: Path) -> None:
    """Two classes of synthetic images, named as the README's example names them."""
    from maskgit.data.synthetic import write_shapes_folder

    write_shapes_folder(folder, per_class=8, size=16)
    for old, new in zip(sorted(path for path in folder.iterdir() if path.is_dir()), ("cat", "dog", None)):
        if new is None:
            shutil.rmtree(old)
        else:
            old.rename(folder / new)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A fresh working folder, a private model cache, and no network."""

    def no_network(*args, **kwargs):
        raise AssertionError("the README tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_python_quickstart_runs_offline(offline):
    blocks = _blocks("python")
    assert blocks, "README.md: no python block"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert Image.open(offline / "sneaker.png").size == (32, 32)
    assert len(namespace["out"].images) == 2 and namespace["out"].class_ids == [7, 8] and namespace["out"].seed == 0
    boots = namespace["boots"]
    assert boots.shape == (2, 3, 32, 32) and boots.dtype == torch.float32 and 0 <= boots.min() and boots.max() <= 1
    assert Image.open(offline / "boot.png").size == (32, 32)


def test_every_command_in_the_readme_runs(offline, capsys):
    commands = [command for block in _blocks("bash") for command in _commands(block)]
    ci = CI.read_text()
    ran = []
    for command in commands:
        parts = [part.strip() for part in command.split(" && ")]
        for part in parts:
            words = shlex.split(part)
            if words[:2] == ["maskgit", "train"]:
                # The training example runs on a small folder of two classes, with the tiny models
                # and step counts of the train tests appended (`--set` wins over the recipe), so that
                # it takes seconds instead of its budget; the generate command after it uses the model.
                _make_photos(offline / words[2])
                assert main([*words[1:], "--quiet", *tiny_flags()]) == 0, part
                ran.append(words[1])
            elif words[0] in ("maskgit", ".venv/bin/maskgit"):
                assert main(words[1:]) == 0, part
                ran.append(words[1])
            elif part == "python3 -m venv .venv":
                pass
            elif words[0] in ("pip", ".venv/bin/pip"):
                _check_install(part)
            elif part == ".venv/bin/python -m pytest":
                # The test command: CI runs exactly its install and test steps.
                assert all(step in ci for step in parts), f"{command}: .ci/run does not run it"
            else:
                pytest.fail(f"README.md: a command this test can't check: {part}")
    # The main command made its grid, and the quickstart edited an image it generated.
    assert Image.open(offline / "outputs" / "fashion-mnist" / "grid.png").size[0] >= 8 * 32
    assert (offline / "outputs" / "boots" / "manifest.json").is_file()
    assert {"generate", "edit", "train"} <= set(ran)
    assert (offline / "outputs" / "cats" / "grid.png").is_file()


def test_the_commands_written_inline_parse():
    """`maskgit ...` in running text is not run, but it must be a valid command line."""
    spans = re.findall(r"`(maskgit [^`]+|pip install [^`]+|mkdocs [^`]+)`", README.read_text())
    assert spans
    parser = build_parser()
    for span in spans:
        words = shlex.split(span)
        if words[0] == "pip":
            _check_install(span)
        elif words[0] == "mkdocs":
            assert words[1] in ("serve", "build") and (ROOT / "mkdocs.yml").is_file()
        else:
            try:
                parser.parse_args(words[1:])
            except SystemExit as exit:  # --help exits 0 after printing; a bad command line exits 2
                assert exit.code == 0, span
