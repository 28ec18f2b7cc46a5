"""maskgit._allocation: importing maskgit turns on torch's huge-page allocation unless the
environment already says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys


def _imported_value(env: dict[str, str]) -> str:
    code = "import os, maskgit; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_importing_maskgit_enables_huge_pages_for_torch():
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    assert _imported_value(env) == "1"


def test_a_value_set_by_the_user_wins():
    assert _imported_value({**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}) == "0"
