"""Live audio for realtime transcription sessions: the wire formats decoded to 16 kHz float
samples, Silero VAD run as the audio arrives (turn detection), and the agreement between
consecutive decodes of an utterance in progress that decides which words are stable.

Pure: no Ray, no sockets; serve_app/api/realtime/session.py drives it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "AudioDecoder",
    "InputFormat",
    "SpeechDetector",
    "TurnDetection",
    "agreed_words",
    "alaw_to_pcm16",
    "extends",
    "ulaw_to_pcm16",
]

SAMPLE_RATE = 16000
"""The rate everything after the decoder works at: Whisper's and Silero's."""
WINDOW = 512
"""Silero VAD's window at 16 kHz (32 ms), with the last 64 samples of the previous one as context."""
CONTEXT = 64

InputFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
RATES: dict[str, int] = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}


def _ulaw_table() -> np.ndarray:
    # G.711 μ-law, as the ITU's reference decoder (and the late audioop.ulaw2lin) reads it.
    value = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((value & 0x0F) << 3) + 0x84) << ((value & 0x70) >> 4)
    return np.where(value & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_table() -> np.ndarray:
    value = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (value & 0x70) >> 4
    base = (value & 0x0F) << 4
    magnitude = np.where(segment == 0, base + 8, (base + 0x108) << np.maximum(segment - 1, 0))
    return np.where(value & 0x80, magnitude, -magnitude).astype(np.int16)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def ulaw_to_pcm16(data: bytes) -> np.ndarray:
    return _ULAW[np.frombuffer(data, dtype=np.uint8)]


def alaw_to_pcm16(data: bytes) -> np.ndarray:
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]


class AudioDecoder:
    """One session's audio, in its wire format, to 16 kHz float32 mono: G.711 through numpy
    tables, then PyAV's resampler, which keeps its filter's state from one piece to the next,
    so that pieces of any size join without clicks."""

    def __init__(self, fmt: InputFormat) -> None:
        self.format = fmt
        self.rate = RATES[fmt]
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._odd_byte = b""

    def decode(self, data: bytes) -> np.ndarray:
        if self.format == "audio/pcm":
            data, self._odd_byte = self._odd_byte + data, b""
            if len(data) % 2:
                data, self._odd_byte = data[:-1], data[-1:]
            pcm = np.frombuffer(data, dtype="<i2")
        elif self.format == "audio/pcmu":
            pcm = ulaw_to_pcm16(data)
        else:
            pcm = alaw_to_pcm16(data)
        if not len(pcm):
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.reshape(1, -1)), format="s16", layout="mono")
        frame.rate = self.rate
        out = [piece.to_ndarray().reshape(-1) for piece in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """`server_vad`'s settings, as the Realtime API names them."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(slots=True)
class SpeechDetector:
    """Silero VAD over the session's audio as it arrives, window by window, with the state of
    the model's recurrent layer carried from one piece to the next (what
    faster_whisper.vad.SileroVADModel does over a whole file at once).

    `feed` answers the speech probability of each 32 ms window completed (a live session's
    `Turns` makes speech starts and stops of them)."""

    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    _h: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    _c: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    windows: int = 0
    """Windows decided so far: the VAD's position on the session's clock, in windows."""

    @staticmethod
    def model() -> Any:
        from faster_whisper.vad import get_vad_model

        return get_vad_model()

    def feed(self, audio: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        whole = len(audio) // WINDOW * WINDOW
        self._pending = audio[whole:].copy()
        if not whole:
            return np.zeros(0, np.float32)
        windows = audio[:whole].reshape(-1, WINDOW)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        self._context = windows[-1, -CONTEXT:].copy()
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1), dtype=np.float32)
        probabilities, self._h, self._c = self.model().session.run(None, {"input": batch, "h": self._h, "c": self._c})
        self.windows += len(windows)
        return np.asarray(probabilities, dtype=np.float32).reshape(-1)


_WORD_EDGES = re.compile(r"^[^\w]+|[^\w]+$")


def _norm(word: str) -> str:
    return _WORD_EDGES.sub("", word.lower())


def agreed_words(previous: Sequence[str], current: Sequence[str]) -> int:
    """How many words two consecutive decodes of the same growing audio agree on from the
    start, case and punctuation aside: the words that the next decode is unlikely to change
    (the local agreement policy of streaming Whisper)."""
    count = 0
    for before, now in zip(previous, current):
        if _norm(before) != _norm(now):
            break
        count += 1
    return count


def extends(sent: Sequence[str], words: Sequence[str]) -> bool:
    """Whether `words` begin with the words already `sent` (case and punctuation aside)."""
    return len(words) >= len(sent) and agreed_words(sent, words) == len(sent)
