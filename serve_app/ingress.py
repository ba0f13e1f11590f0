"""The Ingress deployment: holds the handles of the other deployments and serves the HTTP API."""

from __future__ import annotations

import io

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import ApiKeys, load_keys
from .errors import BadRequest
from .formats import render
from .http import EXCEPTION_HANDLERS, BodyGuard, CatchAll, OriginCheck
from .job_routes import JobRoutes
from .model_routes import ModelRoutes
from .openapi import openapi_document
from .options import parse_request_options
from .pipeline import Pipeline
from .readiness import Readiness
from .routes import NEEDS, V1Routes
from .settings import AppSettings

__all__ = ["Ingress", "all_routes", "http_app"]


def all_routes(*, pipeline: Pipeline, readiness: Readiness, job_queue: DeploymentHandle) -> list[Route]:
    """Every route of the app: the /v1 API, the job API, and the OpenAPI document of both."""
    document = openapi_document()
    return [
        *V1Routes(pipeline=pipeline, readiness=readiness).routes(),
        *ModelRoutes(model_store=pipeline.model_store).routes(),
        *JobRoutes(job_queue=job_queue).routes(),
        Route("/openapi.json", lambda request: JSONResponse(document), methods=["GET"]),
    ]


def http_app(settings: AppSettings, routes: list[Route]) -> ASGIApp:
    """The routes behind the edge's checks, outermost first: CORS, the net for our bugs, the
    origin of changes, API keys, and the body's size and pace."""
    middleware = [
        Middleware(CatchAll),
        Middleware(OriginCheck, allowed=settings.cors_origins),
        Middleware(ApiKeys, keys=load_keys(settings.api_keys_file, settings.admin_api_keys_file)),
        Middleware(
            BodyGuard,
            max_bytes=settings.max_upload_bytes,
            idle_timeout_s=settings.upload_idle_timeout_s,
            min_bytes_per_s=settings.upload_min_bytes_per_s,
        ),
    ]
    if settings.cors_origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Accept"],
            ),
        )
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    return _KeepOurErrorAnswers(app)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress()
class Ingress:
    def __init__(
        self,
        settings: AppSettings,
        *,
        model_store: DeploymentHandle,
        transcriber: DeploymentHandle,
        diarizer: DeploymentHandle,
        job_queue: DeploymentHandle,
    ) -> None:
        self.settings = settings
        self.pipeline = Pipeline.from_settings(settings, model_store=model_store, transcriber=transcriber, diarizer=diarizer)
        self.job_queue = job_queue
        app_name = serve.get_replica_context().app_name
        self.readiness = Readiness(app_name)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return http_app(self.settings, all_routes(pipeline=self.pipeline, readiness=self.readiness, job_queue=self.job_queue))

    async def transcribe(self, media: bytes, fields: dict[str, str], task: str = "transcribe") -> dict | str:
        """`POST /v1/audio/transcriptions` (or translations) without HTTP, for Ray drivers on the
        cluster (serve_app.client.WhisperClient): the form's fields and the file's bytes go
        through the route's own parsing, pipeline and renderer, so the body is the one HTTP
        sends, a dict for the JSON formats and text for the others. A refusal raises the
        ServiceError the route answers with. The whole body comes back at once: no stream."""
        if task not in ("transcribe", "translate"):
            raise BadRequest(f"task must be transcribe or translate, not {task!r}")
        await self.readiness.require(NEEDS[task])
        options = parse_request_options(FormData(list(fields.items())), task=task)
        prepared = await self.pipeline.prepare(io.BytesIO(media), options.model, options.decode)
        transcript = await self.pipeline.transcribe(prepared, options.decode)
        return render(transcript, options.response_format, words=options.decode.word_timestamps)


class _KeepOurErrorAnswers:
    """The app, without Starlette's `add_exception_handler`: Serve calls it, when present, to put
    plain-text answers of its own in place of our JSON ones for BackPressureError (503)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
