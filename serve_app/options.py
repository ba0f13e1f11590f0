"""What a request asks of the engine and the Diarizer, beside the audio: plain value types
that every layer passes along (the API parses them from forms, jobs and batch build them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["DecodeOptions", "KnownSpeaker", "SpeakerOptions", "SpeechTask", "Task"]

Task = Literal["transcribe", "translate", "diarize"]
SpeechTask = Literal["transcribe", "translate"]
"""The tasks of Whisper itself, and of the Transcriber."""


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What the Transcriber needs to decode, beside the audio and the model."""

    task: SpeechTask = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    """The decoder's sampling temperature; None or 0: greedy (beam search)."""
    word_timestamps: bool = False
    draft: bool = False
    """A quick decode that a later one will correct (a live session's partial decodes): the
    encoder hears a window fitted to the audio rather than Whisper's whole 30 s
    (serve_app/engine/decoding.py `encoder_frames`). Internal: no API field sets it."""


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
