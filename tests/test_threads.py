from __future__ import annotations

import asyncio
import threading

import pytest

from serve_app.threads import iterate_in_thread


def test_yields_everything_in_order_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen_threads = []

    def numbers():
        for n in range(5):
            seen_threads.append(threading.get_ident())
            yield n

    async def run():
        return [n async for n in iterate_in_thread(numbers())]

    assert asyncio.run(run()) == [0, 1, 2, 3, 4]
    assert loop_thread not in seen_threads


def test_an_error_reaches_the_consumer() -> None:
    def broken():
        yield 1
        raise ValueError("bad audio")

    async def run():
        return [n async for n in iterate_in_thread(broken())]

    with pytest.raises(ValueError, match="bad audio"):
        asyncio.run(run())


def test_a_consumer_that_stops_early_closes_the_iterator_in_its_thread() -> None:
    produced, closed = [], threading.Event()

    def endless():
        try:
            n = 0
            while True:
                produced.append(n)
                yield n
                n += 1
        finally:
            closed.set()

    async def run():
        async for n in iterate_in_thread(endless()):
            if n == 2:
                break

    asyncio.run(run())
    assert closed.wait(timeout=10), "the iterator was never closed"
    assert len(produced) < 1000


def test_a_consumer_whose_event_loop_closed_leaves_the_thread_to_end_quietly() -> None:
    produced, closed = [], threading.Event()

    def slow():
        try:
            for n in range(1000):
                produced.append(n)
                yield n
        finally:
            closed.set()

    async def run():
        async for n in iterate_in_thread(slow()):
            if n == 1:
                return

    asyncio.run(run())  # the loop is closed while the thread may still hand items over
    assert closed.wait(timeout=10)
