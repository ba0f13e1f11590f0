"""Giving a replica's freed memory back to the operating system (glibc's malloc; elsewhere,
nothing is done).

glibc keeps the memory that Python, numpy, torch and CTranslate2 free in its heaps, for reuse,
and raises its mmap threshold each time a large block is freed (up to 32 MiB): a request's large
transient arrays then come from the heap, and the heap grows with the length of the audio and
stays that size after the request. `release_memory` gives back what a request left free there.

Fixing the threshold low instead (large blocks mapped on their own, unmapped when freed) keeps
the heap small as it goes, but at a price in CPU, page faults on fresh zeroed pages at every
step. At 256 KiB, CTranslate2 took 44% more CPU (8 decodes at once), and the Diarizer's pipeline
four times the page faults and 20 to 50% more time for the sample call (one thread), both
in-process. So both replicas keep glibc's own threshold, with two arenas (MALLOC_ARENA_MAX in
config.yaml) and `release_memory` after their requests: after diarizing 20 minutes, the
Diarizer's resident memory is back within 50 MiB of where it was (tests/test_memory.py).

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

__all__ = ["forget_shared_pages", "release_memory"]

logger = logging.getLogger(__name__)

_MADV_DONTNEED = 4  # linux/mman.h


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


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
