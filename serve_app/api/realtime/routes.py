"""`/v1/realtime` on the Ingress: the WebSocket a session runs over, who may open one, and the
Decoder that sends its audio through the service's Transcriber."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from serve_app.api.realtime.protocol import KEY_SUBPROTOCOL, POLICY_CLOSE, SUBPROTOCOL, TRY_AGAIN_LATER, Closing, new_id
from serve_app.api.realtime.session import Decoder, Limits, RealtimeSession
from serve_app.errors import as_service_error
from serve_app.options import DecodeOptions
from serve_app.settings import AppSettings

__all__ = ["RealtimeRoutes", "ServiceDecoder", "offered_key"]

logger = logging.getLogger("ray.serve")


def offered_key(websocket_protocols: list[str]) -> str | None:
    """The API key a browser sends as a subprotocol, `openai-insecure-api-key.<key>`."""
    for protocol in websocket_protocols:
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


class ServiceDecoder:
    """The service's Decoder: models from the ModelStore, decodes through the Transcriber."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    async def resolve(self, name: str, options: DecodeOptions) -> Any:
        from serve_app.pipeline import check_model_fits

        model = await self.pipeline.model(name)
        check_model_fits(model, options)
        return model

    async def transcribe(self, audio: np.ndarray, model: Any, options: DecodeOptions) -> str:
        transcriber = self.pipeline.transcriber.options(multiplexed_model_id=model.version)
        response = transcriber.transcribe.remote(audio, options)
        try:
            async with asyncio.timeout(self.pipeline.timeout_s):
                transcript = await response
        except BaseException:
            response.cancel()
            raise
        return transcript.text


class RealtimeRoutes:
    """`/v1/realtime`: the WebSocket of live transcription sessions, at most
    `realtime_max_sessions` at once on each Ingress replica."""

    def __init__(self, *, decoder: Decoder, settings: AppSettings, readiness: Any = None) -> None:
        self.decoder = decoder
        self.limits = Limits.from_settings(settings)
        self.max_sessions = settings.realtime_max_sessions
        self.readiness = readiness
        self.sessions = 0

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/v1/realtime", self.realtime)]

    async def realtime(self, websocket: WebSocket) -> None:
        offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        refusal, resolved = await self._admit(websocket)
        if refusal is not None:
            message, code, close = refusal
            event = {
                "event_id": new_id("event"),
                "type": "error",
                "error": {"type": "invalid_request_error", "code": code, "message": message, "param": None, "event_id": None},
            }
            await websocket.send_text(json.dumps(event))
            await websocket.close(close, message[:120])
            return
        query_model = websocket.query_params.get("model")
        session = RealtimeSession(self.decoder, self.limits, model=query_model or "whisper-1", resolved=resolved)
        self.sessions += 1
        try:
            closing = await session.run(lambda: _receive(websocket), websocket.send_text)
        except Exception:
            logger.exception("live session %s failed", session.id)
            closing = Closing(1011, "internal error; this is a bug of the service")
        finally:
            self.sessions -= 1
        try:
            await websocket.close(closing.code, closing.reason)
        except (RuntimeError, OSError, WebSocketDisconnect):
            pass

    async def _admit(self, websocket: WebSocket) -> tuple[tuple[str, str, int] | None, Any]:
        """Why the session cannot open (message, error code, close code), or the model it starts with."""
        intent = websocket.query_params.get("intent")
        if intent != "transcription":
            message = "this service holds transcription sessions only: connect to /v1/realtime?intent=transcription"
            return (message, "invalid_intent", POLICY_CLOSE), None
        if self.sessions >= self.max_sessions:
            message = f"the service holds its most live sessions ({self.max_sessions}, realtime_max_sessions); try again shortly"
            return (message, "too_many_sessions", TRY_AGAIN_LATER), None
        try:
            if self.readiness is not None:
                from serve_app.api.audio_routes import NEEDS

                await self.readiness.require(NEEDS["transcribe"])
            resolved = await self.decoder.resolve(websocket.query_params.get("model") or "whisper-1", DecodeOptions())
        except Exception as failure:
            error = as_service_error(failure)
            if error is None:
                raise
            code = "model_not_found" if error.status == 404 else "invalid_value" if error.status < 500 else "service_unavailable"
            return (error.reason, code, POLICY_CLOSE if error.status < 500 else TRY_AGAIN_LATER), None
        return None, resolved


async def _receive(websocket: WebSocket) -> str | bytes | None:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    if message.get("text") is not None:
        return message["text"]
    return message.get("bytes") or b""
