"""Giving a replica's freed memory back to the operating system (glibc's malloc; elsewhere,
nothing is done).

glibc keeps the memory that Python, numpy and torch free in its heaps, for reuse, and by
default raises its mmap threshold each time a large block is freed (up to 32 MiB): after the
first, the large transient arrays of a request (a batch of segmentation frames, a chunk's
features) come from the heap, among small blocks that outlive them, and the heap grows with
the length of the audio and stays that size after the request. `keep_heap_small` fixes the
threshold, so that large blocks are mapped on their own and unmapped when freed, and
`release_memory` gives back what a request left free in the heaps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

__all__ = ["keep_heap_small", "release_memory"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 * 1024
"""Blocks of this size and more are mapped on their own, and given back as soon as they are freed."""
TRIM_THRESHOLD = 32 * 1024 * 1024
"""Free memory at the top of a heap beyond this goes back at once."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _glibc()


def keep_heap_small() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (see the module's docstring).
    False where malloc is not glibc's."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_memory() -> None:
    """Collect Python's garbage cycles, then give the heaps' free pages back (malloc_trim)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
