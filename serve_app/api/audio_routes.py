"""The /v1 routes: thin handlers that parse, call the pipeline, and render."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from serve_app.api import openai_events
from serve_app.api.options import RequestOptions, parse_request_options
from serve_app.api.readiness import Readiness
from serve_app.api.sse import PING_SECONDS, error_event, ping_event, transcript_events
from serve_app.errors import BadRequest, Unavailable, as_service_error
from serve_app.formats import RESPONSE_FORMATS, render
from serve_app.options import Task
from serve_app.pipeline import Pipeline
from serve_app.transcript import Segment, Transcript, TranscriptInfo

__all__ = ["NEEDS", "V1Routes"]

MAX_FORM_FIELDS = 100
EVERY_WORKER = ("ModelStore", "Transcriber", "Diarizer")
NEEDS: dict[str, tuple[str, ...]] = {
    "transcribe": ("ModelStore", "Transcriber"),
    "translate": ("ModelStore", "Transcriber"),
    "diarize": EVERY_WORKER,
}
"""The deployments each task needs running: requests fail fast with 503 while one has none."""
logger = logging.getLogger("ray.serve")


def wants_stream(request: Request) -> bool:
    return request.query_params.get("stream", "").lower() in ("1", "true", "yes") or "text/event-stream" in request.headers.get(
        "accept", ""
    )


def _render(transcript: Transcript, options: RequestOptions) -> Response:
    body = render(transcript, options.response_format, words=options.decode.word_timestamps)
    if isinstance(body, dict):
        return JSONResponse(body)
    return PlainTextResponse(body, media_type=RESPONSE_FORMATS[options.response_format].media_type)


async def _sse(events: AsyncGenerator[TranscriptInfo | Segment, None], options: RequestOptions) -> AsyncIterator[ServerSentEvent]:
    """The stream's events; a failure after the stream began ends it with an `error` event."""
    try:
        async for event in transcript_events(
            events, options.response_format, task=options.task, words=options.decode.word_timestamps
        ):
            yield event
    except Exception as exc:
        error = as_service_error(exc)
        if error is None:
            logger.exception("transcription stream failed", exc_info=exc)
        yield error_event(error.reason if error else f"internal error ({type(exc).__name__})")
    finally:
        await events.aclose()


async def _openai_sse(events: AsyncGenerator[TranscriptInfo | Segment], *, segments: bool) -> AsyncIterator[ServerSentEvent]:
    """OpenAI's events (api/openai_events.py); a failure after the stream began ends it with
    an `error` event, which the SDK raises."""
    try:
        async for event in openai_events.openai_events(events, segments=segments):
            yield event
    except Exception as exc:
        error = as_service_error(exc)
        if error is None:
            logger.exception("transcription stream failed", exc_info=exc)
            yield openai_events.error_event(f"internal error ({type(exc).__name__})")
        else:
            yield openai_events.error_event(error.reason, status=error.status)
    finally:
        await events.aclose()


class V1Routes:
    def __init__(self, *, pipeline: Pipeline, readiness: Readiness) -> None:
        self.pipeline = pipeline
        self.readiness = readiness

    def routes(self) -> list[Route]:
        return [
            Route("/v1/ping", self.health, methods=["GET"]),
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
            Route("/v1/audio/translations", self.translations, methods=["POST"]),
            Route("/v1/audio/diarize", self.diarize, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        await self.readiness.require(EVERY_WORKER)
        if reason := await self.pipeline.missing_default():
            raise Unavailable(reason)
        return JSONResponse({"status": "ok"})

    async def transcriptions(self, request: Request) -> Response:
        return await self._audio(request, "transcribe")

    async def translations(self, request: Request) -> Response:
        return await self._audio(request, "translate")

    async def diarize(self, request: Request) -> Response:
        return await self._audio(request, "diarize")

    async def _audio(self, request: Request, task: Task) -> Response:
        await self.readiness.require(NEEDS[task])
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise BadRequest("send the request as multipart/form-data, with the audio in a field named file")
        async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS) as form:
            options = parse_request_options(form, task=task, stream=wants_stream(request))
            speakers = None
            if options.speakers is not None:
                await self.readiness.require(NEEDS["diarize"])  # diarized_json on a transcription too
                speakers = (await self.pipeline.speaker_model(options.speakers), options.speakers)
            upload = form["file"]
            assert isinstance(upload, UploadFile)  # parse_request_options validated the file part
            prepared = await self.pipeline.prepare(upload.file, options.model, options.decode)
        if options.stream:
            if speakers is None:
                events = self.pipeline.stream(prepared, options.decode)
            else:
                events = self.pipeline.stream_with_speakers(prepared, options.decode, speakers)
            if options.openai_stream:
                # Segment events where the segments carry speakers (the hook of diarized output).
                return EventSourceResponse(
                    _openai_sse(events, segments=speakers is not None),
                    ping=PING_SECONDS,
                    ping_message_factory=openai_events.keepalive,
                    headers={"Cache-Control": "no-cache"},
                )
            return EventSourceResponse(
                _sse(events, options), ping=PING_SECONDS, ping_message_factory=ping_event, headers={"Cache-Control": "no-cache"}
            )
        return _render(await self.pipeline.transcribe(prepared, options.decode, speakers), options)
