"""The job API's output formats that /v1 lacks: txt a line a segment, tsv, the whisper CLI's json."""

from __future__ import annotations

import csv
import io
import json

from serve_app.formats import render_tsv, render_txt, render_whisper_json
from serve_app.transcript import Segment, Transcript, TranscriptInfo, Word


def transcript(*segments: Segment, language: str = "en") -> Transcript:
    return Transcript(TranscriptInfo(task="transcribe", language=language, duration=3725.5), list(segments))


SPOKEN = transcript(
    Segment(0, 0.0, 1.5, " Hello there."),
    Segment(1, 59.9996, 61.0004, " A minute\tin,\nwith a break."),
    Segment(2, 3599.5, 3725.25, " Past the hour."),
)


def tsv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def test_txt_is_one_segment_a_line() -> None:
    assert render_txt(SPOKEN).splitlines() == ["Hello there.", "A minute in, with a break.", "Past the hour."]
    assert render_txt(transcript()) == ""


def test_txt_tags_each_line_with_its_speaker() -> None:
    diarized = transcript(
        Segment(0, 0.0, 1.0, " Hi.", speaker="SPEAKER_00"), Segment(1, 1.0, 2.0, " Hello.", speaker="SPEAKER_01")
    )
    assert render_txt(diarized).splitlines() == ["[SPEAKER_00] Hi.", "[SPEAKER_01] Hello."]


def test_tsv_has_a_header_and_integer_milliseconds() -> None:
    body = render_tsv(SPOKEN)
    assert body.splitlines()[0] == "start\tend\ttext"
    rows = tsv_rows(body)
    assert [(row["start"], row["end"], row["text"]) for row in rows] == [
        ("0", "1500", "Hello there."),
        ("60000", "61000", "A minute in, with a break."),
        ("3599500", "3725250", "Past the hour."),
    ]
    # A tab or line break in the text never adds a column or a row.
    assert all(line.count("\t") == 2 for line in body.splitlines())


def test_tsv_of_an_empty_transcript_is_the_header() -> None:
    assert render_tsv(transcript()) == "start\tend\ttext\n"


def test_json_has_the_whisper_cli_shape() -> None:
    spoken = transcript(
        Segment(
            0,
            0.0,
            1.5,
            " Hallo zusammen.",
            tokens=[50364, 1],
            avg_logprob=-0.25,
            words=[Word(0.0, 0.61234, " Hallo", 0.91234), Word(0.61234, 1.5, " zusammen.", 0.8)],
        ),
        Segment(1, 1.5, 2.0, " Ja."),
        language="de",
    )
    body = json.loads(json.dumps(render_whisper_json(spoken)))
    assert list(body) == ["text", "segments", "language"]
    assert body["text"] == "Hallo zusammen. Ja."
    assert body["language"] == "de"
    first, second = body["segments"]
    assert {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    } <= set(first)
    assert (first["start"], first["end"], first["text"], first["tokens"]) == (0.0, 1.5, " Hallo zusammen.", [50364, 1])
    assert [w["word"] for w in first["words"]] == [" Hallo", " zusammen."]
    assert first["words"][0]["end"] == 0.612
    assert "words" not in second
    assert render_whisper_json(transcript()) == {"text": "", "segments": [], "language": "en"}
