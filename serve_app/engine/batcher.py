"""Cross-request batching: the chunks of concurrent requests decoded together.

No model here: the engine hands over a `decode(key, items)` function and this decides what goes
into each batch. The rules:

- Only chunks with the same key (model, task, language, decoding options) share a batch; the
  oldest waiting request's key goes first, but an `urgent` key's goes before all others (a
  live session's completed text, which a speaker waits for, before its drafts and files), in
  batches of at most its share of the urgent chunks waiting among the workers: the next worker
  free decodes the rest beside it. A CPU gains little from a batch (tiny.en on one core of a
  Xeon: the completions of 4 live sessions, 12 s of speech each, in 3.2 s in one batch; one of
  them alone in 1.0 to 1.2 s), and 2 and 2 on two cores come back sooner than 4 on one.
- But no chunk waits for long while other keys go first: the key of a request whose next chunk
  has waited `max_wait_s` goes first (MAX_WAIT_S; the one that has waited longest), so that
  live sessions speaking without end do not stop the files and drafts of everyone else.
- A batch holds at most `max_batch_seconds` of audio (at least one chunk, however long).
- A worker that comes free takes what is waiting now and never waits for more: a lone request
  goes straight through.
- A request's first chunk goes into a batch alone, or beside other requests' chunks, and each
  batch after takes as many of its chunks as it already has taken (1, 1, 2, 4, ...): the first
  words of a long file come back as soon as a lone chunk decodes, and the rest ramps up to
  full batches.

Why not Ray Serve's `@serve.batch`: it batches calls, and a request here is many chunks that
decode one batch after another, its first chunk first, then more each time (the ramp above);
as calls, each chunk would be a call of its own through the replica. It splits a batch by the
multiplexed model id only, where chunks must also agree on task, language and decoding
options. And a worker here takes what is waiting when it comes free, where Serve's batch waits
up to `batch_wait_timeout_s` for more. Requests for one model still meet here: Serve's model
multiplexing routes them to the replica that holds the model (deployments/transcriber.py), and
their keys hold the same loaded model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from serve_app.metrics import BATCHED_AUDIO_SECONDS, BATCHED_CHUNKS, BATCHES, NO_METRICS, Recorder

__all__ = ["MAX_WAIT_S", "Batcher", "Job"]

MAX_WAIT_S = 2.0
"""How long a request's next chunk waits at most while other keys go first (urgent work, most
often): past that, its key goes first. About two of a live session's completed texts decoded
one after the other on one core (tiny.en, 12 s of speech each, on a Xeon), so that a burst of
them goes first, and sustained urgent work leaves a file a batch every couple of seconds."""

Item = TypeVar("Item")


class Job(Generic[Item]):
    """One request's chunks in the batcher: `futures[i]` gets what `decode` made of `items[i]`."""

    def __init__(self, key: Hashable, items: Sequence[Item], seconds: Sequence[float]) -> None:
        self.key = key
        self.items: list[Item | None] = list(items)
        self.seconds = list(seconds)
        self.futures: list[Future[Any]] = [Future() for _ in self.items]
        self.taken = 0
        """Chunks handed to a worker so far, in order."""
        self.since = 0.0
        """Since when (the batcher's clock) its next chunk has waited."""
        self.cancelled = False


