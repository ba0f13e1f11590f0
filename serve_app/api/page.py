"""The try-it page at `/`: static HTML, JavaScript and CSS served from the package (no build
step, nothing fetched from elsewhere). It records the microphone into a live transcription
session (/v1/realtime), transcribes dropped files with their speakers (/v1/audio/diarize), and
lists the models; every API call sends the key its user types (kept in sessionStorage)."""

from __future__ import annotations

import html
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["page_routes"]

FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
    "/ui/pcm-worklet.js": ("pcm-worklet.js", "text/javascript; charset=utf-8"),
}
SECURITY_HEADERS = {
    # Only the page's own files run; its API calls and WebSocket go to this origin only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "connect-src 'self' ws: wss:; worker-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page_routes() -> list[Route]:
    routes = []
    for path, (name, media_type) in FILES.items():
        body = files("serve_app.api").joinpath("static", name).read_bytes()

        def serve(request: Request, body: bytes = body, media_type: str = media_type) -> Response:
            if body.startswith(b"<!doctype html>"):
                # The page's own links, under the route prefix the app is served at.
                base = html.escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
                return Response(body.replace(b"{{base}}", base.encode()), media_type=media_type, headers=SECURITY_HEADERS)
            return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

        routes.append(Route(path, serve, methods=["GET", "HEAD"]))
    return routes
