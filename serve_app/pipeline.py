"""decode -> transcribe: the one way through, shared by the HTTP routes, the job queue and batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

import numpy as np
from ray.serve.handle import DeploymentHandle

from .audio import decode_audio
from .catalogue import ModelInfo
from .errors import BadRequest, NotFound
from .options import DecodeOptions, RequestOptions
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
    def __init__(self, *, model_store: DeploymentHandle, transcriber: DeploymentHandle) -> None:
        self.model_store = model_store
        self.transcriber = transcriber

    async def model(self, name: str) -> ModelInfo:
        model = await self.model_store.get.remote(name)
        if model is None:
            raise NotFound(f"model not found: {name!r} is not among the models GET /v1/models lists")
        return model

    async def prepare(self, media: BinaryIO, options: RequestOptions) -> tuple[np.ndarray, ModelInfo]:
        """Everything that can refuse the request, before any decoding starts: the model, what
        it can do, and the media, decoded once to 16 kHz mono in a thread."""
        model = await self.model(options.model)
        check_model_fits(model, options.decode)
        audio = await asyncio.to_thread(decode_audio, media)
        return audio, model

    async def transcribe(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> Transcript:
        return await self.transcriber.transcribe.remote(audio, model, options)

    async def stream(self, audio: np.ndarray, model: ModelInfo, options: DecodeOptions) -> AsyncIterator[TranscriptInfo | Segment]:
        """The TranscriptInfo, then each segment as the Transcriber decodes it. Closing this
        iterator early (a client gone) cancels the decoding on the replica."""
        response = self.transcriber.options(stream=True).stream.remote(audio, model, options)
        try:
            async for event in response:
                yield event
        finally:
            response.cancel()
