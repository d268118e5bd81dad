"""Where the GPT's large temporary arrays get their memory (glibc Linux).

A training step makes and frees hundreds of arrays of megabytes: activations, their
gradients and the temporaries of the elementwise work. glibc's ``malloc`` returns a freed
block above its *mmap threshold* straight to the kernel, so the next step's arrays are fresh
pages. The kernel then zeroes each 4 KiB page at its first touch (one page fault each: tens
of thousands per step of the reference config), and page faults from two threads of one
process queue on its memory lock, which also stops elementwise work from scaling across
threads.

:func:`keep_freed_memory` raises glibc's thresholds once per process, so that freed blocks
stay in the heap and the next step reuses them, already mapped. The process keeps its
peak size instead of shrinking between steps. Elsewhere than glibc it does nothing.

:func:`available_bytes` is how much memory this machine can still give a process, which a
preset's needs are checked against before anything of its size is allocated.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from the heap, and stay there when freed

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the heap for reuse (once; returns whether it took effect)."""
    global _kept
    if _kept is None:
        _kept = False
        if _glibc():
            libc = ctypes.CDLL(None)
            _kept = bool(
                libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)
                and libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES)
            )
    return _kept


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not POSIX, or no such name here
        return False


def available_bytes() -> int | None:
    """The memory this machine can still give without swapping (Linux's ``MemAvailable``,
    else the free physical pages), in bytes; None where the system does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
