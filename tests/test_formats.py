"""The renderers, read back with real SRT and WebVTT parsers."""

from __future__ import annotations

import pytest
from subtitles import parse_srt, parse_vtt

from serve_app.formats import RESPONSE_FORMATS, format_timestamp, render
from serve_app.transcript import Segment, Transcript, TranscriptInfo, Word


def transcript(*segments: Segment, task: str = "transcribe") -> Transcript:
    return Transcript(TranscriptInfo(task=task, language="en", duration=3725.5), list(segments))


HOUR_LONG = transcript(
    Segment(0, 0.0, 1.5, " Hello there."),
    Segment(1, 59.999, 61.0004, " A minute in."),
    Segment(2, 3599.5, 3725.25, " Past the hour."),
)


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0, "00:00:00,000", "00:00:00.000"),
        (1.0005, "00:00:01,000", "00:00:01.000"),
        (61.25, "00:01:01,250", "00:01:01.250"),
        (3725.999, "01:02:05,999", "01:02:05.999"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (-0.5, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert format_timestamp(seconds, separator=",") == srt
    assert format_timestamp(seconds) == vtt


def test_srt_parses_back_with_times_and_text() -> None:
    cues = parse_srt(render(HOUR_LONG, "srt"))
    assert [(c.start, c.end, c.text) for c in cues] == [
        (0.0, 1.5, "Hello there."),
        (59.999, 61.0, "A minute in."),
        (3599.5, 3725.25, "Past the hour."),
    ]
    assert render(HOUR_LONG, "srt").startswith("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n2\n")


def test_vtt_parses_back_with_times_and_text() -> None:
    body = render(HOUR_LONG, "vtt")
    assert body.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n")
    assert [(c.start, c.end, c.text) for c in parse_vtt(body)] == [
        (0.0, 1.5, "Hello there."),
        (59.999, 61.0, "A minute in."),
        (3599.5, 3725.25, "Past the hour."),
    ]


def test_cue_text_that_would_break_the_file_is_escaped() -> None:
    tricky = transcript(
        Segment(0, 0.0, 1.0, " Tom & Jerry <b>bold</b> --> here"),
        Segment(1, 1.0, 2.0, " line one\n\nline two"),
    )
    vtt = parse_vtt(render(tricky, "vtt"))
    assert [c.text for c in vtt] == ["Tom & Jerry <b>bold</b> --> here", "line one line two"]
    subrip = parse_srt(render(tricky, "srt"))
    assert [c.text for c in subrip] == ["Tom & Jerry <b>bold</b> -> here", "line one line two"]


def test_an_empty_transcript_renders_valid_empty_files() -> None:
    empty = transcript()
    assert render(empty, "text") == ""
    assert parse_srt(render(empty, "srt")) == []
    assert parse_vtt(render(empty, "vtt")) == []
    assert render(empty, "json") == {
        "task": "transcribe",
        "language": "en",
        "duration": 3725.5,
        "text": "",
        "segments": [],
        "usage": {"type": "duration", "seconds": 3725.5},
    }


def test_json_and_verbose_json() -> None:
    spoken = transcript(
        Segment(
            0,
            0.0,
            1.5,
            " Hello there.",
            seek=0,
            tokens=[1, 2],
            avg_logprob=-0.25,
            words=[Word(0.0, 0.6, " Hello", 0.9), Word(0.6, 1.5, " there.", 0.8)],
        ),
    )
    plain = render(spoken, "json")
    assert plain == {
        "task": "transcribe",
        "language": "en",
        "duration": 3725.5,
        "text": "Hello there.",
        "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": " Hello there."}],
        "usage": {"type": "duration", "seconds": 3725.5},
    }
    verbose = render(spoken, "verbose_json", words=True)
    assert verbose["segments"][0]["tokens"] == [1, 2]
    assert verbose["segments"][0]["avg_logprob"] == -0.25
    assert [w["word"] for w in verbose["words"]] == [" Hello", " there."]
    assert "words" not in render(spoken, "verbose_json")
    assert verbose["usage"] == {"type": "duration", "seconds": 3725.5}


def test_speakers_show_in_every_format() -> None:
    talk = transcript(
        Segment(0, 0.0, 1.0, " Hi.", speaker="SPEAKER_00", speaker_turn=True),
        Segment(1, 1.0, 2.0, " Hello.", speaker="SPEAKER_01", speaker_turn=True),
        task="diarize",
    )
    assert [(c.speaker, c.text) for c in parse_srt(render(talk, "srt"))] == [("SPEAKER_00", "Hi."), ("SPEAKER_01", "Hello.")]
    assert [(c.speaker, c.text) for c in parse_vtt(render(talk, "vtt"))] == [("SPEAKER_00", "Hi."), ("SPEAKER_01", "Hello.")]
    assert render(talk, "text") == "[SPEAKER_00] Hi.\n[SPEAKER_01] Hello.\n"
    assert render(talk, "json")["segments"][1] == {
        "id": 1,
        "start": 1.0,
        "end": 2.0,
        "text": " Hello.",
        "speaker": "SPEAKER_01",
        "speaker_turn": True,
    }


def test_every_format_has_a_media_type() -> None:
    assert list(RESPONSE_FORMATS) == ["json", "verbose_json", "text", "srt", "vtt", "diarized_json", "rttm"]
    assert RESPONSE_FORMATS["srt"].media_type == "application/x-subrip"
    assert RESPONSE_FORMATS["vtt"].media_type.startswith("text/vtt")
