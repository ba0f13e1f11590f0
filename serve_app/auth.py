"""Optional API keys: `Authorization: Bearer <key>` on every route but the probes and the schema."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from .http import error_response

__all__ = ["API_KEYS_ENV", "OPEN_PATHS", "ApiKeys", "load_api_keys"]

API_KEYS_ENV = "WHISPER_SERVE_API_KEYS"
OPEN_PATHS = frozenset({"/v1/ping", "/v1/health", "/openapi.json"})


def load_api_keys(keys_file: Path | None) -> tuple[str, ...]:
    """The keys of WHISPER_SERVE_API_KEYS (comma-separated) and of `keys_file` (one a line, `#`
    comments); none: the API is open."""
    keys = [key.strip() for key in os.environ.get(API_KEYS_ENV, "").split(",")]
    if keys_file is not None:
        keys += [line.split("#", 1)[0].strip() for line in keys_file.read_text().splitlines()]
    return tuple(key for key in keys if key)


class ApiKeys:
    """Answers 401 to a request without one of `keys`; each key is compared in constant time."""

    def __init__(self, app: ASGIApp, *, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = tuple(key.encode() for key in keys)

    def _allowed(self, scope: Scope) -> bool:
        if scope["type"] != "http" or not self.keys or scope["method"] == "OPTIONS":
            return True
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if path in OPEN_PATHS:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        # Every key is compared, so the time taken says nothing about which one was close.
        return sum(hmac.compare_digest(token.strip(), key) for key in self.keys) > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "an API key is required: send Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
