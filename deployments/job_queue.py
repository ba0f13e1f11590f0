"""The JobQueue deployment: one replica that owns the durable job queue and runs its jobs.

The routes' calls (submit, get, delete, listing, stats) and a JobScheduler
(serve_app/jobs/scheduler.py) that runs the jobs through the same Pipeline as the HTTP routes
(model look-up, decode, the Transcriber's stream), as many at once as the Transcriber has
running replicas (or `job_concurrency`), downloading through the ModelStore the models they
name that are not in the model folder, and delivers their callbacks. What is Ray's stays here: the handles, the
replica count from `serve.status`, and RayActorError as a replica's death.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import ReplicaState

from deployments.metrics import ServeMetrics
from serve_app.errors import Forbidden
from serve_app.jobs import (
    CallbackSettings,
    HandleModels,
    JobFolders,
    JobScheduler,
    JobStore,
    admit_submission,
    deliver_pending,
)
from serve_app.jobs.models import download_path
from serve_app.jobs.paths import JOBS_OFF
from serve_app.jobs.scheduler import decode_options
from serve_app.models.catalogue import ModelInfo
from serve_app.pipeline import Pipeline, check_model_fits, put_audio
from serve_app.settings import AppSettings


@serve.deployment(ray_actor_options={"num_cpus": 0}, num_replicas=1)
class JobQueue:
    # Async: Serve awaits it on the replica's event loop, where the scheduler starts its tasks.
    async def __init__(  # type: ignore[misc]  # mypy wants __init__ to return None, not a coroutine
        self, settings: AppSettings, *, model_store: DeploymentHandle, transcriber: DeploymentHandle
    ) -> None:
        self.settings = settings
        self.pipeline = Pipeline.from_settings(settings, model_store=model_store, transcriber=transcriber, share_audio=put_audio)
        self.folders = JobFolders(settings.job_media_folders, settings.job_output_folders)
        self.store: JobStore | None = None
        self.scheduler: JobScheduler | None = None
        if not self.folders.enabled:
            return
        metrics = ServeMetrics()
        self.store = JobStore(settings.job_store_url, retention_days=settings.job_retention_days, lease_s=settings.job_lease_s)
        self.scheduler = JobScheduler(
            self.store,
            self.pipeline,
            self.folders,
            models=HandleModels(model_store),
            capacity=self._capacity,
            callbacks=CallbackSettings(
                secret=os.environ.get("WHISPER_SERVE_CALLBACK_SECRET") or settings.callback_secret,
                allowed_hosts=settings.callback_hosts,
                tries=settings.callback_tries,
                backoff=settings.callback_backoff_s,
            ),
            max_attempts=settings.job_max_attempts,
            replica_died=(RayActorError,),
            deliver=partial(deliver_pending, metrics=metrics),
            metrics=metrics,
        )
        self.scheduler.start()

    def _open(self) -> JobStore:
        if self.store is None:
            raise Forbidden(JOBS_OFF)
        return self.store

    # What the routes ask.

    async def submit(self, body: Any) -> dict:
        store = self._open()
        present: dict[str, ModelInfo] = {}

        def model_exists(name: str) -> bool:
            for candidate in dict.fromkeys((name, download_path(name))):
                model = self.pipeline.model_store.get.remote(candidate).result()
                if model is not None:
                    present[name] = model
                    return True
            return False  # a name that can be downloaded is queued, and downloads it when it runs

        job = await asyncio.to_thread(
            admit_submission,
            body,
            folders=self.folders,
            default_model=self.settings.default_model,
            model_exists=model_exists,
            callback_hosts=self.settings.callback_hosts,
        )
        if job.model in present:
            check_model_fits(present[job.model], decode_options(job))
        job = await asyncio.to_thread(store.submit, job)
        assert self.scheduler is not None  # set with the store _open found
        self.scheduler.wake()
        return job.to_json()

    async def get(self, job_id: str) -> dict:
        return (await asyncio.to_thread(self._open().get, job_id)).to_json()

    async def delete(self, job_id: str) -> None:
        await asyncio.to_thread(self._open().delete_queued, job_id)

    async def listing(self) -> list[dict]:
        return [job.to_json() for job in await asyncio.to_thread(self._open().listing)]

    async def stats(self) -> dict:
        return await asyncio.to_thread(self._open().stats)

    # How many jobs may run at once: the scheduler asks before each claim.

    async def _capacity(self) -> int:
        if self.settings.job_concurrency is not None:
            return self.settings.job_concurrency
        app = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        transcriber = status.applications[app].deployments.get("Transcriber")
        return max(1, transcriber.replica_states.get(ReplicaState.RUNNING, 0) if transcriber else 1)
