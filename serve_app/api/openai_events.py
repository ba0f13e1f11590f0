"""OpenAI's transcription stream: what a `stream=true` form field asks for (the SDK's
`client.audio.transcriptions.create(..., stream=True)`).

Every event is a `data:` line of JSON with a `type` (openai/types/audio/transcription_stream_event.py):

- `transcript.text.delta` with `delta`, the text of each segment as it is decoded;
- `transcript.text.segment` (`id`, `start`, `end`, `text`, `speaker`) after a segment's delta,
  where the stream's segments carry speakers (`segments=True`: diarized output);
- last, `transcript.text.done` with the whole `text` and `usage`; or, on a failure after the
  stream began, an `error` event whose `error.message` the SDK raises as an APIError.

The deltas, joined, are the `text` of the done event, and that is the `text` of the same request
without `stream`: the first delta has no leading space and trailing whitespace waits for the
text after it. No event lacks JSON data (the SDK parses each one): keep-alives are SSE comments.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import ServerSentEvent

from serve_app.formats import usage_json
from serve_app.transcript import Segment, TranscriptInfo

__all__ = [
    "DELTA",
    "DONE",
    "SEGMENT",
    "Deltas",
    "done_event",
    "error_event",
    "keepalive",
    "openai_events",
    "segment_event",
]

DELTA = "transcript.text.delta"
SEGMENT = "transcript.text.segment"
DONE = "transcript.text.done"


def keepalive() -> ServerSentEvent:
    """An SSE comment (`: ping`), which SSE clients skip: no event for the SDK to parse."""
    return ServerSentEvent(comment="ping")


def _data(body: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(body, ensure_ascii=False))


def segment_id(segment: Segment) -> str:
    return f"seg_{segment.id}"


def segment_event(segment: Segment) -> dict[str, Any]:
    """`transcript.text.segment`: a segment, with its speaker when it has one."""
    body: dict[str, Any] = {
        "type": SEGMENT,
        "id": segment_id(segment),
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text.strip(),
    }
    if segment.speaker is not None:
        body["speaker"] = segment.speaker
    return body


def done_event(text: str, duration: float) -> dict[str, Any]:
    return {"type": DONE, "text": text, "usage": usage_json(duration)}


def error_event(reason: str, *, status: int = 500) -> ServerSentEvent:
    """A failure after the stream began, in the shape the SDK raises (`{"error": {"message"}}`)."""
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return _data({"type": "error", "error": {"message": reason, "type": kind, "code": status}})


class Deltas:
    """The text of each segment as a delta, such that the deltas joined are the transcript's
    text (`Transcript.text`, stripped): leading whitespace is dropped until there is text, and
    trailing whitespace is held until more text follows it."""

    def __init__(self) -> None:
        self.text = ""
        self._held = ""

    def add(self, text: str) -> str:
        """The delta for the next segment's text ("" when it adds nothing yet)."""
        text = self._held + text
        if not self.text:
            text = text.lstrip()
        kept = text.rstrip()
        self._held = text[len(kept) :]
        self.text += kept
        return kept


async def openai_events(
    events: AsyncIterator[TranscriptInfo | Segment], *, segments: bool = False
) -> AsyncIterator[ServerSentEvent]:
    """OpenAI's events of a transcript as its TranscriptInfo and segments arrive; with
    `segments`, each segment's delta (then carrying its `segment_id`) is followed by a
    `transcript.text.segment` event. A failure is left to the caller (see `error_event`)."""
    deltas = Deltas()
    duration = 0.0
    async for event in events:
        if isinstance(event, TranscriptInfo):
            duration = event.duration
            continue
        delta = deltas.add(event.text)
        if delta:
            body: dict[str, Any] = {"type": DELTA, "delta": delta}
            if segments:
                body["segment_id"] = segment_id(event)
            yield _data(body)
        if segments:
            yield _data(segment_event(event))
    yield _data(done_event(deltas.text, duration))
