"""The callback: the job's JSON POSTed to the URL it named when it ends, COMPLETED or FAILED.

Delivery is bounded: each try has a timeout, a connection error, a timeout, a 429 or a 5xx
is tried again after a wait that doubles (`backoff`, 2x`backoff`, 4x`backoff`...) up to
`tries` in all, and any other answer ends it (2xx: delivered; 3xx or 4xx: the receiver
refused, and asking again would not change its mind). It never raises: a receiver that is
down must not fail a job that succeeded. Redirects are not followed.

The job queue sends them outside the jobs' slots: a job that ends leaves a pending callback in
the store (store.py), and the scheduler's delivery loop makes each try with `deliver_pending`,
which records its outcome there (the next try's time, or the end), so that a slow or dead
receiver never holds a Transcriber, and tries still due survive a restart. `send_callback`
makes the whole bounded delivery at once, blocking, for callers without a store.

Signature: with a secret configured, every POST carries

    X-Whisper-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the secret>

A receiver computes the same HMAC over the raw body it read (before parsing the JSON) and
compares the two in constant time, as `verify_signature` does; a body that was altered, or
sent by someone without the secret, does not match. The body holds the job's `id`, `status`
and `finished_at`, so a receiver can also drop a repeated delivery of the same ending.

Where it may go (targets.py): to public addresses only, or, when the operator names hosts
in `callback_hosts`, to those hosts only. What the URL shows is refused at submission
(check_callback); an address the name resolves to is refused when sending, before anything
is sent, and the reason is recorded on the job (`deliver_pending`, the job's `callback_error`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import httpx

from serve_app.errors import Forbidden
from serve_app.jobs.job import Job, callback_body
from serve_app.jobs.store import JobStore, PendingCallback
from serve_app.jobs.targets import Resolver, callback_client, check_callback
from serve_app.metrics import CALLBACKS, NO_METRICS, Recorder

__all__ = [
    "SIGNATURE_HEADER",
    "Attempt",
    "CallbackSettings",
    "Delivery",
    "backoff",
    "callback_body",
    "check_callback",
    "deliver_pending",
    "post_callback",
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


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one POST went: delivered, or why not, and whether asking again could change that."""

    delivered: bool
    status: int | None = None
    reason: str = ""
    final: bool = False
    """The receiver refused (3xx, 4xx but 429) or may not be called: no further try."""


def sign(body: bytes, secret: str) -> str:
    """The value of the signature header for `body`: `sha256=<hex digest>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """What a receiver runs: whether `header` is the signature of exactly `body` under `secret`."""
    return header is not None and hmac.compare_digest(sign(body, secret), header.strip())


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def backoff(settings: CallbackSettings, tries: int) -> float:
    """Seconds to wait after the `tries`-th try failed: `backoff`, doubling, at most `max_backoff`."""
    return min(settings.max_backoff, settings.backoff * 2 ** (tries - 1))


def _headers(body: bytes, settings: CallbackSettings) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "whisper-serve"}
    if settings.secret:
        headers[SIGNATURE_HEADER] = sign(body, settings.secret)
    return headers


def _post(http: httpx.Client, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    try:
        response = http.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        return Attempt(delivered=False, reason=f"{type(exc).__name__}: {exc}")
    except Forbidden as exc:  # where the host resolves: asking again would not change it
        return Attempt(delivered=False, reason=exc.reason, final=True)
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(delivered=True, status=status)
    return Attempt(delivered=False, status=status, reason=f"the receiver answered {status}", final=not _retryable(status))


def post_callback(url: str, body: bytes, settings: CallbackSettings, *, resolve: Resolver | None = None) -> Attempt:
    """One try: POST `body` (signed, with a secret) to `url`, if `url` may be called. Blocking:
    from async code, run it in a thread. Never raises."""
    try:
        check_callback(url, settings.allowed_hosts)
    except Exception as exc:  # callback_hosts changed since the job was submitted
        return Attempt(delivered=False, reason=str(exc), final=True)
    try:
        with callback_client(settings.allowed_hosts, timeout=settings.timeout, resolve=resolve) as http:
            return _post(http, url, body, _headers(body, settings), settings.timeout)
    except Exception as exc:  # anything else is our bug, but it must not fail the job
        logger.exception("callback to %s broke off", url)
        return Attempt(delivered=False, reason=f"{type(exc).__name__}: {exc}", final=True)


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
    headers = _headers(body, settings)
    http = callback_client(settings.allowed_hosts, timeout=settings.timeout, resolve=resolve)
    attempt = Attempt(delivered=False)
    tries = 0
    try:
        for tries in range(1, max(1, settings.tries) + 1):
            if tries > 1:
                sleep(backoff(settings, tries - 1))
            attempt = _post(http, job.callback, body, headers, settings.timeout)
            if attempt.delivered:
                return Delivery(delivered=True, tries=tries, status=attempt.status)
            if attempt.final:
                break
    except Exception as exc:  # anything else is our bug, but it must not fail the job
        attempt = Attempt(delivered=False, reason=f"{type(exc).__name__}: {exc}")
        logger.exception("job %s: callback to %s broke off", job.id, job.callback)
    finally:
        http.close()
    logger.warning("job %s: callback to %s not delivered after %d tries: %s", job.id, job.callback, tries, attempt.reason)
    return Delivery(delivered=False, tries=tries, status=attempt.status, reason=attempt.reason)


def deliver_pending(
    pending: PendingCallback,
    settings: CallbackSettings,
    store: JobStore,
    *,
    post: Callable[..., Attempt] = post_callback,
    resolve: Resolver | None = None,
    metrics: Recorder = NO_METRICS,
) -> Attempt:
    """Make the next try of a pending callback and record it in `store` (callback_tried): over
    when delivered, refused, or the `tries` are spent (the job's `callback_error` says why),
    else due again after `backoff`. Tries already made count against `settings.tries` as it is
    now. `post` stands in for post_callback. Each try's outcome (delivered, retrying,
    undelivered) goes to `metrics`. Blocking; never raises but for the store's errors (the try
    stays pending, and is taken again once its hold lapses)."""
    attempt = post(pending.url, pending.body, settings, resolve=resolve)
    tries = pending.tries + 1
    if not attempt.delivered and not attempt.final and tries < settings.tries:
        logger.info("job %s: callback try %d failed (%s); trying again", pending.job_id, tries, attempt.reason)
        metrics.record(CALLBACKS, 1, {"outcome": "retrying"})
        store.callback_tried(pending.job_id, error=attempt.reason, retry_in=backoff(settings, tries))
        return attempt
    if not attempt.delivered:
        logger.warning(
            "job %s: callback to %s not delivered after %d tries: %s", pending.job_id, pending.url, tries, attempt.reason
        )
    metrics.record(CALLBACKS, 1, {"outcome": "delivered" if attempt.delivered else "undelivered"})
    store.callback_tried(pending.job_id, error="" if attempt.delivered else attempt.reason)
    return attempt
