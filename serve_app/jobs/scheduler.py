"""Running the queued jobs, without Ray: claim them from the JobStore as capacity allows, run
each through the Pipeline (model look-up, decode, the Transcriber's stream), write its output
files, record how it ended, and call back.

The JobQueue deployment (deployments/job_queue.py) holds one JobScheduler and gives it what
depends on Ray: the Pipeline over the deployment handles, how many jobs may run at once (the
Transcriber's running replicas), and the exceptions that mean a replica died mid-job.

    scheduler = JobScheduler(store, pipeline, folders, capacity=..., callbacks=..., max_attempts=3)
    scheduler.start()   # in the event loop: recover the jobs a dead process left, then claim
    scheduler.wake()    # after a submission: claim now rather than at the next poll
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from serve_app.errors import BadRequest, ServiceError
from serve_app.jobs.callbacks import CallbackSettings, call_back
from serve_app.jobs.job import Job
from serve_app.jobs.lease import keep_lease
from serve_app.jobs.outputs import write_outputs
from serve_app.jobs.paths import JobFolders
from serve_app.jobs.store import JobStore, Recovery
from serve_app.options import DecodeOptions
from serve_app.transcript import Transcript, TranscriptInfo

if TYPE_CHECKING:
    from serve_app.pipeline import Pipeline

__all__ = ["REPLICA_DIED", "JobScheduler", "decode_options"]

logger = logging.getLogger("ray.serve")

REPLICA_DIED = "a Transcriber replica died while it ran the job"
"""The reason a job is queued again (or, past its tries, failed) when a replica died under it."""


def decode_options(job: Job) -> DecodeOptions:
    """What a job asks the engine for."""
    return DecodeOptions(language=job.language or None)


class JobScheduler:
    """The claim loop and the jobs it runs.

    `capacity` says, each time the loop looks, how many jobs may run at once. `replica_died`:
    the exceptions that mean the work was lost rather than refused (the job goes back to the
    queue, up to `max_attempts` tries). `deliver` sends a finished job's callback and records
    how it went (call_back; tests pass a stand-in). `poll_s`: how often the loop looks without
    being woken.
    """

    def __init__(
        self,
        store: JobStore,
        pipeline: Pipeline,
        folders: JobFolders,
        *,
        capacity: Callable[[], Awaitable[int]],
        callbacks: CallbackSettings,
        max_attempts: int,
        replica_died: tuple[type[BaseException], ...] = (),
        deliver: Callable[[Job, CallbackSettings, JobStore], Any] = call_back,
        poll_s: float = 1.0,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.folders = folders
        self.capacity = capacity
        self.callbacks = callbacks
        self.max_attempts = max_attempts
        self.replica_died = replica_died
        self.deliver = deliver
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        self._running: set[asyncio.Task] = set()

    def start(self) -> Recovery:
        """Put back the jobs a dead process left RUNNING, call back those that used up their
        tries, and start the claim loop. Call it once, in the event loop, before any claim."""
        # A store of this process alone: what it ran before it restarted is orphaned. On a shared
        # store (PostgreSQL) other replicas are running their jobs: leases bring back a dead one's.
        recovery = Recovery() if self.store.shared else self.store.recover_after_restart(self.max_attempts)
        if recovery.requeued or recovery.failed:
            logger.info(
                "jobs left running by the last run: %d queued again, %d failed", len(recovery.requeued), len(recovery.failed)
            )
        for job in recovery.failed:
            self._spawn(self._call_back(job))
        self._spawn(self.run_forever())
        return recovery

    def wake(self) -> None:
        """Look for a job to claim now (a submission, or a job that ended)."""
        self._wake.set()

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running)

    async def stop(self) -> None:
        """Stop the loop, the jobs it runs and the callbacks due (the jobs stay RUNNING in the
        store, as when the process dies: the next start puts them back)."""
        tasks = [*self._background, *self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run_forever(self) -> None:
        """Claim jobs while fewer than `capacity` run, then wait to be woken (or `poll_s`)."""
        while True:
            try:
                capacity = await self.capacity()
                taken_back = Recovery()  # jobs whose lease lapsed: their replica died or hung
                try:
                    while len(self._running) < capacity and (job := await self._claim(taken_back)) is not None:
                        task = asyncio.create_task(self.run(job))
                        self._running.add(task)
                        task.add_done_callback(self._running.discard)
                finally:
                    if taken_back.requeued or taken_back.failed:
                        logger.warning(
                            "jobs whose lease lapsed: %d queued again, %d failed",
                            len(taken_back.requeued),
                            len(taken_back.failed),
                        )
                    for failed in taken_back.failed:
                        self._spawn(self._call_back(failed))
            except Exception:
                logger.exception("the job queue could not take the next job")
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
                # that arrives as the wait ends, and then stop() would wait for ever.
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _claim(self, taken_back: Recovery) -> Job | None:
        return await asyncio.to_thread(self.store.claim_next, max_attempts=self.max_attempts, recovery=taken_back)

    async def run(self, job: Job) -> None:
        """Run one claimed job to its end in the store: COMPLETED with its outputs, FAILED with
        the reason, or QUEUED again when a replica died under it; then its callback."""
        store, started = self.store, time.monotonic()
        try:
            async with keep_lease(store, job):
                transcript = await self.transcribe(job)
                outputs = await asyncio.to_thread(
                    write_outputs,
                    transcript,
                    media_path=job.path,
                    output_dir=self.folders.output_dir(job.output_path),
                    job_format=job.format,
                )
            finished = await asyncio.to_thread(
                store.complete, job.id, transcript.text, outputs, time.monotonic() - started, attempt=job.attempts
            )
        except self.replica_died:
            finished = await asyncio.to_thread(
                store.requeue, job.id, REPLICA_DIED, max_attempts=self.max_attempts, attempt=job.attempts
            )
            finished = finished if finished is not None and finished.status == "FAILED" else None
        except Exception as error:
            reason = error.reason if isinstance(error, ServiceError) else f"internal error ({type(error).__name__}: {error})"
            if not isinstance(error, ServiceError):
                logger.exception("job %s failed", job.id)
            finished = await asyncio.to_thread(store.fail, job.id, reason, time.monotonic() - started, attempt=job.attempts)
        self.wake()
        if finished is not None and job.callback:
            await self._call_back(finished)

    async def _call_back(self, job: Job) -> None:
        await asyncio.to_thread(self.deliver, job, self.callbacks, self.store)

    async def transcribe(self, job: Job) -> Transcript:
        """The job's transcript, its progress recorded in the store as the segments come."""
        media = await asyncio.to_thread(self.folders.media_file, job.path)
        options = decode_options(job)
        with open(media, "rb") as source:
            prepared = await self.pipeline.prepare(source, job.model, options)
        info, segments, reported = None, [], 0
        async for event in self.pipeline.stream(prepared, options):
            if isinstance(event, TranscriptInfo):
                info = event
                continue
            segments.append(event)
            progress = int(99 * event.end / info.duration) if info and info.duration else 0
            if progress > reported:
                reported = progress
                await asyncio.to_thread(self.store.set_progress, job.id, progress, attempt=job.attempts)
        if info is None:
            raise BadRequest("the media gave no transcript")
        return Transcript(info, segments)
