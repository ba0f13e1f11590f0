"""Running the queued jobs, without Ray: claim them from the JobStore as capacity allows, run
each through the Pipeline (model look-up, decode, the Transcriber's stream), write its output
files and record how it ended; and, apart from the jobs, deliver their callbacks.

The JobQueue deployment (deployments/job_queue.py) holds one JobScheduler and gives it what
depends on Ray: the Pipeline over the deployment handles, the models (JobModels over the
ModelStore), how many jobs may run at once (the Transcriber's running replicas), and the
exceptions that mean a replica died mid-job.

    scheduler = JobScheduler(store, pipeline, folders, models=..., capacity=..., callbacks=..., max_attempts=3)
    scheduler.start()   # in the event loop: recover the jobs a dead process left, then claim
    scheduler.wake()    # after a submission: claim now rather than at the next poll

A slot is a job using the Transcriber: at most `capacity` jobs hold one. A job whose model is
not in the model folder gives its slot up while the model downloads (its `stage` says
"downloading model"; jobs that want the same model wait for the same download), then waits for
a slot again, before any job not yet claimed. A callback is no part of its job's slot: the job
ends in the store with a pending callback, and the delivery loop sends it, and tries again,
while the slot runs the next job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from serve_app.errors import BadRequest, ServiceError
from serve_app.jobs.callbacks import CallbackSettings, deliver_pending
from serve_app.jobs.job import Job
from serve_app.jobs.lease import keep_lease
from serve_app.jobs.models import DOWNLOADING, TRANSCRIBING, JobModels, download_path
from serve_app.jobs.outputs import write_outputs
from serve_app.jobs.paths import JobFolders
from serve_app.jobs.store import JobStore, PendingCallback, Recovery
from serve_app.metrics import (
    GAUGE_EVERY_S,
    JOBS_FINISHED,
    JOBS_QUEUED,
    JOBS_RUNNING,
    NO_METRICS,
    OLDEST_QUEUED_JOB_AGE,
    Recorder,
)
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions
from serve_app.transcript import Transcript, TranscriptInfo

if TYPE_CHECKING:
    from serve_app.pipeline import Pipeline

__all__ = ["MAX_SENDING", "REPLICA_DIED", "JobScheduler", "decode_options"]

logger = logging.getLogger("ray.serve")

REPLICA_DIED = "a Transcriber replica died while it ran the job"
"""The reason a job is queued again (or, past its tries, failed) when a replica died under it."""

MAX_SENDING = 16
"""Callbacks one scheduler sends at once (each try in a thread of its own)."""


def decode_options(job: Job) -> DecodeOptions:
    """What a job asks the engine for."""
    return DecodeOptions(language=job.language or None)


class JobScheduler:
    """The claim loop, the jobs it runs, and the delivery loop of their callbacks.

    `models` finds a job's model, or downloads it. `capacity` says, each time the loop looks,
    how many jobs may hold a slot at once. `replica_died`: the exceptions that mean the work
    was lost rather than refused (the job goes back to the queue, up to `max_attempts` tries).
    `deliver` makes one try of a pending callback and records it (deliver_pending; tests pass
    a stand-in). `poll_s`: how often the loops look without being woken. `metrics` gets the
    queue's depth and its oldest job's age, and how each run ended.
    """

    def __init__(
        self,
        store: JobStore,
        pipeline: Pipeline,
        folders: JobFolders,
        *,
        models: JobModels,
        capacity: Callable[[], Awaitable[int]],
        callbacks: CallbackSettings,
        max_attempts: int,
        replica_died: tuple[type[BaseException], ...] = (),
        deliver: Callable[[PendingCallback, CallbackSettings, JobStore], Any] = deliver_pending,
        poll_s: float = 1.0,
        metrics: Recorder = NO_METRICS,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.folders = folders
        self.models = models
        self.capacity = capacity
        self.callbacks = callbacks
        self.max_attempts = max_attempts
        self.replica_died = replica_died
        self.deliver = deliver
        self.poll_s = poll_s
        self.metrics = metrics
        self._backlog_at = -float("inf")
        # A try of a callback is held this long: past it, the sender is taken for dead.
        self.callback_hold_s = 4 * callbacks.timeout + 60
        self._wake = asyncio.Event()
        self._callbacks_due = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        self._jobs: set[asyncio.Task] = set()  # every job this scheduler runs
        self._slots: set[asyncio.Task] = set()  # the jobs among them that hold a slot
        self._waiting: deque[tuple[asyncio.Task, asyncio.Future[None]]] = deque()  # model downloaded, no slot yet
        self._downloads: dict[str, asyncio.Future[ModelInfo]] = {}
        self._sending: set[asyncio.Task] = set()

    def start(self) -> Recovery:
        """Put back the jobs a dead process left RUNNING (those that used up their tries fail,
        their callbacks pending), and start the claim and delivery loops. Call it once, in the
        event loop, before any claim."""
        # A store of this process alone: what it ran before it restarted is orphaned. On a shared
        # store (PostgreSQL) other replicas are running their jobs: leases bring back a dead one's.
        recovery = Recovery()
        if not self.store.shared:
            recovery = self.store.recover_after_restart(self.max_attempts)
            self.store.release_callbacks()
        if recovery.requeued or recovery.failed:
            logger.info(
                "jobs left running by the last run: %d queued again, %d failed", len(recovery.requeued), len(recovery.failed)
            )
        self._spawn(self.run_forever())
        self._spawn(self.deliver_forever())
        return recovery

    def wake(self) -> None:
        """Look for a job to claim now (a submission, or a job that ended)."""
        self._wake.set()

    @property
    def running(self) -> int:
        """Jobs running now (those waiting for their model's download included)."""
        return len(self._jobs)

    async def stop(self) -> None:
        """Stop the loops, the jobs they run and the callbacks being sent (the jobs stay RUNNING
        in the store, as when the process dies: the next start puts them back; the callbacks
        stay pending)."""
        tasks = [*self._background, *self._jobs, *self._sending, *self._downloads.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run_forever(self) -> None:
        """Give free slots to the jobs whose model came, then claim jobs while fewer than
        `capacity` hold one; then wait to be woken (or `poll_s`)."""
        while True:
            try:
                capacity = await self.capacity()
                while len(self._slots) < capacity and self._waiting:
                    task, granted = self._waiting.popleft()
                    if not granted.done():
                        self._slots.add(task)
                        granted.set_result(None)
                taken_back = Recovery()  # jobs whose lease lapsed: their replica died or hung
                try:
                    while (
                        len(self._slots) < capacity and not self._waiting and (job := await self._claim(taken_back)) is not None
                    ):
                        task = asyncio.create_task(self.run(job))
                        self._jobs.add(task)
                        self._slots.add(task)
                        task.add_done_callback(self._ended)
                finally:
                    if taken_back.requeued or taken_back.failed:
                        logger.warning(
                            "jobs whose lease lapsed: %d queued again, %d failed",
                            len(taken_back.requeued),
                            len(taken_back.failed),
                        )
                    if taken_back.failed:
                        self._callbacks_due.set()
            except Exception:
                logger.exception("the job queue could not take the next job")
            await self._report_backlog()
            self._wake.clear()
            await _wait(self._wake, self.poll_s)

    async def _report_backlog(self) -> None:
        """The queue's depth and its oldest job's age to the metrics, every GAUGE_EVERY_S (the
        claim loop turns at least every `poll_s`)."""
        now = time.monotonic()
        if now - self._backlog_at < GAUGE_EVERY_S:
            return
        self._backlog_at = now
        try:
            backlog = await asyncio.to_thread(self.store.backlog)
        except Exception:
            logger.exception("the job queue could not read its depth for the metrics")
            return
        self.metrics.record(JOBS_QUEUED, backlog.queued)
        self.metrics.record(JOBS_RUNNING, backlog.running)
        self.metrics.record(OLDEST_QUEUED_JOB_AGE, backlog.oldest_queued_s)

    def _ended(self, task: asyncio.Task) -> None:
        self._jobs.discard(task)
        self._slots.discard(task)

    async def _claim(self, taken_back: Recovery) -> Job | None:
        return await asyncio.to_thread(self.store.claim_next, max_attempts=self.max_attempts, recovery=taken_back)

    async def run(self, job: Job) -> None:
        """Run one claimed job to its end in the store: COMPLETED with its outputs, FAILED with
        the reason, or QUEUED again when a replica died under it. Its callback, if any, is then
        pending in the store, for the delivery loop."""
        store, started = self.store, time.monotonic()
        try:
            async with keep_lease(store, job):
                model = await self.model(job)
                transcript = await self.transcribe(job, model)
                outputs = await asyncio.to_thread(
                    write_outputs,
                    transcript,
                    media_path=job.path,
                    output_dir=self.folders.output_dir(job.output_path),
                    job_format=job.format,
                )
            finished = await asyncio.to_thread(
                store.complete,
                job.id,
                transcript.text,
                outputs,
                time.monotonic() - started,
                attempt=job.attempts,
                language=transcript.info.language or "",
            )
        except self.replica_died:
            finished = await asyncio.to_thread(
                store.requeue, job.id, REPLICA_DIED, max_attempts=self.max_attempts, attempt=job.attempts
            )
        except Exception as error:
            reason = error.reason if isinstance(error, ServiceError) else f"internal error ({type(error).__name__}: {error})"
            if not isinstance(error, ServiceError):
                logger.exception("job %s failed", job.id)
            finished = await asyncio.to_thread(store.fail, job.id, reason, time.monotonic() - started, attempt=job.attempts)
        self.wake()
        if finished is not None:
            self.metrics.record(JOBS_FINISHED, 1, {"status": str(finished.status)})
            if finished.callback:
                self._callbacks_due.set()

    async def model(self, job: Job) -> ModelInfo:
        """The job's model: in the folder, or downloaded now, without a slot meanwhile."""
        model = await self.models.find(job.model)
        if model is not None:
            return model
        task = asyncio.current_task()
        assert task is not None
        await asyncio.to_thread(self.store.set_stage, job.id, DOWNLOADING, attempt=job.attempts)
        self._slots.discard(task)
        self.wake()  # a slot is free
        logger.info("job %s: downloading model %s", job.id, job.model)
        model = await self._download(job.model)
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append((task, granted))
        self.wake()
        try:
            await granted
        except asyncio.CancelledError:
            granted.cancel()  # the claim loop skips it
            raise
        await asyncio.to_thread(self.store.set_stage, job.id, TRANSCRIBING, attempt=job.attempts)
        return model

    async def _download(self, name: str) -> ModelInfo:
        """One download for all the jobs that want the same model at once."""
        key = download_path(name)
        download = self._downloads.get(key)
        if download is None:
            download = asyncio.ensure_future(self.models.download(name))
            self._downloads[key] = download
            download.add_done_callback(self._downloaded(key))
        return await asyncio.shield(download)

    def _downloaded(self, key: str) -> Callable[[asyncio.Future[ModelInfo]], None]:
        def forget(download: asyncio.Future[ModelInfo]) -> None:
            self._downloads.pop(key, None)
            if not download.cancelled():
                download.exception()  # retrieved: each job that waited on it has it already

        return forget

    async def transcribe(self, job: Job, model: ModelInfo) -> Transcript:
        """The job's transcript, its progress recorded in the store as the segments come."""
        media = await asyncio.to_thread(self.folders.media_file, job.path)
        options = decode_options(job)
        with open(media, "rb") as source:
            prepared = await self.pipeline.prepare(source, model.id, options)
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

    # Callbacks, apart from the jobs.

    async def deliver_forever(self) -> None:
        """Take the pending callbacks that are due, as many as MAX_SENDING allows, and make a
        try of each in a thread; then wait for the next to be due, a job to end, or `poll_s`."""
        while True:
            self._callbacks_due.clear()
            wait = self.poll_s
            try:
                room = MAX_SENDING - len(self._sending)
                if room > 0:
                    due = await asyncio.to_thread(self.store.claim_callbacks, room, self.callback_hold_s)
                    for pending in due:
                        task = asyncio.create_task(self._send(pending))
                        self._sending.add(task)
                        task.add_done_callback(self._sent)
                    next_in = await asyncio.to_thread(self.store.next_callback_in)
                    if next_in is not None:
                        wait = min(wait, next_in)
            except Exception:
                logger.exception("the job queue could not take the callbacks due")
            await _wait(self._callbacks_due, wait)

    async def _send(self, pending: PendingCallback) -> None:
        try:
            await asyncio.to_thread(self.deliver, pending, self.callbacks, self.store)
        except Exception:
            logger.exception("job %s: the callback's try could not be recorded; it is tried again later", pending.job_id)

    def _sent(self, task: asyncio.Task) -> None:
        self._sending.discard(task)
        self._callbacks_due.set()  # room for another, and the one just tried may be due again


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation that
        # arrives as the wait ends, and then stop() would wait for ever.
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
