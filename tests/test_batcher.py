"""The batcher's rules (serve_app/engine/batcher.py), with a decode function that records its batches.

The decode function is the part under test's caller, not a stand-in for the engine: what is
checked here is which chunks the batcher puts together, which no transcript shows.
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest
from fakes import RecordedMetrics

from serve_app.engine.batcher import Batcher
from serve_app.metrics import BATCHED_AUDIO_SECONDS, BATCHED_CHUNKS, BATCHES


class Recorder:
    """Decodes an item into its own name; the first batch waits at a gate, so that what is
    submitted meanwhile waits in the batcher."""

    def __init__(self) -> None:
        self.batches: list[tuple[object, list[str]]] = []
        self.gate = threading.Event()
        self.first_started = threading.Event()

    def __call__(self, key, items: list[str]) -> list[str]:
        if not self.batches:
            self.first_started.set()
            assert self.gate.wait(30)
        self.batches.append((key, list(items)))
        return [f"decoded {item}" for item in items]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def batcher(recorder: Recorder, *, seconds: float = 120, workers: int = 1) -> Batcher:
    return Batcher(recorder, workers=workers, max_batch_seconds=seconds)


def chunks(name: str, count: int) -> list[str]:
    return [f"{name}{n}" for n in range(count)]


def hold_the_worker(recorder: Recorder, batching: Batcher) -> None:
    batching.submit("hold", ["hold"], [30])
    assert recorder.first_started.wait(30)


def test_a_lone_request_goes_straight_through(recorder: Recorder) -> None:
    recorder.gate.set()
    job = batcher(recorder).submit("en", ["a0"], [12.0])
    assert job.futures[0].result(timeout=30) == "decoded a0"
    assert recorder.batches == [("en", ["a0"])]


def test_waiting_requests_share_a_batch_capped_by_seconds(recorder: Recorder) -> None:
    batching = batcher(recorder, seconds=120)
    hold_the_worker(recorder, batching)
    jobs = [batching.submit("en", [name], [30]) for name in "abcdef"]
    recorder.gate.set()
    assert [job.futures[0].result(timeout=30) for job in jobs] == [f"decoded {name}" for name in "abcdef"]
    assert [items for _, items in recorder.batches[1:]] == [["a", "b", "c", "d"], ["e", "f"]]


def test_a_chunk_longer_than_the_cap_still_decodes_alone(recorder: Recorder) -> None:
    batching = batcher(recorder, seconds=30)
    hold_the_worker(recorder, batching)
    jobs = [batching.submit("en", [name], [29.5]) for name in "ab"]
    recorder.gate.set()
    for job in jobs:
        job.futures[0].result(timeout=30)
    assert [items for _, items in recorder.batches[1:]] == [["a"], ["b"]]


def test_only_chunks_of_the_same_key_share_a_batch_oldest_first(recorder: Recorder) -> None:
    batching = batcher(recorder)
    hold_the_worker(recorder, batching)
    jobs = [batching.submit(key, [name], [10]) for key, name in [("en", "a"), ("de", "b"), ("en", "c"), ("de", "d")]]
    recorder.gate.set()
    for job in jobs:
        job.futures[0].result(timeout=30)
    assert recorder.batches[1:] == [("en", ["a", "c"]), ("de", ["b", "d"])]


def test_an_urgent_key_goes_before_older_ones(recorder: Recorder) -> None:
    """A live session's completed text before the drafts and the file chunks that came first."""
    batching = Batcher(recorder, workers=1, max_batch_seconds=120, urgent=lambda key: key == "now", clock=lambda: 0.0)
    hold_the_worker(recorder, batching)
    jobs = [batching.submit(key, [name], [10]) for key, name in [("file", "a"), ("draft", "b"), ("now", "c"), ("now", "d")]]
    recorder.gate.set()
    for job in jobs:
        job.futures[0].result(timeout=30)
    assert recorder.batches[1:] == [("now", ["c", "d"]), ("file", ["a"]), ("draft", ["b"])]


def test_urgent_chunks_are_shared_among_the_workers() -> None:
    """Urgent chunks waiting go in batches of their share among the workers (of 4, 2 for each
    of 2), so that the next worker free decodes the rest beside the first batch; others go in
    whole batches."""
    gate, held = threading.Event(), threading.Semaphore(0)
    batches: list[tuple[str, list[str]]] = []

    def decode(key: str, items: list[str]) -> list[str]:
        if key == "hold":
            held.release()
            assert gate.wait(30)
        batches.append((key, list(items)))
        return items

    batching = Batcher(decode, workers=2, max_batch_seconds=120, urgent=lambda key: key == "now", clock=lambda: 0.0)
    for name in ("hold0", "hold1"):  # both workers busy
        batching.submit("hold", [name], [10])
        assert held.acquire(timeout=30)
    jobs = [batching.submit("file", [name], [10]) for name in "ab"]
    jobs += [batching.submit("now", [name], [10]) for name in "cdef"]
    gate.set()
    for job in jobs:
        job.futures[0].result(timeout=30)
    urgent = [items for key, items in batches if key == "now"]
    assert urgent[0] == ["c", "d"] and sorted(item for items in urgent for item in items) == ["c", "d", "e", "f"], batches
    assert ("file", ["a", "b"]) in batches


def test_a_lone_worker_takes_all_the_urgent_chunks(recorder: Recorder) -> None:
    batching = Batcher(recorder, workers=1, max_batch_seconds=120, urgent=lambda key: key == "now", clock=lambda: 0.0)
    hold_the_worker(recorder, batching)
    jobs = [batching.submit("now", [name], [10]) for name in "abc"]
    recorder.gate.set()
    for job in jobs:
        job.futures[0].result(timeout=30)
    assert recorder.batches[1:] == [("now", ["a", "b", "c"])]


