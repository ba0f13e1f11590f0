"""The Starlette app of both APIs: every route, behind the edge's checks."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.api.audio_routes import V1Routes
from serve_app.api.auth import ApiKeys, load_keys
from serve_app.api.http import EXCEPTION_HANDLERS, ApiAlias, BodyGuard, CatchAll, OriginCheck
from serve_app.api.job_routes import JobRoutes
from serve_app.api.model_routes import ModelRoutes
from serve_app.api.openapi import openapi_document
from serve_app.api.page import page_routes
from serve_app.api.readiness import Readiness
from serve_app.api.realtime import RealtimeRoutes, ServiceDecoder
from serve_app.api.request_metrics import RequestMetrics
from serve_app.metrics import NO_METRICS, Recorder
from serve_app.pipeline import Pipeline
from serve_app.settings import AppSettings

__all__ = ["all_routes", "http_app"]


def all_routes(
    *, pipeline: Pipeline, readiness: Readiness, job_queue: DeploymentHandle | None, settings: AppSettings | None = None
) -> list[BaseRoute]:
    """Every route of the app: the /v1 API, the job API (403 without a `job_queue`: the job API
    is off), and the OpenAPI document of both; live
    transcription (/v1/realtime, with `settings`' limits) and the try-it page at /."""
    document = openapi_document()
    realtime = RealtimeRoutes(decoder=ServiceDecoder(pipeline), settings=settings or AppSettings(), readiness=readiness)
    return [
        *V1Routes(pipeline=pipeline, readiness=readiness).routes(),
        *ModelRoutes(model_store=pipeline.model_store).routes(),
        *JobRoutes(job_queue=job_queue).routes(),
        Route("/openapi.json", lambda request: JSONResponse(document), methods=["GET"]),
        *realtime.routes(),
        *page_routes(),
    ]


def http_app(settings: AppSettings, routes: list[BaseRoute], *, metrics: Recorder = NO_METRICS) -> ASGIApp:
    """The routes behind the edge's checks, outermost first: the /api/v1 alias of /v1, the
    requests counted in `metrics`, CORS, the net for our bugs, the origin of changes, API keys,
    and the body's size and pace."""
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
    # Outside every check, so that their refusals are counted too.
    middleware.insert(0, Middleware(RequestMetrics, routes=routes, metrics=metrics))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS)
    # Outermost: every layer sees a request under /api/v1 as the /v1 one it stands for.
    return KeepOurErrorAnswers(ApiAlias(app))


class KeepOurErrorAnswers:
    """The app, without Starlette's `add_exception_handler`: Serve calls it, when present, to put
    plain-text answers of its own in place of our JSON ones for BackPressureError (503)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
