"""The HTTP edge: error responses for every exception, the limits on request bodies (size,
pace, content type, JSON depth), and the refusal of changes from other sites' pages."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError
from ray.serve.exceptions import BackPressureError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unavailable,
    UnsupportedMedia,
    as_service_error,
    error_body,
)

__all__ = [
    "API_ALIAS",
    "EXCEPTION_HANDLERS",
    "MAX_JSON_DEPTH",
    "ApiAlias",
    "BodyGuard",
    "CatchAll",
    "OriginCheck",
    "error_response",
    "parse_json",
    "refuse_websocket",
    "require_content_type",
]

logger = logging.getLogger("ray.serve")

MAX_JSON_DEPTH = 32
"""Nesting the JSON bodies of this API never need; deeper ones are refused before they reach
a deployment handle (whose pickling recurses as deep)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def error_response(status: int, reason: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, reason), status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    error = as_service_error(exc)
    if error is None:
        logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); this is a bug of the service")
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, Unavailable) else None
    return error_response(error.status, error.reason, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    reason = exc.detail
    if exc.status_code == 404 and reason == "Not Found":
        reason = f"nothing is served at {request.url.path}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        reason = f"{request.method} is not allowed on {request.url.path}; use {allowed}"
    return error_response(exc.status_code, reason, headers=exc.headers)


# Keyed by class, so that Starlette's ExceptionMiddleware answers them; an `Exception` handler
# would answer and then re-raise, and Serve would answer the client a second time.
EXCEPTION_HANDLERS = {
    HTTPException: _http_error,
    ServiceError: _service_error,
    RayTaskError: _service_error,
    RayActorError: _service_error,
    BackPressureError: _service_error,
}


class CatchAll:
    """The last net: any other exception is our bug, answered as JSON 500 and logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except (ClientDisconnect, TaskCancelledError):  # the latter: Serve's answer to a client gone mid-body
            logger.info("%s %s: the client went away before its request was read whole", scope.get("method"), scope.get("path"))
        except asyncio.CancelledError:  # Serve cancels the request's task when its client disconnects first
            logger.info("%s %s: cancelled, the client went away before it was answered", scope.get("method"), scope.get("path"))
            raise
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            response = await _service_error(Request(scope), exc)
            await response(scope, receive, send)


class BodyGuard:
    """Limits on the request body, so that no upload holds the Ingress longer than it must:

    - over `max_bytes`: 413, at once when Content-Length says so, else as soon as the bytes
      received pass the limit, so an oversized upload is never read whole;
    - no byte for `idle_timeout_s`, or, once that long has passed, an average pace under
      `min_bytes_per_s`: 408, so that a stalled or trickling client lets go of its slot.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, idle_timeout_s: float, min_bytes_per_s: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.min_bytes_per_s = min_bytes_per_s

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes; send a smaller file")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = self._too_large()
            await error_response(error.status, error.reason, headers={"Connection": "close"})(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        received, started, body_done = 0, None, False

        async def guarded() -> Message:
            nonlocal received, started, body_done
            if body_done:  # after the body, receive only waits for a disconnect: no deadline
                return await receive()
            started = started if started is not None else loop.time()
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the upload sent nothing for {self.idle_timeout_s:g} s (upload_idle_timeout_s); send the body without pauses"
                ) from None
            received += len(message.get("body", b""))
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if received > self.max_bytes:
                raise self._too_large()
            elapsed = loop.time() - started
            if not body_done and elapsed > self.idle_timeout_s and received < self.min_bytes_per_s * elapsed:
                raise RequestTimeout(
                    f"the upload arrives at {received / elapsed:.0f} bytes/s, slower than the {self.min_bytes_per_s} bytes/s "
                    "the service waits for (upload_min_bytes_per_s); send it over a faster connection"
                )
            return message

        await self.app(scope, guarded, send)


async def refuse_websocket(scope: Scope, receive: Receive, send: Send, response: JSONResponse) -> None:
    """Refuse a WebSocket's opening handshake: with the HTTP answer itself where the server
    can send one (ASGI's websocket.http.response extension), else by closing before accepting,
    which servers answer with 403."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": response.status_code, "headers": response.raw_headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": ""})


def require_content_type(request: Request, allowed: Collection[str], hint: str) -> str:
    """The request's media type, if among `allowed`; else 415 with `hint` (what to send).

    Routes that change something take only the types they document: a text/plain POST, which
    a web page may send to any site without asking first, is never read as JSON."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in allowed:
        raise UnsupportedMedia(f"Content-Type {media_type or '(none)'} is not accepted here; {hint}")
    return media_type


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        level.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_json(raw: bytes, *, example: str) -> Any:
    """The JSON value of a request body, or 400 saying what to send (`example`)."""
    too_deep = BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels; send {example}")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON ({error}); send {example}") from None
    except RecursionError:
        raise too_deep from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value


class OriginCheck:
    """Refuses, with 403, a request that changes something (any method but GET, HEAD, OPTIONS)
    sent by a web page of another origin than the service's own or those of `cors_origins`.

    Browsers send Origin on such requests, and may send forms to any site without asking
    first: without this, a page a user visits could use the service in their name. The same
    holds for a WebSocket's opening handshake (GET /v1/realtime), which any page may start:
    one from a foreign page is refused before the session opens."""

    def __init__(self, app: ASGIApp, *, allowed: Collection[str]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed)

    def _foreign(self, scope: Scope) -> str | None:
        # A WebSocket's handshake is a GET, but what it opens changes things: a session.
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            return None
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or origin in self.allowed:
            return None
        _scheme, _, host = origin.partition("://")
        if host and host == headers.get("host"):
            return None
        return origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = self._foreign(scope)
        if origin is None:
            await self.app(scope, receive, send)
            return
        reason = (
            f"requests from web pages at {origin} may not change anything here; an operator can allow the origin in cors_origins"
        )
        if scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send, error_response(403, reason))
            return
        await error_response(403, reason)(scope, receive, send)


API_ALIAS = "/api"
"""go-whisper's server and client put the API under /api/v1: every /v1 path answers there too."""


class ApiAlias:
    """Every `/v1/...` path also answers as `/api/v1/...`, go-whisper's default base.

    The prefix moves from the path into the scope's `root_path`, as a Starlette Mount would do:
    what the app reads as the path (the routes, the API keys' open paths and admin paths, every
    check of the edge) is `/v1/...` whichever way it was asked, so that no check can be passed
    by the other name, while the request's URL stays the one the client sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            root_path = scope.get("root_path", "")
            if scope["path"].startswith(f"{root_path}{API_ALIAS}/v1/"):
                scope = {**scope, "root_path": root_path + API_ALIAS}
        await self.app(scope, receive, send)
