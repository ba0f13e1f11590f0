"""Server-sent events of a transcript stream: `ping`, `task`, one `segment` a segment, `ok` or `error`.

For json and verbose_json a segment's data is the segment object; for srt, vtt and text it is
a JSON string holding that segment's rendered text, numbered and headed so that the strings
of all segment events, concatenated, are the whole file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette import ServerSentEvent

from serve_app.formats import RESPONSE_FORMATS, VTT_HEADER, segment_json, word_json
from serve_app.transcript import Segment, TranscriptInfo

__all__ = ["PING_SECONDS", "error_event", "ping_event", "transcript_events"]

PING_SECONDS = 10


def ping_event() -> ServerSentEvent:
    return ServerSentEvent(event="ping")


def error_event(reason: str) -> ServerSentEvent:
    return ServerSentEvent(event="error", data=json.dumps(reason))


def _task(info: TranscriptInfo) -> ServerSentEvent:
    return ServerSentEvent(
        event="task", data=json.dumps({"task": info.task, "language": info.language, "duration": round(info.duration, 3)})
    )


def _segment(segment: Segment, number: int, response_format: str, *, words: bool) -> ServerSentEvent:
    cue = RESPONSE_FORMATS[response_format].cue
    if cue is None:
        body = segment_json(segment, verbose=response_format == "verbose_json")
        if words and segment.words is not None:
            body["words"] = [word_json(word) for word in segment.words]
        return ServerSentEvent(event="segment", data=json.dumps(body))
    text = cue(segment, number)
    if response_format == "vtt" and number == 1:
        text = VTT_HEADER + text
    return ServerSentEvent(event="segment", data=json.dumps(text))


async def transcript_events(
    events: AsyncIterator[TranscriptInfo | Segment], response_format: str, *, task: str, words: bool = False
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of a transcript as its TranscriptInfo and segments arrive."""
    yield ping_event()
    number = 0
    async for event in events:
        if isinstance(event, TranscriptInfo):
            yield _task(TranscriptInfo(task, event.language, event.duration, event.language_probability))
        else:
            number += 1
            yield _segment(event, number, response_format, words=words)
    yield ServerSentEvent(event="ok")
