"""keep_lease: the heartbeat that holds a running job while its replica runs it."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from serve_app.jobs import Job, JobStatus, JobStore, keep_lease


class Store:
    """A JobStore stand-in that answers renew as told and counts the calls."""

    lease_s = 0.06

    def __init__(self, answers: list[bool | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int | None]] = []
        self.threads: set[int] = set()

    def renew(self, job_id: str, attempt: int | None = None) -> bool:
        self.calls.append((job_id, attempt))
        self.threads.add(threading.get_ident())
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer


def claimed(attempts: int = 2) -> Job:
    return Job(path="/m/a.mp3", output_path="/out", model="tiny.en", id="job-1", status=JobStatus.RUNNING, attempts=attempts)


def run(store: Store, seconds: float, **kw) -> None:
    async def main() -> None:
        async with keep_lease(store, claimed(), **kw):  # type: ignore[arg-type]
            await asyncio.sleep(seconds)

    asyncio.run(main())


def test_the_lease_is_renewed_every_third_of_it_off_the_event_loop() -> None:
    store = Store([])
    run(store, 0.5)
    assert 3 <= len(store.calls) <= 26  # every 0.02 s, on a busy machine fewer
    assert set(store.calls) == {("job-1", 2)}  # the attempt it was claimed in
    assert threading.get_ident() not in store.threads


def test_a_failed_renewal_is_tried_again_and_a_lost_job_stops_the_beat(caplog: pytest.LogCaptureFixture) -> None:
    store = Store([OSError("the database is away"), True, False])
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        run(store, 0.4, every=0.01)
    assert len(store.calls) == 3
    assert "could not renew its lease" in caplog.text
    assert "attempt 2 no longer holds the job" in caplog.text


def test_the_beat_stops_with_the_block_and_lets_errors_through() -> None:
    store = Store([])

    async def main() -> None:
        async with keep_lease(store, claimed(), every=0.01):  # type: ignore[arg-type]
            await asyncio.sleep(0.05)
            raise ValueError("the run failed")

    with pytest.raises(ValueError, match="the run failed"):
        asyncio.run(main())
    count = len(store.calls)
    assert count >= 1


def test_a_kept_lease_holds_the_job_against_another_replica(tmp_path: Path) -> None:
    now = [1_700_000_000.0]

    def clock() -> float:
        return now[0]

    with JobStore(tmp_path, lease_s=60, clock=clock) as mine, JobStore(tmp_path, lease_s=60, clock=clock) as other:
        job = mine.submit(Job(path="/m/a.mp3", output_path="/out", model="tiny.en"))
        claimed = mine.claim_next()
        assert claimed is not None
        renewals = threading.Semaphore(0)
        renew = mine.renew

        def counted(job_id: str, attempt: int | None = None) -> bool:
            held = renew(job_id, attempt)
            renewals.release()
            return held

        mine.renew = counted  # type: ignore[method-assign]

        async def main() -> list[Job | None]:
            taken = []
            async with keep_lease(mine, claimed, every=0.01):
                for _ in range(5):  # five half leases: the claim alone would have lapsed
                    now[0] += 30
                    while renewals.acquire(blocking=False):  # the beats before
                        pass
                    # A beat since: it read the clock at most half a lease ago.
                    assert await asyncio.to_thread(renewals.acquire, timeout=30)
                    taken.append(await asyncio.to_thread(other.claim_next, max_attempts=3))
            return taken

        assert asyncio.run(main()) == [None] * 5
        assert mine.get(job.id).attempts == 1
        now[0] += 61  # the beat stopped with the block: the lease lapses
        again = other.claim_next(max_attempts=3)
        assert again is not None and (again.id, again.attempts) == (job.id, 2)
