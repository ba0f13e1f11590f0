"""A real HTTP callback receiver on 127.0.0.1, for the job API's callbacks."""

from __future__ import annotations

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
    out), or holds it until the test ends when the status is None."""

    statuses: list[int | None] = field(default_factory=list)
    received: list[Delivered] = field(default_factory=list)
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
        handler.send_header("Content-Length", "0")
        handler.end_headers()


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.answer(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that gave up on a held request

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/job"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join()
