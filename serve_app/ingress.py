"""The Ingress deployment: holds the handles of the other deployments and serves the HTTP API."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette
from starlette.middleware import Middleware

from .http import EXCEPTION_HANDLERS, BodyLimit
from .job_routes import JobRoutes
from .model_routes import ModelRoutes
from .pipeline import Pipeline
from .readiness import Readiness
from .routes import V1Routes
from .settings import AppSettings

__all__ = ["Ingress"]


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    def __init__(
        self,
        settings: AppSettings,
        *,
        model_store: DeploymentHandle,
        transcriber: DeploymentHandle,
        job_queue: DeploymentHandle,
    ) -> None:
        self.settings = settings
        self.pipeline = Pipeline(model_store=model_store, transcriber=transcriber)
        self.job_queue = job_queue
        app_name = serve.get_replica_context().app_name
        self.readiness = Readiness(app_name, ("ModelStore", "Transcriber"))

    def __serve_build_asgi_app__(self) -> Starlette:
        v1 = V1Routes(pipeline=self.pipeline, readiness=self.readiness)
        models = ModelRoutes(model_store=self.pipeline.model_store)
        jobs = JobRoutes(job_queue=self.job_queue)
        return Starlette(
            routes=v1.routes() + models.routes() + jobs.routes(),
            middleware=[Middleware(BodyLimit, max_bytes=self.settings.max_upload_bytes)],
            exception_handlers=EXCEPTION_HANDLERS,
        )
