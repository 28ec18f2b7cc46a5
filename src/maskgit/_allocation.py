"""CPU memory settings: torch's allocator, applied when ``maskgit`` is imported (before torch
allocates anything, for them to take effect), and glibc's, applied on request.

``THP_MEM_ALLOC_ENABLE=1`` makes torch back large CPU tensors with transparent huge pages. Sampling
allocates activation-sized tensors afresh at every layer, and with 4 KiB pages each one costs a
page fault per page: on this project's CPU (2 threads), the ImageNet-256 decoder in bf16 at batch 8
takes 2.3 s without huge pages and 1.8 s with them. A value already set in the environment wins,
so ``THP_MEM_ALLOC_ENABLE=0`` turns it off.

``reuse_freed_memory()`` goes further, for a process that samples again and again: glibc serves
every allocation from its heap and keeps what is freed, so the next layer, step or call reuses
memory that is already mapped instead of faulting fresh pages in. It changes the whole process's
``malloc``, so the library does not call it on import; the ``maskgit`` command does.
``release_freed_memory()`` hands back what a one-off burst of freeing left in the heap; pipelines
call it after converting their weights.
"""

import ctypes
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# glibc's mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (whose ``malloc`` these settings are for), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
    except (OSError, AttributeError):
        return None
    return libc


def reuse_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse: no ``mmap`` for large blocks (each
    would be unmapped when freed and faulted in again when next allocated) and no trimming of the
    heap. Returns True when applied, False where the C library is not glibc (nothing changes).

    The effect is process-wide, and the process's resident memory stays at its peak, which
    fragmentation raises. On this project's 2-core CPU, ImageNet 256 at batch 8, 8 steps, a warm
    call (``benchmarks/sampling_speed.py --repeats 3``): bf16 7.73 → 5.02 s with the peak 1.62 →
    2.15 GB; fp32 24.4 → 20.8 s with the peak 2.63 → 3.34 GB.
    """
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) == 1


def release_freed_memory() -> bool:
    """Give the free memory of glibc's heaps back to the system now (``malloc_trim(0)``), without
    changing any setting. For after a one-off burst of freeing, such as converting a model's
    weights: under ``reuse_freed_memory`` the heap would otherwise keep it for the rest of the
    process. Returns whether any memory was released; False where the C library is not glibc."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1
