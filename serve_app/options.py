"""What a request asks of the engine and the Diarizer, beside the audio: plain value types
that every layer passes along (the API parses them from forms, jobs and batch build them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DecodeOptions", "EncoderWindow", "KnownSpeaker", "SpeakerOptions", "SpeechTask", "Task"]

Task = Literal["transcribe", "translate", "diarize"]
SpeechTask = Literal["transcribe", "translate"]
"""The tasks of Whisper itself, and of the Transcriber."""


@dataclass(frozen=True, slots=True)
class EncoderWindow:
    """An encoder window fitted to the audio: the audio and `margin_s` more, at least `least_s`
    (a batch's: its longest audio's), at most Whisper's 30 s.

    The encoder's cost grows faster than its window: on one core of a 2-core Xeon (tiny.en,
    int8), 0.44 to 0.46 s for the whole 30 s, 0.20 s for 20 s, 0.12 to 0.14 s for 15 s, 0.06 s
    for 10 s; the encoder is most of a decode of a few seconds of speech. Whisper was trained
    on whole windows and hears worse in shorter ones, the shortest worst: in windows 1 s longer
    than their audio, it repeats words ("Hello Hello Hello")."""

    margin_s: float
    least_s: float


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What the Transcriber needs to decode, beside the audio and the model."""

    task: SpeechTask = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    """The decoder's sampling temperature; None or 0: greedy (beam search)."""
    word_timestamps: bool = False
    window: EncoderWindow | None = None
    """The encoder hears a window fitted to the audio rather than Whisper's whole 30 s (None).
    Internal: no API field sets it; a live session's decodes do (serve_app/api/realtime/session.py)."""
    context: str | None = None
    """Words said just before the audio, heard in Whisper's prompt after `prompt`: its last
    `context_tokens` tokens. Unlike `prompt`, a request's own: requests with different contexts
    of as many tokens decode in one batch. Internal, as `window` is: a live session's completed
    texts carry its last completed words."""
    context_tokens: int = 0
    urgent: bool = False
    """Decoded before the other requests waiting for the Transcriber's workers. Internal: a live
    session's completed texts are, which a speaker waits for; its drafts and files wait in turn."""


@dataclass(frozen=True, slots=True, eq=False)
class KnownSpeaker:
    """A voice to name: `known_speaker_names[]` and its `known_speaker_references[]` recording,
    decoded (16 kHz mono float32, 2 to 10 s)."""

    name: str
    audio: np.ndarray


@dataclass(frozen=True, slots=True)
class SpeakerOptions:
    """What the Diarizer needs beside the audio: which pipeline, and how many speakers to find."""

    model: str | None = None
    """`diarization_model`; None: the app's configured `diarization_model`."""
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    known_speakers: tuple[KnownSpeaker, ...] = ()
    """The speakers whose voice matches one of these are named after it (diarization/known.py)."""
