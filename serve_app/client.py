"""Call the running service from Python on its Ray cluster, without HTTP.

For a driver on the cluster (`ray job submit`, a script on a node) or a Ray Client
(`ray.init("ray://head:10001")`): the call goes through a Serve handle to the app's Ingress,
which runs the same parsing, pipeline and renderer as `POST /v1/audio/transcriptions`, so the
body is the one the HTTP API sends, and a refusal raises the ServiceError (serve_app.errors)
whose status the API would answer with. The HTTP middleware (API keys, the upload limit) is
not on this path: whoever can reach the cluster can already call its deployments.

    from serve_app.client import WhisperClient

    whisper = WhisperClient()                      # the app named "whisper" (config.yaml)
    body = whisper.transcribe("call.wav", model="base", response_format="json")
    print(body["language"], body["text"])
    subtitles = whisper.transcribe(open("talk.mp4", "rb"), model="base", response_format="srt")

Many files at once: `await asyncio.gather(*(whisper.transcribe_async(f, model=...) for f in files))`
sends them all before waiting for any, and the Transcriber's replicas share them.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, cast

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from serve_app.errors import as_service_error
from serve_app.options import SpeechTask

__all__ = ["APP_NAME", "Media", "WhisperClient"]

APP_NAME = "whisper"
"""The application's name in config.yaml and config.cpu.yaml."""

Media = bytes | str | os.PathLike[str] | BinaryIO
"""What `transcribe` takes: the file's bytes, its path, or a binary file open for reading."""


def _bytes(media: Media) -> bytes:
    if isinstance(media, bytes | bytearray | memoryview):
        return bytes(media)
    if isinstance(media, str | os.PathLike):
        with open(media, "rb") as file:
            return file.read()
    return media.read()


def _fields(model: str, language: str | None, response_format: str, extra: dict[str, Any]) -> dict[str, str]:
    """The form fields of the HTTP request, as strings, as they would be sent."""
    fields = {"model": model, "response_format": response_format} | {
        name: str(value) for name, value in extra.items() if value is not None
    }
    if language is not None:
        fields["language"] = language
    return fields


class WhisperClient:
    """The running app's transcription, called through its Ingress handle."""

    def __init__(self, app_name: str = APP_NAME, *, address: str | None = None) -> None:
        """Join the cluster at `address` (default: RAY_ADDRESS, or the Ray running on this host)
        unless this process is already connected, and find the app `app_name`."""
        if not ray.is_initialized():
            ray.init(address=address or "auto", log_to_driver=False)
        self.app_name = app_name
        self._ingress: DeploymentHandle = serve.get_app_handle(app_name)

    def _call(
        self, media: Media, task: SpeechTask, model: str, language: str | None, response_format: str, fields: dict[str, Any]
    ) -> DeploymentResponse:
        response = self._ingress.transcribe.remote(_bytes(media), _fields(model, language, response_format, fields), task)
        return cast(DeploymentResponse, response)  # not a stream: no stream=True in the handle's options

    def transcribe(
        self,
        media: Media,
        *,
        model: str,
        language: str | None = None,
        response_format: str = "json",
        task: SpeechTask = "transcribe",
        timeout_s: float | None = None,
        **fields: Any,
    ) -> dict[str, Any] | str:
        """The body `POST /v1/audio/transcriptions` answers: a dict for `json`/`verbose_json`,
        text for `text`, `srt` and `vtt`. `task="translate"` is `/v1/audio/translations`. Other
        form fields go as keywords: `prompt=...`, `temperature=0.2`,
        `timestamp_granularities="word"` (with verbose_json). Refusals raise ServiceError
        (NotFound for an unknown model, BadRequest, UnsupportedMedia, ...); `timeout_s` bounds
        the wait (Ray's GetTimeoutError)."""
        response = self._call(media, task, model, language, response_format, fields)
        try:
            return response.result(timeout_s=timeout_s)
        except Exception as error:
            raise (as_service_error(error) or error) from None

    async def transcribe_async(
        self,
        media: Media,
        *,
        model: str,
        language: str | None = None,
        response_format: str = "json",
        task: SpeechTask = "transcribe",
        **fields: Any,
    ) -> dict[str, Any] | str:
        """`transcribe`, to await from asyncio code (where the blocking one must not be called)."""
        try:
            return await self._call(media, task, model, language, response_format, fields)
        except Exception as error:
            raise (as_service_error(error) or error) from None
