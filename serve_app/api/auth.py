"""API keys: `Authorization: Bearer <key>` on every route but the probes and the schema.

Two kinds of key. An ordinary key transcribes, translates, diarizes and reads the model list;
an admin key can also change the service: download and delete models (POST and DELETE
/v1/models) and use the job API, which reads and writes the shared disk. With no key of
either kind configured the API is open, which the app allows only with `allow_anonymous`.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.api.http import error_response, refuse_websocket

__all__ = ["ADMIN_KEYS_ENV", "API_KEYS_ENV", "OPEN_PATHS", "PAGE_PATHS", "ApiKeys", "Keys", "load_keys", "needs_admin"]

API_KEYS_ENV = "WHISPER_SERVE_API_KEYS"
ADMIN_KEYS_ENV = "WHISPER_SERVE_ADMIN_KEYS"
OPEN_PATHS = frozenset({"/v1/ping", "/v1/health", "/openapi.json"})
PAGE_PATHS = frozenset({"/", "/ui/app.js", "/ui/app.css", "/ui/pcm-worklet.js"})
"""The try-it page's static files (serve_app/api/page.py): open to GET and HEAD only; the API
calls the page makes send the key its user types."""
KEY_SUBPROTOCOL = "openai-insecure-api-key."
"""Browsers cannot set headers on a WebSocket: the page (as OpenAI's) offers the key as a
subprotocol, `openai-insecure-api-key.<key>`, which the server never echoes back."""
JOB_API_PATHS = ("/transcription/", "/stats", "/smi")


def _read_keys(env: str, keys_file: Path | None) -> tuple[str, ...]:
    keys = [key.strip() for key in os.environ.get(env, "").split(",")]
    if keys_file is not None:
        keys += [line.split("#", 1)[0].strip() for line in keys_file.read_text().splitlines()]
    return tuple(key for key in keys if key)


@dataclass(frozen=True, slots=True)
class Keys:
    ordinary: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.ordinary or self.admin)


def load_keys(api_keys_file: Path | None = None, admin_api_keys_file: Path | None = None) -> Keys:
    """The keys of the environment (WHISPER_SERVE_API_KEYS, WHISPER_SERVE_ADMIN_KEYS,
    comma-separated) and of the key files (one a line, `#` comments)."""
    return Keys(ordinary=_read_keys(API_KEYS_ENV, api_keys_file), admin=_read_keys(ADMIN_KEYS_ENV, admin_api_keys_file))


def needs_admin(method: str, path: str) -> bool:
    """Whether a request changes the service or reaches the shared disk: model downloads and
    deletes, and every route of the job API."""
    if path == "/v1/models" and method == "POST":
        return True
    if path.startswith("/v1/models/") and method == "DELETE":
        return True
    return path.startswith(JOB_API_PATHS)


def _matches(token: bytes, keys: tuple[bytes, ...]) -> bool:
    # Every key is compared, so the time taken says nothing about which one was close.
    return sum(hmac.compare_digest(token, key) for key in keys) > 0


class ApiKeys:
    """Answers 401 to a request without a known key, and 403 to an ordinary key on a route that
    needs an admin key; each key is compared in constant time."""

    def __init__(self, app: ASGIApp, *, keys: Keys) -> None:
        self.app = app
        self.ordinary = tuple(key.encode() for key in keys.ordinary)
        self.admin = tuple(key.encode() for key in keys.admin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await refuse_websocket(scope, receive, send, refusal)
        else:
            await refusal(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        if scope["type"] not in ("http", "websocket") or not (self.ordinary or self.admin):
            return None
        method = scope.get("method", "GET")  # a WebSocket's opening handshake is a GET
        if method == "OPTIONS":
            return None
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if path in OPEN_PATHS or (path in PAGE_PATHS and method in ("GET", "HEAD") and scope["type"] == "http"):
            return None
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scope["type"] == "websocket" and not header:
            token = _subprotocol_key(headers.get(b"sec-websocket-protocol", b""))
            scheme = b"bearer" if token else b""
        is_admin = scheme.lower() == b"bearer" and _matches(token, self.admin)
        if is_admin:
            return None
        if scheme.lower() != b"bearer" or not _matches(token, self.ordinary):
            return error_response(
                401, "an API key is required: send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
            )
        if needs_admin(method, path):
            return error_response(
                403,
                f"{method} {path} needs an admin key (admin_api_keys_file or {ADMIN_KEYS_ENV}); this key may only transcribe",
            )
        return None


def _subprotocol_key(header: bytes) -> bytes:
    for protocol in header.split(b","):
        protocol = protocol.strip()
        if protocol.startswith(KEY_SUBPROTOCOL.encode()):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return b""
