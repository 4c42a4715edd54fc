"""Where a CPU run's memory comes from: the C allocator's handling of freed blocks (``--cpu_allocator``).

glibc's malloc serves a block above its mmap threshold (32 MB at most) with fresh pages from the
kernel and gives them back on ``free``. A training update frees and asks again for the same large
blocks every time — the word-embedding gradient alone is vocabulary × hidden floats (47 MB for
MiniLM, 94 MB for bert-base) — so each update the kernel maps, page-faults and zero-fills them anew
and unmaps them after the step (MiniLM on 2 cores: the word embedding's backward takes 19 ms so,
3 ms with ``keep``; an update 4–17 % faster, bench/README.md).
``keep`` has malloc serve every block from its heap and keep what is freed there, so the next update
reuses the same pages. Only where memory comes from changes: no number does. The memory freed stays
with the process until it exits (the resident size stays at its high-water mark).
"""
from __future__ import annotations

import ctypes
import logging
import sys
from dataclasses import dataclass

logger = logging.getLogger("mt_dnn")

CPU_ALLOCATORS = ("keep", "system")

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
