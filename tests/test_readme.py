"""The README's Python example runs as written, offline, on the shipped model."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import torch
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    """The first ```python block of the README's "## Python" section."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md: no python block under '## Python'"
    return match.group(1)


def test_the_python_example_runs_offline(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise AssertionError("the README example tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("MASKGIT_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_example(), str(README), "exec"), namespace)

    assert "image_size=32" in capsys.readouterr().out  # print(pipe)
    assert Image.open(tmp_path / "sneaker.png").size == (32, 32)
    out = namespace["out"]
    assert out.class_ids == [7, 0, 8] and len(out.images) == 3 and out.seed == 0
    # The reported seed remakes the first image (the PIL one is rounded to 8 bits).
    first = torch.from_numpy(np.asarray(out.images[0], dtype=np.float32) / 255).permute(2, 0, 1)
    torch.testing.assert_close(namespace["again"][0], first, rtol=0, atol=1 / 255)
    assert namespace["images"].shape == (2, 3, 32, 32)
    assert namespace["edited"].shape == namespace["filled"].shape == (1, 3, 32, 32)
    assert namespace["wider"].shape == (1, 3, 32, 48)
    assert namespace["completed"].shape == (2, 3, 32, 32)
    # decode kept the known top half of the tokens and filled every masked one.
    final = namespace["sequences"][:, -1, 1:].reshape(2, 8, 8)
    assert torch.equal(final[:, :4], namespace["ids"][:, :4]) and bool((final >= 0).all())
