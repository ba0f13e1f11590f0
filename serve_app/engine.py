"""faster-whisper behind a small cache of loaded models: the Transcriber's plain core.

No Ray here: tests and the batch pipeline use it directly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import faster_whisper.transcribe
import numpy as np
from faster_whisper import WhisperModel

from .audio import SAMPLE_RATE
from .catalogue import ModelInfo
from .errors import NotFound
from .options import DecodeOptions
from .transcript import Segment, Transcript, TranscriptInfo, Word

__all__ = ["WhisperEngine"]


def _segment(number: int, segment: faster_whisper.transcribe.Segment, duration: float) -> Segment:
    def clamp(seconds: float) -> float:
        # Whisper's timestamp tokens can point past the end of the audio's last window.
        return min(seconds, duration)

    return Segment(
        id=number,
        start=clamp(segment.start),
        end=clamp(segment.end),
        text=segment.text,
        seek=segment.seek,
        tokens=list(segment.tokens),
        temperature=segment.temperature or 0.0,
        avg_logprob=segment.avg_logprob,
        compression_ratio=segment.compression_ratio,
        no_speech_prob=segment.no_speech_prob,
        words=None if segment.words is None else [Word(clamp(w.start), clamp(w.end), w.word, w.probability) for w in segment.words],
    )


class WhisperEngine:
    """Loads each model once, keeps at most `max_loaded` of them, and transcribes with them."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        compute_type: str = "auto",
        cpu_threads: int = 1,
        max_loaded: int = 2,
        beam_size: int = 5,
        vad_filter: bool = False,
    ) -> None:
        self.device = device
        self.compute_type = compute_type if compute_type != "auto" else ("float16" if device == "cuda" else "int8")
        self.cpu_threads = cpu_threads
        self.max_loaded = max_loaded
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self._loaded: OrderedDict[str, WhisperModel] = OrderedDict()
        self._lock = threading.Lock()
        self.active_streams = 0
        self.segments_decoded = 0

    def model(self, path: str) -> WhisperModel:
        with self._lock:
            self._forget_deleted()
            if path in self._loaded:
                self._loaded.move_to_end(path)
                return self._loaded[path]
            if not Path(path).is_dir():
                # faster-whisper would take a missing folder for a hub name and download it.
                raise NotFound(f"model not found: {path} was deleted")
            model = WhisperModel(
                path, device=self.device, compute_type=self.compute_type, cpu_threads=self.cpu_threads
            )
            self._loaded[path] = model
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            return model

    def _forget_deleted(self) -> None:
        # A model deleted through the ModelStore is dropped here; a transcription still running
        # on it keeps its own reference to the weights and finishes.
        for path in [path for path in self._loaded if not Path(path).is_dir()]:
            del self._loaded[path]

    def loaded(self) -> list[str]:
        return list(self._loaded)

    def unload(self, path: str) -> bool:
        with self._lock:
            return self._loaded.pop(path, None) is not None

    def stream(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> Iterator[TranscriptInfo | Segment]:
        """The TranscriptInfo first, then each segment as faster-whisper decodes it. Closing the
        iterator early (a client gone) stops the decoding: faster-whisper's is lazy too."""
        segments, info = self.model(model.path).transcribe(
            audio, beam_size=self.beam_size, vad_filter=self.vad_filter, **options.engine_kwargs()
        )
        duration = len(audio) / SAMPLE_RATE
        yield TranscriptInfo(
            task=options.task, language=info.language, duration=duration, language_probability=info.language_probability
        )
        with self._counted_stream():
            for number, segment in enumerate(segments):
                with self._lock:
                    self.segments_decoded += 1
                yield _segment(number, segment, duration)

    @contextmanager
    def _counted_stream(self) -> Iterator[None]:
        with self._lock:
            self.active_streams += 1
        try:
            yield
        finally:
            with self._lock:
                self.active_streams -= 1

    def transcribe(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> Transcript:
        events = self.stream(audio, model, options)
        info = next(events)
        assert isinstance(info, TranscriptInfo)
        return Transcript(info=info, segments=list(events))  # type: ignore[arg-type]
