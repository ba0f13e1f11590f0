"""How many engine workers, and threads each, a process given some cores runs.

Light on purpose: the batch driver reads it without loading faster-whisper.
"""

from __future__ import annotations

__all__ = ["thread_budget"]


def thread_budget(device: str, cores: int) -> tuple[int, int]:
    """The engine's workers and each worker's CPU threads for a process given `cores`.

    On CPU, one worker a core, one thread each: CTranslate2 decodes two batches on one thread
    each faster than one batch on two threads, and the threads add up to the cores the process
    was given, never more. On a GPU, two workers, so that one batch's CPU work (features,
    tokens) overlaps the other's decoding.
    """
    if device == "cuda":
        return 2, max(1, cores // 2)
    return max(1, cores), 1
