"""Renderers of a transcript: pure functions, in a registry keyed by `response_format`.

SRT and WebVTT differ in the header, the millisecond separator, cue numbers, the speaker
tag and escaping; each cue is rendered alone so that a stream can send cues one at a time
and their concatenation is the same file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serve_app.transcript import Segment, Transcript, Word

__all__ = [
    "RESPONSE_FORMATS",
    "VTT_HEADER",
    "ResponseFormat",
    "format_timestamp",
    "render",
    "render_json",
    "render_srt",
    "render_text",
    "render_tsv",
    "render_txt",
    "render_verbose_json",
    "render_vtt",
    "render_whisper_json",
    "segment_json",
    "srt_cue",
    "text_line",
    "vtt_cue",
    "word_json",
]

VTT_HEADER = "WEBVTT\n\n"


def format_timestamp(seconds: float, *, separator: str = ".") -> str:
    """`HH:MM:SS.mmm` (or `,mmm` for SRT); negative times clamp to zero."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _one_line(text: str) -> str:
    # A blank line ends a cue in both SRT and WebVTT, so a cue's text is kept on one line.
    return " ".join(text.split())


def srt_cue(segment: Segment, number: int) -> str:
    text = _one_line(segment.text).replace("-->", "->")
    if segment.speaker:
        text = f"[{segment.speaker}] {text}"
    start = format_timestamp(segment.start, separator=",")
    end = format_timestamp(segment.end, separator=",")
    return f"{number}\n{start} --> {end}\n{text}\n\n"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_cue(segment: Segment, number: int = 0) -> str:
    text = _vtt_escape(_one_line(segment.text))
    if segment.speaker:
        text = f"<v {_vtt_escape(segment.speaker)}>{text}"
    return f"{format_timestamp(segment.start)} --> {format_timestamp(segment.end)}\n{text}\n\n"


def text_line(segment: Segment, number: int = 0) -> str:
    text = _one_line(segment.text)
    return f"[{segment.speaker}] {text}\n" if segment.speaker else f"{text}\n"


def render_srt(transcript: Transcript) -> str:
    return "".join(srt_cue(segment, number) for number, segment in enumerate(transcript.segments, 1))


def render_vtt(transcript: Transcript) -> str:
    return VTT_HEADER + "".join(vtt_cue(segment) for segment in transcript.segments)


def render_text(transcript: Transcript) -> str:
    """The transcript; a diarized one a line per segment, each tagged with its speaker."""
    if any(segment.speaker for segment in transcript.segments):
        return "".join(text_line(segment) for segment in transcript.segments)
    return transcript.text + "\n" if transcript.text else ""


def render_txt(transcript: Transcript) -> str:
    """The job API's `txt` output, as the whisper CLI writes it: one segment a line (the
    /v1 `text` format is OpenAI's, the whole text on one line)."""
    return "".join(text_line(segment) for segment in transcript.segments)


def render_tsv(transcript: Transcript) -> str:
    """The job API's `tsv` output: a `start\tend\ttext` header, then a line a segment.

    Times are integer milliseconds, as the whisper CLI writes them: an integer cannot be
    misread where a locale writes the decimal point as a comma, and spreadsheets and C++
    read it without parsing floats. Tabs and line breaks in the text become spaces, so a
    segment stays one row of three columns.
    """
    rows = ["start\tend\ttext\n"]
    for segment in transcript.segments:
        text = text_line(segment).rstrip("\n")
        rows.append(f"{max(0, round(segment.start * 1000))}\t{max(0, round(segment.end * 1000))}\t{text}\n")
    return "".join(rows)


def _seconds(value: float) -> float:
    return round(value, 3)


def word_json(word: Word) -> dict[str, Any]:
    body: dict[str, Any] = {
        "word": word.word,
        "start": _seconds(word.start),
        "end": _seconds(word.end),
        "probability": round(word.probability, 4),
    }
    if word.speaker is not None:
        body["speaker"] = word.speaker
    return body


def segment_json(segment: Segment, *, verbose: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": segment.id,
        "start": _seconds(segment.start),
        "end": _seconds(segment.end),
        "text": segment.text,
    }
    if verbose:
        body |= {
            "seek": segment.seek,
            "tokens": list(segment.tokens),
            "temperature": segment.temperature,
            "avg_logprob": segment.avg_logprob,
            "compression_ratio": segment.compression_ratio,
            "no_speech_prob": segment.no_speech_prob,
        }
    if segment.speaker is not None:
        body |= {"speaker": segment.speaker, "speaker_turn": segment.speaker_turn}
    return body


def render_json(transcript: Transcript, *, verbose: bool = False, words: bool = False) -> dict[str, Any]:
    info = transcript.info
    body: dict[str, Any] = {
        "task": info.task,
        "language": info.language,
        "duration": _seconds(info.duration),
        "text": transcript.text,
        "segments": [segment_json(segment, verbose=verbose) for segment in transcript.segments],
    }
    if verbose and words:
        body["words"] = [word_json(word) for word in transcript.words]
    return body


def render_verbose_json(transcript: Transcript, *, words: bool = False) -> dict[str, Any]:
    return render_json(transcript, verbose=True, words=words)


def render_whisper_json(transcript: Transcript) -> dict[str, Any]:
    """The job API's `json` output in the whisper CLI's shape, `{"text", "segments", "language"}`,
    so that scripts written for the old server's files read ours. Segments carry the CLI's
    decoder fields, and their words when word timestamps were asked for."""
    segments = []
    for segment in transcript.segments:
        body = segment_json(segment, verbose=True)
        if segment.words:
            body["words"] = [word_json(word) for word in segment.words]
        segments.append(body)
    return {"text": transcript.text, "segments": segments, "language": transcript.info.language}


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A `response_format`: its media type and, for the text formats, how one segment renders on a stream."""

    name: str
    media_type: str
    cue: Callable[[Segment, int], str] | None = None


RESPONSE_FORMATS: dict[str, ResponseFormat] = {
    fmt.name: fmt
    for fmt in (
        ResponseFormat("json", "application/json"),
        ResponseFormat("verbose_json", "application/json"),
        ResponseFormat("text", "text/plain; charset=utf-8", text_line),
        ResponseFormat("srt", "application/x-subrip", srt_cue),
        ResponseFormat("vtt", "text/vtt; charset=utf-8", vtt_cue),
    )
}


def render(transcript: Transcript, response_format: str, *, words: bool = False) -> str | dict[str, Any]:
    """The whole response body: a dict for the JSON formats, text for the others."""
    match response_format:
        case "json":
            return render_json(transcript)
        case "verbose_json":
            return render_verbose_json(transcript, words=words)
        case "text":
            return render_text(transcript)
        case "srt":
            return render_srt(transcript)
        case "vtt":
            return render_vtt(transcript)
    raise ValueError(f"unknown response_format {response_format!r}")
