"""Every request the app answers, counted by its route's template, method and status.

The route is the template the request matched (`/transcription/job/{id}`), never the path it
was sent to, and `unmatched` for a path no route serves, so the counter's series stay as few
as the routes: a client cannot make new ones by asking for new paths. Methods outside
HTTP's own are counted as `other`, for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.metrics import HTTP_REQUESTS, Recorder

__all__ = ["CLIENT_GONE", "RequestMetrics", "route_template"]

CLIENT_GONE = "499"
"""The status counted for a request whose client went away before it was answered (nginx's)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route that serves `scope` (the first full match, else the
    first partial one, as Starlette's router chooses), or `unmatched`."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", UNMATCHED)
        if match is Match.PARTIAL and partial is None:
            partial = route
    return getattr(partial, "path", UNMATCHED) if partial is not None else UNMATCHED


class RequestMetrics:
    """Counts each HTTP request once it has ended, and each WebSocket session once it has
    closed (101 when it opened, else the status its handshake was refused with)."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], metrics: Recorder) -> None:
        self.app = app
        self.routes = routes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        route = route_template(self.routes, scope)
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        status = CLIENT_GONE

        async def counted(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = str(message["status"])
            elif kind == "websocket.accept":
                status = "101"
            elif kind == "websocket.close" and status == CLIENT_GONE:
                status = "403"  # closed before it opened: servers answer the handshake with 403
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            if status == CLIENT_GONE and scope["type"] == "http":
                status = "500"  # an error nobody answered: the server answers 500 for it
            raise
        finally:
            self.metrics.record(
                HTTP_REQUESTS, 1, {"route": route, "method": method if method in METHODS else "other", "status": status}
            )
