"""SSE event encoding, and a failure after the stream began ending it with `error`."""

from __future__ import annotations

import asyncio
import json

from serve_app.api.sse import transcript_events
from serve_app.errors import BadRequest
from serve_app.transcript import Segment, TranscriptInfo


async def collect(events) -> list[tuple[str | None, str | None]]:
    return [(event.event, event.data) async for event in events]


async def source(*items, fail: Exception | None = None):
    for item in items:
        yield item
    if fail is not None:
        raise fail


INFO = TranscriptInfo(task="transcribe", language="en", duration=2.5)
SEGMENTS = [Segment(0, 0.0, 1.0, " One."), Segment(1, 1.0, 2.5, " Two.")]


def test_json_events() -> None:
    events = asyncio.run(collect(transcript_events(source(INFO, *SEGMENTS), "json", task="diarize")))
    assert events[0] == ("ping", None)
    assert events[1] == ("task", json.dumps({"task": "diarize", "language": "en", "duration": 2.5}))
    assert [json.loads(data)["text"] for name, data in events if name == "segment"] == [" One.", " Two."]
    assert events[-1] == ("ok", None)


def test_vtt_events_carry_the_header_once() -> None:
    events = asyncio.run(collect(transcript_events(source(INFO, *SEGMENTS), "vtt", task="transcribe")))
    cues = [json.loads(data) for name, data in events if name == "segment"]
    assert cues[0].startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nOne.")
    assert not cues[1].startswith("WEBVTT")


def test_srt_events_are_numbered_across_the_stream() -> None:
    events = asyncio.run(collect(transcript_events(source(INFO, *SEGMENTS), "srt", task="transcribe")))
    cues = [json.loads(data) for name, data in events if name == "segment"]
    assert [cue.split("\n")[0] for cue in cues] == ["1", "2"]


def test_a_failure_midway_is_left_to_the_caller() -> None:
    # transcript_events itself propagates; the route turns it into an `error` event (tests/test_streaming.py).
    async def run() -> list:
        got = []
        try:
            async for event in transcript_events(source(INFO, SEGMENTS[0], fail=BadRequest("broken")), "json", task="transcribe"):
                got.append(event.event)
        except BadRequest as error:
            got.append(f"raised {error.reason}")
        return got

    assert asyncio.run(run()) == ["ping", "task", "segment", "raised broken"]
