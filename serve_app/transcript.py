"""The value types of a transcript, as the Transcriber produces them and the formats render them."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Segment", "SpeakerTurn", "Transcript", "TranscriptInfo", "Word"]


@dataclass(slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float = 1.0
    speaker: str | None = None


@dataclass(slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] | None = None
    speaker: str | None = None
    speaker_turn: bool = False


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker, in seconds from the start of the audio."""

    start: float
    end: float
    speaker: str


@dataclass(slots=True)
class TranscriptInfo:
    """What is known before the first segment: sent first on a stream."""

    task: str
    language: str
    duration: float
    language_probability: float = 1.0


@dataclass(slots=True)
class Transcript:
    info: TranscriptInfo
    segments: list[Segment]
    turns: list[SpeakerTurn] | None = None
    """A diarized transcript's speaker turns as the Diarizer found them, overlapping where two
    people speak at once (what `rttm` writes); None when it was not diarized."""

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for word in segment.words or ()]
