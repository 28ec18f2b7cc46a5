"""``maskgit sample``: the manifest, resume and refusals of the command, and two processes under
torchrun writing exactly what one process writes (the library part: test_runs_run.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation_helpers import png_contents
from maskgit.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "fashion-mnist", "--steps", "2", "--device", "cpu"]


def test_sample_command_records_the_sampler_and_refuses_to_mix_runs(tmp_path, capsys):
    out = tmp_path / "set"
    argv = ["sample", *FAST, "--class", "0,5", "--num-per-class", "2", "--seed", "3", "--out", str(out), "--npz",
            str(tmp_path / "set.npz"), "--guidance-schedule", "linear"]
    assert main(argv) == 0
    assert "wrote 4 image(s) (0 kept)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["sampler"]["sampler"] == "confidence"
    assert manifest["settings"]["sampler"]["num_steps"] == 2 and manifest["complete"] is True
    assert manifest["outputs"] == ["0000/0000.png", "0000/0001.png", "0005/0000.png", "0005/0001.png"]
    with np.load(tmp_path / "set.npz") as data:
        assert data["arr_0"].shape == (4, 32, 32, 3)

    assert main(argv) == 2
    assert "is not empty; use --resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert "wrote 0 image(s) (4 kept)" in capsys.readouterr().out
    assert main([*argv[:-2], "--guidance-schedule", "cosine", "--resume"]) == 2
    assert "sampler.guidance_schedule: 'linear' -> 'cosine'" in capsys.readouterr().err
    assert main([*argv, "--resume", "--batch-size", "0"]) == 2
    assert "--batch-size must be between 1 and 4096" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_write_exactly_what_one_process_writes(tmp_path, capsys):
    common = [*FAST, "--class", "1,2,3", "--num-per-class", "3", "--seed", "11", "--batch-size", "2"]
    assert main(["sample", *common, "--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               "-m", "maskgit.cli", "sample", *common, "--out", str(tmp_path / "two"), "--npz", str(tmp_path / "two.npz")]
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    one, two = png_contents(tmp_path / "one"), png_contents(tmp_path / "two")
    assert len(one) == 9 and one == two
    assert "wrote 9 image(s) (0 kept)" in process.stdout  # the count summed over both ranks
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["complete"] is True and len(manifest["outputs"]) == 9
    with np.load(tmp_path / "two.npz") as data:
        assert data["arr_0"].shape == (9, 32, 32, 3)
