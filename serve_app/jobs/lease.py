"""The heartbeat of a running job: its lease renewed for as long as the replica runs it.

A claim holds its job for the store's `lease_s` seconds (store.py). `async with keep_lease(store,
job):` around the run renews it every third of that, off the event loop, so that another
replica takes the job back only when this one stopped: it died, hung, or could not reach the
database for a whole lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from serve_app.jobs.job import Job
from serve_app.jobs.store import JobStore

__all__ = ["keep_lease"]

logger = logging.getLogger("ray.serve")


@asynccontextmanager
async def keep_lease(store: JobStore, job: Job, *, every: float | None = None) -> AsyncIterator[None]:
    """Renew `job`'s lease (the attempt it was claimed in) every `every` seconds, a third of
    the lease unless given, until the block ends. A renewal that fails (the database is away)
    is tried again at the next beat; once the job is no longer this attempt's (it finished, or
    its lease lapsed and another replica took it), the beat stops, and whatever this attempt
    still reports is refused by the store."""
    beat = asyncio.create_task(_beat(store, job, store.lease_s / 3 if every is None else every))
    try:
        yield
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)


async def _beat(store: JobStore, job: Job, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            held = await asyncio.to_thread(store.renew, job.id, job.attempts)
        except Exception:
            logger.warning("job %s: could not renew its lease; trying again in %.0f s", job.id, every, exc_info=True)
            continue
        if not held:
            logger.warning(
                "job %s: attempt %d no longer holds the job (finished, or taken back after its lease lapsed)",
                job.id,
                job.attempts,
            )
            return
