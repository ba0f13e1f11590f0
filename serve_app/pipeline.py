"""decode -> transcribe: the one way through, shared by the HTTP routes, the job queue and batch.

The Transcriber and the Diarizer are told a request's model by Ray Serve's model multiplexing:
`handle.options(multiplexed_model_id=model.version)`, which routes the request to a replica
that holds that model (deployments/multiplexing.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, BinaryIO, cast

import numpy as np
import ray
from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from serve_app.diarization.pieces import DiarizedPiece
from serve_app.diarization.speakers import Diarization, SpeakerLabeller, assign_speakers
from serve_app.engine.audio import decode_audio
from serve_app.errors import BadRequest, GatewayTimeout, NotFound
from serve_app.memory import forget_shared_pages
from serve_app.models.catalogue import ModelInfo
from serve_app.models.ids import WHISPER_1
from serve_app.options import DecodeOptions, SpeakerOptions
from serve_app.settings import AppSettings
from serve_app.transcript import Segment, Transcript, TranscriptInfo

__all__ = ["Pipeline", "Prepared", "check_model_fits", "put_audio"]

LEASE_MARGIN_S = 60.0
"""How long past the request timeout a model stays protected from deletion if its lease is
never returned (the Ingress or the JobQueue died mid-request)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request ready to decode: its audio (as `Pipeline.share_audio` made it: in the
    deployments, a reference to the one copy in Ray's object store), its model, and the
    ModelStore's lease on that model, which keeps it from being deleted until
    `Pipeline.release` returns it."""

    audio: Any
    model: ModelInfo
    lease: str


def put_audio(audio: np.ndarray) -> ray.ObjectRef:
    """The deployments' `share_audio`: `audio` put in Ray's object store, and the pages this
    process wrote there dropped from its resident memory (serve_app/memory.py)."""
    reference = ray.put(audio)
    forget_shared_pages(ray.get(reference))
    return reference


def check_model_fits(model: ModelInfo, options: DecodeOptions) -> None:
    """Refuse, before any work, what the model cannot do."""
    if model.kind != "transcription":
        raise BadRequest(f"model {model.id} is a {model.kind} model; send a transcription model")
    if model.multilingual:
        return
    if options.task == "translate":
        raise BadRequest(f"model {model.id} is English-only and cannot translate; use a multilingual model such as base")
    if options.language not in (None, "en"):
        raise BadRequest(
            f"model {model.id} is English-only and cannot transcribe language {options.language!r}; "
            "use a multilingual model such as base"
        )


class Pipeline:
    def __init__(
        self,
        *,
        model_store: DeploymentHandle,
        transcriber: DeploymentHandle,
        diarizer: DeploymentHandle | None = None,
        diarization_model: str | None = None,
        default_model: str | None = None,
        openai_model_alias: str | None = None,
        max_audio_seconds: float | None = None,
        timeout_s: float | None = None,
        decode_threads: int = 2,
        share_audio: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        """`share_audio` turns the decoded samples into what the Transcriber and the Diarizer are
        sent: the deployments pass `put_audio`, so that a request's audio crosses the object store
        once, as one reference both read (a numpy array sent by value is put once a call), and the
        caller's own copy is let go as soon as it is put. Without it the array itself is sent."""
        self.share_audio = share_audio
        self.default_model = default_model
        self.openai_model_alias = openai_model_alias
        self.model_store = model_store
        self.transcriber = transcriber
        self.diarizer = diarizer
        self.diarization_model = diarization_model
        self.max_audio_seconds = max_audio_seconds
        self.timeout_s = timeout_s
        self.decoder = ThreadPoolExecutor(decode_threads, thread_name_prefix="decode")

    @classmethod
    def from_settings(
        cls,
        settings: AppSettings,
        *,
        model_store: DeploymentHandle,
        transcriber: DeploymentHandle,
        diarizer: DeploymentHandle | None = None,
        share_audio: Callable[[np.ndarray], Any] | None = None,
    ) -> Pipeline:
        return cls(
            model_store=model_store,
            transcriber=transcriber,
            diarizer=diarizer,
            diarization_model=settings.diarization_model,
            default_model=settings.default_model,
            openai_model_alias=settings.openai_model_alias,
            max_audio_seconds=settings.max_audio_minutes * 60,
            timeout_s=settings.request_timeout_s,
            decode_threads=settings.decode_threads,
            share_audio=share_audio,
        )

    async def model(self, name: str) -> ModelInfo:
        """The model `name` finds, without a lease: for checks before any work is queued."""
        model = await self.model_store.get.remote(name)
        if model is None:
            raise self._not_found(name)
        return model

    def _not_found(self, name: str) -> NotFound:
        if name == WHISPER_1 and self.openai_model_alias is not None:
            return NotFound(
                f"model not found: whisper-1 stands for the openai_model_alias {self.openai_model_alias!r}, which is not "
                "in the model folder; download it with POST /v1/models or configure another openai_model_alias"
            )
        return NotFound(f"model not found: {name!r} is not among the models GET /v1/models lists")

    async def prepare(self, media: BinaryIO, model_name: str, options: DecodeOptions) -> Prepared:
        """Everything that can refuse the request, before any decoding starts: the model, what
        it can do, and the media, decoded once to 16 kHz mono on the decoding threads. The model is leased:
        `transcribe` and `stream` return the lease when they end; a caller that stops before
        either must call `release`."""
        lease_s = (self.timeout_s or 3600.0) + LEASE_MARGIN_S
        model, lease = await self.model_store.checkout.remote(model_name, lease_s)
        if model is None:
            raise self._not_found(model_name)
        try:
            check_model_fits(model, options)
            decode = partial(self._decode, media)
            audio = await asyncio.get_running_loop().run_in_executor(self.decoder, decode)
        except BaseException:
            await self.release(lease)
            raise
        return Prepared(audio, model, lease)

    def _decode(self, media: BinaryIO) -> Any:
        audio = decode_audio(media, max_seconds=self.max_audio_seconds)
        return audio if self.share_audio is None else self.share_audio(audio)

    async def missing_default(self) -> str | None:
        """Why the configured default model cannot serve, or None when it is in the catalogue."""
        if self.default_model is None or await self.model_store.get.remote(self.default_model) is not None:
            return None
        return (
            f"the default_model {self.default_model!r} is not in the model folder; download it with POST /v1/models "
            "or configure another default_model"
        )

    async def release(self, lease: str) -> None:
        await self.model_store.release.remote(lease)

    async def speaker_model(self, options: SpeakerOptions) -> ModelInfo:
        """The diarization pipeline a request asked for (or the configured one)."""
        name = options.model or self.diarization_model
        model = await self.model_store.get.remote(name)
        if model is None:
            raise NotFound(f"diarization model not found: {name!r} is not among the models GET /v1/models lists")
        if model.kind != "diarization":
            raise BadRequest(f"model {model.id} is a {model.kind} model; diarization_model must name a diarization model")
        return model

    async def transcribe(
        self,
        prepared: Prepared,
        options: DecodeOptions,
        speakers: tuple[ModelInfo, SpeakerOptions] | None = None,
    ) -> Transcript:
        """The transcript; with `speakers` (a diarization model and its options), diarized: the
        Transcriber and the Diarizer work on the audio at the same time, every word gets the
        speaker talking at its time (diarization/speakers.py), and the transcript keeps the
        Diarizer's turns (`Transcript.turns`). Diarizing adds speakers and never removes words:
        the words are those the same request without diarization gives."""
        try:
            return await self._transcribe(prepared.audio, prepared.model, options, speakers)
        finally:
            await self.release(prepared.lease)

    async def _transcribe(
        self, audio: Any, model: ModelInfo, options: DecodeOptions, speakers: tuple[ModelInfo, SpeakerOptions] | None
    ) -> Transcript:
        decode = _with_word_times(options) if speakers is not None else options
        responses = [self.transcriber.options(multiplexed_model_id=model.version).transcribe.remote(audio, decode)]
        if speakers is not None:
            responses.append(self._diarize(audio, speakers))
        try:
            async with asyncio.timeout(self.timeout_s):
                transcript, *turns = await asyncio.gather(*responses)
        except TimeoutError:
            for response in responses:
                response.cancel()
            raise GatewayTimeout(
                f"the transcription took longer than the limit of {self.timeout_s:g} s (request_timeout_s); "
                "send shorter media, or stream it with stream=true"
            ) from None
        if turns:
            found: Diarization = turns[0]
            transcript.segments = [
                _words_as_asked(segment, options) for segment in assign_speakers(transcript.segments, found.exclusive)
            ]
            transcript.turns = found.turns
            transcript.info.task = "diarize"
        return transcript

    @property
    def _diarizer(self) -> DeploymentHandle:
        assert self.diarizer is not None, "only the Ingress's Pipeline diarizes, and it has a Diarizer"
        return self.diarizer

    def _diarize(self, audio: Any, speakers: tuple[ModelInfo, SpeakerOptions]) -> DeploymentResponse:
        model, options = speakers
        diarizer = self._diarizer.options(multiplexed_model_id=model.version)
        return cast(DeploymentResponse, diarizer.diarize.remote(audio, options))  # not a stream

    async def stream_with_speakers(
        self, prepared: Prepared, options: DecodeOptions, speakers: tuple[ModelInfo, SpeakerOptions]
    ) -> AsyncGenerator[TranscriptInfo | Segment, None]:
        """As `stream`, each segment with its speakers, split where they change (see `transcribe`).
        The Diarizer sends its turns a piece at a time (a long file's pieces, diarization/pieces.py;
        a shorter one's whole): a segment goes out once the turns up to its end are known."""
        model, speaker_options = speakers
        diarizer = self._diarizer.options(stream=True, multiplexed_model_id=model.version)
        pieces = cast(
            "DeploymentResponseGenerator[DiarizedPiece]", diarizer.diarize_pieces.remote(prepared.audio, speaker_options)
        )
        known = _KnownTurns()
        reading = asyncio.ensure_future(known.read(pieces))
        waiting: list[Segment] = []

        def ready() -> Iterator[Segment]:
            while waiting and known.covers(waiting[0].end):
                for piece in known.labeller.label(waiting.pop(0)):
                    yield _words_as_asked(piece, options)

        try:
            async for event in self.stream(prepared, _with_word_times(options)):
                if isinstance(event, TranscriptInfo):
                    yield event
                    continue
                waiting.append(event)
                for segment in ready():
                    yield segment
            while True:
                known.changed.clear()
                for segment in ready():
                    yield segment
                if not waiting:
                    break
                await known.more(reading)
        finally:
            if reading.done() and not reading.cancelled():
                reading.exception()  # retrieved: raised above, or the client is gone
            reading.cancel()
            pieces.cancel()

    async def stream(self, prepared: Prepared, options: DecodeOptions) -> AsyncGenerator[TranscriptInfo | Segment, None]:
        """The TranscriptInfo, then each segment as the Transcriber decodes it. Closing this
        iterator early (a client gone) cancels the decoding on the replica."""
        transcriber = self.transcriber.options(stream=True, multiplexed_model_id=prepared.model.version)
        response = cast(
            "DeploymentResponseGenerator[TranscriptInfo | Segment]", transcriber.stream.remote(prepared.audio, options)
        )
        try:
            async for event in response:
                yield event
        finally:
            response.cancel()
            await self.release(prepared.lease)


class _KnownTurns:
    """The speaker turns a diarized stream has so far, and how far into the audio they reach."""

    def __init__(self) -> None:
        self.labeller = SpeakerLabeller([])
        self.until = 0.0
        self.done = False
        self.changed = asyncio.Event()

    async def read(self, pieces: AsyncIterator[DiarizedPiece]) -> None:
        try:
            async for piece in pieces:
                self.labeller.add(piece.found.exclusive)
                self.until = piece.until
                self.changed.set()
            self.done = True
        finally:
            self.changed.set()

    def covers(self, seconds: float) -> bool:
        return self.done or seconds <= self.until

    async def more(self, reading: asyncio.Future[None]) -> None:
        """Wait until `changed` is set (clear it first), or raise what reading the pieces raised."""
        if reading.done():
            reading.result()
            return
        await self.changed.wait()


def _with_word_times(options: DecodeOptions) -> DecodeOptions:
    """The options to decode with for a diarized answer: speakers go to words, so words are
    timed even when the request did not ask for them (`_words_as_asked` drops them again). The
    text is the same either way: word timing aligns the decoded tokens, it does not change them."""
    return options if options.word_timestamps else replace(options, word_timestamps=True)


def _words_as_asked(segment: Segment, options: DecodeOptions) -> Segment:
    if not options.word_timestamps:
        segment.words = None
    return segment
