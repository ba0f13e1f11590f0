"""One exception tree for everything the service refuses, and one place that maps it to HTTP.

    ServiceError            500  our bug, or a failure with no better status
    ├── BadRequest          400  the request is malformed; the reason says what to fix
    ├── Unauthorized        401  credentials are missing or wrong (ours, or the hub's)
    ├── Forbidden           403  the credentials do not allow it, a path is outside the allowed folders,
    │                            or a model would run code from an untrusted repository
    ├── NotFound            404  a model, job or route that does not exist
    ├── RequestTimeout      408  the client stopped sending its body, or sends it too slowly
    ├── Conflict            409  the thing exists but is in the wrong state
    ├── PayloadTooLarge     413  the body or the media is over a configured limit
    ├── UnsupportedMedia    415  the bytes are not media we can decode
    ├── BadGateway          502  a server we depend on (the model hub) failed or broke off
    ├── Unavailable         503  a deployment the request needs cannot take it now (Retry-After)
    └── GatewayTimeout      504  the work took longer than the configured request timeout

The exceptions pickle by their one argument, so they cross Ray deployment handles intact:
a Transcriber that raises BadRequest makes the Ingress answer 400.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "ServiceError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMedia",
    "as_service_error",
    "error_body",
]


class ServiceError(Exception):
    status: int = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class RequestTimeout(ServiceError):
    status = 408


class Conflict(ServiceError):
    status = 409


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMedia(ServiceError):
    status = 415


class BadGateway(ServiceError):
    status = 502


class Unavailable(ServiceError):
    status = 503
    retry_after_s: int = 5
    """What the Retry-After header of the response says."""


class GatewayTimeout(ServiceError):
    status = 504


def error_body(status: int, reason: str | None = None) -> dict:
    """go-whisper's `{"code", "reason"}`, with OpenAI's `error` object beside it for its SDK."""
    reason = reason or HTTPStatus(status).phrase.lower()
    return {
        "code": status,
        "reason": reason,
        "error": {
            "message": reason,
            "type": "server_error" if status >= 500 else "invalid_request_error",
            "param": None,
            "code": status,
        },
    }


def as_service_error(exc: Exception) -> ServiceError | None:
    """The ServiceError behind an exception that crossed a deployment handle, if any."""
    # Imported here, so that the job and engine cores that raise these errors load without Ray.
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, RayTaskError) and isinstance(exc.cause, (ServiceError, BackPressureError)):
        exc = exc.cause
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, BackPressureError):
        return Unavailable("the service is at capacity: every replica's queue is full; send the request again shortly")
    if isinstance(exc, RayActorError):
        return Unavailable("a replica died while working on this request; send it again")
    return None