class Clock:
    """The batcher's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_chunk_waits_behind_urgent_work_past_max_wait(recorder: Recorder) -> None:
    """Live sessions sending urgent work without end do not stop a file: once its next chunk
    has waited `max_wait_s`, its key goes first; its chunks left then wait anew, behind the
    urgent ones."""
    clock = Clock()
    batching = Batcher(recorder, workers=1, max_batch_seconds=120, urgent=lambda key: key == "now", max_wait_s=2, clock=clock)
    hold_the_worker(recorder, batching)
    file = batching.submit("file", chunks("f", 3), [10] * 3)
    clock.now = 1.0
    live = [batching.submit("now", [name], [10]) for name in ("u", "v")]
    clock.now = 2.5  # the file has waited 2.5 s, the live texts 1.5 s
    recorder.gate.set()
    for job in [file, *live]:
        for future in job.futures:
            future.result(timeout=30)
    assert recorder.batches[1:] == [("file", ["f0"]), ("now", ["u", "v"]), ("file", ["f1"]), ("file", ["f2"])]


def test_a_long_file_ramps_up_first_chunk_alone(recorder: Recorder) -> None:
    recorder.gate.set()
    batching = batcher(recorder, seconds=240)
    job = batching.submit("en", chunks("a", 10), [30] * 10)
    assert [future.result(timeout=30) for future in job.futures] == [f"decoded a{n}" for n in range(10)]
    assert [len(items) for _, items in recorder.batches] == [1, 1, 2, 4, 2]


def test_a_new_request_is_not_stuck_behind_a_long_one(recorder: Recorder) -> None:
    batching = batcher(recorder, seconds=240)
    hold_the_worker(recorder, batching)
    long = batching.submit("en", chunks("long", 12), [30] * 12)
    short = batching.submit("en", ["short"], [5])
    recorder.gate.set()
    assert short.futures[0].result(timeout=30) == "decoded short"
    assert recorder.batches[1][1] == ["long0", "short"]
    for future in long.futures:
        future.result(timeout=30)


def test_a_cancelled_job_loses_its_waiting_chunks_and_the_others_go_on(recorder: Recorder) -> None:
    batching = batcher(recorder)
    hold_the_worker(recorder, batching)
    gone = batching.submit("en", chunks("gone", 3), [30] * 3)
    kept = batching.submit("en", ["kept"], [30])
    batching.cancel(gone)
    recorder.gate.set()
    assert kept.futures[0].result(timeout=30) == "decoded kept"
    with pytest.raises(CancelledError):
        gone.futures[0].result(timeout=30)
    assert all("gone" not in item for _, items in recorder.batches for item in items)


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on() -> None:
    calls: list[list[str]] = []

    def decode(key, items: list[str]) -> list[str]:
        calls.append(items)
        if "bad" in items:
            raise ValueError("the model could not decode this")
        return items

    batching = Batcher(decode, workers=1, max_batch_seconds=30)
    bad = batching.submit("en", ["bad"], [30])
    with pytest.raises(ValueError, match="could not decode"):
        bad.futures[0].result(timeout=30)
    good = batching.submit("en", ["good"], [30])
    assert good.futures[0].result(timeout=30) == "good"


def test_workers_decode_batches_at_the_same_time() -> None:
    both_in = threading.Barrier(2, timeout=30)

    def decode(key, items: list[str]) -> list[str]:
        both_in.wait()  # passes only when two batches are decoding at once
        return items

    batching = Batcher(decode, workers=2, max_batch_seconds=30)
    jobs = [batching.submit("en", [name], [30]) for name in "ab"]
    assert [job.futures[0].result(timeout=30) for job in jobs] == ["a", "b"]


def test_chunks_added_to_a_job_later_are_decoded_after_its_first(recorder: Recorder) -> None:
    recorder.gate.set()
    batching = batcher(recorder)
    job = batching.submit("en", ["head"], [30])
    assert job.futures[0].result(timeout=30) == "decoded head"
    batching.extend(job, ["rest0", "rest1"], [30, 30])
    assert [future.result(timeout=30) for future in job.futures] == ["decoded head", "decoded rest0", "decoded rest1"]


def test_a_cancelled_job_takes_no_more_chunks(recorder: Recorder) -> None:
    recorder.gate.set()
    batching = batcher(recorder)
    job = batching.submit("en", ["head"], [30])
    job.futures[0].result(timeout=30)
    batching.cancel(job)
    batching.extend(job, ["rest"], [30])
    assert len(job.futures) == 1
    assert all("rest" not in items for _, items in recorder.batches)


def test_each_batch_its_chunks_and_seconds_are_counted_and_the_chunks_waiting_can_be_read(recorder: Recorder) -> None:
    metrics = RecordedMetrics()
    batching = Batcher(recorder, workers=1, max_batch_seconds=120, metrics=metrics)
    hold_the_worker(recorder, batching)
    first = batching.submit("en", ["a0"], [20.0])
    second = batching.submit("en", ["b0", "b1"], [25.5, 4.0])
    assert batching.waiting_chunks == 3
    recorder.gate.set()
    for future in (*first.futures, *second.futures):
        future.result(timeout=30)
    assert batching.waiting_chunks == 0
    # The held chunk alone; then a0 and b0, b1's turn coming once b0 has decoded (the ramp).
    assert metrics.values(BATCHES) == [1, 1, 1]
    assert metrics.values(BATCHED_CHUNKS) == [1, 2, 1]
    assert metrics.values(BATCHED_AUDIO_SECONDS) == [30, 45.5, 4.0]
