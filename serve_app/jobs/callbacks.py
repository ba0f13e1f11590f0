"""The callback: the job's JSON POSTed to the URL it named when it ends, COMPLETED or FAILED.

Delivery is bounded: each try has a timeout, a connection error, a timeout, a 429 or a 5xx
is tried again after a wait that doubles (`backoff`, 2x`backoff`, 4x`backoff`...) up to
`tries` in all, and any other answer ends it (2xx: delivered; 3xx or 4xx: the receiver
refused, and asking again would not change its mind). It never raises: a receiver that is
down must not fail a job that succeeded. Redirects are not followed.

Signature: with a secret configured, every POST carries

    X-Whisper-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the secret>

A receiver computes the same HMAC over the raw body it read (before parsing the JSON) and
compares the two in constant time, as `verify_signature` does; a body that was altered, or
sent by someone without the secret, does not match. The body holds the job's `id`, `status`
and `finished_at`, so a receiver can also drop a repeated delivery of the same ending.

Where it may go (targets.py): to public addresses only, or, when the operator names hosts
in `callback_hosts`, to those hosts only. What the URL shows is refused at submission
(check_callback); an address the name resolves to is refused when sending, before anything
is sent, and the reason is recorded on the job (`call_back`, the job's `callback_error`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx

from serve_app.errors import Forbidden
from serve_app.jobs.job import Job
from serve_app.jobs.store import JobStore
from serve_app.jobs.targets import Resolver, callback_client, check_callback

__all__ = [
    "SIGNATURE_HEADER",
    "CallbackSettings",
    "Delivery",
    "call_back",
    "callback_body",
    "check_callback",
    "send_callback",
    "sign",
    "verify_signature",
]

logger = logging.getLogger("ray.serve")

SIGNATURE_HEADER = "X-Whisper-Signature"


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    secret: str | None = None
    """Key of the HMAC-SHA256 signature header; None: callbacks are not signed."""

    allowed_hosts: Collection[str] | None = None
    """The only hosts callbacks may go to, wherever they resolve (names compared without case,
    port aside, or literal addresses); None: any host whose addresses are all public."""

    timeout: float = 10.0
    """Seconds each try may take to connect, send and be answered."""

    tries: int = 5
    """Tries in all, the first one included."""

    backoff: float = 1.0
    """Seconds before the second try; each later wait doubles, up to `max_backoff`."""

    max_backoff: float = 60.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a callback went: whether the receiver took it, after how many tries, its last
    HTTP status (None when it never answered), and why it was not delivered."""

    delivered: bool
    tries: int
    status: int | None = None
    reason: str = ""


def callback_body(job: Job) -> bytes:
    """The bytes POSTed, and signed: the job's JSON, compact, in UTF-8."""
    return json.dumps(job.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The value of the signature header for `body`: `sha256=<hex digest>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """What a receiver runs: whether `header` is the signature of exactly `body` under `secret`."""
    return header is not None and hmac.compare_digest(sign(body, secret), header.strip())


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def send_callback(
    job: Job,
    settings: CallbackSettings,
    *,
    resolve: Resolver | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST the job's JSON to its callback, trying again as the module docstring says;
    `resolve` stands in for socket.getaddrinfo (see targets.PublicOnlyBackend).

    Blocking (it waits between tries): from async code, run it in a thread. Never raises.
    """
    if not job.callback:
        return Delivery(delivered=False, tries=0, reason="the job has no callback")
    try:
        check_callback(job.callback, settings.allowed_hosts)
    except Exception as exc:  # callback_hosts changed since the job was submitted
        logger.warning("job %s: callback not sent: %s", job.id, exc)
        return Delivery(delivered=False, tries=0, reason=str(exc))

    body = callback_body(job)
    headers = {"Content-Type": "application/json", "User-Agent": "whisper-serve"}
    if settings.secret:
        headers[SIGNATURE_HEADER] = sign(body, settings.secret)

    http = callback_client(settings.allowed_hosts, timeout=settings.timeout, resolve=resolve)
    status: int | None = None
    reason = ""
    tries = 0
    try:
        for tries in range(1, max(1, settings.tries) + 1):
            if tries > 1:
                sleep(min(settings.max_backoff, settings.backoff * 2 ** (tries - 2)))
            try:
                response = http.post(job.callback, content=body, headers=headers, timeout=settings.timeout)
            except httpx.TransportError as exc:
                status, reason = None, f"{type(exc).__name__}: {exc}"
                continue
            except Forbidden as exc:  # where the host resolves: asking again would not change it
                status, reason = None, exc.reason
                break
            status = response.status_code
            if 200 <= status < 300:
                return Delivery(delivered=True, tries=tries, status=status)
            reason = f"the receiver answered {status}"
            if not _retryable(status):
                break
    except Exception as exc:  # anything else is our bug, but it must not fail the job
        reason = f"{type(exc).__name__}: {exc}"
        logger.exception("job %s: callback to %s broke off", job.id, job.callback)
    finally:
        http.close()
    logger.warning("job %s: callback to %s not delivered after %d tries: %s", job.id, job.callback, tries, reason)
    return Delivery(delivered=False, tries=tries, status=status, reason=reason)


def call_back(job: Job, settings: CallbackSettings, store: JobStore, **send: Any) -> Delivery:
    """send_callback, then its outcome on the job in `store`: `callback_error` holds why it
    was not delivered, and is emptied when it was. `send`: send_callback's keywords."""
    delivery = send_callback(job, settings, **send)
    store.record_callback(job.id, "" if delivery.delivered else delivery.reason)
    return delivery
