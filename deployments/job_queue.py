"""The JobQueue deployment: the replica that owns the durable job queue and runs its jobs; on a
PostgreSQL job store (job_store_url), any number of replicas that share it.

Jobs run through the same Pipeline as the HTTP routes (model look-up, decode, the Transcriber's
stream), as many at once as the Transcriber has running replicas (or `job_concurrency`). A
running job's lease is renewed while it runs (keep_lease); a job whose replica died is taken
back by the next claim once its lease lapsed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from serve_app.errors import BadRequest, Forbidden, ServiceError
from serve_app.jobs import (
    CallbackSettings,
    Job,
    JobFolders,
    JobStore,
    Recovery,
    admit_submission,
    call_back,
    keep_lease,
    write_outputs,
)
from serve_app.options import DecodeOptions
from serve_app.pipeline import Pipeline, check_model_fits
from serve_app.settings import AppSettings
from serve_app.transcript import Transcript, TranscriptInfo

logger = logging.getLogger("ray.serve")

OFF = "the job API is off: name job_media_folders and job_output_folders in the app's args (config.yaml)"


@serve.deployment(ray_actor_options={"num_cpus": 0}, num_replicas=1)
class JobQueue:
    async def __init__(self, settings: AppSettings, *, model_store: DeploymentHandle, transcriber: DeploymentHandle) -> None:
        self.settings = settings
        self.pipeline = Pipeline.from_settings(settings, model_store=model_store, transcriber=transcriber)
        self.folders = JobFolders(settings.job_media_folders, settings.job_output_folders)
        self.callbacks = CallbackSettings(
            secret=os.environ.get("WHISPER_SERVE_CALLBACK_SECRET") or settings.callback_secret,
            allowed_hosts=settings.callback_hosts,
            tries=settings.callback_tries,
            backoff=settings.callback_backoff_s,
        )
        self.store: JobStore | None = None
        if not self.folders.enabled:
            return
        self.store = JobStore(settings.job_store_url, retention_days=settings.job_retention_days, lease_s=settings.job_lease_s)
        # A store of this replica alone: what it ran before it restarted is orphaned. On a shared
        # store, other replicas are running their jobs: leases bring back those of dead ones.
        recovery = Recovery() if self.store.shared else self.store.recover_after_restart(settings.job_max_attempts)
        if recovery.requeued or recovery.failed:
            logger.info(
                "jobs left running by the last run: %d queued again, %d failed", len(recovery.requeued), len(recovery.failed)
            )
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        for job in recovery.failed:
            self._spawn(asyncio.to_thread(call_back, job, self.callbacks, self.store))
        self._spawn(self._run_forever())

    def _spawn(self, work) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _open(self) -> JobStore:
        if self.store is None:
            raise Forbidden(OFF)
        return self.store

    # What the routes ask.

    async def submit(self, body: Any) -> dict:
        store = self._open()

        def model_exists(name: str) -> bool:
            return self.pipeline.model_store.get.remote(name).result() is not None

        job = await asyncio.to_thread(
            admit_submission,
            body,
            folders=self.folders,
            default_model=self.settings.default_model,
            model_exists=model_exists,
            callback_hosts=self.settings.callback_hosts,
        )
        check_model_fits(await self.pipeline.model(job.model), self._decode_options(job))
        job = await asyncio.to_thread(store.submit, job)
        self._wake.set()
        return job.to_json()

    async def get(self, job_id: str) -> dict:
        return (await asyncio.to_thread(self._open().get, job_id)).to_json()

    async def delete(self, job_id: str) -> None:
        await asyncio.to_thread(self._open().delete_queued, job_id)

    async def listing(self) -> list[dict]:
        return [job.to_json() for job in await asyncio.to_thread(self._open().listing)]

    async def stats(self) -> dict:
        return await asyncio.to_thread(self._open().stats)

    # Running the jobs.

    @staticmethod
    def _decode_options(job: Job) -> DecodeOptions:
        return DecodeOptions(language=job.language or None)

    async def _capacity(self) -> int:
        if self.settings.job_concurrency is not None:
            return self.settings.job_concurrency
        app = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        transcriber = status.applications[app].deployments.get("Transcriber")
        return max(1, transcriber.replica_states.get("RUNNING", 0) if transcriber else 1)

    async def _run_forever(self) -> None:
        running: set[asyncio.Task] = set()
        while True:
            try:
                capacity = await self._capacity()
                taken_back = Recovery()  # jobs whose lease lapsed: their replica died or hung
                try:
                    while len(running) < capacity and (job := await self._claim(taken_back)) is not None:
                        task = asyncio.create_task(self._run(job))
                        running.add(task)
                        task.add_done_callback(running.discard)
                finally:
                    if taken_back.requeued or taken_back.failed:
                        logger.warning(
                            "jobs whose lease lapsed: %d queued again, %d failed",
                            len(taken_back.requeued),
                            len(taken_back.failed),
                        )
                    for failed in taken_back.failed:
                        if failed.callback:
                            self._spawn(asyncio.to_thread(call_back, failed, self.callbacks, self._open()))
            except Exception:
                logger.exception("the job queue could not take the next job")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                pass

    async def _claim(self, taken_back: Recovery) -> Job | None:
        return await asyncio.to_thread(self._open().claim_next, max_attempts=self.settings.job_max_attempts, recovery=taken_back)

    async def _run(self, job: Job) -> None:
        store, started = self.store, time.monotonic()
        try:
            async with keep_lease(store, job):
                transcript = await self._transcribe(job)
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
        except RayActorError:
            reason = "a Transcriber replica died while it ran the job"
            finished = await asyncio.to_thread(
                store.requeue, job.id, reason, max_attempts=self.settings.job_max_attempts, attempt=job.attempts
            )
            finished = finished if finished is not None and finished.status == "FAILED" else None
        except Exception as error:
            reason = error.reason if isinstance(error, ServiceError) else f"internal error ({type(error).__name__}: {error})"
            if not isinstance(error, ServiceError):
                logger.exception("job %s failed", job.id)
            finished = await asyncio.to_thread(store.fail, job.id, reason, time.monotonic() - started, attempt=job.attempts)
        self._wake.set()
        if finished is not None and job.callback:
            await asyncio.to_thread(call_back, finished, self.callbacks, store)

    async def _transcribe(self, job: Job) -> Transcript:
        media = await asyncio.to_thread(self.folders.media_file, job.path)
        options = self._decode_options(job)
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
