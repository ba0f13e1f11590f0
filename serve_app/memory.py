"""Giving a replica's freed memory back to the operating system (glibc's malloc; elsewhere,
nothing is done).

glibc keeps the memory that Python, numpy and torch free in its heaps, for reuse, and by
default raises its mmap threshold each time a large block is freed (up to 32 MiB): after the
first, the large transient arrays of a request (a batch of segmentation frames, a chunk's
features) come from the heap, among small blocks that outlive them, and the heap grows with
the length of the audio and stays that size after the request. `keep_heap_small` fixes the
threshold, so that large blocks are mapped on their own and unmapped when freed, and
`release_memory` gives back what a request left free in the heaps.

The Diarizer keeps its heap small so. The Transcriber does not: CTranslate2 allocates large
buffers at every step of a decode, and mapping each afresh (page faults, zeroed pages) cost it
44% more CPU; there glibc's own threshold, two arenas (MALLOC_ARENA_MAX in config.yaml) and
`release_memory` after the requests hold the heap to about 130 MiB over the model's.

A request's audio is read in place from Ray's object store, shared memory that each process
reading it maps: the pages it touched count in its resident memory until it unmaps them, long
after the object is freed. `forget_shared_pages` drops them from the process once a request is
done with them; the memory is the object store's, to hold the next objects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import mmap
from pathlib import Path

import numpy as np

__all__ = ["forget_shared_pages", "keep_heap_small", "release_memory"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 * 1024
"""Blocks of this size and more are mapped on their own, and given back as soon as they are freed."""
TRIM_THRESHOLD = 32 * 1024 * 1024
"""Free memory at the top of a heap beyond this goes back at once."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_MADV_DONTNEED = 4  # linux/mman.h


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


def forget_shared_pages(array: np.ndarray) -> bool:
    """Drop this process's pages of `array` when it lies in a shared mapping (Ray's object store),
    so that they stop counting in its resident memory; reading it again maps them again, with the
    same samples. An array of the process's own memory is left as it is. True if dropped."""
    if _LIBC is None or array.nbytes < mmap.PAGESIZE:
        return False
    start = array.ctypes.data
    end = start + array.nbytes
    if not _in_shared_mapping(start, end):
        return False
    first, last = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE, end // mmap.PAGESIZE * mmap.PAGESIZE
    if last <= first:
        return False
    return _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED) == 0


def _in_shared_mapping(start: int, end: int) -> bool:
    """Whether [start, end) lies inside one shared mapping of this process (/proc/self/maps)."""
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        span, perms = line.split(maxsplit=2)[:2]
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= start and end <= high:
            return perms[3] == "s"
    return False
