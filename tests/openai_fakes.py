"""The in-process app (tests/fakes.py) with a stand-in Transcriber, so that the audio routes answer
without Ray and without a model: each request gets the same few segments, and the requests the
Transcriber was given are kept to look into."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fakes import FakeHandle, InProcess, Ready

from serve_app.api.app import all_routes, http_app
from serve_app.errors import ServiceError
from serve_app.options import DecodeOptions
from serve_app.pipeline import Pipeline
from serve_app.transcript import Segment, Transcript, TranscriptInfo

SEGMENTS = (
    Segment(0, 0.0, 4.2, " Hello from Chicago.", tokens=[1, 2, 3], avg_logprob=-0.2),
    Segment(1, 4.2, 9.0, " It is cold in New Jersey ", tokens=[4, 5], avg_logprob=-0.3),
    Segment(2, 9.0, 12.5, " too.", tokens=[6], avg_logprob=-0.1),
)
DURATION = 30.0


class _Stream:
    """What `handle.options(stream=True).stream.remote(...)` returns: async events, cancellable."""

    def __init__(self, events: list[TranscriptInfo | Segment], fail_after: int | None) -> None:
        self.events = events
        self.fail_after = fail_after
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[TranscriptInfo | Segment]:
        return self._events()

    async def _events(self) -> AsyncIterator[TranscriptInfo | Segment]:
        for number, event in enumerate(self.events):
            if self.fail_after is not None and number > self.fail_after:
                raise ServiceError("the transcriber's replica died")
            yield event

    def cancel(self) -> None:
        self.cancelled = True


class FakeTranscriber:
    """The Transcriber's handle, as the pipeline calls it."""

    def __init__(self, segments: tuple[Segment, ...] = SEGMENTS, *, fail_after: int | None = None) -> None:
        self.segments = segments
        self.fail_after = fail_after
        self.calls: list[tuple[str, str, DecodeOptions]] = []
        """(method, multiplexed model version, options) of each call."""
        self._model = ""

    def options(self, *, multiplexed_model_id: str = "", **_: Any) -> FakeTranscriber:
        self._model = multiplexed_model_id
        return self

    def _info(self, options: DecodeOptions) -> TranscriptInfo:
        return TranscriptInfo(options.task, options.language or "en", DURATION)

    @property
    def transcribe(self) -> Any:
        def remote(audio: Any, options: DecodeOptions) -> Any:
            self.calls.append(("transcribe", self._model, options))

            async def answer() -> Transcript:
                return Transcript(self._info(options), [dataclasses.replace(segment) for segment in self.segments])

            return answer()

        return _Remote(remote)

    @property
    def stream(self) -> Any:
        def remote(audio: Any, options: DecodeOptions) -> _Stream:
            self.calls.append(("stream", self._model, options))
            return _Stream([self._info(options), *self.segments], self.fail_after)

        return _Remote(remote)


class _Remote:
    def __init__(self, call: Any) -> None:
        self.remote = call


class StoreHandle(FakeHandle):
    """The ModelStore's handle, with `options(stream=True)` for the download's progress stream."""

    def options(self, *, stream: bool = False, **_: Any) -> Any:
        if not stream:
            return self
        target = self._target

        class Streaming:
            def __getattr__(self, name: str) -> Any:
                return _Remote(getattr(target, name))

        return Streaming()


class Transcribing(InProcess):
    """InProcess, whose audio routes reach `transcriber`."""

    def __init__(self, tmp_path: Path, transcriber: FakeTranscriber | None = None, **args: Any) -> None:
        super().__init__(tmp_path, **args)
        self.transcriber = transcriber or FakeTranscriber()
        pipeline = Pipeline.from_settings(self.settings, model_store=StoreHandle(self.models), transcriber=self.transcriber)
        routes = all_routes(pipeline=pipeline, readiness=Ready(), job_queue=FakeHandle(self.jobs))
        self.app = http_app(self.settings, routes)
