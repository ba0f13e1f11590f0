"""faster-whisper behind a batcher: the Transcriber's core.

A request's audio is cut at silences into chunks of at most 30 s (`prepare`); the chunks of
all requests in flight are decoded in batches by the engine's workers (serve_app/engine/batcher.py);
each request reads its own chunks' segments back in order (`Decoding`).

The engine loads models (`load`) but keeps none: its callers hold what they loaded and hand it
to each request. The Transcriber holds its replica's models in Ray Serve's model multiplexing
(deployments/transcriber.py), the batch pipeline its one model.

No Ray here: tests and the batch pipeline use it directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from serve_app.engine.audio import SAMPLE_RATE
from serve_app.engine.batcher import Batcher, Job
from serve_app.engine.decoding import (
    Chunk,
    Cut,
    DecodeKey,
    SpeechClock,
    context_tokens,
    cut_head,
    cut_rest,
    decode_batch,
    detect_language,
    to_segment,
)
from serve_app.errors import NotFound
from serve_app.metrics import NO_METRICS, Recorder
from serve_app.options import DecodeOptions
from serve_app.transcript import Segment, Transcript, TranscriptInfo

__all__ = ["Decoding", "Prepared", "WhisperEngine"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request's audio with its first minute cut into chunks and its language known: ready
    to decode, the rest cut later (`Decoding.cut_rest`)."""

    info: TranscriptInfo
    key: DecodeKey
    audio: np.ndarray
    head: Cut
    rest_start: int | None
    context: tuple[int, ...] = ()
    """The tokens of DecodeOptions.context, every chunk's (`Chunk.context`)."""


class Decoding:
    """One request's chunks in the batcher: iterate it (or `async for`) for its segments in
    order; `close` drops the chunks still waiting (a client gone)."""

    def __init__(self, engine: WhisperEngine, prepared: Prepared) -> None:
        self._engine = engine
        self._prepared = prepared
        self._clock = SpeechClock()
        self._clock.extend(prepared.head.speech)
        self._job: Job[Chunk] | None = engine.batcher.submit(prepared.key, prepared.head.chunks, _seconds(prepared.head))
        self.futures = self._job.futures
        self._numbered = 0
        engine._count(streams=1)

    def cut_rest(self) -> None:
        """Cut the audio after its first minute and hand those chunks to the batcher too."""
        prepared = self._prepared
        if prepared.rest_start is None:
            return
        rest = cut_rest(prepared.audio, prepared.rest_start, prepared.head.speech_seconds).with_context(prepared.context)
        self._clock.extend(rest.speech)
        if self._job is not None:
            self._engine.batcher.extend(self._job, rest.chunks, _seconds(rest))

    def segments(self, decoded: list[dict]) -> list[Segment]:
        info, key = self._prepared.info, self._prepared.key
        segments = [to_segment(self._numbered + n, raw, self._clock, info.duration, key) for n, raw in enumerate(decoded)]
        self._numbered += len(segments)
        self._engine._count(segments=len(segments))
        return segments

    # The rest is cut once the first chunk has decoded: beside it, the cutting would slow the
    # first words down, and the head's second chunk keeps the other worker busy meanwhile.

    def __iter__(self) -> Iterator[Segment]:
        """Every segment, in order, in the calling thread."""
        if not self.futures:
            self.cut_rest()
        read = 0
        while read < len(self.futures):
            yield from self.segments(self.futures[read].result())
            read += 1
            if read == 1:
                self.cut_rest()

    async def __aiter__(self) -> AsyncIterator[Segment]:
        """Every segment, in order, without blocking the event loop."""
        rest: asyncio.Future[None] | None = None
        read = 0
        while True:
            if rest is None and (read == 1 or not self.futures):
                rest = asyncio.ensure_future(asyncio.to_thread(self.cut_rest))
            if read < len(self.futures):
                for segment in self.segments(await asyncio.wrap_future(self.futures[read])):
                    yield segment
                read += 1
            elif rest is not None and rest.done():
                rest.result()  # a failure to cut is the request's failure
                return
            else:
                assert rest is not None  # set once the first chunk is read (or when there is none)
                await asyncio.wait([rest])

    def close(self) -> None:
        if self._job is not None:
            self._engine.batcher.cancel(self._job)
            self._engine._count(streams=-1)
            self._job = None


def _seconds(cut: Cut) -> list[float]:
    return [chunk.seconds for chunk in cut.chunks]


