"""The HTTP edge: error responses for every exception, and the request body limit."""

from __future__ import annotations

import logging

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge, ServiceError, Unavailable, error_body

__all__ = ["EXCEPTION_HANDLERS", "BodyLimit", "CatchAll", "as_service_error", "error_response"]

logger = logging.getLogger("ray.serve")


def error_response(status: int, reason: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, reason), status_code=status, headers=headers)


def as_service_error(exc: Exception) -> ServiceError | None:
    """The ServiceError behind an exception that crossed a deployment handle, if any."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, (ServiceError, BackPressureError)):
        exc = exc.cause
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, BackPressureError):
        return Unavailable("the service is at capacity: every replica's queue is full; send the request again shortly")
    if isinstance(exc, RayActorError):
        return Unavailable("a replica died while working on this request; send it again")
    return None


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
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            response = await _service_error(Request(scope), exc)
            await response(scope, receive, send)


class BodyLimit:
    """Refuses a body over `max_bytes` with 413: at once when Content-Length says so, else as
    soon as the bytes received pass the limit, so an oversized upload is never read whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, counted, send)
