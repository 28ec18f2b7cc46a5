"""maskgit._allocation: importing maskgit leaves torch's allocator as it is; reuse_freed_memory()
stops glibc from faulting a freed block's pages in again, and release_freed_memory() hands what it
kept back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_importing_maskgit_changes_no_allocator_setting():
    # Huge-page allocation (THP_MEM_ALLOC_ENABLE) made warm sampling slower; it is the user's choice.
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = "import os, maskgit; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "None"


_REFAULTS = """
import resource, sys, torch, maskgit
if sys.argv[1] == "reuse":
    assert maskgit.reuse_freed_memory()
size = 64 << 20  # 64 MiB, far above glibc's largest mmap threshold (32 MiB)
for _ in range(3):  # allocate, touch, free (glibc may extend its heap twice before it reuses)
    torch.ones(size // 4).sum()
faults = []
for _ in range(3):  # the same size again; the fewest faults of three (a stray heap extension aside)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(size // 4).sum()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults))
"""


def _page_faults_of_a_second_allocation(mode: str) -> int:
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0", "OMP_NUM_THREADS": "1"}  # 4 KiB pages: one fault each
    result = subprocess.run([sys.executable, "-c", _REFAULTS, mode], env=env, capture_output=True, text=True, check=True)
    return int(result.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reused_memory_is_not_faulted_in_again():
    # Without it, glibc unmaps the freed 64 MiB and every next one faults all 16,384 pages in again.
    # (A clean-clone run once saw one allocation after the warm-up fault in anew even with it.)
    assert _page_faults_of_a_second_allocation("default") > 10_000
    assert _page_faults_of_a_second_allocation("reuse") < 1_000


_RELEASE = """
import sys, torch, maskgit
assert maskgit.reuse_freed_memory()
def resident_mib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
blocks = [torch.ones(1 << 20) for _ in range(64)]  # 64 blocks of 4 MiB on the heap
keep = torch.ones(1 << 20)  # above them: the heap's top cannot shrink past it
del blocks
before = resident_mib()
released = maskgit._allocation.release_freed_memory()
print(released, before - resident_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_kept_for_reuse_can_be_handed_back():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _RELEASE], env=env, capture_output=True, text=True, check=True)
    released, dropped_mib = result.stdout.split()
    assert released == "True" and int(dropped_mib) > 200  # of the 256 MiB freed
