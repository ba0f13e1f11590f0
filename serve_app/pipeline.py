"""decode -> transcribe: the one way through, shared by the HTTP routes, the job queue and batch."""

from __future__ import annotations

import asyncio
from typing import BinaryIO

from ray.serve.handle import DeploymentHandle

from .audio import decode_audio
from .catalogue import ModelInfo
from .errors import BadRequest, NotFound
from .options import DecodeOptions, RequestOptions
from .transcript import Transcript

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

    async def transcribe(self, media: BinaryIO, options: RequestOptions) -> Transcript:
        model = await self.model(options.model)
        check_model_fits(model, options.decode)
        audio = await asyncio.to_thread(decode_audio, media)
        return await self.transcriber.transcribe.remote(audio, model, options.decode)
