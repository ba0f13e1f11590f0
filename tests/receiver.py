"""A real HTTP(S) callback receiver on a loopback address, for the job API's callbacks."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivered:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A callback receiver: answers each POST with the next of `statuses` (200 once they run
    out), or holds it until the test ends when the status is None; with a `location`, that
    answer names it in a Location header. `connections`: the TCP connections it accepted."""

    statuses: list[int | None] = field(default_factory=list)
    location: str = ""
    received: list[Delivered] = field(default_factory=list)
    connections: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        self.received.append(Delivered(handler.path, dict(handler.headers), body))
        status = self.statuses.pop(0) if self.statuses else 200
        if status is None:
            self.release.wait(10)
            return
        handler.send_response(status)
        if self.location:
            handler.send_header("Location", self.location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


@contextmanager
def running_receiver(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A receiver listening on `host` (a loopback address), speaking HTTPS with `tls`."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def verify_request(self, request: object, client_address: object) -> bool:
            state.connections += 1
            return True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that gave up on a held request

    server = Server((host, 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    state.url = f"{'https' if tls else 'http'}://{shown}:{server.server_address[1]}/hooks/job"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join()