class WhisperEngine:
    """Loads models and transcribes with them: `workers` batches decode at the same time, each
    on `cpu_threads` threads (serve_app/engine/budget.py). Its batches are counted in `metrics`."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        compute_type: str = "auto",
        cpu_threads: int = 1,
        workers: int = 1,
        beam_size: int = 5,
        batch_audio_seconds: float = 240,
        metrics: Recorder = NO_METRICS,
    ) -> None:
        self.device = device
        self.compute_type = compute_type if compute_type != "auto" else ("float16" if device == "cuda" else "int8")
        self.cpu_threads = cpu_threads
        self.workers = workers
        self.beam_size = beam_size
        self._lock = threading.Lock()
        self.active_streams = 0
        self.segments_decoded = 0
        self.batcher: Batcher[Chunk] = Batcher(
            self._decode_batch,
            workers=workers,
            max_batch_seconds=batch_audio_seconds,
            name="whisper-batch",
            metrics=metrics,
            urgent=lambda key: isinstance(key, DecodeKey) and key.urgent,
        )

    def load(self, path: str) -> WhisperModel:
        """The model in the folder `path`, loaded for this engine's device and threads. Nothing is
        kept here: a request that still decodes with a model its holder has let go of keeps
        the weights until it ends."""
        if not Path(path).is_dir():
            # faster-whisper would take a missing folder for a hub name and download it.
            raise NotFound(f"model not found: {path} was deleted")
        return WhisperModel(
            path,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=self.workers,
        )

    def prepare(self, audio: np.ndarray, whisper: WhisperModel, options: DecodeOptions) -> Prepared:
        """Cut the audio's first minute at silences and settle its language (detected when not
        given)."""
        head, rest_start = cut_head(audio)
        if options.language is not None:
            language, probability = (options.language if whisper.model.is_multilingual else "en"), 1.0
        else:
            speech = np.concatenate([chunk.audio for chunk in head.chunks]) if head.chunks else audio
            language, probability = detect_language(whisper, speech)
        context = context_tokens(whisper, options.context, options.context_tokens)
        key = DecodeKey(
            model=whisper,
            task=options.task,
            language=language,
            prompt=options.prompt,
            temperature=options.temperature or 0.0,
            word_timestamps=options.word_timestamps,
            beam_size=self.beam_size,
            window=options.window,
            urgent=options.urgent,
            context_tokens=len(context),
        )
        info = TranscriptInfo(
            task=options.task, language=language, duration=len(audio) / SAMPLE_RATE, language_probability=probability
        )
        return Prepared(info=info, key=key, audio=audio, head=head.with_context(context), rest_start=rest_start, context=context)

    def decode(self, prepared: Prepared) -> Decoding:
        """Hand the chunks to the batcher; they decode beside those of the other requests."""
        return Decoding(self, prepared)

    def _decode_batch(self, key: Hashable, chunks: list[Chunk]) -> list[list[dict]]:
        assert isinstance(key, DecodeKey)
        return decode_batch(key.model, key, chunks)

    def _count(self, *, streams: int = 0, segments: int = 0) -> None:
        with self._lock:
            self.active_streams += streams
            self.segments_decoded += segments

    def stream(self, audio: np.ndarray, whisper: WhisperModel, options: DecodeOptions) -> Iterator[TranscriptInfo | Segment]:
        """The TranscriptInfo first, then each segment as its chunk decodes, with the model
        `load` gave. Closing the iterator early (a client gone) drops the chunks not decoding yet."""
        prepared = self.prepare(audio, whisper, options)
        yield prepared.info
        decoding = self.decode(prepared)
        try:
            yield from decoding
        finally:
            decoding.close()

    async def astream(
        self, audio: np.ndarray, whisper: WhisperModel, options: DecodeOptions
    ) -> AsyncGenerator[TranscriptInfo | Segment, None]:
        """`stream`, without blocking the event loop: the cutting runs in threads, the decoding
        in the batcher's workers. Closing it early drops the chunks not decoding yet."""
        prepared = await asyncio.to_thread(self.prepare, audio, whisper, options)
        yield prepared.info
        decoding = self.decode(prepared)
        try:
            async for segment in decoding:
                yield segment
        finally:
            decoding.close()

    def transcribe(self, audio: np.ndarray, whisper: WhisperModel, options: DecodeOptions) -> Transcript:
        events = self.stream(audio, whisper, options)
        info = next(events)
        assert isinstance(info, TranscriptInfo)
        return Transcript(info=info, segments=list(events))  # type: ignore[arg-type]

    def close(self) -> None:
        self.batcher.close()
