"""Where a CPU run's memory goes: the C allocator's handling of freed blocks (``--cpu_allocator``) and the
caches of matrix-product kernels (``--cpu_primitive_cache``).

glibc's malloc serves a block above its mmap threshold (32 MB at most) with fresh pages from the
kernel and gives them back on ``free``. A training update frees and asks again for the same large
blocks every time — the word-embedding gradient alone is vocabulary × hidden floats (47 MB for
MiniLM, 94 MB for bert-base) — so each update the kernel maps, page-faults and zero-fills them anew
and unmaps them after the step (MiniLM on 2 cores: the word embedding's backward takes 19 ms so,
3 ms with ``keep``; an update 4–17 % faster, bench/README.md).
``keep`` has malloc serve every block from its heap and keep what is freed there, so the next update
reuses the same pages. Only where memory comes from changes: no number does. The memory freed stays
with the process until it exits (the resident size stays at its high-water mark).

On a CPU, bfloat16 matrix products go through oneDNN, which builds a primitive (a compiled kernel with
its buffers) for every shape it is given and caches it — twice: in oneDNN's own primitive cache and in
ideep's (PyTorch's oneDNN layer) LRU cache, 1,024 entries each by default. Batches of varying length
bring new shapes for a whole pass over the data, so the caches grow by hundreds of MB over the first
epoch and the memory peak climbs with them (MiniLM on a GLUE mixture: 846 MB in use between updates
after one pass, peak RSS +40 % from update 100 to 1,000). ``--cpu_primitive_cache N`` caps both at N
entries. Building a kernel takes ~1 ms and an update of one batch length needs about 20 (~0.45 MB each
in the caches): with 64 entries nearly every update rebuilt its kernels (~20 ms of ~130); the default, 512, holds
those of the 16 lengths ``--pad_to_multiple_of 8`` leaves below 128 tokens (~150 MB), flat once they have been
seen (bench/README.md). Kernels rebuilt give the same numbers.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass

logger = logging.getLogger("mt_dnn")

CPU_ALLOCATORS = ("keep", "system")
# Kernels kept in each cache by default (``--cpu_primitive_cache``): room for those of every length padded to 8.
DEFAULT_PRIMITIVE_CACHE = 512
# oneDNN's primitive cache and ideep's LRU cache: each reads its capacity from the environment when a
# process first builds a primitive.
PRIMITIVE_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (the one whose mallopt has these parameters), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it (musl's mallopt ignores every parameter)
    except (OSError, AttributeError):
        return None
    return libc


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@dataclass(frozen=True)
class MallocStats:
    """What glibc's malloc holds (``mallinfo2``), in bytes."""

    heap: int  # taken from the kernel for malloc's heaps (freed blocks kept there included)
    mapped: int  # in blocks mapped one by one (above the mmap threshold)
    in_use: int  # handed out and not freed: heap blocks in use plus mapped blocks

    @property
    def in_use_mb(self) -> float:
        return self.in_use / 2**20


def malloc_stats() -> MallocStats | None:
    """glibc malloc's totals over all its arenas; None without glibc 2.33+ (no ``mallinfo2``)."""
    libc = _glibc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return MallocStats(heap=info.arena, mapped=info.hblkhd, in_use=info.uordblks + info.hblkhd)


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve every block from its heap (no mmap) and never trim freed memory from it.

    Returns False where the C library is not glibc (nothing changed) or refuses one of the two parameters.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))


def configure_cpu_allocator(choice: str) -> None:
    """Apply ``--cpu_allocator`` for a run on a CPU: 'keep' keeps freed memory for reuse, 'system' changes nothing."""
    if choice not in CPU_ALLOCATORS:
        raise ValueError(f"unknown CPU allocator setting {choice!r}: one of {', '.join(CPU_ALLOCATORS)}")
    if choice == "system":
        return
    if keep_freed_memory():
        logger.info("CPU allocator: malloc keeps freed memory for reuse (--cpu_allocator keep)")
    else:
        logger.info("CPU allocator: the C library's defaults (--cpu_allocator keep needs Linux with glibc)")


def bound_primitive_caches(capacity: int) -> dict[str, str]:
    """Cap oneDNN's and ideep's primitive caches at ``capacity`` entries each (``--cpu_primitive_cache``).

    Effective only before this process's first oneDNN product (the libraries read the setting once); a
    variable the user has set already is left as it is. Returns each variable's value in force.
    """
    if capacity < 1:  # ideep's cache with no room crashes the process at the first product
        raise ValueError(f"a primitive cache needs room for at least 1 entry, not {capacity}")
    for name in PRIMITIVE_CACHE_VARIABLES:
        os.environ.setdefault(name, str(capacity))
    return {name: os.environ[name] for name in PRIMITIVE_CACHE_VARIABLES}
