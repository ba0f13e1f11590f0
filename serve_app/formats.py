"""Renderers of a transcript: pure functions, in a registry keyed by `response_format`.

SRT and WebVTT differ in the header, the millisecond separator, cue numbers, the speaker
tag and escaping; each cue is rendered alone so that a stream can send cues one at a time
and their concatenation is the same file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serve_app.transcript import Segment, Transcript, Word

__all__ = [
    "FORMATS",
    "JOB_FORMATS",
    "OUTPUT_FORMATS",
    "RESPONSE_FORMATS",
    "SPEAKER_FORMATS",
    "VTT_HEADER",
    "Format",
    "SpeakerLetters",
    "diarized_segment_json",
    "format_timestamp",
    "render",
    "render_diarized_json",
    "render_json",
    "render_rttm",
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
    "usage_json",
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


def usage_json(duration: float) -> dict[str, Any]:
    """OpenAI's `usage` of a transcription billed by the audio's length (its `UsageDuration`)."""
    return {"type": "duration", "seconds": _seconds(duration)}


def render_json(transcript: Transcript, *, verbose: bool = False, words: bool = False) -> dict[str, Any]:
    info = transcript.info
    body: dict[str, Any] = {
        "task": info.task,
        "language": info.language,
        "duration": _seconds(info.duration),
        "text": transcript.text,
        "segments": [segment_json(segment, verbose=verbose) for segment in transcript.segments],
        "usage": usage_json(info.duration),
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


_ANONYMOUS = re.compile(r"SPEAKER_\d+")


class SpeakerLetters:
    """OpenAI's speaker labels: the anonymous speakers (`SPEAKER_00`, ...) lettered `A`, `B`, ...,
    `Z`, `AA`, ... in the order they first speak; a known speaker keeps its name. One a
    transcript, so that a stream letters its segments as the whole answer does."""

    def __init__(self) -> None:
        self._letters: dict[str | None, str] = {}

    def __call__(self, speaker: str | None) -> str:
        if speaker is not None and not _ANONYMOUS.fullmatch(speaker):
            return speaker
        if speaker not in self._letters:
            self._letters[speaker] = _letters(len(self._letters))
        return self._letters[speaker]


def _letters(number: int) -> str:
    text = ""
    number += 1
    while number:
        number, rest = divmod(number - 1, 26)
        text = chr(ord("A") + rest) + text
    return text


def diarized_segment_json(segment: Segment, letters: SpeakerLetters) -> dict[str, Any]:
    """One segment as OpenAI's `TranscriptionDiarizedSegment`, which is also the body of a
    stream's `transcript.text.segment` event."""
    return {
        "type": "transcript.text.segment",
        "id": f"seg_{segment.id}",
        "start": _seconds(segment.start),
        "end": _seconds(segment.end),
        "text": segment.text.strip(),
        "speaker": letters(segment.speaker),
    }


def render_diarized_json(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's `TranscriptionDiarized`: the text, and its segments with their speakers."""
    letters = SpeakerLetters()
    return {
        "task": "transcribe",
        "duration": _seconds(transcript.info.duration),
        "text": transcript.text,
        "segments": [diarized_segment_json(segment, letters) for segment in transcript.segments],
        "usage": {"type": "duration", "seconds": _seconds(transcript.info.duration)},
    }


def render_rttm(transcript: Transcript, *, uri: str = "audio") -> str:
    """The Diarizer's turns (`Transcript.turns`, overlapping where two people speak at once) as
    NIST RTTM, one `SPEAKER` line a turn; nothing for a transcript that was not diarized.
    Speaker names are written with their spaces as underscores: RTTM's fields are separated by
    spaces."""
    lines = []
    for turn in transcript.turns or ():
        speaker = "_".join(turn.speaker.split()) or "_"
        lines.append(f"SPEAKER {uri} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> {speaker} <NA> <NA>\n")
    return "".join(lines)


def _whisper_json_file(transcript: Transcript) -> str:
    return json.dumps(render_whisper_json(transcript), ensure_ascii=False, indent=2) + "\n"


@dataclass(frozen=True, slots=True)
class Format:
    """One format, everywhere it is used: as an HTTP `response_format` (`respond`, the whole
    body; `cue`, one segment of a stream for the text formats) and as a file that jobs and the
    batch CLI write (`write`, under `extension`). A format lacking one of them is not offered there."""

    name: str
    media_type: str
    respond: Callable[[Transcript, bool], str | dict[str, Any]] | None = None
    cue: Callable[[Segment, int], str] | None = None
    write: Callable[[Transcript], str] | None = None

    @property
    def extension(self) -> str:
        return self.name


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("json", "application/json", respond=lambda t, words: render_json(t), write=_whisper_json_file),
        Format("verbose_json", "application/json", respond=lambda t, words: render_verbose_json(t, words=words)),
        Format("text", "text/plain; charset=utf-8", respond=lambda t, words: render_text(t), cue=text_line),
        Format("txt", "text/plain; charset=utf-8", write=render_txt),
        Format("srt", "application/x-subrip", respond=lambda t, words: render_srt(t), cue=srt_cue, write=render_srt),
        Format("vtt", "text/vtt; charset=utf-8", respond=lambda t, words: render_vtt(t), cue=vtt_cue, write=render_vtt),
        Format("tsv", "text/tab-separated-values; charset=utf-8", write=render_tsv),
        Format("diarized_json", "application/json", respond=lambda t, words: render_diarized_json(t)),
        Format("rttm", "text/plain; charset=utf-8", respond=lambda t, words: render_rttm(t), write=render_rttm),
    )
}
"""Every format, by name. `json` answers HTTP in OpenAI's shape and is written as a file in the
whisper CLI's; `text` is OpenAI's one-line text, `txt` the CLI's line a segment. The speaker
formats need a diarized transcript: `diarized_json` (OpenAI's) diarizes the request that asks
for it; `rttm` writes the Diarizer's turns (`Transcript.turns`), so it answers /v1/audio/diarize
only, and is a file only where the transcript was diarized (SPEAKER_FORMATS)."""

SPEAKER_FORMATS: tuple[str, ...] = ("rttm",)
"""The files a diarized job or batch writes besides OUTPUT_FORMATS: with `all`, or asked by name."""

RESPONSE_FORMATS: dict[str, Format] = {name: fmt for name, fmt in FORMATS.items() if fmt.respond is not None}
"""What `response_format` may be on the /v1 audio routes."""

OUTPUT_FORMATS: tuple[str, ...] = ("txt", "vtt", "srt", "tsv", "json")
"""The files a job or the batch CLI can write, in the order they are written and listed."""

JOB_FORMATS: tuple[str, ...] = (*OUTPUT_FORMATS, "all")
"""What a job's `format` may be: one output, or `all` of them."""


def render(transcript: Transcript, response_format: str, *, words: bool = False) -> str | dict[str, Any]:
    """The whole response body: a dict for the JSON formats, text for the others."""
    fmt = RESPONSE_FORMATS.get(response_format)
    if fmt is None or fmt.respond is None:
        raise ValueError(f"unknown response_format {response_format!r}")
    return fmt.respond(transcript, words)