class Batcher(Generic[Item]):
    """Worker threads that decode batches of waiting chunks with `decode(key, items)`; each
    batch, its chunks and its audio seconds are counted in `metrics`."""

    def __init__(
        self,
        decode: Callable[[Hashable, list[Item]], list[Any]],
        *,
        workers: int,
        max_batch_seconds: float,
        name: str = "batcher",
        metrics: Recorder = NO_METRICS,
        urgent: Callable[[Hashable], bool] = lambda key: False,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._decode = decode
        self._urgent = urgent
        self._max_wait_s = max_wait_s
        self._clock = clock
        self.max_batch_seconds = max_batch_seconds
        self._metrics = metrics
        self._changed = threading.Condition()
        self._waiting: list[Job[Item]] = []  # jobs with chunks not yet taken, oldest first
        self._closed = False
        self.batches = 0
        self.chunks = 0
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, items: Sequence[Item], seconds: Sequence[float]) -> Job[Item]:
        job = Job(key, items, seconds)
        if job.items:
            with self._changed:
                if self._closed:
                    raise RuntimeError("the batcher is closed")
                job.since = self._clock()
                self._waiting.append(job)
                self._changed.notify()
        return job

    def extend(self, job: Job[Item], items: Sequence[Item], seconds: Sequence[float]) -> None:
        """More chunks for a job (the rest of its audio, cut while its first chunks decode)."""
        with self._changed:
            if job.cancelled or not items:
                return
            job.items += items
            job.seconds += seconds
            job.futures += [Future() for _ in items]
            if job not in self._waiting:
                job.since = self._clock()
                self._waiting.append(job)
            self._changed.notify()

    def cancel(self, job: Job[Item]) -> None:
        """Drop the job's chunks that no worker has taken yet; a batch already running finishes."""
        with self._changed:
            job.cancelled = True
            if job in self._waiting:
                self._waiting.remove(job)
            futures = list(job.futures)
        for future in futures:
            future.cancel()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            self._changed.notify_all()
        for job in waiting:
            self.cancel(job)

    @property
    def waiting_chunks(self) -> int:
        """Chunks no worker has taken yet."""
        with self._changed:
            return sum(len(job.items) - job.taken for job in self._waiting)

    def _next_batch(self) -> tuple[Hashable, list[tuple[Job[Item], int]]]:
        """Take the next batch off the waiting jobs; the caller holds the lock."""
        now = self._clock()
        longest = min(self._waiting, key=lambda job: job.since)
        if now - longest.since >= self._max_wait_s:
            key = longest.key
        else:
            key = next((job.key for job in self._waiting if self._urgent(job.key)), self._waiting[0].key)
        batch: list[tuple[Job[Item], int]] = []
        seconds = 0.0
        jobs = [job for job in self._waiting if job.key == key]
        most = -(-sum(len(job.items) - job.taken for job in jobs) // len(self._threads)) if self._urgent(key) else None
        for job in jobs:
            allowance = max(1, job.taken)
            while allowance and job.taken < len(job.items) and len(batch) != most:
                chunk_seconds = job.seconds[job.taken]
                if batch and seconds + chunk_seconds > self.max_batch_seconds:
                    return key, batch
                batch.append((job, job.taken))
                job.since = now  # its chunks left waiting wait anew
                seconds += chunk_seconds
                job.taken += 1
                allowance -= 1
                if job.taken == len(job.items):
                    self._waiting.remove(job)
        return key, batch

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                key, batch = self._next_batch()
                if self._waiting:
                    self._changed.notify()  # more for another free worker
            # A future cancelled since (its client gone) is left out of the batch.
            batch = [(job, index) for job, index in batch if job.futures[index].set_running_or_notify_cancel()]
            if batch:
                self._run(key, batch)

    def _run(self, key: Hashable, batch: list[tuple[Job[Item], int]]) -> None:
        items = [job.items[index] for job, index in batch]
        seconds = sum(job.seconds[index] for job, index in batch)
        for job, index in batch:
            job.items[index] = None  # the audio goes as soon as its batch is done
        try:
            results = self._decode(key, items)  # type: ignore[arg-type]
        except BaseException as error:  # the requests in the batch get it, the worker goes on
            for job, index in batch:
                job.futures[index].set_exception(error)
            return
        with self._changed:
            self.batches += 1
            self.chunks += len(batch)
        self._metrics.record(BATCHES)
        self._metrics.record(BATCHED_CHUNKS, len(batch))
        self._metrics.record(BATCHED_AUDIO_SECONDS, seconds)
        for (job, index), result in zip(batch, results, strict=True):
            job.futures[index].set_result(result)
