"""The HTTP requests of go-whisper's Go client (mutablelogic/go-whisper pkg/client, on
mutablelogic/go-client v1.0.9, as of go-whisper f225712), written out as httpx request
arguments so that tests can replay them byte for byte where it matters. Read from its source;
none of its code is copied:

- the base URL is go-whisper's default, `http://host:port/api/v1`; each call appends a path;
- every request carries `Accept` (`*/*`, or `multipart/form-data` for the audio calls: the
  client passes the form's type where the accepted type goes) and Go's `User-Agent`;
- `Content-Type: application/json` is sent even on GET and DELETE, which have no body (the
  client sets it whenever it is given a payload object, and GET and DELETE are ones);
- bodies are sent chunked (no Content-Length): the payload is a reader of unknown length;
- a model download is JSON `{"path": ...}` with a trailing newline (Go's json.Encoder), with
  `?stream=true` when a progress callback is given, read as `progress`/`ok`/`error` events;
- a transcription or translation is multipart/form-data in Go's field order: `file` (its
  base name, application/octet-stream; "." when the reader is not a file), `model`, then
  `language`, `segment_size` (a Go duration such as `5m0s`) and `response_format`, each
  left out when empty.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

BASE = "/api/v1"
USER_AGENT = "Go-http-client/1.1"


def _headers(accept: str = "*/*", content_type: str = "application/json") -> dict[str, str]:
    return {"Accept": accept, "Content-Type": content_type, "User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}


def _chunked(body: bytes) -> Iterator[bytes]:
    """The body as a stream of unknown length, so that httpx sends it chunked, as Go does."""
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def ping() -> dict[str, Any]:
    """`Client.Ping`: GET health; only the status is read."""
    return {"method": "GET", "url": f"{BASE}/health", "headers": _headers()}


def list_models() -> dict[str, Any]:
    """`Client.ListModels`: GET models; reads `models`, each `id`, `object`, `path`, `created`, `owned_by`."""
    return {"method": "GET", "url": f"{BASE}/models", "headers": _headers()}


def delete_model(model_id: str) -> dict[str, Any]:
    """`Client.DeleteModel`: DELETE models/{id}; only the status is read."""
    return {"method": "DELETE", "url": f"{BASE}/models/{model_id}", "headers": _headers()}


def download_model(path: str, *, progress: bool) -> dict[str, Any]:
    """`Client.DownloadModel`: POST models, JSON; `?stream=true` with a progress callback."""
    body = (json.dumps({"path": path}, separators=(",", ":")) + "\n").encode()
    request: dict[str, Any] = {"method": "POST", "url": f"{BASE}/models", "headers": _headers(), "content": body}
    if progress:
        request["params"] = {"stream": "true"}
    return request


def transcribe(
    model: str,
    audio: bytes,
    *,
    file_name: str = ".",
    language: str = "",
    segment_size: str = "",
    response_format: str = "",
    route: str = "transcriptions",
    chunked: bool = False,
) -> dict[str, Any]:
    """`Client.Transcribe` (route `transcriptions`) and `Client.Translate` (`translations`)."""
    boundary = secrets.token_hex(30)  # Go's multipart.Writer: 30 random bytes, in hex
    parts = [
        f'Content-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + audio,
        f'Content-Disposition: form-data; name="model"\r\n\r\n{model}'.encode(),
    ]
    for name, value in (("language", language), ("segment_size", segment_size), ("response_format", response_format)):
        if value:
            parts.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
    delimiter = f"--{boundary}\r\n".encode()
    body = delimiter + f"\r\n--{boundary}\r\n".encode().join(parts) + f"\r\n--{boundary}--\r\n".encode()
    headers = _headers(accept="multipart/form-data", content_type=f"multipart/form-data; boundary={boundary}")
    return {
        "method": "POST",
        "url": f"{BASE}/audio/{route}",
        "headers": headers,
        "content": _chunked(body) if chunked else body,
    }


def text_stream(body: str) -> list[tuple[str, str]]:
    """The events of a text/event-stream body as go-client's TextStream reads them: `field: value`
    lines, a blank line ending an event; data lines are concatenated; comments have no field."""
    events, event, data = [], "", ""
    for line in body.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if not line:
            if event or data:
                events.append((event, data))
            event, data = "", ""
            continue
        field, _, value = line.partition(":")
        if field == "event":
            event = value.strip()
        elif field == "data":
            data += value.strip()
    if event or data:
        events.append((event, data))
    return events
