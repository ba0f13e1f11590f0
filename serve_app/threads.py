"""Iterate a blocking iterator from asyncio without blocking the event loop, and stop it early."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

__all__ = ["iterate_in_thread"]

T = TypeVar("T")
_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Yield what `iterator` yields, pulled in a thread of its own.

    When the consumer stops early (closed, or its task cancelled: a client gone), the thread
    stops pulling after the item in hand and closes the iterator itself: a generator can
    only be closed by the thread that runs it, once it is not running.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()

    def hand_over(item: object) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the consumer's event loop has closed: nobody is listening
            stop.set()

    def produce() -> None:
        try:
            for item in iterator:
                if stop.is_set():
                    break
                hand_over(item)
        except BaseException as error:  # handed to the consumer, raised there
            hand_over(_Raised(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            hand_over(_END)

    worker = threading.Thread(target=produce, name="iterate-in-thread", daemon=True)
    worker.start()
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, _Raised):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
