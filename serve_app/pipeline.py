"""decode -> transcribe: the one way through, shared by the HTTP routes, the job queue and batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

import numpy as np
from ray.serve.handle import DeploymentHandle

from .audio import decode_audio
from .catalogue import ModelInfo
from .errors import BadRequest, GatewayTimeout, NotFound
from .options import DecodeOptions
from .settings import AppSettings
from .transcript import Segment, Transcript, TranscriptInfo

__all__ = ["Pipeline", "check_model_fits"]


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
        max_audio_seconds: float | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.model_store = model_store
        self.transcriber = transcriber
        self.max_audio_seconds = max_audio_seconds
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: AppSettings, *, model_store: DeploymentHandle, transcriber: DeploymentHandle) -> Pipeline:
        return cls(
            model_store=model_store,
            transcriber=transcriber,
            max_audio_seconds=settings.max_audio_minutes * 60,
            timeout_s=settings.request_timeout_s,
        )

    async def model(self, name: str) -> ModelInfo:
        model = await self.model_store.get.remote(name)
        if model is None:
            raise NotFound(f"model not found: {name!r} is not among the models GET /v1/models lists")
        return model

    async def prepare(self, media: BinaryIO, model_name: str, options: DecodeOptions) -> tuple[np.ndarray, ModelInfo]:
        """Everything that can refuse the request, before any decoding starts: the model, what
        it can do, and the media, decoded once to 16 kHz mono in a thread."""
        model = await self.model(model_name)
        check_model_fits(model, options)
        audio = await asyncio.to_thread(decode_audio, media, max_seconds=self.max_audio_seconds)
        return audio, model

    async def transcribe(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> Transcript:
        response = self.transcriber.transcribe.remote(audio, model, options)
        try:
            return await asyncio.wait_for(response, timeout=self.timeout_s)
        except TimeoutError:
            response.cancel()
            raise GatewayTimeout(
                f"the transcription took longer than the limit of {self.timeout_s:g} s (request_timeout_s); "
                "send shorter media, or stream it with stream=true"
            ) from None

    async def stream(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> AsyncIterator[TranscriptInfo | Segment]:
        """The TranscriptInfo, then each segment as the Transcriber decodes it. Closing this
        iterator early (a client gone) cancels the decoding on the replica."""
        response = self.transcriber.options(stream=True).stream.remote(audio, model, options)
        try:
            async for event in response:
                yield event
        finally:
            response.cancel()
