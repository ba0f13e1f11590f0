"""The /v1/models routes: list, get, download (whole or with streamed progress), delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serve_app.api.audio_routes import wants_stream
from serve_app.api.http import parse_json, require_content_type
from serve_app.api.requests import PATH_EXAMPLE, ModelDownload, form_input
from serve_app.api.sse import PING_SECONDS, error_event, ping_event
from serve_app.errors import NotFound, as_service_error
from serve_app.models.catalogue import ModelInfo

__all__ = ["OWNER", "ModelRoutes", "model_json", "owned_by"]

OWNER = "whisper-serve"
"""`owned_by` of the models that came with the service or were copied in by hand."""


MODEL_BODY_TYPES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


async def _model_path(request: Request) -> str:
    """`path` from a JSON, urlencoded or multipart body (ModelDownload)."""
    media_type = require_content_type(
        request, MODEL_BODY_TYPES, f"send JSON such as {PATH_EXAMPLE} with Content-Type: application/json, or a form"
    )
    if media_type != "application/json":
        async with request.form(max_files=0, max_fields=20) as form:
            body = form_input(form, ModelDownload)
    else:
        body = parse_json(await request.body() or b"{}", example=PATH_EXAMPLE)
    return ModelDownload.from_body(body).path


def owned_by(model: ModelInfo) -> str:
    """OpenAI's `owned_by`: the hub organisation a model was downloaded from, else this service."""
    if model.source.startswith("hub:") and "/" in model.source:
        return model.source.removeprefix("hub:").split("/", 1)[0]
    return OWNER


def model_json(model: ModelInfo) -> dict[str, Any]:
    """A model as both APIs show it: go-whisper's fields and OpenAI's (`owned_by`)."""
    return model.to_json() | {"owned_by": owned_by(model)}


def _event(item: dict[str, Any]) -> ServerSentEvent:
    if "progress" in item:
        return ServerSentEvent(event="progress", data=json.dumps(item["progress"]))
    return ServerSentEvent(event="ok", data=json.dumps(model_json(item["model"])))


async def _download_events(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[ServerSentEvent]:
    """`ping`, `progress`..., then `ok` with the model or `error` with the reason."""
    yield ping_event()
    try:
        yield _event(first)
        async for item in rest:
            yield _event(item)
    except Exception as exc:
        error = as_service_error(exc)
        yield error_event(error.reason if error else f"internal error ({type(exc).__name__})")


class ModelRoutes:
    def __init__(self, *, model_store: DeploymentHandle) -> None:
        self.model_store = model_store

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models", self.add_model, methods=["POST"]),
            Route("/v1/models/{id:path}", self.get_model, methods=["GET"]),
            Route("/v1/models/{id:path}", self.delete_model, methods=["DELETE"]),
        ]

    async def list_models(self, request: Request) -> Response:
        """go-whisper's list (`models`) and OpenAI's (`data`), of the same models."""
        models = [model_json(model) for model in await self.model_store.list.remote()]
        return JSONResponse({"object": "list", "models": models, "data": models})

    async def get_model(self, request: Request) -> Response:
        model = await self.model_store.get.remote(request.path_params["id"])
        if model is None:
            raise NotFound("model not found")
        return JSONResponse(model_json(model))

    async def delete_model(self, request: Request) -> Response:
        model = await self.model_store.delete.remote(request.path_params["id"])
        return JSONResponse(model_json(model))

    async def add_model(self, request: Request) -> Response:
        path = await _model_path(request)
        if not wants_stream(request):
            model, created = await self.model_store.add.remote(path)
            return JSONResponse(model_json(model), status_code=201 if created else 200)
        model_store = self.model_store.options(stream=True)
        events = cast("DeploymentResponseGenerator[dict[str, Any]]", model_store.add_streaming.remote(path))
        # The first event is awaited here, so a refusal known at once (a bad path, an unknown
        # repository) is an HTTP status rather than an `error` event.
        first = await events.__anext__()
        return EventSourceResponse(
            _download_events(first, events),
            ping=PING_SECONDS,
            ping_message_factory=ping_event,
            headers={"Cache-Control": "no-cache"},
        )
