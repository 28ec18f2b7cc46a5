"""`python -m maskgit` runs the same command line as the `maskgit` script."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from maskgit import __version__

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskgit", *args], capture_output=True, text=True, timeout=120)


def test_python_m_maskgit_runs_the_cli():
    result = run_module("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"maskgit {__version__}"


def test_the_version_is_the_installed_package_s_which_pyproject_states():
    stated = re.search(r'^version = "([^"]+)"$', PYPROJECT.read_text(), re.M).group(1)
    assert __version__ == version("maskgit") == stated
    result = subprocess.run([sys.executable, "-m", "maskgit", "--version"], capture_output=True, text=True, timeout=120)
    assert result.stdout == f"maskgit {stated}\n"


def test_python_m_maskgit_reports_usage_errors_with_status_2():
    result = run_module("no-such-command")
    assert result.returncode == 2
    assert "invalid choice: 'no-such-command'" in result.stderr


def test_the_executable_keeps_freed_memory_and_main_alone_does_not(monkeypatch, capsys):
    import maskgit
    from maskgit.cli import main, run

    calls = []
    monkeypatch.setattr(maskgit, "reuse_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr(sys, "argv", ["maskgit", "classes"])
    assert main(["classes"]) == 0 and calls == []  # called as a function: the caller's malloc is left alone
    assert run() == 0 and calls == [1]
    assert "Sneaker" in capsys.readouterr().out
