"""A job's model: found in the model folder, or downloaded before the job runs.

The old job API's clients name models the whisper CLI knows (`tiny` ... `large-v2`, `large`,
`.en` variants) or, as ai-api later did, OpenAI's hub ids (`openai/whisper-large-v3`). A job
naming one that is not in the model folder downloads it first (the ModelStore's download,
shared with `POST /v1/models`) instead of being refused; only a name that can never be a
model is refused at submission.

OpenAI's repositories hold PyTorch weights, which the engine cannot load: their ids stand for
the CTranslate2 conversion of the same model (`openai/whisper-large-v3` ->
`large-v3` -> Systran/faster-whisper-large-v3; `distil-whisper/distil-large-v3` ->
Systran/faster-distil-whisper-large-v3).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from serve_app.errors import BadRequest, ServiceError
from serve_app.models.catalogue import ModelInfo

__all__ = ["DOWNLOADING", "TRANSCRIBING", "HandleModels", "JobModels", "check_model_name", "download_path"]

DOWNLOADING = "downloading model"
"""The `stage` of a RUNNING job whose model is being downloaded."""
TRANSCRIBING = "transcribing"
"""The `stage` of a RUNNING job that has its model."""


def _conversions() -> dict[str, str]:
    from serve_app.models.hub import SIZES

    table = {}
    for size in SIZES:
        if size.startswith("distil-"):
            table[f"distil-whisper/{size}"] = size
        elif size not in ("large", "turbo"):  # names of faster-whisper's, not repositories of OpenAI's
            table[f"openai/whisper-{size}"] = size
    table["openai/whisper-large"] = "large-v1"  # OpenAI's first large, not faster-whisper's `large` (v3)
    return table


_CONVERSIONS: dict[str, str] | None = None


def download_path(name: str) -> str:
    """What to ask the ModelStore to download for a job's `model`: the faster-whisper size an
    OpenAI (or distil-whisper) hub id stands for, else the name itself."""
    global _CONVERSIONS
    if _CONVERSIONS is None:
        _CONVERSIONS = _conversions()
    return _CONVERSIONS.get(name.strip().lower(), name)


def check_model_name(name: str) -> None:
    """BadRequest, with what to send instead, for a model name that no download could give: not
    a faster-whisper size, hub repository id or go-whisper file name. Makes no network call."""
    from serve_app.models import hub

    try:
        hub.resolve(download_path(name))
    except BadRequest as refused:
        raise BadRequest(
            f"model {name!r} is not in the model folder and cannot be downloaded: {refused.reason}; "
            "or send one of the models GET /v1/models lists"
        ) from None


class JobModels(Protocol):
    """Where the scheduler finds a job's model, or has it downloaded."""

    async def find(self, name: str) -> ModelInfo | None:
        """The model in the folder that `name` means, or None."""

    async def download(self, name: str) -> ModelInfo:
        """The model `name` means, downloaded now unless present; the ServiceError that says
        why not (404 no such repository, 502 the hub failed or downloads are off...)."""


class HandleModels:
    """JobModels over the ModelStore deployment's handle (or a stand-in whose methods'
    `.remote(...)` can be awaited)."""

    def __init__(self, model_store: Any) -> None:
        self.model_store = model_store

    async def find(self, name: str) -> ModelInfo | None:
        for candidate in dict.fromkeys((name, download_path(name))):
            model = await self._call(self.model_store.get.remote(candidate))
            if model is not None:
                return model
        return None

    async def download(self, name: str) -> ModelInfo:
        model, _created = await self._call(self.model_store.add.remote(download_path(name)))
        return model

    @staticmethod
    async def _call(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ServiceError:
            raise
        except Exception as error:
            # The ModelStore's ServiceError, as it crossed the handle (RayTaskError's cause). Any
            # other exception goes as it is: a replica's death is the scheduler's to handle.
            cause = getattr(error, "cause", None)
            if isinstance(cause, ServiceError):
                raise cause from error
            raise
