"""CPU memory settings for sampling: glibc's ``malloc``, changed on request only.

Torch's own switch, ``THP_MEM_ALLOC_ENABLE=1`` (large CPU tensors aligned to 2 MiB and backed by
transparent huge pages), is left to the user. This package turned it on at import until it was
measured warm: on this project's 2-core CPU, ImageNet 256 at batch 8, 8 steps, bf16, a warm
transformer step faulted 14,240 pages in with it and 1 without, and a whole call took 7.73 s with
it against 5.63 s without (the first call of a process 8.93 s against 5.92 s;
``benchmarks/sampling_speed.py --repeats 3``).

``reuse_freed_memory()`` is for a process that samples again and again: glibc serves
every allocation from its heap and keeps what is freed, so the next layer, step or call reuses
memory that is already mapped instead of faulting fresh pages in. It changes the whole process's
``malloc``, so the library does not call it on import; the ``maskgit`` command does.
``release_freed_memory()`` hands back what a one-off burst of freeing left in the heap; pipelines
call it after converting their weights.
"""

import ctypes

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
    call (``benchmarks/sampling_speed.py --repeats 3``): bf16 5.69 → 5.09 s with the peak 1.69 →
    2.08 GB; fp32 22.4 → 22.5 s with the peak 2.40 → 2.45 GB.
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
