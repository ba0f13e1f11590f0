"""SRT and WebVTT read back with real parsers (srt, webvtt-py), as a player would read them."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass

import srt
import webvtt


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str
    speaker: str | None = None


def _seconds(timestamp: str) -> float:
    hours, minutes, seconds = timestamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_srt(text: str) -> list[Cue]:
    cues = []
    for cue in srt.parse(text):
        content, speaker = cue.content, None
        if content.startswith("[") and "] " in content:
            speaker, content = content[1:].split("] ", 1)
        cues.append(Cue(cue.start.total_seconds(), cue.end.total_seconds(), content, speaker))
    return cues


def parse_vtt(text: str) -> list[Cue]:
    assert text.startswith("WEBVTT"), text[:40]
    return [
        Cue(_seconds(c.start), _seconds(c.end), html.unescape(c.text), c.voice) for c in webvtt.from_buffer(io.StringIO(text))
    ]
